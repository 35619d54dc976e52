#include "common/routes/route_table.h"

#include <doctest/doctest.h>

#include <string>

using namespace trellis::routes;

namespace {

// A one-service table in namespace "shop" whose service carries `routes`.
std::string table_with_routes(std::string_view routes) {
  return std::string(R"({"version":"v1","namespace":"shop","services":[{"namespace":"shop",)"
                     R"("name":"echo","clusterIPs":["10.96.0.10"],"ports":[{"name":"http",)"
                     R"("port":80,"targetPort":8080},{"name":"grpc","port":7070}],"routes":)") +
         std::string(routes) + R"(}],"endpoints":[]})";
}

std::string http_route(std::string_view rules) {
  return table_with_routes(
      std::string(R"([{"kind":"HTTPRoute","namespace":"shop","name":"r",)"
                  R"("creationTimestamp":"2026-01-02T03:04:05Z","rules":)") +
      std::string(rules) + "}]");
}

std::string grpc_route(std::string_view rules) {
  return table_with_routes(
      std::string(R"([{"kind":"GRPCRoute","namespace":"shop","name":"g",)"
                  R"("creationTimestamp":"2026-01-02T03:04:05Z","rules":)") +
      std::string(rules) + "}]");
}

std::shared_ptr<const RouteTable> parse_ok(std::string_view text, const Limits& limits = Limits{}) {
  auto t = parse(text, limits);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? std::string() : t.error().message));
  return *t;
}

std::string parse_error(std::string_view text, const Limits& limits = Limits{}) {
  auto t = parse(text, limits);
  REQUIRE_FALSE(t.ok());
  return t.error().message;
}

// The error for a table whose single HTTPRoute has `rules`.
std::string rule_error(std::string_view rules) { return parse_error(http_route(rules)); }
std::string grpc_rule_error(std::string_view rules) { return parse_error(grpc_route(rules)); }

const HTTPRouteRule& first_rule(const RouteTable& t) { return t.services.at(0).routes.at(0).http_rules.at(0); }

constexpr char kRule[] = "services[0].routes[0].rules[0]";

std::string at(std::string_view suffix) { return std::string(kRule) + std::string(suffix); }

}  // namespace

TEST_CASE("a minimal table parses and the API defaults are filled in") {
  auto t = parse_ok(http_route(R"([
    {"backendRefs": [{"name": "echo-v1", "port": 8080}]},
    {"matches": [{"headers": [{"name": "version", "value": "one"}]}],
     "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "example.org"}}]}
  ])"));
  CHECK(t->version == "v1");
  CHECK(t->ns == "shop");
  const Service& s = t->services.at(0);
  CHECK(s.ports.at(0).target_port == 8080);
  CHECK(s.ports.at(1).target_port == 7070);  // targetPort defaults to port
  CHECK_FALSE(s.ports.at(1).app_protocol.has_value());
  const Route& r = s.routes.at(0);
  CHECK(r.kind == RouteKind::http_route);
  CHECK_FALSE(r.port.has_value());
  CHECK(r.creation_time_ns == 1767323045LL * 1000000000LL);

  // No matches -> one PathPrefix "/" match.
  const HTTPRouteRule& r0 = r.http_rules.at(0);
  REQUIRE(r0.matches.size() == 1);
  CHECK(r0.matches[0].path.type == PathMatchType::path_prefix);
  CHECK(r0.matches[0].path.value == "/");
  // backendRef defaults: group "", kind Service, the route's namespace, weight 1.
  const HTTPBackendRef& b = r0.backend_refs.at(0);
  CHECK(b.ref.group.empty());
  CHECK(b.ref.kind == "Service");
  CHECK(b.ref.ns == "shop");
  CHECK(b.weight == 1);

  // A match without path -> PathPrefix "/"; header match type Exact; redirect 302.
  const HTTPRouteRule& r1 = r.http_rules.at(1);
  CHECK(r1.matches.at(0).path.type == PathMatchType::path_prefix);
  CHECK(r1.matches.at(0).path.value == "/");
  CHECK(r1.matches.at(0).headers.at(0).type == MatchType::exact);
  CHECK(r1.filters.at(0).request_redirect->status_code == 302);
}

TEST_CASE("an HTTPRoute without rules gets the CRD's default rule") {
  auto t = parse_ok(table_with_routes(
      R"([{"kind":"HTTPRoute","namespace":"shop","name":"r","creationTimestamp":"2026-01-02T03:04:05Z"}])"));
  const Route& r = t->services[0].routes[0];
  REQUIRE(r.http_rules.size() == 1);
  CHECK(r.http_rules[0].matches.size() == 1);
  CHECK(r.http_rules[0].backend_refs.empty());
  CHECK(rule_error("[]") == "services[0].routes[0].rules: must have at least 1 item");
}

TEST_CASE("a GRPCRoute may have no rules and rules without matches") {
  auto t = parse_ok(grpc_route(R"([{"backendRefs": [{"name": "echo-v1", "port": 7070}]}])"));
  const Route& r = t->services[0].routes[0];
  CHECK(r.kind == RouteKind::grpc_route);
  CHECK(r.grpc_rules.at(0).matches.empty());
  auto empty = parse_ok(grpc_route("[]"));
  CHECK(empty->services[0].routes[0].grpc_rules.empty());
}

TEST_CASE("more defaults: mirror fraction, CORS maxAge, endpoint readiness, backendRef namespace") {
  auto t = parse_ok(std::string(R"({"version":"v9","namespace":"client","services":[{"namespace":"shop",)"
                                R"("name":"echo","clusterIPs":["10.96.0.10","fd00::10"],"ports":[{"port":80}],)"
                                R"("routes":[{"kind":"HTTPRoute","namespace":"client","name":"consumer",)"
                                R"("creationTimestamp":"2026-01-02T03:04:05.5+01:00","port":80,"rules":[{)"
                                R"("filters":[{"type":"RequestMirror","requestMirror":{"backendRef":)"
                                R"({"name":"shadow","port":80},"fraction":{"numerator":1}}},)"
                                R"({"type":"CORS","cors":{"allowOrigins":["*"]}}],)"
                                R"("backendRefs":[{"name":"echo","namespace":"shop","port":80}]}]}]}],)"
                                R"("endpoints":[{"namespace":"shop","service":"echo","port":80,"addresses":)"
                                R"([{"ip":"10.244.0.5","port":8080},{"ip":"10.244.0.6","port":8080,"ready":false,)"
                                R"("serving":true,"terminating":true,"pod":"echo-1","identity":)"
                                R"("spiffe://cluster.local/ns/shop/sa/default"}]}]})"));
  const Route& r = t->services[0].routes[0];
  CHECK(*r.port == 80);
  // 03:04:05.5 at +01:00 is 02:04:05.5Z.
  CHECK(r.creation_time_ns == (1767319445LL * 1000000000LL + 500000000LL));
  const HTTPRouteRule& rule = r.http_rules[0];
  CHECK(rule.filters[0].request_mirror->backend_ref.ns == "client");
  CHECK(rule.filters[0].request_mirror->fraction->denominator == 100);
  CHECK(rule.filters[1].cors->max_age == 5);
  CHECK(rule.backend_refs[0].ref.ns == "shop");
  const Endpoints& e = t->endpoints.at(0);
  CHECK(e.addresses[0].ready);
  CHECK_FALSE(e.addresses[0].identity.has_value());
  CHECK_FALSE(e.addresses[1].ready);
  CHECK(*e.addresses[1].terminating);
  CHECK(*e.addresses[1].identity == "spiffe://cluster.local/ns/shop/sa/default");
}

TEST_CASE("serialize is compact and parse(serialize(t)) == t for every field") {
  std::string rich = table_with_routes(R"([
    {"kind":"HTTPRoute","namespace":"shop","name":"everything","creationTimestamp":"2026-01-02T03:04:05Z",
     "port":80,"rules":[
      {"name":"first","matches":[
         {"path":{"type":"Exact","value":"/a"},"method":"POST",
          "headers":[{"name":"x-a","value":"1"},{"type":"RegularExpression","name":"x-b","value":"v[0-9]+"}],
          "queryParams":[{"name":"q","value":"1"},{"type":"RegularExpression","name":"r","value":".*"}]},
         {"path":{"type":"RegularExpression","value":"/api/v[0-9]+/.*"}}],
       "filters":[
         {"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"a","value":"1"}],
          "add":[{"name":"b","value":"2"}],"remove":["c"]}},
         {"type":"ResponseHeaderModifier","responseHeaderModifier":{"set":[{"name":"d","value":"4"}]}},
         {"type":"URLRewrite","urlRewrite":{"hostname":"example.org","path":{"type":"ReplaceFullPath","replaceFullPath":"/x"}}},
         {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"shadow","port":80},"percent":10}},
         {"type":"CORS","cors":{"allowOrigins":["https://*.example.org"],"allowMethods":["GET","POST"],
          "allowHeaders":["x-h"],"exposeHeaders":["x-e"],"allowCredentials":true,"maxAge":3600}},
         {"type":"ExtensionRef","extensionRef":{"group":"example.org","kind":"Auth","name":"a"}}],
       "backendRefs":[{"name":"echo-v1","port":8080,"weight":70,"filters":[
         {"type":"RequestHeaderModifier","requestHeaderModifier":{"add":[{"name":"x","value":"y"}]}}]},
         {"group":"example.org","kind":"Other","name":"o","weight":0}],
       "timeouts":{"request":"10s","backendRequest":"2s500ms"},
       "retry":{"codes":[500,503],"attempts":2,"backoff":"100ms"}},
      {"matches":[{"path":{"type":"PathPrefix","value":"/old"}}],
       "filters":[{"type":"RequestRedirect","requestRedirect":{"scheme":"https","hostname":"example.org",
         "path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/new"},"port":8443,"statusCode":301}}]}]},
    {"kind":"GRPCRoute","namespace":"shop","name":"g","creationTimestamp":"2026-01-02T03:04:05Z","port":7070,
     "rules":[{"name":"rpc","matches":[{"method":{"service":"pkg.Svc","method":"Get"},
       "headers":[{"name":"x-test-case","value":"set"}]},
       {"method":{"type":"RegularExpression","service":"pkg\\..*"}}],
       "filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"m","port":7070},
         "fraction":{"numerator":1,"denominator":3}}}],
       "backendRefs":[{"name":"echo-v1","port":7070}]}, {}]}])");
  auto t = parse_ok(rich);
  std::string once = serialize(*t);
  auto again = parse_ok(once);
  CHECK(*again == *t);
  CHECK(serialize(*again) == once);
  CHECK(once.find('\n') == std::string::npos);
  CHECK(once.find(": ") == std::string::npos);
  // Defaults are spelled out.
  CHECK(once.find(R"("kind":"Service","name":"echo-v1","namespace":"shop","port":8080,"weight":70)") !=
        std::string::npos);
  // Durations keep the text as written.
  CHECK(once.find(R"("backendRequest":"2s500ms")") != std::string::npos);

  // A changed field is noticed.
  RouteTable changed = *t;
  changed.services[0].routes[0].http_rules[0].backend_refs[0].weight = 71;
  CHECK_FALSE(changed == *t);
}

TEST_CASE("the version is opaque") {
  std::string text = http_route(R"([{}])");
  std::string weird = text;
  weird.replace(weird.find(R"("v1")"), 4, R"("sha256:0f/é\"x 1")");
  auto t = parse_ok(weird);
  CHECK(t->version == "sha256:0f/\xC3\xA9\"x 1");
  CHECK(parse_ok(serialize(*t))->version == t->version);
  std::string empty = text;
  empty.replace(empty.find(R"("v1")"), 4, R"("")");
  CHECK(parse_error(empty) == "version: must not be empty");
}

TEST_CASE("table-level errors") {
  CHECK(parse_error("[]") == "(root): expected an object, got array");
  CHECK(parse_error("{") == "invalid JSON at offset 1: Missing a name for object member.");
  CHECK(parse_error(R"({"namespace":"shop","services":[],"endpoints":[]})") ==
        "(root): missing required field 'version'");
  CHECK(parse_error(R"({"version":"1","namespace":"Shop","services":[],"endpoints":[]})") ==
        "namespace: invalid value 'Shop' (must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$)");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","endpoints":[]})") ==
        "(root): missing required field 'services'");
  std::string svc = R"({"namespace":"shop","name":"echo","clusterIPs":["10.96.0.10"],"ports":[{"port":80}]})";
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[)" + svc + "," + svc +
                    R"(],"endpoints":[]})") == "services[1]: duplicate service shop/echo");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[)" + svc +
                    R"(,{"namespace":"shop","name":"other","clusterIPs":["10.96.0.010"],"ports":[]}],"endpoints":[]})") ==
        "services[1].clusterIPs[0]: invalid value '10.96.0.010' (must be an IPv4 or IPv6 address)");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[)" + svc +
                    R"(,{"namespace":"shop","name":"other","clusterIPs":["10.96.0.10"],"ports":[]}],"endpoints":[]})") ==
        "services[1].clusterIPs[0]: clusterIP 10.96.0.10 is already used by shop/echo");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[{"namespace":"shop","name":"echo",)"
                    R"("clusterIPs":["fd00::1","FD00:0::1"],"ports":[]}],"endpoints":[]})") ==
        "services[0].clusterIPs[1]: duplicate value 'FD00:0::1'");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[{"namespace":"shop","name":"1echo",)"
                    R"("clusterIPs":[],"ports":[]}],"endpoints":[]})") ==
        "services[0].name: invalid value '1echo' (must match ^[a-z]([-a-z0-9]*[a-z0-9])?$)");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[{"namespace":"shop","name":"echo",)"
                    R"("clusterIPs":[],"ports":[{"port":80},{"port":80}]}],"endpoints":[]})") ==
        "services[0].ports[1].port: duplicate port 80");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[{"namespace":"shop","name":"echo",)"
                    R"("clusterIPs":[],"ports":[{"port":70000}]}],"endpoints":[]})") ==
        "services[0].ports[0].port: expected an integer between 1 and 65535, got 70000");
  std::string ep = R"({"namespace":"shop","service":"echo","port":80,"addresses":[]})";
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[],"endpoints":[)" + ep + "," + ep + "]}") ==
        "endpoints[1]: duplicate endpoints for shop/echo port 80");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[],"endpoints":[{"namespace":"shop",)"
                    R"("service":"echo","port":80,"addresses":[{"ip":"10.0.0.1","port":80,"identity":"x"}]}]})") ==
        "endpoints[0].addresses[0].identity: invalid value 'x' (must be a SPIFFE ID (spiffe://...))");
  CHECK(parse_error(R"({"version":"1","namespace":"shop","services":[],"endpoints":[{"namespace":"shop",)"
                    R"("service":"echo","port":80,"addresses":[{"ip":"10.0.0.1","port":80,"ready":"yes"}]}]})") ==
        "endpoints[0].addresses[0].ready: expected a boolean, got string");
}

TEST_CASE("route-level errors") {
  auto route = [](std::string_view fields) {
    return parse_error(table_with_routes("[{" + std::string(fields) + "}]"));
  };
  CHECK(route(R"("kind":"TCPRoute","namespace":"shop","name":"r","creationTimestamp":"2026-01-02T03:04:05Z")") ==
        "services[0].routes[0].kind: unknown value 'TCPRoute' (want HTTPRoute or GRPCRoute)");
  CHECK(route(R"("kind":"HTTPRoute","namespace":"shop","name":"r")") ==
        "services[0].routes[0]: missing required field 'creationTimestamp'");
  CHECK(route(R"("kind":"HTTPRoute","namespace":"shop","name":"r","creationTimestamp":"2026-02-30T00:00:00Z")") ==
        "services[0].routes[0].creationTimestamp: invalid RFC 3339 timestamp '2026-02-30T00:00:00Z'");
  CHECK(route(R"("kind":"HTTPRoute","namespace":"shop","name":"r","creationTimestamp":"yesterday")") ==
        "services[0].routes[0].creationTimestamp: invalid RFC 3339 timestamp 'yesterday'");
  CHECK(route(R"("kind":"HTTPRoute","namespace":"shop","name":"R","creationTimestamp":"2026-01-02T03:04:05Z")") ==
        "services[0].routes[0].name: invalid value 'R' (must match "
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)");
  CHECK(route(R"("kind":"HTTPRoute","namespace":"shop","name":"r","creationTimestamp":"2026-01-02T03:04:05Z","port":9999)") ==
        "services[0].routes[0].port: 9999 is not a port of service shop/echo");
  std::string rules17 = "[";
  for (int i = 0; i < 17; ++i) rules17 += std::string(i ? "," : "") + "{}";
  rules17 += "]";
  CHECK(rule_error(rules17) == "services[0].routes[0].rules: too many items: 17 (at most 16)");
  // At most 128 matches over all rules of a route (3 x 43 = 129).
  std::string matches43 = "[";
  for (int i = 0; i < 43; ++i) matches43 += std::string(i ? "," : "") + "{}";
  matches43 += "]";
  std::string rule = R"({"matches":)" + matches43 + "}";
  CHECK(rule_error("[" + rule + "," + rule + "," + rule + "]") ==
        "services[0].routes[0].rules: While 16 rules and 64 matches per rule are allowed, the total "
        "number of matches across all rules in a route must be less than 128");
  CHECK(rule_error(R"([{"name":"a"},{"name":"b"},{"name":"a"}])") ==
        "services[0].routes[0].rules: Rule name must be unique within the route");
  CHECK(rule_error(R"([{"name":"Not_Valid"}])") ==
        at(".name: invalid value 'Not_Valid' (must match "
           "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)"));
}

TEST_CASE("match validation: enums, limits and the path CEL rules") {
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"Foo","value":"/"}}]}])") ==
        at(".matches[0].path.type: unknown value 'Foo' (want Exact, PathPrefix or RegularExpression)"));
  CHECK(rule_error(R"([{"matches":[{"method":"FETCH"}]}])") ==
        at(".matches[0].method: unknown value 'FETCH' (want GET, HEAD, POST, PUT, DELETE, CONNECT, "
           "OPTIONS, TRACE or PATCH)"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"name":"a","value":"1","type":"Prefix"}]}]}])") ==
        at(".matches[0].headers[0].type: unknown value 'Prefix' (want Exact or RegularExpression)"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"name":"a b","value":"1"}]}]}])") ==
        at(".matches[0].headers[0].name: invalid value 'a b' (must match "
           "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$)"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"name":"a","value":"1"},{"name":"a","value":"2"}]}]}])") ==
        at(".matches[0].headers[1].name: duplicate value 'a'"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"name":"a","value":"x\r\ny: z"}]}]}])") ==
        at(".matches[0].headers[0].value: invalid value 'x\r\ny: z' (must not contain control characters)"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"name":"a"}]}]}])") ==
        at(".matches[0].headers[0]: missing required field 'value'"));
  CHECK(rule_error(R"([{"matches":[{"queryParams":[{"name":"q","value":""}]}]}])") ==
        at(".matches[0].queryParams[0].value: must not be empty"));
  std::string headers17 = "[";
  for (int i = 0; i < 17; ++i) {
    headers17 += std::string(i ? "," : "") + R"({"name":"h)" + std::to_string(i) + R"(","value":"v"})";
  }
  headers17 += "]";
  CHECK(rule_error(R"([{"matches":[{"headers":)" + headers17 + "}]}]") ==
        at(".matches[0].headers: too many items: 17 (at most 16)"));
  std::string matches65 = "[";
  for (int i = 0; i < 65; ++i) matches65 += std::string(i ? "," : "") + "{}";
  matches65 += "]";
  CHECK(rule_error(R"([{"matches":)" + matches65 + "}]") ==
        at(".matches: too many items: 65 (at most 64)"));

  auto path_error = [](std::string_view type, std::string_view value) {
    return rule_error(R"([{"matches":[{"path":{"type":")" + std::string(type) + R"(","value":")" +
                      std::string(value) + R"("}}]}])");
  };
  const std::string types = " when type one of ['Exact', 'PathPrefix']";
  CHECK(path_error("Exact", "v2") ==
        at(".matches[0].path: value must be an absolute path and start with '/'" + types));
  CHECK(path_error("PathPrefix", "/a//b") == at(".matches[0].path: must not contain '//'" + types));
  CHECK(path_error("PathPrefix", "/a/./b") == at(".matches[0].path: must not contain '/./'" + types));
  CHECK(path_error("PathPrefix", "/a/../b") == at(".matches[0].path: must not contain '/../'" + types));
  CHECK(path_error("PathPrefix", "/a%2fb") == at(".matches[0].path: must not contain '%2f'" + types));
  CHECK(path_error("PathPrefix", "/a%2Fb") == at(".matches[0].path: must not contain '%2F'" + types));
  CHECK(path_error("Exact", "/a#b") == at(".matches[0].path: must not contain '#'" + types));
  CHECK(path_error("Exact", "/a/..") == at(".matches[0].path: must not end with '/..'" + types));
  CHECK(path_error("Exact", "/a/.") == at(".matches[0].path: must not end with '/.'" + types));
  CHECK(path_error("Exact", "/a b") ==
        at(".matches[0].path: must only contain valid characters (matching "
           "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']"));
  CHECK(path_error("Exact", "/a%zz") ==
        at(".matches[0].path: must only contain valid characters (matching "
           "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']"));
  // Percent-encoded octets and sub-delims are fine; regular expressions are not path-checked.
  parse_ok(http_route(R"([{"matches":[{"path":{"type":"Exact","value":"/a%20b;c=d@e"}}]}])"));
  parse_ok(http_route(R"([{"matches":[{"path":{"type":"RegularExpression","value":"/a//b#?"}}]}])"));
}

TEST_CASE("regular expressions are compiled with RE2 and hostile ones rejected") {
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":"/(a"}}]}])") ==
        at(".matches[0].path.value: invalid regular expression: missing ): /(a"));
  CHECK(rule_error(R"([{"matches":[{"headers":[{"type":"RegularExpression","name":"a","value":"*"}]}]}])") ==
        at(".matches[0].headers[0].value: invalid regular expression: no argument for repetition "
           "operator: *"));
  // Backreferences and lookarounds (PCRE features that can take exponential time) do not exist in RE2.
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":"(a)\\1"}}]}])") ==
        at(".matches[0].path.value: invalid regular expression: invalid escape sequence: \\1"));
  CHECK(rule_error(R"~([{"matches":[{"path":{"type":"RegularExpression","value":"(?=a)"}}]}])~") ==
        at(".matches[0].path.value: invalid regular expression: invalid perl operator: (?="));
  // Counted repetition multiplies the program: RE2 refuses deep nesting, the
  // program-size limit the rest.
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":"((a{20}){20}){20}"}}]}])") ==
        at(".matches[0].path.value: invalid regular expression: invalid repetition size: {20}"));
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":".{1000}"}}]}])") ==
        at(".matches[0].path.value: regular expression too complex: program size 8004 exceeds the limit of 1000"));
  CHECK(rule_error(R"([{"matches":[{"path":{"type":"RegularExpression","value":"(a{100}){10}"}}]}])") ==
        at(".matches[0].path.value: regular expression too complex: program size 1024 exceeds the limit of 1000"));
  Limits generous;
  generous.max_regex_program_size = 10000;
  auto t = parse_ok(http_route(R"([{"matches":[{"path":{"type":"RegularExpression","value":".{1000}"}}]}])"),
                    generous);
  CHECK(static_cast<bool>(first_rule(*t).matches[0].path.regex));
  CHECK(grpc_rule_error(R"([{"matches":[{"method":{"type":"RegularExpression","service":"(x"}}]}])") ==
        "services[0].routes[0].rules[0].matches[0].method.service: invalid regular expression: missing ): (x");
}

TEST_CASE("filter validation: types, payloads and the list CEL rules") {
  CHECK(rule_error(R"([{"filters":[{"type":"ExternalAuth"}]}])") ==
        at(".filters[0].type: unknown value 'ExternalAuth' (want RequestHeaderModifier, "
           "ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite, ExtensionRef or CORS)"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect"}]}])") ==
        at(".filters[0]: filter.requestRedirect must be specified for RequestRedirect filter.type"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{},"urlRewrite":{}}]}])") ==
        at(".filters[0]: filter.urlRewrite must be nil if the filter.type is not URLRewrite"));
  CHECK(rule_error(R"([{"filters":[{"type":"CORS","cors":{},"requestHeaderModifier":{}}]}])") ==
        at(".filters[0]: filter.requestHeaderModifier must be nil if the filter.type is not RequestHeaderModifier"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{}},
                                   {"type":"URLRewrite","urlRewrite":{}}]}])") ==
        at(".filters: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{}},
                                   {"type":"RequestHeaderModifier","requestHeaderModifier":{}}]}])") ==
        at(".filters: RequestHeaderModifier filter cannot be repeated"));
  CHECK(rule_error(R"([{"filters":[{"type":"ResponseHeaderModifier","responseHeaderModifier":{}},
                                   {"type":"ResponseHeaderModifier","responseHeaderModifier":{}}]}])") ==
        at(".filters: ResponseHeaderModifier filter cannot be repeated"));
  CHECK(rule_error(R"([{"filters":[{"type":"CORS","cors":{}},{"type":"CORS","cors":{}}]}])") ==
        at(".filters: CORS filter cannot be repeated"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{}},{"type":"URLRewrite","urlRewrite":{}}]}])") ==
        at(".filters: URLRewrite filter cannot be repeated"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{}},
                                   {"type":"RequestRedirect","requestRedirect":{}}]}])") ==
        at(".filters: RequestRedirect filter cannot be repeated"));
  // Mirrors and extension refs may repeat.
  parse_ok(http_route(R"([{"filters":[
      {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80}}},
      {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"b","port":80}}},
      {"type":"ExtensionRef","extensionRef":{"group":"","kind":"K","name":"x"}},
      {"type":"ExtensionRef","extensionRef":{"group":"","kind":"K","name":"y"}}]}])"));
  std::string filters17 = "[";
  for (int i = 0; i < 17; ++i) {
    filters17 += std::string(i ? "," : "") +
                 R"({"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80}}})";
  }
  filters17 += "]";
  CHECK(rule_error(R"([{"filters":)" + filters17 + "}]") == at(".filters: too many items: 17 (at most 16)"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":
                                   {"set":[{"name":"a","value":"1"},{"name":"a","value":"2"}]}}]}])") ==
        at(".filters[0].requestHeaderModifier.set[1].name: duplicate value 'a'"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"remove":["a","a"]}}]}])") ==
        at(".filters[0].requestHeaderModifier.remove[1]: duplicate value 'a'"));
  CHECK(rule_error(R"([{"filters":[{"type":"ResponseHeaderModifier","responseHeaderModifier":
                                   {"add":[{"name":"a","value":"line\nbreak"}]}}]}])") ==
        at(".filters[0].responseHeaderModifier.add[0].value: invalid value 'line\nbreak' (must not "
           "contain control characters)"));
  CHECK(rule_error(R"([{"filters":[{"type":"ExtensionRef","extensionRef":{"kind":"K","name":"x"}}]}])") ==
        at(".filters[0].extensionRef: missing required field 'group'"));
}

TEST_CASE("redirect, rewrite and mirror validation") {
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{"scheme":"ftp"}}]}])") ==
        at(".filters[0].requestRedirect.scheme: unknown value 'ftp' (want http or https)"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{"statusCode":304}}]}])") ==
        at(".filters[0].requestRedirect.statusCode: unknown value 304 (want 301, 302, 303, 307 or 308)"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{"port":0}}]}])") ==
        at(".filters[0].requestRedirect.port: expected an integer between 1 and 65535, got 0"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{"hostname":"Example.org"}}]}])") ==
        at(".filters[0].requestRedirect.hostname: invalid value 'Example.org' (must match "
           "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplaceAll"}}}]}])") ==
        at(".filters[0].urlRewrite.path.type: unknown value 'ReplaceAll' (want ReplaceFullPath or ReplacePrefixMatch)"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplaceFullPath"}}}]}])") ==
        at(".filters[0].urlRewrite.path: replaceFullPath must be specified when type is set to 'ReplaceFullPath'"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch",
                     "replaceFullPath":"/x"}}}]}])") ==
        at(".filters[0].urlRewrite.path: type must be 'ReplaceFullPath' when replaceFullPath is set"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch"}}}]}])") ==
        at(".filters[0].urlRewrite.path: replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplaceFullPath",
                     "replaceFullPath":"/x","replacePrefixMatch":"/y"}}}]}])") ==
        at(".filters[0].urlRewrite.path: type must be 'ReplacePrefixMatch' when replacePrefixMatch is set"));
  CHECK(rule_error(R"([{"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplaceFullPath",
                     "replaceFullPath":"/x\r\nSet-Cookie: a"}}}]}])") ==
        at(".filters[0].urlRewrite.path.replaceFullPath: invalid value '/x\r\nSet-Cookie: a' (must not "
           "contain spaces or control characters)"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80},
                     "percent":10,"fraction":{"numerator":1}}}]}])") ==
        at(".filters[0].requestMirror: Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80},
                     "percent":101}}]}])") ==
        at(".filters[0].requestMirror.percent: expected an integer between 0 and 100, got 101"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80},
                     "fraction":{"numerator":5,"denominator":4}}}]}])") ==
        at(".filters[0].requestMirror.fraction: numerator must be less than or equal to denominator"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a","port":80},
                     "fraction":{"numerator":0,"denominator":0}}}]}])") ==
        at(".filters[0].requestMirror.fraction.denominator: expected an integer between 1 and 2147483647, got 0"));
  CHECK(rule_error(R"([{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"a"}}}]}])") ==
        at(".filters[0].requestMirror.backendRef: Must have port for Service reference"));
}

TEST_CASE("CORS validation") {
  auto cors = [](std::string_view body) {
    return rule_error(R"([{"filters":[{"type":"CORS","cors":)" + std::string(body) + "}]}]");
  };
  CHECK(cors(R"({"allowOrigins":["*","https://a.example"]})") ==
        at(".filters[0].cors.allowOrigins: AllowOrigins cannot contain '*' alongside other origins"));
  CHECK(cors(R"({"allowMethods":["GET","*"]})") ==
        at(".filters[0].cors.allowMethods: AllowMethods cannot contain '*' alongside other methods"));
  CHECK(cors(R"({"allowHeaders":["*","x"]})") ==
        at(".filters[0].cors.allowHeaders: AllowHeaders cannot contain '*' alongside other methods"));
  CHECK(cors(R"({"allowMethods":["get"]})") ==
        at(".filters[0].cors.allowMethods[0]: unknown value 'get' (want GET, HEAD, POST, PUT, DELETE, "
           "CONNECT, OPTIONS, TRACE, PATCH or *)"));
  CHECK(cors(R"({"allowOrigins":["ftp://a.example"]})") ==
        at(".filters[0].cors.allowOrigins[0]: invalid value 'ftp://a.example' (must be '*' or "
           "http(s)://host[:port], the host optionally '*.'-prefixed)"));
  CHECK(cors(R"({"allowOrigins":["https://a.example:123456"]})") ==
        at(".filters[0].cors.allowOrigins[0]: invalid value 'https://a.example:123456' (must be '*' or "
           "http(s)://host[:port], the host optionally '*.'-prefixed)"));
  CHECK(cors(R"({"allowOrigins":["https://a.example","https://a.example"]})") ==
        at(".filters[0].cors.allowOrigins[1]: duplicate value 'https://a.example'"));
  CHECK(cors(R"({"maxAge":0})") == at(".filters[0].cors.maxAge: expected an integer between 1 and 2147483647, got 0"));
  parse_ok(http_route(R"([{"filters":[{"type":"CORS","cors":{"allowOrigins":["http://*","https://*.b.example:8443",
      "http://10.0.0.1:80"],"allowHeaders":["*"],"allowMethods":["*"],"exposeHeaders":["*"]}}]}])"));
}

TEST_CASE("rule-level CEL rules") {
  CHECK(rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{}}],
                       "backendRefs":[{"name":"a","port":80}]}])") ==
        at(": RequestRedirect filter must not be used together with backendRefs"));
  const char* redirect_prefix =
      R"({"type":"RequestRedirect","requestRedirect":{"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/x"}}})";
  const char* rewrite_prefix =
      R"({"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/x"}}})";
  CHECK(rule_error(std::string(R"([{"matches":[{"path":{"value":"/a"}},{"path":{"value":"/b"}}],"filters":[)") +
                   redirect_prefix + "]}]") ==
        at(": When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match "
           "must be specified"));
  CHECK(rule_error(std::string(R"([{"matches":[{"path":{"type":"Exact","value":"/a"}}],"filters":[)") +
                   rewrite_prefix + "]}]") ==
        at(": When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must "
           "be specified"));
  CHECK(rule_error(std::string(R"([{"matches":[],"filters":[)") + rewrite_prefix + "]}]") ==
        at(": When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must "
           "be specified"));
  CHECK(rule_error(std::string(R"([{"matches":[{"path":{"type":"Exact","value":"/a"}}],)"
                               R"("backendRefs":[{"name":"a","port":80,"filters":[)") +
                   redirect_prefix + "]}]}]") ==
        at(": Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly "
           "one PathPrefix match must be specified"));
  CHECK(rule_error(std::string(R"([{"matches":[{"path":{"type":"RegularExpression","value":"/a"}}],)"
                               R"("backendRefs":[{"name":"a","port":80,"filters":[)") +
                   rewrite_prefix + "]}]}]") ==
        at(": Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one "
           "PathPrefix match must be specified"));
  // Absent matches default to one PathPrefix match, which satisfies the rule.
  parse_ok(http_route(std::string(R"([{"filters":[)") + rewrite_prefix + "]}]"));
}

TEST_CASE("backendRef, timeout and retry validation") {
  CHECK(rule_error(R"([{"backendRefs":[{"name":"a"}]}])") ==
        at(".backendRefs[0]: Must have port for Service reference"));
  parse_ok(http_route(R"([{"backendRefs":[{"group":"example.org","kind":"Thing","name":"a"}]}])"));
  CHECK(rule_error(R"([{"backendRefs":[{"name":"a","port":80,"weight":1000001}]}])") ==
        at(".backendRefs[0].weight: expected an integer between 0 and 1000000, got 1000001"));
  CHECK(rule_error(R"([{"backendRefs":[{"name":"a","port":80,"weight":-1}]}])") ==
        at(".backendRefs[0].weight: expected an integer between 0 and 1000000, got -1"));
  CHECK(rule_error(R"([{"backendRefs":[{"name":"a","port":80,"kind":"bad kind"}]}])") ==
        at(".backendRefs[0].kind: invalid value 'bad kind' (must match ^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$)"));
  CHECK(rule_error(R"([{"backendRefs":[{"name":"","port":80}]}])") ==
        at(".backendRefs[0].name: must not be empty"));
  std::string refs17 = "[";
  for (int i = 0; i < 17; ++i) refs17 += std::string(i ? "," : "") + R"({"name":"a","port":80})";
  refs17 += "]";
  CHECK(rule_error(R"([{"backendRefs":)" + refs17 + "}]") == at(".backendRefs: too many items: 17 (at most 16)"));

  CHECK(rule_error(R"([{"timeouts":{"request":"1s","backendRequest":"2s"}}])") ==
        at(".timeouts: backendRequest timeout cannot be longer than request timeout"));
  auto t = parse_ok(http_route(R"([{"timeouts":{"request":"0s","backendRequest":"2s"}}])"));
  CHECK(first_rule(*t).timeouts->request->value.count() == 0);
  CHECK(first_rule(*t).timeouts->backend_request->value.count() == 2000);
  CHECK(rule_error(R"([{"timeouts":{"request":"1d"}}])") ==
        at(".timeouts.request: invalid duration '1d': unknown unit 'd' (want h, m, s or ms)"));
  CHECK(rule_error(R"([{"timeouts":{"request":10}}])") == at(".timeouts.request: expected a string, got number"));

  CHECK(rule_error(R"([{"retry":{"codes":[500,600]}}])") ==
        at(".retry.codes[1]: expected an integer between 400 and 599, got 600"));
  CHECK(rule_error(R"([{"retry":{"codes":[399]}}])") ==
        at(".retry.codes[0]: expected an integer between 400 and 599, got 399"));
  CHECK(rule_error(R"([{"retry":{"codes":[503,503]}}])") == at(".retry.codes[1]: duplicate value '503'"));
  CHECK(rule_error(R"([{"retry":{"attempts":0}}])") ==
        at(".retry.attempts: expected an integer between 1 and 2147483647, got 0"));
  CHECK(rule_error(R"([{"retry":{"backoff":"1.5s"}}])") ==
        at(".retry.backoff: invalid duration '1.5s': fractional values are not allowed"));
}

TEST_CASE("GRPCRoute validation") {
  CHECK(grpc_rule_error(R"([{"filters":[{"type":"RequestRedirect","requestRedirect":{}}]}])") ==
        "services[0].routes[0].rules[0].filters[0].type: unknown value 'RequestRedirect' (want "
        "ResponseHeaderModifier, RequestHeaderModifier, RequestMirror or ExtensionRef)");
  CHECK(grpc_rule_error(R"([{"matches":[{"method":{"type":"Exact"}}]}])") ==
        "services[0].routes[0].rules[0].matches[0].method: One or both of 'service' or 'method' must be specified");
  CHECK(grpc_rule_error(R"([{"matches":[{"method":{"service":"pkg/Svc"}}]}])") ==
        "services[0].routes[0].rules[0].matches[0].method: service must only contain valid characters "
        "(matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)");
  CHECK(grpc_rule_error(R"([{"matches":[{"method":{"method":"Get.All"}}]}])") ==
        "services[0].routes[0].rules[0].matches[0].method: method must only contain valid characters "
        "(matching ^[A-Za-z_][A-Za-z_0-9]*$)");
  CHECK(grpc_rule_error(R"([{"matches":[{"method":{"type":"Prefix","method":"Get"}}]}])") ==
        "services[0].routes[0].rules[0].matches[0].method.type: unknown value 'Prefix' (want Exact or "
        "RegularExpression)");
  CHECK(grpc_rule_error(R"([{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{}},
                                        {"type":"RequestHeaderModifier","requestHeaderModifier":{}}]}])") ==
        "services[0].routes[0].rules[0].filters: RequestHeaderModifier filter cannot be repeated");
  parse_ok(grpc_route(R"([{"matches":[{"method":{"service":".pkg.v1.Svc_2","method":"_Get2"}}]}])"));
  parse_ok(grpc_route(R"([{"matches":[{"method":{"type":"RegularExpression","service":"pkg\\..*","method":"Get.*"}}]}])"));
}

TEST_CASE("limits bound the table: a 10k-rule table parses, a bigger one is rejected") {
  // 625 routes x 16 rules = 10 000 rules, each with an exact path match.
  std::string routes = "[";
  for (int r = 0; r < 625; ++r) {
    routes += std::string(r ? "," : "") + R"({"kind":"HTTPRoute","namespace":"shop","name":"r)" +
              std::to_string(r) + R"(","creationTimestamp":"2026-01-02T03:04:05Z","rules":[)";
    for (int i = 0; i < 16; ++i) {
      routes += std::string(i ? "," : "") + R"({"matches":[{"path":{"type":"Exact","value":"/r)" +
                std::to_string(r) + "/" + std::to_string(i) +
                R"("}}],"backendRefs":[{"name":"echo-v1","port":8080}]})";
    }
    routes += "]}";
  }
  routes += "]";
  std::string text = table_with_routes(routes);
  auto t = parse_ok(text);
  size_t rules = 0;
  for (const Route& r : t->services[0].routes) rules += r.http_rules.size();
  CHECK(rules == 10000);

  Limits tight;
  tight.max_rules = 9999;
  CHECK(parse_error(text, tight) ==
        "services[0].routes[624].rules: route table limit exceeded: more than 9999 rules");
  tight = Limits{};
  tight.max_routes = 100;
  CHECK(parse_error(text, tight) == "services[0].routes: route table limit exceeded: more than 100 routes");
  tight = Limits{};
  tight.max_matches = 5000;
  CHECK(parse_error(text, tight) ==
        "services[0].routes[312].rules[8]: route table limit exceeded: more than 5000 matches");
  tight = Limits{};
  tight.max_bytes = 1000;
  CHECK(parse_error(text, tight) ==
        "JSON document of " + std::to_string(text.size()) + " bytes exceeds the limit of 1000 bytes");
}

TEST_CASE("a namespace table of 10 000 services and 50 000 endpoints fits the default limits") {
  std::string text = R"({"version":"big","namespace":"shop","services":[)";
  for (int i = 0; i < 10000; ++i) {
    text += std::string(i ? "," : "") + R"({"namespace":"ns)" + std::to_string(i % 100) + R"(","name":"svc)" +
            std::to_string(i) + R"(","clusterIPs":["10.)" + std::to_string(96 + i / 65536) + "." +
            std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) +
            R"("],"ports":[{"name":"http","port":80,"targetPort":8080}]})";
  }
  text += R"(],"endpoints":[)";
  for (int i = 0; i < 10000; ++i) {
    text += std::string(i ? "," : "") + R"({"namespace":"ns)" + std::to_string(i % 100) + R"(","service":"svc)" +
            std::to_string(i) + R"(","port":80,"addresses":[)";
    for (int k = 0; k < 5; ++k) {
      int n = i * 5 + k;
      text += std::string(k ? "," : "") + R"({"ip":"10.)" + std::to_string(128 + n / 65536) + "." +
              std::to_string(n / 256 % 256) + "." + std::to_string(n % 256) +
              R"(","port":8080,"ready":true,"pod":"svc-)" + std::to_string(i) + "-" + std::to_string(k) +
              R"(","identity":"spiffe://cluster.local/ns/ns)" + std::to_string(i % 100) + R"(/sa/default"})";
    }
    text += "]}";
  }
  text += "]}";
  auto t = parse_ok(text);
  CHECK(t->services.size() == 10000);
  size_t addresses = 0;
  for (const Endpoints& e : t->endpoints) addresses += e.addresses.size();
  CHECK(addresses == 50000);

  Limits tight;
  tight.max_endpoints = 49999;
  CHECK(parse_error(text, tight) ==
        "endpoints[9999].addresses: route table limit exceeded: more than 49999 endpoint addresses");
  tight = Limits{};
  tight.max_services = 9999;
  CHECK(parse_error(text, tight) == "services: route table limit exceeded: 10000 services, more than 9999");
}

TEST_CASE("deep JSON nesting in an unknown field is rejected by the depth limit") {
  std::string deep = std::string(40, '[') + std::string(40, ']');
  std::string text = http_route(R"([{"extra":)" + deep + "}]");
  CHECK(parse_error(text) == "invalid JSON at offset " + std::to_string(text.find('[', text.find("extra")) + 25) +
                                 ": nesting deeper than 32 levels");
}
