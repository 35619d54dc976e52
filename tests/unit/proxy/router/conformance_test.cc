// One case per Gateway API v1.6.1 mesh conformance test (plus
// MeshGRPCRouteRequestHeaderModifier from main), on route tables equivalent to
// the tests' manifests as the controller emits them for the client's
// namespace (data/*.json). "-> v1" in the suite means the answer comes from an
// echo-v1 pod; here it means the request is forwarded to backend Service echo-v1.
#include <cmath>
#include <random>

#include "tests/unit/proxy/router/support.h"

using namespace router_test;

TEST_CASE("MeshBasic: without routes a Service is passed through") {
  auto t = load("mesh-basic.json");
  Outcome o = send(*t, kEcho, 80, request("/"));
  CHECK(o.status == 200);
  CHECK(o.passthrough);
  CHECK(o.backend == "echo");
  const router::Frontend* f = t->frontend(router::IpAddress::parse(kEcho), 80);
  REQUIRE(f->endpoints != nullptr);
  CHECK(f->endpoints->eligible.size() == 2);  // both echo pods, on targetPort 8080
  CHECK(f->endpoints->eligible[0]->port == 8080);
  CHECK(send(*t, kEcho, 7070, grpc_request()).passthrough);
}

TEST_CASE("MeshTrafficSplit") {
  auto t = load("mesh-split.json");
  CHECK(send(*t, kEcho, 80, request("/v1")).backend == "echo-v1");
  CHECK(send(*t, kEcho, 80, request("/v2")).backend == "echo-v2");
  CHECK(send(*t, kEcho, 80, request("/v3")).status == 404);
  CHECK(send(*t, kEcho, 80, request("/v1/more")).status == 404);  // Exact
  // The route has no port: it covers every port of the Service.
  CHECK(send(*t, kEcho, 8080, request("/v2")).backend == "echo-v2");
}

TEST_CASE("MeshHTTPRouteSimpleSameNamespace") {
  auto t = load("httproute-simple-same-namespace.json");
  Outcome o = send(*t, kEcho, 80, request("/"));
  CHECK(o.status == 200);
  CHECK(o.backend == "echo-v1");
  CHECK(o.rule->backends[0].id.port == 8080);
  // Port 80 only: the other ports pass through.
  CHECK(send(*t, kEcho, 8080, request("/")).passthrough);
}

TEST_CASE("MeshHTTPRouteMatching") {
  auto t = load("httproute-matching.json");
  struct Case {
    const char* path;
    const char* version;
    const char* backend;
  };
  const Case cases[] = {
      {"/", nullptr, "echo-v1"},
      {"/example", nullptr, "echo-v1"},
      {"/", "one", "echo-v1"},
      {"/v2", nullptr, "echo-v2"},
      {"/v2/example", nullptr, "echo-v2"},
      {"/", "two", "echo-v2"},  // same prefix length: the header match wins
      {"/v2/", nullptr, "echo-v2"},
      {"/v2example", nullptr, "echo-v1"},  // PathPrefix matches whole segments
      {"/foo/v2/example", nullptr, "echo-v1"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    CAPTURE(c.version ? c.version : "");
    http::RequestHead r = request(c.path);
    if (c.version) r.headers.add("Version", c.version);
    Outcome o = send(*t, kEcho, 80, r);
    CHECK(o.status == 200);
    CHECK(o.backend == c.backend);
  }
}

TEST_CASE("MeshHTTPRouteQueryParamMatching") {
  auto t = load("httproute-query-param-matching.json");
  struct Case {
    const char* target;
    const char* version;
    int status;
    const char* backend;
  };
  const Case cases[] = {
      {"/?animal=whale", nullptr, 200, "echo-v1"},
      {"/?animal=dolphin", nullptr, 200, "echo-v2"},
      {"/?animal=whale&otherparam=irrelevant", nullptr, 200, "echo-v1"},
      {"/?animal=dolphin&color=yellow", nullptr, 200, "echo-v2"},
      {"/?color=blue", nullptr, 404, ""},
      {"/?animal=dog", nullptr, 404, ""},
      {"/?animal=whaledolphin", nullptr, 404, ""},
      {"/", nullptr, 404, ""},
      {"/path1?animal=whale", nullptr, 200, "echo-v1"},
      {"/?animal=whale", "one", 200, "echo-v2"},  // more header matches win
      {"/path3?animal=shark", nullptr, 200, "echo-v1"},
      {"/path4?animal=kraken", "three", 200, "echo-v1"},
      {"/?animal=shark", nullptr, 404, ""},
      {"/path4?animal=kraken", nullptr, 404, ""},
      {"/path5?animal=hydra", nullptr, 200, "echo-v1"},  // a longer prefix beats the query match
  };
  for (const Case& c : cases) {
    CAPTURE(c.target);
    http::RequestHead r = request(c.target);
    if (c.version) r.headers.add("version", c.version);
    Outcome o = send(*t, kEcho, 80, r);
    CHECK(o.status == c.status);
    CHECK(o.backend == c.backend);
  }
}

TEST_CASE("MeshHTTPRouteRedirectHostAndStatus") {
  auto t = load("httproute-redirect-host-and-status.json");
  Outcome o = send(*t, kEcho, 80, request("/hostname-redirect"));
  CHECK(o.status == 302);
  CHECK(o.location == "http://example.org/hostname-redirect");
  o = send(*t, kEcho, 80, request("/host-and-status"));
  CHECK(o.status == 301);
  CHECK(o.location == "http://example.org/host-and-status");
}

TEST_CASE("MeshHTTPRouteRedirectPath") {
  auto t = load("httproute-redirect-path.json");
  struct Case {
    const char* path;
    int status;
    const char* location;
  };
  const Case cases[] = {
      {"/original-prefix/lemon", 302, "http://echo/replacement-prefix/lemon"},
      {"/full/path/original", 302, "http://echo/full-path-replacement"},
      {"/path-and-host", 302, "http://example.org/replacement-prefix"},
      {"/path-and-status", 301, "http://echo/replacement-prefix"},
      {"/full-path-and-host", 302, "http://example.org/replacement-full"},
      {"/full-path-and-status", 301, "http://echo/replacement-full"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    Outcome o = send(*t, kEcho, 80, request(c.path));
    CHECK(o.status == c.status);
    CHECK(o.location == c.location);
  }
  // The query is preserved.
  CHECK(send(*t, kEcho, 80, request("/original-prefix/lemon?x=1&y")).location ==
        "http://echo/replacement-prefix/lemon?x=1&y");
}

TEST_CASE("MeshHTTPRouteRedirectPort") {
  auto t = load("httproute-redirect-port.json");
  struct Case {
    const char* path;
    int status;
    const char* location;
  };
  const Case cases[] = {
      {"/port", 302, "http://echo:8083/port"},
      {"/port-and-host", 302, "http://example.org:8083/port-and-host"},
      {"/port-and-status", 301, "http://echo:8083/port-and-status"},
      {"/port-and-host-and-status", 302, "http://example.org:8083/port-and-host-and-status"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    Outcome o = send(*t, kEcho, 80, request(c.path));
    CHECK(o.status == c.status);
    CHECK(o.location == c.location);
  }
}

TEST_CASE("MeshHTTPRouteSchemeRedirect") {
  auto t = load("httproute-redirect-scheme.json");
  struct Case {
    const char* path;
    int status;
    const char* location;
  };
  // A scheme without a port redirects to the scheme's well-known port (443, omitted).
  const Case cases[] = {
      {"/scheme", 302, "https://echo/scheme"},
      {"/scheme-and-host", 302, "https://example.org/scheme-and-host"},
      {"/scheme-and-status", 301, "https://echo/scheme-and-status"},
      {"/scheme-and-host-and-status", 302, "https://example.org/scheme-and-host-and-status"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    Outcome o = send(*t, kEcho, 80, request(c.path));
    CHECK(o.status == c.status);
    CHECK(o.location == c.location);
  }
}

TEST_CASE("MeshHTTPRoute303Redirect, MeshHTTPRoute307Redirect, MeshHTTPRoute308Redirect") {
  Outcome o = send(*load("httproute-303-redirect.json"), kEcho, 80, request("/redirect"));
  CHECK(o.status == 303);
  CHECK(o.location == "http://echo/redirect");
  o = send(*load("httproute-307-redirect.json"), kEcho, 80, request("/temporary"));
  CHECK(o.status == 307);
  CHECK(o.location == "http://echo/temporary");
  o = send(*load("httproute-308-redirect.json"), kEcho, 80, request("/permanent"));
  CHECK(o.status == 308);
  CHECK(o.location == "http://echo/permanent");
}

namespace {

// The MeshHTTPRouteRequestHeaderModifier cases; the backend-level variant
// has the same expectations.
void request_header_modifier_cases(const router::Table& t) {
  Outcome o = send(t, kEcho, 80, request("/set", {{"Some-Other-Header", "val"}}));
  CHECK(o.backend == "echo-v1");
  CHECK(o.upstream_header("some-other-header") == "val");
  CHECK(o.upstream_header("x-header-set") == "set-overwrites-values");

  o = send(t, kEcho, 80, request("/set", {{"X-Header-Set", "some-other-value"}}));
  CHECK(o.upstream_header("X-Header-Set") == "set-overwrites-values");
  CHECK(o.upstream.headers.count("x-header-set") == 1);

  o = send(t, kEcho, 80, request("/add"));
  CHECK(o.upstream_header("X-Header-Add") == "add-appends-values");

  o = send(t, kEcho, 80, request("/add", {{"X-Header-Add", "some-other-value"}}));
  CHECK(o.upstream_header("X-Header-Add") == "some-other-value,add-appends-values");
  CHECK(o.upstream.headers.count("x-header-add") == 1);

  o = send(t, kEcho, 80, request("/remove", {{"X-Header-Remove", "val"}}));
  CHECK(o.upstream_header("X-Header-Remove") == "<absent>");

  o = send(t, kEcho, 80,
           request("/multiple", {{"X-Header-Set-2", "set-val-2"},
                                 {"X-Header-Add-2", "add-val-2"},
                                 {"X-Header-Remove-2", "remove-val-2"},
                                 {"Another-Header", "another-header-val"}}));
  CHECK(o.upstream_header("X-Header-Set-1") == "header-set-1");
  CHECK(o.upstream_header("X-Header-Set-2") == "header-set-2");
  CHECK(o.upstream_header("X-Header-Add-1") == "header-add-1");
  CHECK(o.upstream_header("X-Header-Add-2") == "add-val-2,header-add-2");
  CHECK(o.upstream_header("X-Header-Add-3") == "header-add-3");
  CHECK(o.upstream_header("Another-Header") == "another-header-val");
  CHECK(o.upstream_header("X-Header-Remove-1") == "<absent>");
  CHECK(o.upstream_header("X-Header-Remove-2") == "<absent>");

  o = send(t, kEcho, 80,
           request("/case-insensitivity", {{"x-header-set", "original-val-set"},
                                           {"x-header-add", "original-val-add"},
                                           {"x-header-remove", "original-val-remove"}}));
  CHECK(o.backend == "echo-v1");
  CHECK(o.upstream_header("X-Header-Set") == "header-set");
  CHECK(o.upstream_header("X-Header-Add") == "original-val-add,header-add");
  CHECK(o.upstream_header("x-header-remove") == "<absent>");
}

}  // namespace

TEST_CASE("MeshHTTPRouteRequestHeaderModifier") {
  auto t = load("httproute-request-header-modifier.json");
  request_header_modifier_cases(*t);
  CHECK(t->rules()[0]->filters.request_headers != nullptr);
}

TEST_CASE("MeshHTTPRouteBackendRequestHeaderModifier") {
  auto t = load("httproute-request-header-modifier-backend.json");
  request_header_modifier_cases(*t);
  CHECK(t->rules()[0]->filters.request_headers == nullptr);
  CHECK(t->rules()[0]->backends[0].filters.request_headers != nullptr);
}

TEST_CASE("MeshHTTPRouteRewritePath") {
  auto t = load("httproute-rewrite-path.json");
  struct Case {
    const char* path;
    const char* rewritten;
  };
  const Case cases[] = {
      {"/prefix/one/two", "/one/two"},
      {"/strip-prefix/three", "/three"},
      {"/strip-prefix", "/"},
      {"/full/one/two", "/one"},
      {"/full/rewrite-path-and-modify-headers/test", "/test"},
      {"/prefix/rewrite-path-and-modify-headers/one", "/prefix/one"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    Outcome o = send(*t, kEcho, 80,
                     request(c.path, {{"X-Header-Remove", "remove-val"},
                                      {"X-Header-Add-Append", "append-val-1"},
                                      {"X-Header-Set", "set-val"}}));
    CHECK(o.backend == "echo-v1");
    CHECK(o.upstream.target == c.rewritten);
  }
  for (const char* path : {"/full/rewrite-path-and-modify-headers/test",
                           "/prefix/rewrite-path-and-modify-headers/one"}) {
    CAPTURE(path);
    Outcome o = send(*t, kEcho, 80,
                     request(path, {{"X-Header-Remove", "remove-val"},
                                    {"X-Header-Add-Append", "append-val-1"},
                                    {"X-Header-Set", "set-val"}}));
    CHECK(o.upstream_header("X-Header-Add") == "header-val-1");
    CHECK(o.upstream_header("X-Header-Add-Append") == "append-val-1,header-val-2");
    CHECK(o.upstream_header("X-Header-Set") == "set-overwrites-values");
    CHECK(o.upstream_header("X-Header-Remove") == "<absent>");
  }
  // The query survives a rewrite.
  CHECK(send(*t, kEcho, 80, request("/prefix/one/two?a=b")).upstream.target == "/one/two?a=b");
}

TEST_CASE("MeshHTTPRouteNamedRule") {
  auto t = load("httproute-named-rule.json");
  Outcome named = send(*t, kEcho, 80, request("/named"));
  CHECK(named.backend == "echo-v1");
  CHECK(named.rule->id.rule_name == "named-rule");
  CHECK(named.rule->id.rule_index == 0);
  Outcome unnamed = send(*t, kEcho, 80, request("/unnamed"));
  CHECK(unnamed.backend == "echo-v2");
  CHECK(unnamed.rule->id.rule_name.empty());
  CHECK(unnamed.rule->id.rule_index == 1);
}

TEST_CASE("MeshHTTPRouteWeight: 70/30 over 10 000 seeded draws, within 2 points") {
  auto t = load("httproute-weight.json");
  CHECK(send(*t, kEcho, 80, request("/")).status == 200);
  std::mt19937_64 random(20260102);
  int v1 = 0, v2 = 0, other = 0;
  for (int i = 0; i < 10000; ++i) {
    Outcome o = send(*t, kEcho, 80, request("/"), random());
    if (o.backend == "echo-v1") {
      ++v1;
    } else if (o.backend == "echo-v2") {
      ++v2;
    } else {
      ++other;
    }
  }
  CHECK(other == 0);
  CHECK(v1 > 0);
  CHECK(v2 > 0);
  CHECK(std::abs(v1 / 10000.0 - 0.70) <= 0.02);
  CHECK(std::abs(v2 / 10000.0 - 0.30) <= 0.02);
}

TEST_CASE("MeshGRPCRouteWeight: 70/30/0 with a missing echo-v3") {
  auto t = load("grpcroute-weight.json");
  const router::Frontend* f = t->frontend(router::IpAddress::parse(kEcho), 7070);
  REQUIRE(f != nullptr);
  CHECK(f->mode == router::Mode::grpc);
  const router::Rule& rule = f->rules.at(0);
  REQUIRE(rule.backends.size() == 3);
  CHECK(rule.backends[2].id.name == "echo-v3");
  CHECK(rule.backends[2].state == router::BackendState::invalid);  // no such Service
  CHECK(rule.backends[2].weight == 0);

  std::mt19937_64 random(7070);
  int v1 = 0, v2 = 0, other = 0;
  for (int i = 0; i < 10000; ++i) {
    Outcome o = send(*t, kEcho, 7070, grpc_request(), random());
    if (o.status == 200 && o.backend == "echo-v1") {
      ++v1;
    } else if (o.status == 200 && o.backend == "echo-v2") {
      ++v2;
    } else {
      ++other;
    }
  }
  CHECK(other == 0);  // echo-v3 (weight 0) is never chosen, so nothing answers 500
  CHECK(std::abs(v1 / 10000.0 - 0.70) <= 0.02);
  CHECK(std::abs(v2 / 10000.0 - 0.30) <= 0.02);
}

TEST_CASE("MeshGRPCRouteRequestHeaderModifier") {
  auto t = load("grpcroute-request-header-modifier.json");
  Outcome o = send(*t, kEcho, 7070,
                   grpc_request({{"x-test-case", "set"}, {"x-header-set", "this-value-should-be-overwritten"}}));
  CHECK(o.backend == "echo-v1");
  CHECK(o.upstream_header("x-header-set") == "set-overwrites-values");

  o = send(*t, kEcho, 7070,
           grpc_request({{"x-test-case", "add"}, {"x-header-add", "this-value-should-be-appended"}}));
  CHECK(o.backend == "echo-v1");
  CHECK(o.upstream_header("x-header-add") == "this-value-should-be-appended,add-appends-values");

  o = send(*t, kEcho, 7070, grpc_request({{"x-test-case", "remove"}, {"x-header-remove", "gone"}}));
  CHECK(o.backend == "echo-v1");
  CHECK(o.upstream_header("x-header-remove") == "<absent>");

  o = send(*t, kEcho, 7070,
           grpc_request({{"x-test-case", "multi"},
                         {"x-header-set-2", "set-header-2"},
                         {"x-header-add-2", "add-header-2"},
                         {"x-header-remove-2", "should-be-removed-2"}}));
  CHECK(o.backend == "echo-v2");
  CHECK(o.upstream_header("x-test-case") == "multi");
  CHECK(o.upstream_header("x-header-set-1") == "header-set-1");
  CHECK(o.upstream_header("x-header-set-2") == "header-set-2");
  CHECK(o.upstream_header("x-header-add-1") == "header-add-1");
  CHECK(o.upstream_header("x-header-add-2") == "add-header-2,header-add-2");
  CHECK(o.upstream_header("x-header-remove-1") == "<absent>");
  CHECK(o.upstream_header("x-header-remove-2") == "<absent>");
  // gRPC metadata the filters do not name passes unchanged.
  CHECK(o.upstream_header("te") == "trailers");

  // No rule matches without the header: 404 (answered in gRPC form by the proxy).
  CHECK(send(*t, kEcho, 7070, grpc_request()).status == 404);
}

TEST_CASE("MeshFrontend: routes apply to the ClusterIP, not to the pod IP") {
  auto t = load("mesh-frontend.json");
  Outcome o = send(*t, kEchoV2, 80, request("/", {}, "GET", "echo-v2"));
  CHECK(o.status == 200);
  CHECK(o.backend == "echo-v2");
  CHECK(o.response_header("X-Header-Set") == "set");
  // Straight to the pod: not a frontend, passed through untouched.
  CHECK(send(*t, kEchoV2Pod, 8080, request("/", {}, "GET", "10.244.0.12:8080")).status == -1);
}

TEST_CASE("MeshFrontendHostname: the ClusterIP dialled decides, the Host header does not") {
  auto t = load("mesh-frontend.json");
  Outcome o = send(*t, kEchoV2, 80, request("/", {}, "GET", "echo-v1"));
  CHECK(o.backend == "echo-v2");
  CHECK(o.response_header("X-Header-Set") == "set");
  o = send(*t, kEchoV1, 80, request("/", {}, "GET", "echo-v2"));
  CHECK(o.passthrough);
  CHECK(o.backend == "echo-v1");
  CHECK(o.response_header("X-Header-Set") == "<absent>");
}

TEST_CASE("MeshPorts") {
  auto t = load("mesh-ports.json");
  Outcome o = send(*t, kEchoV1, 80, request("/", {}, "GET", "echo-v1"));
  CHECK(o.backend == "echo-v1");
  CHECK(o.response_header("X-Header-Set") == "v1");
  o = send(*t, kEchoV1, 8080, request("/", {}, "GET", "echo-v1:8080"));
  CHECK(o.passthrough);  // the route names port 80 only
  CHECK(o.response_header("X-Header-Set") == "<absent>");
  o = send(*t, kEchoV2, 80, request("/", {}, "GET", "echo-v2"));
  CHECK(o.backend == "echo-v2");
  CHECK(o.response_header("X-Header-Set") == "v2");
  o = send(*t, kEchoV2, 8080, request("/", {}, "GET", "echo-v2:8080"));
  CHECK(o.backend == "echo-v2");  // no port: every port
  CHECK(o.response_header("X-Header-Set") == "v2");
}

TEST_CASE("MeshConsumerRoute: the consumer's table carries its route, the producer's does not") {
  auto consumer = load("mesh-consumer-route-consumer.json");
  CHECK(consumer->source().ns == "gateway-conformance-mesh-consumer");
  Outcome o = send(*consumer, kEchoV1, 80, request("/", {}, "GET", "echo-v1.gateway-conformance-mesh"));
  CHECK(o.backend == "echo-v1");
  CHECK(o.rule->backends[0].id.ns == "gateway-conformance-mesh");
  CHECK(o.rule->id.route_namespace == "gateway-conformance-mesh-consumer");
  CHECK(o.rule->id.parent_namespace == "gateway-conformance-mesh");
  CHECK(o.response_header("X-Header-Set") == "set");

  auto producer = load("mesh-consumer-route-producer.json");
  o = send(*producer, kEchoV1, 80, request("/", {}, "GET", "echo-v1.gateway-conformance-mesh"));
  CHECK(o.passthrough);
  CHECK(o.backend == "echo-v1");
  CHECK(o.response_header("X-Header-Set") == "<absent>");
}

TEST_CASE("every conformance table survives serialize and parse unchanged") {
  for (const char* name :
       {"grpcroute-request-header-modifier.json", "grpcroute-weight.json", "httproute-303-redirect.json",
        "httproute-307-redirect.json", "httproute-308-redirect.json", "httproute-matching.json",
        "httproute-named-rule.json", "httproute-query-param-matching.json",
        "httproute-redirect-host-and-status.json", "httproute-redirect-path.json",
        "httproute-redirect-port.json", "httproute-redirect-scheme.json",
        "httproute-request-header-modifier-backend.json", "httproute-request-header-modifier.json",
        "httproute-rewrite-path.json", "httproute-simple-same-namespace.json", "httproute-weight.json",
        "mesh-basic.json", "mesh-consumer-route-consumer.json", "mesh-consumer-route-producer.json",
        "mesh-frontend.json", "mesh-ports.json", "mesh-split.json"}) {
    CAPTURE(name);
    auto parsed = routes::parse(read_data(name));
    REQUIRE(parsed.ok());
    auto again = routes::parse(routes::serialize(**parsed));
    REQUIRE(again.ok());
    CHECK(**again == **parsed);
  }
}
