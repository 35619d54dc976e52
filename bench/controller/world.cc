#include "bench/controller/world.h"

#include <algorithm>
#include <cstdio>

namespace trellis::bench::controller {
namespace {

// IPv4 addresses from 10.100.0.0 up to 10.255.255.255.
constexpr int kMaxEndpoints = (256 - 100) * 65536;
// The sandbox's service CIDR is a /16; leave room for other Services.
constexpr int kMaxServices = 60000;

std::string padded(const char* prefix, int width, int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%0*d", prefix, width, index);
  return buf;
}

Status at_least(const char* flag, int min, int value) {
  if (value >= min) return ok_status();
  return make_error(std::string(flag) + ": must be at least " + std::to_string(min) + ", got " +
                    std::to_string(value));
}

std::string backend_ref(const Scale& scale, int service, int weight) {
  std::string out = R"({"name":")" + service_name(service) + R"(","namespace":")" +
                    namespace_name(service_namespace(scale, service)) + R"(","port":80)";
  if (weight >= 0) out += R"(,"weight":)" + std::to_string(weight);
  return out + "}";
}

}  // namespace

Status validate(const Scale& s) {
  if (Status st = at_least("--namespaces", 1, s.namespaces); !st.ok()) return st;
  if (s.namespaces > 100) {
    return make_error("--namespaces: must be at most 100, got " + std::to_string(s.namespaces));
  }
  if (s.services < s.namespaces) {
    return make_error("--services: must be at least --namespaces (" + std::to_string(s.namespaces) +
                      "), got " + std::to_string(s.services));
  }
  if (s.services > kMaxServices) {
    return make_error("--services: must be at most " + std::to_string(kMaxServices) + ", got " +
                      std::to_string(s.services));
  }
  if (Status st = at_least("--endpoints-per-service", 1, s.endpoints_per_service); !st.ok()) return st;
  if (static_cast<long long>(s.services) * s.endpoints_per_service > kMaxEndpoints) {
    return make_error("--endpoints-per-service: --services × --endpoints-per-service must be at most " +
                      std::to_string(kMaxEndpoints));
  }
  if (Status st = at_least("--routes", 1, s.routes); !st.ok()) return st;
  if (s.routes > s.services) {
    return make_error("--routes: must not exceed --services (" + std::to_string(s.services) +
                      "), got " + std::to_string(s.routes));
  }
  if (Status st = at_least("--consumer-routes", 0, s.consumer_routes); !st.ok()) return st;
  if (s.consumer_routes >= s.routes) {
    return make_error("--consumer-routes: must be less than --routes (" + std::to_string(s.routes) +
                      "), got " + std::to_string(s.consumer_routes));
  }
  return at_least("--streams", 1, s.streams);
}

std::string namespace_name(int index) { return padded("bench-", 2, index); }
std::string service_name(int index) { return padded("svc-", 5, index); }
int service_namespace(const Scale& scale, int service) { return service % scale.namespaces; }

std::string endpoint_ip(int index) {
  return "10." + std::to_string(100 + index / 65536) + "." + std::to_string(index / 256 % 256) +
         "." + std::to_string(index % 256);
}

int producer_routes(const Scale& scale) { return scale.routes - scale.consumer_routes; }

RoutePlan producer_route(const Scale& scale, int index) {
  RoutePlan r;
  r.index = index;
  r.parent = index;
  r.ns = namespace_name(service_namespace(scale, index));
  r.name = padded("route-p-", 5, index);
  // The second backend is in the same namespace whenever index + namespaces
  // is still a Service.
  r.backends[0] = index;
  r.backends[1] = (index + scale.namespaces) % scale.services;
  return r;
}

RoutePlan consumer_route(const Scale& scale, int index) {
  RoutePlan r;
  r.consumer = true;
  r.index = index;
  int client = index % scale.namespaces;
  r.ns = namespace_name(client);
  r.name = padded("route-c-", 5, index);
  // A Service of another namespace, from the top of the index range (where
  // producer routes are rare); with one namespace it can only be our own.
  int parent = scale.services - 1 - (index % scale.services);
  while (scale.namespaces > 1 && service_namespace(scale, parent) == client) {
    parent = (parent + 1) % scale.services;
  }
  r.parent = parent;
  r.backends[0] = parent;
  r.backends[1] = (parent + scale.namespaces) % scale.services;
  return r;
}

std::vector<RoutePlan> all_routes(const Scale& scale) {
  std::vector<RoutePlan> out;
  out.reserve(static_cast<size_t>(scale.routes));
  for (int i = 0; i < producer_routes(scale); ++i) out.push_back(producer_route(scale, i));
  for (int i = 0; i < scale.consumer_routes; ++i) out.push_back(consumer_route(scale, i));
  return out;
}

std::string namespace_body(int index) {
  return R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + namespace_name(index) +
         R"(","labels":{"bench.trellis.dev/controller":"scale"}}})";
}

std::string service_body(const Scale& scale, int service) {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"name":")" + service_name(service) +
         R"(","namespace":")" + namespace_name(service_namespace(scale, service)) +
         R"("},"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80,"targetPort":8080,)"
         R"("protocol":"TCP","appProtocol":"http"}]}})";
}

std::string endpoint_slice_body(const Scale& scale, int service) {
  std::string name = service_name(service);
  std::string out = R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":")" +
                    name + R"(-bench","namespace":")" +
                    namespace_name(service_namespace(scale, service)) +
                    R"(","labels":{"kubernetes.io/service-name":")" + name +
                    R"(","endpointslice.kubernetes.io/managed-by":")" + kManagedBy +
                    R"("}},"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],)"
                    R"("endpoints":[)";
  for (int i = 0; i < scale.endpoints_per_service; ++i) {
    if (i > 0) out += ",";
    out += R"({"addresses":[")" + endpoint_ip(service * scale.endpoints_per_service + i) +
           R"("],"conditions":{"ready":true,"serving":true,"terminating":false}})";
  }
  return out + "]}";
}

std::string route_body(const Scale& scale, const RoutePlan& route) {
  return R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":")" +
         route.name + R"(","namespace":")" + route.ns +
         R"("},"spec":{"parentRefs":[{"group":"","kind":"Service","name":")" +
         service_name(route.parent) + R"(","namespace":")" +
         namespace_name(service_namespace(scale, route.parent)) + R"(","port":80}],"rules":[)"
         R"({"matches":[{"path":{"type":"PathPrefix","value":"/api"},)"
         R"("headers":[{"type":"Exact","name":"x-canary","value":"1"}]}],)"
         R"("filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":")" +
         kRevisionHeader + R"(","value":")" + kInitialRevision + R"("}]}}],"backendRefs":[)" +
         backend_ref(scale, route.backends[0], 90) + "," + backend_ref(scale, route.backends[1], 10) +
         R"(]},{"timeouts":{"request":"10s"},"backendRefs":[)" +
         backend_ref(scale, route.backends[0], -1) + "]}]}}";
}

std::string revision_patch(const std::string& value) {
  return R"([{"op":"replace","path":"/spec/rules/0/filters/0/requestHeaderModifier/set/0/value","value":")" +
         value + R"("}])";
}

Update plan_update(const Scale& scale, int number, int consumer_every, const std::string& run) {
  Update u;
  u.number = number;
  u.marker = "tbench-" + run + padded("-u", 5, number) + "z";
  int with_streams = std::min(scale.streams, scale.namespaces);  // namespaces 0.. have streams
  bool consumer = consumer_every > 0 && scale.consumer_routes > 0 && (number + 1) % consumer_every == 0;
  if (consumer) {
    // A consumer route whose namespace has streams; there is one whenever
    // consumer routes exist, as route c lives in namespace c % namespaces.
    int c = (number * 31) % scale.consumer_routes;
    int tries = 0;
    while (c % scale.namespaces >= with_streams && tries++ < scale.consumer_routes) {
      c = (c + 1) % scale.consumer_routes;
    }
    consumer = c % scale.namespaces < with_streams;
    if (consumer) {
      u.route = consumer_route(scale, c);
      for (int i = 0; i < scale.streams; ++i) {
        if (i % scale.namespaces == c % scale.namespaces) u.streams.push_back(i);
      }
    }
  }
  if (!consumer) {
    u.route = producer_route(scale, static_cast<int>((static_cast<long long>(number) * 7919) %
                                                     producer_routes(scale)));
    for (int i = 0; i < scale.streams; ++i) u.streams.push_back(i);
  }
  return u;
}

}  // namespace trellis::bench::controller
