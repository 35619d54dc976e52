// The router beyond the conformance cases: precedence ties, matching details,
// backend states, filters, CORS, identifiers, hostile tables, and matching
// without allocation.
#include <netinet/in.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "tests/support/allocation/allocation_counter.h"
#include "tests/unit/proxy/router/support.h"

using namespace router_test;
using trellis::testing::start_counting_allocations;
using trellis::testing::stop_counting_allocations;

namespace {

constexpr char kSvc[] = "10.96.1.1";

// Service shop/svc (10.96.1.1, ports 80 and 7070) carrying `routes`, and
// endpoints: a, b and e ready, c not ready, d only serving while terminating;
// "missing" has none.
std::string shop(std::string_view routes) {
  return std::string(R"({"version":"t","namespace":"shop","services":[{"namespace":"shop","name":"svc",)"
                     R"("clusterIPs":["10.96.1.1","fd00::1:1"],"ports":[{"name":"http","port":80,"targetPort":8080},)"
                     R"({"name":"grpc","port":7070}],"routes":)") +
         std::string(routes) +
         R"(}],"endpoints":[
      {"namespace":"shop","service":"svc","port":80,"addresses":[{"ip":"10.1.0.9","port":8080}]},
      {"namespace":"shop","service":"a","port":80,"addresses":[{"ip":"10.1.0.1","port":8080,"pod":"a-1"}]},
      {"namespace":"shop","service":"b","port":80,"addresses":[{"ip":"10.1.0.2","port":8080,"pod":"b-1"}]},
      {"namespace":"shop","service":"e","port":80,"addresses":[{"ip":"10.1.0.6","port":8080,"pod":"e-1"}]},
      {"namespace":"shop","service":"c","port":80,"addresses":[{"ip":"10.1.0.3","port":8080,"ready":false}]},
      {"namespace":"shop","service":"d","port":80,"addresses":[
        {"ip":"10.1.0.4","port":8080,"ready":false,"serving":true,"terminating":true},
        {"ip":"10.1.0.5","port":8080,"ready":false,"serving":false,"terminating":true}]},
      {"namespace":"shop","service":"a","port":7070,"addresses":[{"ip":"10.1.0.1","port":7070}]},
      {"namespace":"shop","service":"b","port":7070,"addresses":[{"ip":"10.1.0.2","port":7070}]}]})";
}

std::string route(std::string_view name, std::string_view rules, std::string_view ns = "shop",
                  std::string_view created = "2026-01-02T03:04:05Z", std::string_view extra = "",
                  std::string_view kind = "HTTPRoute") {
  return std::string(R"({"kind":")") + std::string(kind) + R"(","namespace":")" + std::string(ns) +
         R"(","name":")" + std::string(name) + R"(","creationTimestamp":")" + std::string(created) +
         "\"" + std::string(extra) + R"(,"rules":)" + std::string(rules) + "}";
}

// A rule forwarding to `backend` when `matches` match.
std::string to(std::string_view backend, std::string_view matches = "[{}]") {
  return std::string(R"({"matches":)") + std::string(matches) + R"(,"backendRefs":[{"name":")" +
         std::string(backend) + R"(","namespace":"shop","port":80}]})";
}

std::string backend_of(const router::Table& t, http::RequestHead r, uint16_t port = 80) {
  Outcome o = send(t, kSvc, port, std::move(r));
  return o.status == 200 ? o.backend : std::to_string(o.status);
}

}  // namespace

TEST_CASE("precedence: the oldest route wins a tie, then {namespace}/{name}, then rule order") {
  auto t = compile_json(shop("[" + route("newer", "[" + to("a") + "]") + "," +
                             route("older", "[" + to("b") + "]", "shop", "2025-06-01T00:00:00Z") + "]"));
  CHECK(backend_of(*t, request("/")) == "b");

  // Same age: "{namespace}/{name}" compared as one string ("a-b/c" < "a/z",
  // though namespace "a" < "a-b").
  t = compile_json(shop("[" + route("z", "[" + to("a") + "]", "a") + "," + route("c", "[" + to("b") + "]", "a-b") + "]"));
  CHECK(backend_of(*t, request("/")) == "b");
  t = compile_json(shop("[" + route("y", "[" + to("a") + "]") + "," + route("x", "[" + to("b") + "]") + "]"));
  CHECK(backend_of(*t, request("/")) == "b");

  // Within a route, the first rule.
  t = compile_json(shop("[" + route("r", "[" + to("a") + "," + to("b") + "]") + "]"));
  CHECK(backend_of(*t, request("/")) == "a");
}

TEST_CASE("precedence: Exact, then RegularExpression, then the longest PathPrefix") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"type":"PathPrefix","value":"/api"}}])") + "," +
      to("b", R"([{"path":{"type":"Exact","value":"/api/v1/users"}}])") + "," +
      to("e", R"([{"path":{"type":"PathPrefix","value":"/api/v1"}}])") + "," +
      to("d", R"([{"path":{"type":"RegularExpression","value":"/api/v[0-9]+/items.*"}}])") + "," +
      to("a", R"([{"path":{"type":"RegularExpression","value":"/api/.*"}}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/api/v1/users")) == "b");
  CHECK(backend_of(*t, request("/api/v1/users/7")) == "a");  // the regex /api/.* beats every prefix
  CHECK(backend_of(*t, request("/api/v1/items/7")) == "d");  // the longer pattern first
  CHECK(backend_of(*t, request("/api")) == "a");
  CHECK(backend_of(*t, request("/other")) == "404");

  t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"type":"PathPrefix","value":"/api"}}])") + "," +
      to("e", R"([{"path":{"type":"PathPrefix","value":"/api/v1/"}}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/api/v1")) == "e");   // a trailing '/' is ignored
  CHECK(backend_of(*t, request("/api/v1/")) == "e");
  CHECK(backend_of(*t, request("/api/v1/x")) == "e");
  CHECK(backend_of(*t, request("/api/v1x")) == "a");  // whole segments only
  CHECK(backend_of(*t, request("/api/v1?x=/api/v1/")) == "e");
  CHECK(backend_of(*t, request("/apix")) == "404");
}

TEST_CASE("precedence: then method, then more headers, then more query params") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"value":"/x"},"headers":[{"name":"h1","value":"1"},{"name":"h2","value":"2"}],
                   "queryParams":[{"name":"q","value":"1"}]}])") + "," +
      to("b", R"([{"path":{"value":"/x"},"method":"POST"}])") + "," +
      to("e", R"([{"path":{"value":"/x"},"headers":[{"name":"h1","value":"1"}],
                   "queryParams":[{"name":"q","value":"1"},{"name":"r","value":"1"}]}])") + "," +
      to("d", R"([{"path":{"value":"/x/y"}}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/x?q=1&r=1", {{"h1", "1"}, {"h2", "2"}}, "POST")) == "b");  // method first
  CHECK(backend_of(*t, request("/x?q=1&r=1", {{"h1", "1"}, {"h2", "2"}})) == "a");  // 2 headers beat 1
  CHECK(backend_of(*t, request("/x?q=1&r=1", {{"h1", "1"}})) == "e");
  CHECK(backend_of(*t, request("/x/y?q=1&r=1", {{"h1", "1"}, {"h2", "2"}}, "POST")) == "d");  // longer prefix
  CHECK(backend_of(*t, request("/x")) == "404");
}

TEST_CASE("matches within a rule are ORed, conditions within a match ANDed") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"value":"/p"},"headers":[{"name":"h","value":"1"}]},{"method":"PUT"}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/p", {{"h", "1"}})) == "a");
  CHECK(backend_of(*t, request("/q", {}, "PUT")) == "a");
  CHECK(backend_of(*t, request("/p")) == "404");
  CHECK(backend_of(*t, request("/q", {{"h", "1"}})) == "404");
}

TEST_CASE("header matching: case-insensitive names, repeated headers joined, absent never matches") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"headers":[{"name":"X-Exact","value":"one,two"}]}])") + "," +
      to("b", R"([{"headers":[{"type":"RegularExpression","name":"x-re","value":"v[0-9]+(,v[0-9]+)*"}]}])") + "," +
      to("e", R"([{"headers":[{"type":"RegularExpression","name":"x-any","value":".*"}]}])") + "," +
      to("d", R"([{"headers":[{"name":"X-Dup","value":"first"},{"name":"x-dup","value":"second"}]}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/", {{"x-exact", "one,two"}})) == "a");
  CHECK(backend_of(*t, request("/", {{"X-EXACT", "one"}, {"x-exact", "two"}})) == "a");
  CHECK(backend_of(*t, request("/", {{"x-exact", "one"}})) == "404");
  CHECK(backend_of(*t, request("/", {{"x-exact", "one"}, {"x-exact", "two"}, {"x-exact", ""}})) == "404");
  CHECK(backend_of(*t, request("/", {{"X-Re", "v1"}})) == "b");
  CHECK(backend_of(*t, request("/", {{"x-re", "v1"}, {"x-re", "v22"}})) == "b");
  CHECK(backend_of(*t, request("/", {{"x-re", "v1"}, {"x-re", "w"}})) == "404");
  CHECK(backend_of(*t, request("/", {{"x-any", ""}})) == "e");
  CHECK(backend_of(*t, request("/")) == "404");  // absent: even ".*" does not match
  // Of matchers naming the same header, only the first counts.
  CHECK(backend_of(*t, request("/", {{"x-dup", "first"}})) == "d");
}

TEST_CASE("query matching: exact names, the first value, form decoding") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"queryParams":[{"name":"animal","value":"whale"}]}])") + "," +
      to("b", R"([{"queryParams":[{"name":"q","value":"a b/c"}]}])") + "," +
      to("e", R"([{"queryParams":[{"type":"RegularExpression","name":"re","value":"x y+"}]}])") + "," +
      to("d", R"([{"queryParams":[{"name":"flag","value":"on"}]}])") + "]") + "]"));
  CHECK(backend_of(*t, request("/?animal=whale")) == "a");
  CHECK(backend_of(*t, request("/?Animal=whale")) == "404");  // names are case-sensitive
  CHECK(backend_of(*t, request("/?animal=WHALE")) == "404");
  CHECK(backend_of(*t, request("/?animal=dog&animal=whale")) == "404");  // the first value counts
  CHECK(backend_of(*t, request("/?animal=whale&animal=dog")) == "a");
  CHECK(backend_of(*t, request("/?an%69mal=wh%61le")) == "a");
  CHECK(backend_of(*t, request("/?q=a+b%2Fc")) == "b");
  CHECK(backend_of(*t, request("/?q=a%20b/c")) == "b");
  CHECK(backend_of(*t, request("/?re=x+yyy")) == "e");
  CHECK(backend_of(*t, request("/?re=x%20y")) == "e");
  CHECK(backend_of(*t, request("/?re=xy")) == "404");
  CHECK(backend_of(*t, request("/?flag")) == "404");  // no '=': the empty value
  CHECK(backend_of(*t, request("/?flag=on%")) == "404");  // '%' without two hex digits stays literal
  CHECK(backend_of(*t, request("/?&&flag=on")) == "d");
}

TEST_CASE("a GRPCRoute beats HTTPRoutes on the Service ports it applies to") {
  std::string grpc = route("g", R"([{"backendRefs":[{"name":"a","port":7070}]}])", "shop",
                           "2026-01-02T03:04:05Z", R"(,"port":7070)", "GRPCRoute");
  auto t = compile_json(shop("[" + route("h", "[" + to("b") + "]") + "," + grpc + "]"));
  const router::Frontend* f80 = t->frontend(router::IpAddress::parse(kSvc), 80);
  const router::Frontend* f7070 = t->frontend(router::IpAddress::parse(kSvc), 7070);
  CHECK(f80->mode == router::Mode::http);
  CHECK(f7070->mode == router::Mode::grpc);
  CHECK(f7070->rules.size() == 1);  // the HTTPRoute is not compiled for 7070
  CHECK(backend_of(*t, request("/"), 80) == "b");
  CHECK(backend_of(*t, grpc_request({}, "/pkg.Svc/Get"), 7070) == "a");
  CHECK(backend_of(*t, request("/"), 7070) == "404");  // not gRPC-shaped

  // A GRPCRoute without port takes every port.
  std::string grpc_all = route("g", R"([{"backendRefs":[{"name":"a","port":7070}]}])", "shop",
                               "2026-01-02T03:04:05Z", "", "GRPCRoute");
  t = compile_json(shop("[" + route("h", "[" + to("b") + "]", "shop", "2026-01-02T03:04:05Z", R"(,"port":80)") +
                        "," + grpc_all + "]"));
  CHECK(t->frontend(router::IpAddress::parse(kSvc), 80)->mode == router::Mode::grpc);
}

TEST_CASE("gRPC matching and precedence: service characters, then method, then headers") {
  std::string rules = R"([
    {"matches":[{"method":{"method":"Get"}}],"backendRefs":[{"name":"e","port":80}]},
    {"backendRefs":[{"name":"d","port":80}]},
    {"matches":[{"method":{"service":"pkg.Svc"}}],"backendRefs":[{"name":"b","port":80}]},
    {"matches":[{"method":{"service":"pkg.Svc","method":"Get"}}],"backendRefs":[{"name":"a","port":80}]},
    {"matches":[{"method":{"service":"pkg.Svc","method":"Get"},"headers":[{"name":"x-v","value":"2"}]}],
     "backendRefs":[{"name":"missing","port":80}]},
    {"matches":[{"method":{"type":"RegularExpression","service":"re\\.v[0-9]+\\..*","method":"Li.*"}}],
     "backendRefs":[{"name":"b","port":80}]}])";
  auto t = compile_json(shop("[" + route("g", rules, "shop", "2026-01-02T03:04:05Z", "", "GRPCRoute") + "]"));
  auto rpc = [&](const char* path, std::initializer_list<std::pair<const char*, const char*>> h = {}) {
    return backend_of(*t, grpc_request(h, path));
  };
  CHECK(rpc("/pkg.Svc/Get") == "a");
  CHECK(rpc("/pkg.Svc/Get", {{"x-v", "2"}}) == "500");  // more headers win; "missing" answers 500
  CHECK(rpc("/pkg.Svc/Put") == "b");
  CHECK(rpc("/other.Svc/Get") == "e");
  CHECK(rpc("/other.Svc/Put") == "d");
  CHECK(rpc("/re.v2.Things/List") == "b");
  CHECK(rpc("/re.v2.Things/Get") == "e");
  // Not "/service/method": no rule, not even the catch-all.
  CHECK(rpc("/") == "404");
  CHECK(rpc("/pkg.Svc") == "404");
  CHECK(rpc("/pkg.Svc/") == "404");
  CHECK(rpc("//Get") == "404");
  CHECK(rpc("/pkg.Svc/Get/extra") == "404");
}

TEST_CASE("backends: missing or not a Service 500, no ready endpoint 503, terminating fallback") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("missing", R"([{"path":{"value":"/missing"}}])") + "," +
      to("c", R"([{"path":{"value":"/not-ready"}}])") + "," +
      to("d", R"([{"path":{"value":"/terminating"}}])") + "," +
      R"({"matches":[{"path":{"value":"/kind"}}],"backendRefs":[{"group":"example.org","kind":"Thing","name":"a"}]},)"
      R"({"matches":[{"path":{"value":"/zero"}}],"backendRefs":[{"name":"a","port":80,"weight":0}]},)"
      R"({"matches":[{"path":{"value":"/none"}}]},)"
      R"({"matches":[{"path":{"value":"/ext"}}],"filters":[{"type":"ExtensionRef","extensionRef":)"
      R"({"group":"example.org","kind":"Auth","name":"x"}}],"backendRefs":[{"name":"a","port":80}]},)"
      R"({"matches":[{"path":{"value":"/port"}}],"backendRefs":[{"name":"a","port":81}]})" + "]") + "]"));
  CHECK(backend_of(*t, request("/missing")) == "500");
  CHECK(backend_of(*t, request("/not-ready")) == "503");
  CHECK(backend_of(*t, request("/terminating")) == "d");
  CHECK(backend_of(*t, request("/kind")) == "500");
  CHECK(backend_of(*t, request("/zero")) == "500");
  CHECK(backend_of(*t, request("/none")) == "500");
  CHECK(backend_of(*t, request("/ext")) == "500");
  CHECK(backend_of(*t, request("/port")) == "500");  // no endpoints for a:81
  const router::Rule& terminating = t->frontend(router::IpAddress::parse(kSvc), 80)->rules[2];
  REQUIRE(terminating.backends[0].endpoints != nullptr);
  CHECK(terminating.backends[0].endpoints->eligible.size() == 1);
  CHECK(terminating.backends[0].endpoints->eligible[0]->ip == "10.1.0.4");
}

TEST_CASE("a missing backend answers 500 for its share only") {
  auto t = compile_json(shop("[" + route("r", R"([{"backendRefs":[{"name":"a","port":80},{"name":"missing","port":80},
      {"name":"b","port":80,"filters":[{"type":"ExtensionRef","extensionRef":{"group":"x.io","kind":"K","name":"k"}}]}]}])") + "]"));
  const router::Rule& rule = t->frontend(router::IpAddress::parse(kSvc), 80)->rules[0];
  CHECK(router::pick(rule, 0)->id.name == "a");
  CHECK(router::pick(rule, std::numeric_limits<uint64_t>::max())->id.name == "b");
  std::mt19937_64 random(1);
  int ok = 0, failed = 0;
  for (int i = 0; i < 3000; ++i) {
    Outcome o = send(*t, kSvc, 80, request("/"), random());
    (o.status == 200 ? ok : failed) += 1;
    if (o.status != 200) CHECK(o.status == 500);
  }
  CHECK(std::abs(ok / 3000.0 - 1.0 / 3) < 0.04);
  CHECK(failed + ok == 3000);
}

TEST_CASE("pick never chooses a zero weight and maps draws without bias") {
  auto t = compile_json(shop("[" + route("r", R"([{"backendRefs":[{"name":"a","port":80,"weight":1},
      {"name":"b","port":80,"weight":0},{"name":"c","port":80,"weight":1}]}])") + "]"));
  const router::Rule& rule = t->frontend(router::IpAddress::parse(kSvc), 80)->rules[0];
  CHECK(rule.total_weight == 2);
  CHECK(router::pick(rule, 0)->id.name == "a");
  CHECK(router::pick(rule, (uint64_t{1} << 63) - 1)->id.name == "a");
  CHECK(router::pick(rule, uint64_t{1} << 63)->id.name == "c");
  CHECK(router::pick(rule, std::numeric_limits<uint64_t>::max())->id.name == "c");
}

TEST_CASE("ReplacePrefixMatch follows the API's table") {
  struct Row {
    const char* path;
    const char* prefix;  // as configured
    const char* replacement;
    const char* result;
  };
  const Row rows[] = {
      {"/foo/bar", "/foo", "/xyz", "/xyz/bar"}, {"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
      {"/foo/bar", "/foo/", "/xyz", "/xyz/bar"}, {"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
      {"/foo", "/foo", "/xyz", "/xyz"},          {"/foo/", "/foo", "/xyz", "/xyz/"},
      {"/foo/bar", "/foo", "", "/bar"},          {"/foo/", "/foo", "", "/"},
      {"/foo", "/foo", "", "/"},                 {"/foo/", "/foo", "/", "/"},
      {"/foo", "/foo", "/", "/"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.path);
    CAPTURE(r.prefix);
    CAPTURE(r.replacement);
    std::string_view prefix = r.prefix;
    while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
    CHECK(router::replace_prefix(r.path, prefix, r.replacement) == r.result);
  }
  CHECK(router::replace_prefix("/a/b", "", "/x") == "/x/a/b");  // the prefix "/"
  CHECK(router::replace_prefix("/other", "/foo", "/x") == "/other");
}

TEST_CASE("header filters: remove, then set, then add; Set-Cookie gets its own line") {
  routes::HTTPHeaderFilter f;
  f.remove = {"x-gone", "x-reset"};
  f.set = {{"X-Reset", "new"}, {"x-reset", "ignored"}};
  f.add = {{"X-List", "b"}, {"set-cookie", "c=2"}, {"x-fresh", "1"}};
  http::HeaderMap h;
  h.add("x-gone", "1");
  h.add("x-reset", "old");
  h.add("x-list", "a1");
  h.add("X-List", "a2");
  h.add("Set-Cookie", "c=1");
  router::apply_header_filter(f, h);
  CHECK_FALSE(h.contains("x-gone"));
  CHECK(h.joined("x-reset") == "new");
  CHECK(h.count("x-list") == 1);
  CHECK(h.joined("x-list") == "a1,a2,b");
  CHECK(h.count("set-cookie") == 2);
  CHECK(h.joined("x-fresh") == "1");

  // On a request, Host lives in the authority.
  routes::HTTPHeaderFilter host;
  host.set = {{"Host", "example.org"}};
  host.add = {{"host", "ignored"}};
  host.remove = {"HOST"};
  http::RequestHead r = request("/");
  router::apply_request_header_filter(host, r);
  CHECK(r.authority == "example.org");
  CHECK(r.headers.empty());
}

TEST_CASE("redirects: the request's host, the Service port, IPv6 and missing authorities") {
  auto t = compile_json(shop("[" + route("r", R"([
      {"matches":[{"path":{"value":"/plain"}}],"filters":[{"type":"RequestRedirect","requestRedirect":{}}]},
      {"matches":[{"path":{"value":"/secure"}}],"filters":[{"type":"RequestRedirect","requestRedirect":
        {"scheme":"https","port":8443,"path":{"type":"ReplaceFullPath","replaceFullPath":"/x"}}}]},
      {"matches":[{"path":{"value":"/http"}}],"filters":[{"type":"RequestRedirect","requestRedirect":
        {"scheme":"http","statusCode":308}}]}])") + "]"));
  CHECK(send(*t, kSvc, 80, request("/plain/a?b=c", {}, "GET", "svc.shop:80")).location == "http://svc.shop/plain/a?b=c");
  CHECK(send(*t, kSvc, 80, request("/plain", {}, "GET", "[fd00::1:1]:80")).location == "http://[fd00::1:1]/plain");
  CHECK(send(*t, kSvc, 80, request("/plain", {}, "GET", "")).location == "http://10.96.1.1/plain");
  CHECK(send(*t, kSvc, 80, request("/secure/a?q")).location == "https://echo:8443/x?q");
  Outcome o = send(*t, kSvc, 80, request("/http"));
  CHECK(o.status == 308);
  CHECK(o.location == "http://echo/http");
  // The fallback host is the first ClusterIP, whichever one was dialled.
  auto v6 = t->frontend(router::IpAddress::parse("fd00::1:1"), 80);
  REQUIRE(v6 != nullptr);
  CHECK(v6->default_host == "10.96.1.1");
}

TEST_CASE("URLRewrite: hostname replaces the authority, the path per the modifier") {
  auto t = compile_json(shop("[" + route("r", R"([
      {"matches":[{"path":{"value":"/old/"}}],"filters":[{"type":"URLRewrite","urlRewrite":
        {"hostname":"new.example","path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/new"}}}],
       "backendRefs":[{"name":"a","port":80,"filters":[{"type":"RequestHeaderModifier",
        "requestHeaderModifier":{"add":[{"name":"x-order","value":"backend"}]}}]}]}])") + "]"));
  Outcome o = send(*t, kSvc, 80, request("/old/x?y=1", {{"x-order", "client"}}));
  CHECK(o.upstream.authority == "new.example");
  CHECK(o.upstream.target == "/new/x?y=1");
  CHECK(o.upstream_header("x-order") == "client,backend");
}

TEST_CASE("request mirrors: which backend, and percent or fraction of requests") {
  auto t = compile_json(shop("[" + route("r", R"([{"filters":[
      {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"b","port":80}}},
      {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"missing","port":80},"percent":0}},
      {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80},"fraction":{"numerator":1,"denominator":3}}}],
      "backendRefs":[{"name":"a","port":80,"filters":[{"type":"RequestMirror","requestMirror":
        {"backendRef":{"name":"c","port":80},"percent":100}}]}]}])") + "]"));
  const router::Rule& rule = t->frontend(router::IpAddress::parse(kSvc), 80)->rules[0];
  std::vector<std::string> order;
  router::mirrors_of(rule, &rule.backends[0], [&](const router::Mirror& m) { order.emplace_back(m.backend.id.name); });
  CHECK(order == std::vector<std::string>{"b", "missing", "a", "c"});
  const auto& mirrors = rule.filters.mirrors;
  CHECK(mirrors[0].backend.state == router::BackendState::ok);
  CHECK(mirrors[1].backend.state == router::BackendState::invalid);
  CHECK(rule.backends[0].filters.mirrors[0].backend.state == router::BackendState::unavailable);
  std::mt19937_64 random(3);
  int all = 0, none = 0, third = 0;
  for (int i = 0; i < 9000; ++i) {
    all += router::mirror_selected(mirrors[0], random());
    none += router::mirror_selected(mirrors[1], random());
    third += router::mirror_selected(mirrors[2], random());
  }
  CHECK(all == 9000);
  CHECK(none == 0);
  CHECK(std::abs(third / 9000.0 - 1.0 / 3) < 0.02);
}

TEST_CASE("CORS: preflights are answered, actual responses decorated") {
  auto t = compile_json(shop("[" + route("r", R"([
      {"matches":[{"path":{"value":"/cors-1"}}],"filters":[{"type":"CORS","cors":{
        "allowOrigins":["https://www.foo.com","https://*.bar.com"],"allowMethods":["GET","OPTIONS"],
        "allowHeaders":["x-header-1","x-header-2"],"exposeHeaders":["x-header-3","x-header-4"],
        "allowCredentials":true,"maxAge":3600}}],"backendRefs":[{"name":"a","port":80}]},
      {"matches":[{"path":{"value":"/cors-2"}}],"filters":[{"type":"CORS","cors":{
        "allowOrigins":["https://www.foo.com"],"allowMethods":["*"]}}],"backendRefs":[{"name":"a","port":80}]},
      {"matches":[{"path":{"value":"/cors-wild"}}],"filters":[{"type":"CORS","cors":{
        "allowOrigins":["*"],"allowMethods":["*"],"allowHeaders":["*"],"exposeHeaders":["*"],
        "allowCredentials":true}}],"backendRefs":[{"name":"a","port":80}]},
      {"matches":[{"path":{"value":"/cors-any"}}],"filters":[{"type":"CORS","cors":{
        "allowOrigins":["*"],"allowHeaders":["*"]}}],"backendRefs":[{"name":"a","port":80}]}])") + "]"));
  auto preflight = [&](const char* path, const char* origin, const char* method = "GET",
                       const char* headers = nullptr) {
    http::RequestHead r = request(path, {{"Origin", origin}, {"Access-Control-Request-Method", method}}, "OPTIONS");
    if (headers) r.headers.add("Access-Control-Request-Headers", headers);
    CHECK(router::is_cors_preflight(r));
    return send(*t, kSvc, 80, r);
  };
  Outcome o = preflight("/cors-1", "https://www.foo.com", "GET", "x-header-1, x-header-2");
  CHECK(o.status == 200);
  CHECK(o.response_header("access-control-allow-origin") == "https://www.foo.com");
  CHECK(o.response_header("access-control-allow-methods") == "GET, OPTIONS");
  CHECK(o.response_header("access-control-allow-headers") == "x-header-1, x-header-2");
  CHECK(o.response_header("access-control-expose-headers") == "x-header-3, x-header-4");
  CHECK(o.response_header("access-control-max-age") == "3600");
  CHECK(o.response_header("access-control-allow-credentials") == "true");
  CHECK(o.response_header("vary") == "Origin");
  CHECK(preflight("/cors-1", "https://www.bar.com").response_header("access-control-allow-origin") ==
        "https://www.bar.com");
  CHECK(preflight("/cors-1", "https://xpto.www.bar.com").response_header("access-control-allow-origin") ==
        "https://xpto.www.bar.com");
  CHECK(preflight("/cors-1", "https://www.foo.com:443").response_header("access-control-allow-origin") ==
        "https://www.foo.com:443");  // the default port is implied
  for (const char* denied : {"https://foobar.com", "http://www.foo.com", "https://www.foo.com:8443",
                             "https://bar.com", "null"}) {
    CAPTURE(denied);
    Outcome d = preflight("/cors-1", denied);
    CHECK(d.status == 200);
    CHECK(d.response_header("access-control-allow-origin") == "<absent>");
  }
  o = preflight("/cors-2", "https://www.foo.com", "POST");
  CHECK(o.response_header("access-control-allow-methods") == "*");
  CHECK(o.response_header("access-control-allow-credentials") == "<absent>");
  // With credentials a wildcard is answered with what the request asked for.
  o = preflight("/cors-wild", "https://other.foo.com", "PUT", "x-header-1, x-header-2");
  CHECK(o.response_header("access-control-allow-origin") == "https://other.foo.com");
  CHECK(o.response_header("access-control-allow-methods") == "PUT");
  CHECK(o.response_header("access-control-allow-headers") == "x-header-1, x-header-2");
  CHECK(o.response_header("access-control-expose-headers") == "<absent>");
  o = preflight("/cors-any", "https://foobar.com:12345", "PUT");
  CHECK(o.response_header("access-control-allow-origin") == "*");
  CHECK(o.response_header("access-control-allow-headers") == "*");
  CHECK(o.response_header("access-control-allow-methods") == "<absent>");

  // Actual requests are forwarded and their responses decorated.
  o = send(*t, kSvc, 80, request("/cors-1", {{"Origin", "https://www.bar.com"}}));
  CHECK(o.backend == "a");
  CHECK(o.response_header("access-control-allow-origin") == "https://www.bar.com");
  CHECK(o.response_header("access-control-allow-credentials") == "true");
  CHECK(o.response_header("access-control-max-age") == "<absent>");
  o = send(*t, kSvc, 80, request("/cors-1", {{"Origin", "https://foobar.com"}}));
  CHECK(o.response_header("access-control-allow-origin") == "<absent>");
  o = send(*t, kSvc, 80, request("/cors-1"));
  CHECK(o.response_header("access-control-allow-origin") == "<absent>");
  // OPTIONS without Access-Control-Request-Method is not a preflight: forwarded.
  o = send(*t, kSvc, 80, request("/cors-1", {{"Origin", "https://www.foo.com"}}, "OPTIONS"));
  CHECK(o.backend == "a");
}

TEST_CASE("identifiers and ordinals for metric handles") {
  auto t = compile_json(shop("[" + route("r", R"([{"name":"first","backendRefs":[{"name":"a","port":80}]},
      {"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"b","port":80}}}],
       "backendRefs":[{"name":"b","port":80,"weight":5},{"name":"a","port":80}]}])") + "]"));
  // The route has no port: compiled for port 80 and port 7070.
  REQUIRE(t->rules().size() == 4);
  for (size_t i = 0; i < t->rules().size(); ++i) CHECK(t->rules()[i]->ordinal == i);
  for (size_t i = 0; i < t->backends().size(); ++i) CHECK(t->backends()[i]->ordinal == i);
  CHECK(t->backends().size() == 8);  // (1 + 1 mirror + 2) per port
  const router::Rule& r1 = *t->rules()[1];
  CHECK(r1.id.route_kind == routes::RouteKind::http_route);
  CHECK(r1.id.route_namespace == "shop");
  CHECK(r1.id.route_name == "r");
  CHECK(r1.id.rule_index == 1);
  CHECK(r1.id.rule_name.empty());
  CHECK(r1.id.parent_namespace == "shop");
  CHECK(r1.id.parent_name == "svc");
  CHECK(r1.id.parent_port == 80);
  CHECK(t->rules()[0]->id.rule_name == "first");
  CHECK(t->rules()[2]->id.parent_port == 7070);
  CHECK(r1.backends[0].id.ns == "shop");
  CHECK(r1.backends[0].id.name == "b");
  CHECK(r1.backends[0].id.port == 80);
  CHECK(r1.backends[0].weight == 5);

  // Frontends by either ClusterIP, and by SO_ORIGINAL_DST sockaddrs.
  const router::Frontend* f = t->frontend(router::IpAddress::parse(kSvc), 80);
  CHECK(t->frontend(router::IpAddress::parse("fd00:0::1:1"), 80) == f);
  CHECK(t->frontend(router::IpAddress::parse("::ffff:10.96.1.1"), 80) == f);
  CHECK(t->frontend(router::IpAddress::parse(kSvc), 81) == nullptr);
  CHECK(t->frontend(router::IpAddress::parse("not an ip"), 80) == nullptr);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(80);
  in.sin_addr.s_addr = htonl(0x0A600101);  // 10.96.1.1
  CHECK(t->frontend(reinterpret_cast<const sockaddr*>(&in)) == f);
  sockaddr_in6 mapped{};
  mapped.sin6_family = AF_INET6;
  mapped.sin6_port = htons(80);
  const uint8_t bytes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 1, 1};
  std::memcpy(&mapped.sin6_addr, bytes, 16);
  CHECK(t->frontend(reinterpret_cast<const sockaddr*>(&mapped)) == f);
  CHECK(t->endpoints("shop", "a", 80) != nullptr);
  CHECK(t->endpoints("shop", "a", 81) == nullptr);
}

TEST_CASE("a 10 000-rule table compiles and matches through the index") {
  std::string routes = "[";
  for (int r = 0; r < 625; ++r) {
    std::string rules = "[";
    for (int i = 0; i < 16; ++i) {
      rules += std::string(i ? "," : "") +
               to("a", R"([{"path":{"type":"Exact","value":"/r)" + std::to_string(r) + "/" + std::to_string(i) +
                           R"("}},{"path":{"value":"/p)" + std::to_string(r) + "/" + std::to_string(i) + R"("}}])");
    }
    routes += std::string(r ? "," : "") + route("r" + std::to_string(r), rules + "]");
  }
  auto t = compile_json(shop(routes + "]"));
  CHECK(t->frontend(router::IpAddress::parse(kSvc), 80)->rules.size() == 10000);
  CHECK(backend_of(*t, request("/r624/15")) == "a");
  CHECK(backend_of(*t, request("/p624/15/deeper/still")) == "a");
  CHECK(backend_of(*t, request("/r624/16")) == "404");
  const router::Rule* rule = t->match(*t->frontend(router::IpAddress::parse(kSvc), 80), request("/r300/7"));
  REQUIRE(rule != nullptr);
  CHECK(rule->id.route_name == "r300");
  CHECK(rule->id.rule_index == 7);
}

TEST_CASE("catastrophic patterns match in linear time") {
  // Exponential for a backtracking engine; RE2 is linear in the input.
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"type":"RegularExpression","value":"/(x+x+)+y"}}])") + "," +
      to("b", R"([{"headers":[{"type":"RegularExpression","name":"h","value":"(a|aa)+$"}]}])") + "]") + "]"));
  std::string path = "/" + std::string(100000, 'x');
  CHECK(backend_of(*t, request(path)) == "404");
  CHECK(backend_of(*t, request(path + "y")) == "a");
  std::string value(100000, 'a');
  CHECK(backend_of(*t, request("/", {{"h", value.c_str()}})) == "b");
  value += "!";
  CHECK(backend_of(*t, request("/", {{"h", value.c_str()}})) == "404");
}

TEST_CASE("frontend lookup, matching and picking allocate nothing") {
  auto t = compile_json(shop("[" + route("r", "[" +
      to("a", R"([{"path":{"type":"Exact","value":"/exact"}}])") + "," +
      to("b", R"([{"path":{"value":"/api/v1"},"headers":[{"name":"x-v","value":"1,2"}],
                   "queryParams":[{"name":"q","value":"a b"}]}])") + "," +
      to("a", R"([{"path":{"type":"RegularExpression","value":"/re/[0-9]+"},
                   "headers":[{"type":"RegularExpression","name":"x-re","value":"v[0-9]+,v[0-9]+"}],
                   "queryParams":[{"type":"RegularExpression","name":"r","value":"x y"}]}])") + "]") + "]"));
  std::vector<http::RequestHead> requests = {
      request("/exact"),
      request("/api/v1/deep/path?q=a+b", {{"x-v", "1"}, {"X-V", "2"}}),
      request("/re/42?r=x%20y", {{"x-re", "v1"}, {"x-re", "v2"}}),
      request("/nothing/here?q=a+b"),
  };
  router::IpAddress ip = router::IpAddress::parse(kSvc);
  const router::Rule* results[4] = {};
  // Warm up once: RE2 builds its DFA lazily, and the scratch buffer grows.
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i] = t->match(*t->frontend(ip, 80), requests[i]);
  }
  start_counting_allocations();
  for (int round = 0; round < 100; ++round) {
    for (size_t i = 0; i < requests.size(); ++i) {
      const router::Frontend* f = t->frontend(ip, 80);
      const router::Rule* r = f ? t->match(*f, requests[i]) : nullptr;
      if (r != results[i]) results[i] = nullptr;
      if (r) router::pick(*r, static_cast<uint64_t>(round) * 0x9E3779B97F4A7C15ull);
    }
  }
  size_t allocations = stop_counting_allocations();
  CHECK(allocations == 0);
  CHECK(results[0] != nullptr);
  CHECK(results[1] != nullptr);
  CHECK(results[2] != nullptr);
  CHECK(results[3] == nullptr);
}
