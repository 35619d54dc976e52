// HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) as the API server
// returns them: a list item, a watch event's object or a GET answer.
//
// Rules are decoded into the route-table model (common/routes) by the
// route-table parser itself, so a rule the controller accepts is exactly a rule
// the sidecar accepts: no second copy of the CRD validation lives here. A route
// whose spec does not decode is still returned, with `spec_error` set (the
// resolver reports it as Accepted=False, UnsupportedValue), so that it gets a
// status instead of silently disappearing. Only an object without usable
// metadata fails to decode: it cannot be named, so it cannot get a status.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/json/json.h"
#include "common/kube/objects.h"
#include "common/routes/route_table.h"

namespace trellis::controller::gateway {

// The controllerName Trellis writes into status.parents[].
inline constexpr std::string_view kControllerName = "trellis.dev/mesh-controller";

// spec.parentRefs[]. group and kind carry the CRD defaults
// (gateway.networking.k8s.io, Gateway) when the object omits them; the optional
// fields stay absent when absent, so that status echoes the reference as written.
struct ParentReference {
  std::string group = "gateway.networking.k8s.io";
  std::string kind = "Gateway";
  std::optional<std::string> ns;  // absent: the route's namespace
  std::string name;
  std::optional<std::string> section_name;
  std::optional<uint16_t> port;

  // kind Service in the core group ("" or "core"): a mesh parent, ours to resolve.
  bool is_service() const;
};
bool operator==(const ParentReference& a, const ParentReference& b);

// metav1.Condition.
struct Condition {
  std::string type;    // Accepted, ResolvedRefs, ...
  std::string status;  // True, False, Unknown
  std::string reason;
  std::string message;
  int64_t observed_generation = 0;
  std::string last_transition_time;  // RFC 3339
};
bool operator==(const Condition& a, const Condition& b);

// One entry of status.parents[].
struct RouteParentStatus {
  ParentReference parent_ref;
  std::string controller_name;
  std::vector<Condition> conditions;
};
bool operator==(const RouteParentStatus& a, const RouteParentStatus& b);

// A status.parents[] entry as read from the object. Entries of other
// controllers are written back verbatim (`json`); `typed` is set when the entry
// decodes, which ours always do.
struct ObservedParentStatus {
  std::string controller_name;  // "" when absent or not a string
  std::optional<RouteParentStatus> typed;
  std::string json;  // the entry exactly as read (compact)
};

struct Route {
  routes::RouteKind kind = routes::RouteKind::http_route;
  kube::ObjectMeta metadata;
  std::vector<ParentReference> parent_refs;
  // spec.rules with the API defaults filled in (kind HTTPRoute: http_rules,
  // GRPCRoute: grpc_rules); empty when spec_error is set.
  std::vector<routes::HTTPRouteRule> http_rules;
  std::vector<routes::GRPCRouteRule> grpc_rules;
  int64_t creation_time_ns = 0;  // metadata.creationTimestamp, for precedence
  // Why the spec was refused, path-qualified ("spec.rules[0].matches[0].path.value:
  // invalid regular expression: missing ): ("); empty when it decoded. parent_refs
  // holds what decoded before the error.
  std::string spec_error;
  std::vector<ObservedParentStatus> status_parents;

  // The route as a route-table entry (no port), to attach to a Service.
  routes::Route table_route() const;
};

// Errors only for what makes the object unusable: not an object, or bad
// metadata ("metadata: missing required field 'name'").
Result<Route> decode_http_route(const json::Value& object);
Result<Route> decode_grpc_route(const json::Value& object);
Result<Route> decode_route(routes::RouteKind kind, const json::Value& object);

}  // namespace trellis::controller::gateway
