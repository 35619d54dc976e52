// Addressing Kubernetes API resources: a Resource descriptor (group, version,
// plural resource, scope) and the REST paths and query strings built from it.
//
//   auto path = object_path(resources::kConfigMaps, "shop", "settings");
//   // "/api/v1/namespaces/shop/configmaps/settings"
//   auto list = collection_path(resources::kHttpRoutes, "");  // every namespace
//   // "/apis/gateway.networking.k8s.io/v1/httproutes"
//
// Names and namespaces become path segments, so anything that could change the
// path's meaning ('/', '%', '?', '#', control characters, "." and "..") is
// refused with an exact error rather than escaped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::kube {

struct Resource {
  std::string group;     // "" for the core API
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "services", "httproutes"
  bool namespaced = true;

  // "pods" for the core group, "httproutes.gateway.networking.k8s.io"
  // otherwise (kubectl's spelling); used as the `resource` metric label.
  std::string label() const;
  // "v1" or "gateway.networking.k8s.io/v1": an object's apiVersion.
  std::string api_version() const;
};

// The resources Trellis binaries use.
namespace resources {
inline const Resource kNamespaces{"", "v1", "namespaces", false};
inline const Resource kServices{"", "v1", "services", true};
inline const Resource kPods{"", "v1", "pods", true};
inline const Resource kConfigMaps{"", "v1", "configmaps", true};
inline const Resource kSecrets{"", "v1", "secrets", true};
inline const Resource kServiceAccounts{"", "v1", "serviceaccounts", true};
inline const Resource kEvents{"", "v1", "events", true};
inline const Resource kEndpointSlices{"discovery.k8s.io", "v1", "endpointslices", true};
inline const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};
inline const Resource kHttpRoutes{"gateway.networking.k8s.io", "v1", "httproutes", true};
inline const Resource kGrpcRoutes{"gateway.networking.k8s.io", "v1", "grpcroutes", true};
inline const Resource kReferenceGrants{"gateway.networking.k8s.io", "v1", "referencegrants", true};
}  // namespace resources

// A collection: "/api/v1/namespaces/<ns>/services", or every namespace's
// when `ns` is empty ("/api/v1/services"). Errors: "namespaces is
// cluster-scoped: namespace 'x' not allowed", "invalid namespace 'a/b'".
Result<std::string> collection_path(const Resource& resource, std::string_view ns);

// One object, optionally a subresource of it ("status"). Errors as above and
// "services is namespaced: a namespace is required", "invalid name ''",
// "invalid subresource 'a/b'".
Result<std::string> object_path(const Resource& resource, std::string_view ns,
                                std::string_view name, std::string_view subresource = {});

// A name or namespace usable as one path segment; the error is
// "invalid <what> '<value>'".
Status check_path_segment(std::string_view what, std::string_view value);

// Options of a LIST or WATCH; unset fields are not sent.
struct ListOptions {
  std::string label_selector;  // "app=echo,tier!=db"
  std::string field_selector;  // "metadata.name=echo"
  std::optional<int64_t> limit;
  std::string continue_token;
  std::string resource_version;
  std::string resource_version_match;  // "NotOlderThan", "Exact"
  bool watch = false;
  bool allow_watch_bookmarks = false;
  std::optional<int64_t> timeout_seconds;
};

// "?labelSelector=app%3Decho&limit=2", or "" when nothing is set. Values are
// percent-encoded (RFC 3986 unreserved characters are kept).
std::string query_string(const ListOptions& options);

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percent_encode(std::string_view value);

}  // namespace trellis::kube
