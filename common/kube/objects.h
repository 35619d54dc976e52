// Typed Kubernetes objects: only the fields Trellis binaries use; unknown
// fields are ignored. Each decode function reads one object as the API server
// returns it (a list item, a watch event's object, a GET answer) and fails with
// a path-qualified error ("spec.ports[0].port: expected an integer between 1
// and 65535, got 0"); an absent optional field takes the API's default.
//
// Every type has an `ObjectMeta metadata` member: that is what Informer<T>
// keys its cache on, so a caller's own types (HTTPRoute, ...) follow suit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/json/json.h"

namespace trellis::kube {

using StringMap = std::map<std::string, std::string, std::less<>>;

struct OwnerReference {
  std::string api_version;
  std::string kind;
  std::string name;
  std::string uid;
  bool controller = false;
};

struct ObjectMeta {
  std::string name;
  std::string namespace_;  // empty for cluster-scoped objects
  std::string uid;
  std::string resource_version;
  int64_t generation = 0;
  std::string creation_timestamp;                 // RFC 3339, as the server wrote it
  std::optional<std::string> deletion_timestamp;  // set once deletion has begun
  StringMap labels;
  StringMap annotations;
  std::vector<OwnerReference> owner_references;

  // "namespace/name", or "name" for cluster-scoped objects.
  std::string key() const;
};

// "namespace/name" or "name": the cache key of an object.
std::string object_key(std::string_view ns, std::string_view name);

// `object.metadata`; name is required, everything else optional.
Result<ObjectMeta> decode_object_meta(const json::Value& object);

// Any object, untyped: its metadata and its JSON text (compact), for code that
// decodes the rest itself.
struct RawObject {
  ObjectMeta metadata;
  std::string json;
};
Result<RawObject> decode_raw_object(const json::Value& object);

struct Namespace {
  ObjectMeta metadata;
  std::string phase;  // "Active", "Terminating"
};
Result<Namespace> decode_namespace(const json::Value& object);

// A port number or a port name (Service targetPort).
struct IntOrString {
  bool is_int = true;
  int32_t int_value = 0;
  std::string str_value;

  bool operator==(const IntOrString& o) const {
    return is_int == o.is_int && int_value == o.int_value && str_value == o.str_value;
  }
};

struct ServicePort {
  std::string name;
  std::string protocol = "TCP";
  int32_t port = 0;
  IntOrString target_port;  // defaults to port
  std::optional<std::string> app_protocol;
};

struct Service {
  ObjectMeta metadata;
  std::string type = "ClusterIP";
  std::string cluster_ip;                // "None" for headless Services
  std::vector<std::string> cluster_ips;  // dual-stack; cluster_ip is the first
  std::vector<ServicePort> ports;
  StringMap selector;
};
Result<Service> decode_service(const json::Value& object);

struct ObjectReference {
  std::string kind;
  std::string namespace_;
  std::string name;
  std::string uid;
};

struct EndpointConditions {
  // Unset means unknown; the API says to read unknown readiness as ready.
  std::optional<bool> ready;
  std::optional<bool> serving;
  std::optional<bool> terminating;

  bool is_ready() const { return ready.value_or(true); }
  bool is_serving() const { return serving.value_or(is_ready()); }
  bool is_terminating() const { return terminating.value_or(false); }
};

struct Endpoint {
  std::vector<std::string> addresses;
  EndpointConditions conditions;
  std::optional<ObjectReference> target_ref;
  std::optional<std::string> node_name;
};

struct EndpointPort {
  std::string name;  // "" when the Service port is unnamed
  std::optional<int32_t> port;
  std::string protocol = "TCP";
  std::optional<std::string> app_protocol;
};

struct EndpointSlice {
  ObjectMeta metadata;
  std::string address_type;  // "IPv4", "IPv6", "FQDN"
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;

  // The label kubernetes.io/service-name: the Service this slice belongs to;
  // empty if the label is missing.
  std::string service_name() const;
};
Result<EndpointSlice> decode_endpoint_slice(const json::Value& object);

inline constexpr std::string_view kServiceNameLabel = "kubernetes.io/service-name";

struct ContainerPort {
  std::string name;
  int32_t container_port = 0;
  std::string protocol = "TCP";
};

struct Container {
  std::string name;
  std::string image;
  std::vector<ContainerPort> ports;
};

struct PodCondition {
  std::string type;    // "Ready", "ContainersReady", ...
  std::string status;  // "True", "False", "Unknown"
};

struct Pod {
  ObjectMeta metadata;
  std::string service_account_name;  // "default" when unset
  std::string node_name;
  bool host_network = false;
  std::vector<Container> init_containers;
  std::vector<Container> containers;
  std::string phase;  // "Pending", "Running", ...
  std::string pod_ip;
  std::vector<std::string> pod_ips;
  std::vector<PodCondition> conditions;

  // The Ready condition is "True".
  bool is_ready() const;
};
Result<Pod> decode_pod(const json::Value& object);

// coordination.k8s.io/v1 Lease, the lock of leader election.
struct LeaseSpec {
  std::string holder_identity;  // empty: nobody holds it
  int32_t lease_duration_seconds = 0;
  std::string acquire_time;  // RFC 3339 with microseconds, "" when unset
  std::string renew_time;
  int32_t lease_transitions = 0;

  bool operator==(const LeaseSpec& o) const {
    return holder_identity == o.holder_identity &&
           lease_duration_seconds == o.lease_duration_seconds &&
           acquire_time == o.acquire_time && renew_time == o.renew_time &&
           lease_transitions == o.lease_transitions;
  }
};

struct Lease {
  ObjectMeta metadata;
  LeaseSpec spec;
};
Result<Lease> decode_lease(const json::Value& object);
// The whole object, for CREATE (no resourceVersion) or UPDATE (with it).
std::string encode_lease(const Lease& lease);

// Timestamps. Kubernetes writes RFC 3339 in UTC: "2026-01-02T03:04:05Z"
// (metav1.Time) or with microseconds, "2026-01-02T03:04:05.123456Z"
// (MicroTime). Parsing accepts any fraction and a numeric offset.
// Error: "invalid RFC 3339 timestamp '<text>'".
Result<std::chrono::system_clock::time_point> parse_time(std::string_view text);
std::string format_micro_time(std::chrono::system_clock::time_point time);

}  // namespace trellis::kube
