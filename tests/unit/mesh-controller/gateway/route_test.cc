#include "mesh-controller/gateway/route.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace trellis;
using namespace trellis::controller::gateway;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The routes of a fixture (a List of HTTPRoutes / GRPCRoutes).
std::vector<Route> fixture(const std::string& name) {
  std::string text = read_file(std::string(TRELLIS_FIXTURES) + "/" + name);
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE(doc.ok());
  auto items = doc->root().object()->required_array("items");
  REQUIRE(items.ok());
  std::vector<Route> out;
  for (size_t i = 0; i < items->size(); ++i) {
    json::Value item = (*items)[i];
    auto kind = item.object()->required_string("kind");
    REQUIRE(kind.ok());
    auto route = decode_route(*kind == "GRPCRoute" ? routes::RouteKind::grpc_route
                                                   : routes::RouteKind::http_route,
                              item);
    REQUIRE_MESSAGE(route.ok(), route.error().message);
    CHECK_MESSAGE(route->spec_error.empty(), name << ": " << route->spec_error);
    out.push_back(std::move(*route));
  }
  return out;
}

Result<Route> decode_text(std::string_view text,
                          routes::RouteKind kind = routes::RouteKind::http_route) {
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE(doc.ok());
  return decode_route(kind, doc->root());
}

Route decode_ok(std::string_view text, routes::RouteKind kind = routes::RouteKind::http_route) {
  auto route = decode_text(text, kind);
  REQUIRE_MESSAGE(route.ok(), route.error().message);
  return *route;
}

// An HTTPRoute in "shop" attached to Service echo, with `rules`.
std::string http_route(std::string_view rules) {
  return std::string(R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",)"
                     R"("metadata":{"name":"r","namespace":"shop","generation":4,)"
                     R"("resourceVersion":"77","creationTimestamp":"2026-01-02T03:04:05Z"},)"
                     R"("spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo"}],)"
                     R"("rules":)") +
         std::string(rules) + "}}";
}

std::string spec_error(std::string_view rules) {
  Route route = decode_ok(http_route(rules));
  CHECK(route.http_rules.empty());
  CHECK(route.parent_refs.size() == 1);  // still there, so the route gets a status
  return route.spec_error;
}

}  // namespace

TEST_CASE("every mesh conformance manifest's route decodes") {
  const char* files[] = {
      "grpcroute-weight.json", "httproute-303-redirect.json", "httproute-307-redirect.json",
      "httproute-308-redirect.json", "httproute-matching.json", "httproute-named-rule.json",
      "httproute-query-param-matching.json", "httproute-redirect-host-and-status.json",
      "httproute-redirect-path.json", "httproute-redirect-port.json",
      "httproute-redirect-scheme.json", "httproute-request-header-modifier-backend.json",
      "httproute-request-header-modifier.json", "httproute-rewrite-path.json",
      "httproute-simple-same-namespace.json", "httproute-weight.json", "mesh-consumer-route.json",
      "mesh-frontend.json", "mesh-ports.json", "mesh-split.json"};
  for (const char* name : files) {
    std::string file = name;
    CAPTURE(file);
    std::vector<Route> routes = fixture(file);
    REQUIRE_FALSE(routes.empty());
    for (const Route& r : routes) {
      CHECK(r.parent_refs.size() == 1);
      CHECK(r.parent_refs[0].is_service());
      CHECK(r.metadata.generation == 1);
      CHECK(r.creation_time_ns == 1767323045000000000);  // 2026-01-02T03:04:05Z
      CHECK(r.http_rules.size() + r.grpc_rules.size() > 0);
    }
  }
}

TEST_CASE("conformance routes decode field by field") {
  SUBCASE("MeshHTTPRouteMatching: matches, defaults filled in as the API server would") {
    Route r = fixture("httproute-matching.json").at(0);
    CHECK(r.kind == routes::RouteKind::http_route);
    CHECK(r.metadata.namespace_ == "gateway-conformance-mesh");
    CHECK(r.metadata.name == "mesh-matching");
    const ParentReference& p = r.parent_refs[0];
    CHECK(p.group == "");
    CHECK(p.kind == "Service");
    CHECK(p.name == "echo");
    CHECK_FALSE(p.ns.has_value());
    CHECK_FALSE(p.section_name.has_value());
    CHECK(p.port == 80);
    REQUIRE(r.http_rules.size() == 2);
    const routes::HTTPRouteRule& rule = r.http_rules[1];
    REQUIRE(rule.matches.size() == 2);
    CHECK(rule.matches[0].path.type == routes::PathMatchType::path_prefix);
    CHECK(rule.matches[0].path.value == "/v2");
    CHECK(rule.matches[1].path.value == "/");  // default
    REQUIRE(rule.matches[1].headers.size() == 1);
    CHECK(rule.matches[1].headers[0].name == "version");
    CHECK(rule.matches[1].headers[0].value == "two");
    REQUIRE(rule.backend_refs.size() == 1);
    CHECK(rule.backend_refs[0].ref.name == "echo-v2");
    CHECK(rule.backend_refs[0].ref.ns == "gateway-conformance-mesh");  // defaulted
    CHECK(rule.backend_refs[0].ref.kind == "Service");
    CHECK(rule.backend_refs[0].ref.port == 8080);
    CHECK(rule.backend_refs[0].weight == 1);
  }
  SUBCASE("MeshGRPCRouteWeight: a GRPCRoute with weights, echo-v3 at weight 0") {
    Route r = fixture("grpcroute-weight.json").at(0);
    CHECK(r.kind == routes::RouteKind::grpc_route);
    CHECK(r.parent_refs[0].port == 7070);
    REQUIRE(r.grpc_rules.size() == 1);
    const auto& refs = r.grpc_rules[0].backend_refs;
    REQUIRE(refs.size() == 3);
    CHECK(refs[0].weight == 70);
    CHECK(refs[1].weight == 30);
    CHECK(refs[2].ref.name == "echo-v3");
    CHECK(refs[2].weight == 0);
  }
  SUBCASE("MeshConsumerRoute: a parentRef with a namespace") {
    Route r = fixture("mesh-consumer-route.json").at(0);
    CHECK(r.metadata.namespace_ == "gateway-conformance-mesh-consumer");
    CHECK(r.parent_refs[0].ns == "gateway-conformance-mesh");
    CHECK_FALSE(r.parent_refs[0].port.has_value());
    const auto& rule = r.http_rules.at(0);
    REQUIRE(rule.filters.size() == 1);
    CHECK(rule.filters[0].type == routes::FilterType::response_header_modifier);
    CHECK(rule.backend_refs.at(0).ref.ns == "gateway-conformance-mesh");
  }
  SUBCASE("MeshPorts: two routes, one with a port and one without") {
    std::vector<Route> routes = fixture("mesh-ports.json");
    REQUIRE(routes.size() == 2);
    CHECK(routes[0].parent_refs[0].port == 80);
    CHECK_FALSE(routes[1].parent_refs[0].port.has_value());
  }
  SUBCASE("MeshHTTPRouteNamedRule: rule names") {
    Route r = fixture("httproute-named-rule.json").at(0);
    REQUIRE(r.http_rules.size() == 2);
    CHECK(r.http_rules[0].name == "named-rule");
    CHECK_FALSE(r.http_rules[1].name.has_value());
  }
}

TEST_CASE("the route-table entry carries the precedence data") {
  Route r = fixture("mesh-split.json").at(0);
  routes::Route entry = r.table_route();
  CHECK(entry.kind == routes::RouteKind::http_route);
  CHECK(entry.ns == "gateway-conformance-mesh");
  CHECK(entry.name == "mesh-split");
  CHECK(entry.creation_timestamp == "2026-01-02T03:04:05Z");
  CHECK(entry.creation_time_ns == r.creation_time_ns);
  CHECK_FALSE(entry.port.has_value());
  CHECK(entry.http_rules == r.http_rules);
}

TEST_CASE("parentRefs take the CRD defaults when the object omits them") {
  Route r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop",
      "creationTimestamp":"2026-01-02T03:04:05Z"},
      "spec":{"parentRefs":[{"name":"gw"},
                            {"group":"core","kind":"Service","name":"echo","sectionName":"http",
                             "port":80,"namespace":"other"}]}})");
  REQUIRE(r.parent_refs.size() == 2);
  CHECK(r.parent_refs[0].group == "gateway.networking.k8s.io");
  CHECK(r.parent_refs[0].kind == "Gateway");
  CHECK_FALSE(r.parent_refs[0].is_service());
  CHECK(r.parent_refs[1].is_service());
  CHECK(r.parent_refs[1].section_name == "http");
  CHECK(r.parent_refs[1].ns == "other");
  // No rules: the CRD default, one rule matching everything.
  REQUIRE(r.http_rules.size() == 1);
  CHECK(r.http_rules[0].matches.size() == 1);
  CHECK(r.http_rules[0].matches[0].path.value == "/");
}

TEST_CASE("a GRPCRoute without rules has none") {
  Route r = decode_ok(R"({"metadata":{"name":"g","namespace":"shop",
      "creationTimestamp":"2026-01-02T03:04:05Z"},
      "spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo","port":7070}]}})",
                      routes::RouteKind::grpc_route);
  CHECK(r.spec_error.empty());
  CHECK(r.grpc_rules.empty());
}

TEST_CASE("a spec that fails to decode is recorded, path-qualified, not fatal") {
  CHECK(spec_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":"/a(b"}}]}])") ==
        "spec.rules[0].matches[0].path.value: invalid regular expression: missing ): /a(b");
  CHECK(spec_error(R"([{"filters":[{"type":"Foo"}]}])") ==
        "spec.rules[0].filters[0].type: unknown value 'Foo' (want RequestHeaderModifier, "
        "ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite, ExtensionRef or "
        "CORS)");
  CHECK(spec_error(R"([{"backendRefs":[{"name":"echo"}]}])") ==
        "spec.rules[0].backendRefs[0]: Must have port for Service reference");
  CHECK(spec_error(R"([])") == "spec.rules: must have at least 1 item");
  CHECK(spec_error(R"("all")") == "spec.rules: expected an array, got string");
  CHECK(spec_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{}}],
                        "backendRefs":[{"name":"echo","port":80}]}])") ==
        "spec.rules[0]: RequestRedirect filter must not be used together with backendRefs");
  CHECK(spec_error(R"([{"name":"a"},{"name":"a"}])") ==
        "spec.rules: Rule name must be unique within the route");
}

TEST_CASE("spec and parentRef errors keep what decoded before them") {
  Route r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop",
      "creationTimestamp":"2026-01-02T03:04:05Z"},
      "spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo"},
                            {"kind":"Service","name":"x","port":70000}]}})");
  CHECK(r.spec_error ==
        "spec.parentRefs[1].port: expected an integer between 1 and 65535, got 70000");
  CHECK(r.parent_refs.size() == 1);
  CHECK(r.http_rules.empty());

  r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop"}})");
  CHECK(r.spec_error == "(root): missing required field 'spec'");

  r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop","creationTimestamp":"yesterday"},
      "spec":{}})");
  CHECK(r.spec_error == "metadata.creationTimestamp: invalid RFC 3339 timestamp 'yesterday'");

  r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop"},
      "spec":{"parentRefs":[{"kind":"Service"}]}})");
  CHECK(r.spec_error == "spec.parentRefs[0]: missing required field 'name'");
}

TEST_CASE("an object without usable metadata is an error") {
  auto r = decode_text(R"([1,2])");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "(root): expected an object, got array");
  r = decode_text(R"({"spec":{}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "(root): missing required field 'metadata'");
  r = decode_text(R"({"metadata":{"namespace":"shop"},"spec":{}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "metadata: missing required field 'name'");
}

TEST_CASE("status.parents: ours decoded, every entry kept verbatim") {
  Route r = decode_ok(R"({"metadata":{"name":"r","namespace":"shop",
      "creationTimestamp":"2026-01-02T03:04:05Z"},
      "spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo"}]},
      "status":{"parents":[
        {"parentRef":{"group":"","kind":"Service","name":"echo"},
         "controllerName":"istio.io/gateway-controller",
         "conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"",
                        "lastTransitionTime":"2026-01-01T00:00:00Z","x-extra":1}]},
        {"parentRef":{"group":"","kind":"Service","name":"echo","port":80},
         "controllerName":"trellis.dev/mesh-controller",
         "conditions":[{"type":"Accepted","status":"False","reason":"NoMatchingParent",
                        "message":"m","observedGeneration":3,
                        "lastTransitionTime":"2026-01-01T00:00:01Z"}]},
        {"controllerName":7},
        "junk"]}})");
  REQUIRE(r.status_parents.size() == 4);
  CHECK(r.status_parents[0].controller_name == "istio.io/gateway-controller");
  CHECK(r.status_parents[0].json ==
        R"({"parentRef":{"group":"","kind":"Service","name":"echo"},)"
        R"("controllerName":"istio.io/gateway-controller","conditions":[{"type":"Accepted",)"
        R"("status":"True","reason":"Accepted","message":"",)"
        R"("lastTransitionTime":"2026-01-01T00:00:00Z","x-extra":1}]})");
  const ObservedParentStatus& ours = r.status_parents[1];
  CHECK(ours.controller_name == kControllerName);
  REQUIRE(ours.typed.has_value());
  CHECK(ours.typed->parent_ref.port == 80);
  REQUIRE(ours.typed->conditions.size() == 1);
  CHECK(ours.typed->conditions[0].reason == "NoMatchingParent");
  CHECK(ours.typed->conditions[0].observed_generation == 3);
  CHECK(ours.typed->conditions[0].last_transition_time == "2026-01-01T00:00:01Z");
  CHECK(r.status_parents[2].controller_name.empty());
  CHECK_FALSE(r.status_parents[2].typed.has_value());
  CHECK(r.status_parents[3].json == R"("junk")");
}
