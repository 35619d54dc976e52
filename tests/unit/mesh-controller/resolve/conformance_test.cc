// The resolver against the mesh conformance manifests: for each test, the table
// it produces is the one the sidecar's router tests use for that test
// (tests/unit/proxy/router/data/), apart from the version.
#include "tests/unit/mesh-controller/resolve/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::resolve;
using namespace trellis::controller::resolve::test;

namespace {

std::shared_ptr<const routes::RouteTable> router_table(std::string_view file) {
  std::string text = read_file(std::string(TRELLIS_ROUTER_TABLES) + "/" + std::string(file));
  auto parsed = routes::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().message);
  return *parsed;
}

void check_same(const routes::RouteTable& ours, const routes::RouteTable& expected) {
  routes::RouteTable t = ours;
  t.version = expected.version;
  if (t == expected) return;
  // Narrow down the difference for the failure message.
  CHECK(t.ns == expected.ns);
  REQUIRE(t.services.size() == expected.services.size());
  for (size_t i = 0; i < t.services.size(); ++i) {
    CAPTURE(expected.services[i].name);
    CHECK(t.services[i].cluster_ips == expected.services[i].cluster_ips);
    CHECK(t.services[i].ports == expected.services[i].ports);
    REQUIRE(t.services[i].routes.size() == expected.services[i].routes.size());
    for (size_t k = 0; k < t.services[i].routes.size(); ++k) {
      CAPTURE(expected.services[i].routes[k].name);
      CHECK(t.services[i].routes[k].port == expected.services[i].routes[k].port);
      CHECK(t.services[i].routes[k] == expected.services[i].routes[k]);
    }
  }
  REQUIRE(t.endpoints.size() == expected.endpoints.size());
  for (size_t i = 0; i < t.endpoints.size(); ++i) {
    CAPTURE(expected.endpoints[i].service);
    CAPTURE(expected.endpoints[i].port);
    CHECK(t.endpoints[i] == expected.endpoints[i]);
  }
  FAIL("tables differ");
}

}  // namespace

TEST_CASE("the conformance manifests resolve to the sidecar's conformance tables") {
  struct Case {
    const char* manifest;  // "" for none
    const char* client_ns;
    const char* table;
  };
  const Case cases[] = {
      {"", kMesh, "mesh-basic.json"},
      {"mesh-split.json", kMesh, "mesh-split.json"},
      {"httproute-simple-same-namespace.json", kMesh, "httproute-simple-same-namespace.json"},
      {"httproute-matching.json", kMesh, "httproute-matching.json"},
      {"httproute-query-param-matching.json", kMesh, "httproute-query-param-matching.json"},
      {"httproute-redirect-host-and-status.json", kMesh, "httproute-redirect-host-and-status.json"},
      {"httproute-redirect-path.json", kMesh, "httproute-redirect-path.json"},
      {"httproute-redirect-port.json", kMesh, "httproute-redirect-port.json"},
      {"httproute-redirect-scheme.json", kMesh, "httproute-redirect-scheme.json"},
      {"httproute-303-redirect.json", kMesh, "httproute-303-redirect.json"},
      {"httproute-307-redirect.json", kMesh, "httproute-307-redirect.json"},
      {"httproute-308-redirect.json", kMesh, "httproute-308-redirect.json"},
      {"httproute-request-header-modifier.json", kMesh, "httproute-request-header-modifier.json"},
      {"httproute-request-header-modifier-backend.json", kMesh,
       "httproute-request-header-modifier-backend.json"},
      {"httproute-rewrite-path.json", kMesh, "httproute-rewrite-path.json"},
      {"httproute-named-rule.json", kMesh, "httproute-named-rule.json"},
      {"httproute-weight.json", kMesh, "httproute-weight.json"},
      {"grpcroute-weight.json", kMesh, "grpcroute-weight.json"},
      {"mesh-frontend.json", kMesh, "mesh-frontend.json"},
      {"mesh-ports.json", kMesh, "mesh-ports.json"},
      {"mesh-consumer-route.json", kConsumer, "mesh-consumer-route-consumer.json"},
      {"mesh-consumer-route.json", kMesh, "mesh-consumer-route-producer.json"},
  };
  for (const Case& c : cases) {
    std::string file = c.table;
    CAPTURE(file);
    auto resolver = conformance_world();
    if (*c.manifest != '\0') load(*resolver, c.manifest);
    check_same(*table(*resolver, c.client_ns), *router_table(c.table));
  }
}

TEST_CASE("every conformance route is Accepted, with its references resolved but echo-v3") {
  const char* manifests[] = {
      "mesh-split.json", "httproute-simple-same-namespace.json", "httproute-matching.json",
      "httproute-query-param-matching.json", "httproute-redirect-host-and-status.json",
      "httproute-redirect-path.json", "httproute-redirect-port.json",
      "httproute-redirect-scheme.json", "httproute-303-redirect.json",
      "httproute-307-redirect.json", "httproute-308-redirect.json",
      "httproute-request-header-modifier.json", "httproute-request-header-modifier-backend.json",
      "httproute-rewrite-path.json", "httproute-named-rule.json", "httproute-weight.json",
      "mesh-frontend.json", "mesh-ports.json", "mesh-consumer-route.json"};
  for (const char* name : manifests) {
    std::string manifest = name;
    CAPTURE(manifest);
    auto resolver = conformance_world();
    Changes changes = load(*resolver, manifest);
    REQUIRE_FALSE(changes.routes.empty());
    for (const RouteKey& key : changes.routes) {
      std::string route_name = key.str();
      CAPTURE(route_name);
      auto status = resolver->status(key);
      REQUIRE(status.size() == 1);
      CHECK(status[0].controller_name == gateway::kControllerName);
      CHECK(status[0].parent_ref == resolver->route(key)->parent_refs[0]);
      const gateway::Condition* accepted = condition(status, 0, "Accepted");
      REQUIRE(accepted != nullptr);
      CHECK(accepted->status == "True");
      CHECK(accepted->reason == "Accepted");
      CHECK(accepted->observed_generation == 1);
      const gateway::Condition* refs = condition(status, 0, "ResolvedRefs");
      REQUIRE(refs != nullptr);
      CHECK(refs->status == "True");
      CHECK(refs->reason == "ResolvedRefs");
    }
  }
}

TEST_CASE("MeshGRPCRouteWeight: echo-v3 is BackendNotFound, and the table still routes") {
  auto resolver = conformance_world();
  load(*resolver, "grpcroute-weight.json");
  auto status = resolver->status(grpc_key(kMesh, "mesh-grpc-weighted-backends"));
  REQUIRE(status.size() == 1);
  CHECK(condition(status, 0, "Accepted")->status == "True");
  const gateway::Condition* refs = condition(status, 0, "ResolvedRefs");
  REQUIRE(refs != nullptr);
  CHECK(refs->status == "False");
  CHECK(refs->reason == "BackendNotFound");
  CHECK(refs->message ==
        "spec.rules[0].backendRefs[2]: Service gateway-conformance-mesh/echo-v3 not found");
  auto t = table(*resolver, kMesh);
  const routes::Service* echo = find_service(*t, kMesh, "echo");
  REQUIRE(echo != nullptr);
  REQUIRE(echo->routes.size() == 1);
  CHECK(echo->routes[0].grpc_rules.at(0).backend_refs.size() == 3);  // the rule stays whole
  CHECK(find_endpoints(*t, kMesh, "echo-v3", 7070) == nullptr);     // the proxy answers 500
  CHECK(find_endpoints(*t, kMesh, "echo-v1", 7070) != nullptr);
}
