#include "tests/unit/mesh-controller/resolve/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::resolve;
using namespace trellis::controller::resolve::test;

namespace {

std::string service(std::string_view ns, std::string_view name, std::string_view spec) {
  return R"({"kind":"Service","metadata":{"name":")" + std::string(name) + R"(","namespace":")" +
         std::string(ns) + R"("},"spec":)" + std::string(spec) + "}";
}

// A ClusterIP Service with ports http 80 -> 8080 and grpc 7070.
std::string cluster_ip_service(std::string_view ns, std::string_view name, std::string_view ip) {
  return service(ns, name,
                 R"({"type":"ClusterIP","clusterIP":")" + std::string(ip) + R"(","clusterIPs":[")" +
                     std::string(ip) +
                     R"("],"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},)"
                     R"({"name":"grpc","port":7070,"targetPort":7070,"protocol":"TCP"}]})");
}

std::string slice(std::string_view ns, std::string_view name, std::string_view service_name,
                  std::string_view endpoints, std::string_view ports) {
  return R"({"kind":"EndpointSlice","metadata":{"name":")" + std::string(name) +
         R"(","namespace":")" + std::string(ns) +
         R"(","labels":{"kubernetes.io/service-name":")" + std::string(service_name) +
         R"("}},"addressType":"IPv4","endpoints":)" + std::string(endpoints) +
         R"(,"ports":)" + std::string(ports) + "}";
}

std::string endpoint(std::string_view ip, std::string_view pod_ns, std::string_view pod,
                     std::string_view conditions = R"({"ready":true})") {
  return R"({"addresses":[")" + std::string(ip) + R"("],"conditions":)" + std::string(conditions) +
         R"(,"targetRef":{"kind":"Pod","namespace":")" + std::string(pod_ns) + R"(","name":")" +
         std::string(pod) + R"("}})";
}

constexpr char kSlicePorts[] = R"([{"name":"http","port":8080,"protocol":"TCP"},)"
                               R"({"name":"grpc","port":7070,"protocol":"TCP"}])";

std::string pod(std::string_view ns, std::string_view name, bool meshed,
                std::string_view service_account = "") {
  std::string out = R"({"kind":"Pod","metadata":{"name":")" + std::string(name) +
                    R"(","namespace":")" + std::string(ns) + R"(")";
  if (meshed) out += R"(,"annotations":{"trellis.dev/proxy-version":"0.1.0"})";
  out += R"(},"spec":{)";
  if (!service_account.empty()) {
    out += R"("serviceAccountName":")" + std::string(service_account) + R"(")";
  }
  return out + "}}";
}

std::string route(std::string_view kind, std::string_view ns, std::string_view name,
                  std::string_view parent_refs, std::string_view rules,
                  std::string_view created = "2026-01-02T03:04:05Z", int generation = 1) {
  return R"({"kind":")" + std::string(kind) + R"(","metadata":{"name":")" + std::string(name) +
         R"(","namespace":")" + std::string(ns) + R"(","generation":)" +
         std::to_string(generation) + R"(,"creationTimestamp":")" + std::string(created) +
         R"("},"spec":{"parentRefs":)" + std::string(parent_refs) + R"(,"rules":)" +
         std::string(rules) + "}}";
}

constexpr char kToEcho80[] = R"([{"backendRefs":[{"name":"echo","namespace":"shop","port":80}]}])";
constexpr char kToEcho7070[] =
    R"([{"backendRefs":[{"name":"echo","namespace":"shop","port":7070}]}])";

std::string http_route(std::string_view ns, std::string_view name, std::string_view parent_refs,
                       std::string_view rules = kToEcho80) {
  return route("HTTPRoute", ns, name, parent_refs, rules);
}

std::string grpc_route(std::string_view ns, std::string_view name, std::string_view parent_refs,
                       std::string_view rules = kToEcho7070) {
  return route("GRPCRoute", ns, name, parent_refs, rules);
}

std::string parent(std::string_view name, std::string_view extra = "") {
  return R"([{"group":"","kind":"Service","name":")" + std::string(name) + R"(")" +
         std::string(extra) + "}]";
}

// Namespace "shop" with Service echo (10.96.1.1, one meshed pod) and clients
// in "shop" and "web".
std::unique_ptr<Resolver> shop(Config config = Config{}) {
  auto r = make_resolver(std::move(config));
  feed(*r, R"({"kind":"Namespace","metadata":{"name":"shop"}})");
  feed(*r, R"({"kind":"Namespace","metadata":{"name":"web"}})");
  feed(*r, cluster_ip_service("shop", "echo", "10.96.1.1"));
  feed(*r, pod("shop", "echo-1", true));
  feed(*r, slice("shop", "echo-abc", "echo", "[" + endpoint("10.244.1.1", "shop", "echo-1") + "]",
                  kSlicePorts));
  return r;
}

gateway::Condition accepted(Resolver& r, const RouteKey& key, size_t parent = 0) {
  auto status = r.status(key);
  const gateway::Condition* c = condition(status, parent, "Accepted");
  REQUIRE_MESSAGE(c != nullptr, key.str() << " has no Accepted condition for parent " << parent);
  return *c;
}

}  // namespace

TEST_CASE("an invalid trust domain is refused") {
  Config config;
  config.trust_domain = "Example.org";
  auto r = Resolver::create(config);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "trust_domain: invalid value 'Example.org' (want lowercase letters, digits, '.', '-' and "
        "'_')");
  config.trust_domain = "";
  CHECK_FALSE(Resolver::create(config).ok());
}

TEST_CASE("a table lists every ClusterIP Service, routed or not, with its endpoints") {
  auto r = shop();
  feed(*r, cluster_ip_service("other", "db", "10.96.2.2"));
  auto t = table(*r, "web");
  CHECK(t->ns == "web");
  REQUIRE(t->services.size() == 2);
  CHECK(t->services[0].ns == "other");  // by namespace/name
  CHECK(t->services[1].name == "echo");
  CHECK(t->services[1].cluster_ips == std::vector<std::string>{"10.96.1.1"});
  REQUIRE(t->services[1].ports.size() == 2);
  CHECK(t->services[1].ports[0].name == "http");
  CHECK(t->services[1].ports[0].target_port == 8080);
  CHECK(t->services[1].routes.empty());
  // Entries for every port, with no address for db: the proxy tells 503 from 500.
  const routes::Endpoints* db = find_endpoints(*t, "other", "db", 80);
  REQUIRE(db != nullptr);
  CHECK(db->addresses.empty());
  const routes::Endpoints* echo = find_endpoints(*t, "shop", "echo", 80);
  REQUIRE(echo != nullptr);
  REQUIRE(echo->addresses.size() == 1);
  CHECK(echo->addresses[0].ip == "10.244.1.1");
  CHECK(echo->addresses[0].port == 8080);
  CHECK(echo->addresses[0].pod == "echo-1");
  CHECK(echo->addresses[0].identity == "spiffe://cluster.local/ns/shop/sa/default");
  CHECK(find_endpoints(*t, "shop", "echo", 7070)->addresses.at(0).port == 7070);
}

TEST_CASE("Table: chunks are the JSON, the version is a content hash") {
  auto r = shop();
  feed(*r, http_route("shop", "split", parent("echo")));
  std::shared_ptr<const Table> a = r->compute("web");
  std::string joined;
  for (std::string_view piece : a->chunks()) joined += piece;
  CHECK(joined == a->json());
  auto model = a->model();
  REQUIRE(model.ok());
  CHECK((*model)->version == a->version());
  CHECK(a->version().size() == 32);

  CHECK(r->compute("web") == a);  // cached until something changes
  // Other namespaces see other content (their namespace), so another version.
  CHECK(r->compute("shop")->version() != a->version());

  // Change and change back: the same content, the same version.
  feed(*r, http_route("shop", "split", parent("echo", R"(,"port":80)")));
  std::shared_ptr<const Table> b = r->compute("web");
  CHECK(b->version() != a->version());
  feed(*r, http_route("shop", "split", parent("echo")));
  CHECK(r->compute("web")->version() == a->version());
  CHECK(r->compute("web")->json() == a->json());
  r->remove_route(http_key("shop", "split"));
  feed(*r, http_route("shop", "split", parent("echo")));
  CHECK(r->compute("web")->version() == a->version());
}

TEST_CASE("Table: blocks of entries give the same JSON as entry by entry, in few pieces") {
  // 150 entries: three blocks, the last one partial. Every 7th is not listed
  // (headless), every 5th has no endpoints.
  std::vector<std::shared_ptr<const ServiceEntry>> entries;
  for (size_t i = 0; i < 150; ++i) {
    auto e = std::make_shared<ServiceEntry>();
    e->key = "ns/svc-" + std::to_string(1000 + i);
    e->listed = i % 7 != 3;
    if (e->listed) e->service_json = R"({"s":)" + std::to_string(i) + "}";
    if (i % 5 != 0) e->endpoints_json = R"({"e":)" + std::to_string(i) + R"(},{"f":1})";
    e->digest = sha256(e->key);
    entries.push_back(std::move(e));
  }
  auto snapshot = std::make_shared<const Snapshot>(entries);
  REQUIRE(snapshot->blocks().size() == 3);

  // What the table is, built entry by entry.
  auto expected = [&](const Table& t, const std::vector<std::pair<size_t, std::string>>& overrides) {
    std::string services, endpoints;
    for (size_t i = 0; i < entries.size(); ++i) {
      std::string text = entries[i]->service_json;
      for (const auto& [index, override_text] : overrides) {
        if (index == i) text = override_text;
      }
      if (entries[i]->listed) services += (services.empty() ? "" : ",") + text;
      if (!entries[i]->endpoints_json.empty()) {
        endpoints += (endpoints.empty() ? "" : ",") + entries[i]->endpoints_json;
      }
    }
    return R"({"version":")" + t.version() + R"(","namespace":")" + t.ns() +
           R"(","services":[)" + services + R"(],"endpoints":[)" + endpoints + "]}";
  };

  Table plain("web", snapshot, {});
  CHECK(plain.json() == expected(plain, {}));
  // Head, 3 service blocks, 2 commas, the middle, 3 endpoint blocks, 2 commas, the end.
  CHECK(plain.chunks().size() == 13);

  // Overrides at a block's first and last entry, in the partial block, and
  // on an entry that is not listed (which stays out).
  std::vector<std::pair<size_t, std::string>> overrides = {
      {0, R"({"o":0})"}, {3, R"({"o":3})"}, {63, R"({"o":63})"}, {64, R"({"o":64})"},
      {149, R"({"o":149})"}};
  Table custom("shop", snapshot, overrides);
  CHECK(custom.json() == expected(custom, overrides));
  CHECK(custom.json().find(R"({"o":3})") == std::string::npos);
  CHECK(custom.version() != plain.version());

  // Nothing listed and no endpoints at all: empty arrays.
  std::vector<std::shared_ptr<const ServiceEntry>> bare;
  for (size_t i = 0; i < 70; ++i) {
    auto e = std::make_shared<ServiceEntry>();
    e->key = "ns/h-" + std::to_string(1000 + i);
    e->digest = sha256(e->key);
    bare.push_back(std::move(e));
  }
  Table empty("web", std::make_shared<const Snapshot>(bare), {});
  CHECK(empty.json() == R"({"version":")" + empty.version() +
                            R"(","namespace":"web","services":[],"endpoints":[]})");
}

TEST_CASE("producer and consumer routes (MeshConsumerRoute, GEP-1686)") {
  auto r = shop();
  feed(*r, R"({"kind":"Namespace","metadata":{"name":"third"}})");
  feed(*r, http_route("shop", "producer", parent("echo")));
  feed(*r, http_route("web", "consumer", parent("echo", R"(,"namespace":"shop")")));
  // The consumer namespace has its consumer route, and not the producer one.
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute web/consumer"});
  // The producer namespace and everyone else see the producer route.
  CHECK(route_names(*table(*r, "shop"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/producer"});
  CHECK(route_names(*table(*r, "third"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/producer"});
  CHECK(accepted(*r, http_key("web", "consumer")).status == "True");
  CHECK(accepted(*r, http_key("shop", "producer")).status == "True");

  // Per Service port: a consumer route on port 80 leaves the producer's 7070.
  feed(*r, http_route("web", "consumer", parent("echo", R"(,"namespace":"shop","port":80)")));
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/producer:7070", "HTTPRoute web/consumer:80"});

  // Routes of one group merge: two consumer routes both apply.
  feed(*r, http_route("web", "consumer-2", parent("echo", R"(,"namespace":"shop")")));
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute web/consumer:80", "HTTPRoute web/consumer-2"});

  // Without consumer routes, the producer route is back.
  r->remove_route(http_key("web", "consumer"));
  r->remove_route(http_key("web", "consumer-2"));
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/producer"});
}

TEST_CASE("MeshPorts: a parentRef port covers that port, none covers all") {
  auto r = conformance_world();
  load(*r, "mesh-ports.json");
  auto t = table(*r, kMesh);
  CHECK(route_names(*t, kMesh, "echo-v1") ==
        std::vector<std::string>{"HTTPRoute gateway-conformance-mesh/mesh-split-v1:80"});
  CHECK(route_names(*t, kMesh, "echo-v2") ==
        std::vector<std::string>{"HTTPRoute gateway-conformance-mesh/mesh-split-v2"});
}

TEST_CASE("sectionName names a Service port") {
  auto r = shop();
  feed(*r, http_route("shop", "by-name", parent("echo", R"(,"sectionName":"grpc")")));
  CHECK(route_names(*table(*r, "shop"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/by-name:7070"});
  CHECK(accepted(*r, http_key("shop", "by-name")).status == "True");

  feed(*r, http_route("shop", "by-name", parent("echo", R"(,"sectionName":"admin")")));
  gateway::Condition c = accepted(*r, http_key("shop", "by-name"));
  CHECK(c.status == "False");
  CHECK(c.reason == "NoMatchingParent");
  CHECK(c.message == "Service shop/echo has no TCP port named 'admin'");
  CHECK(route_names(*table(*r, "shop"), "shop", "echo").empty());

  feed(*r, http_route("shop", "by-name", parent("echo", R"(,"sectionName":"grpc","port":80)")));
  CHECK(accepted(*r, http_key("shop", "by-name")).message ==
        "Service shop/echo port 'grpc' is 7070, not 80");
  feed(*r, http_route("shop", "by-name", parent("echo", R"(,"sectionName":"grpc","port":7070)")));
  CHECK(accepted(*r, http_key("shop", "by-name")).status == "True");

  feed(*r, http_route("shop", "by-name", parent("echo", R"(,"port":81)")));
  CHECK(accepted(*r, http_key("shop", "by-name")).message ==
        "Service shop/echo has no TCP port 81");

  // Two parentRefs to two ports of the Service: one entry per port.
  feed(*r, http_route("shop", "by-name",
                       R"([{"group":"","kind":"Service","name":"echo","sectionName":"http"},)"
                       R"({"group":"","kind":"Service","name":"echo","sectionName":"grpc"}])"));
  CHECK(route_names(*table(*r, "shop"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/by-name:80", "HTTPRoute shop/by-name:7070"});
  CHECK(r->status(http_key("shop", "by-name")).size() == 2);
}

TEST_CASE("only Services with a cluster IP are parents") {
  auto r = shop();
  feed(*r, service("shop", "headless",
                    R"({"clusterIP":"None","clusterIPs":["None"],)"
                    R"("ports":[{"name":"http","port":80}]})"));
  feed(*r, service("shop", "external",
                    R"({"type":"ExternalName","externalName":"example.org",)"
                    R"("ports":[{"port":80}]})"));
  feed(*r, service("shop", "node",
                    R"({"type":"NodePort","clusterIP":"10.96.1.9","clusterIPs":["10.96.1.9"],)"
                    R"("ports":[{"name":"http","port":80,"nodePort":30080}]})"));
  feed(*r, http_route("shop", "to-headless", parent("headless")));
  feed(*r, http_route("shop", "to-external", parent("external")));
  feed(*r, http_route("shop", "to-missing", parent("missing")));
  feed(*r, http_route("shop", "to-node", parent("node")));

  gateway::Condition headless = accepted(*r, http_key("shop", "to-headless"));
  CHECK(headless.status == "False");
  CHECK(headless.reason == "NoMatchingParent");
  CHECK(headless.message ==
        "Service shop/headless is headless (clusterIP None); mesh routes attach to Services with "
        "a cluster IP");
  gateway::Condition external = accepted(*r, http_key("shop", "to-external"));
  CHECK(external.reason == "NoMatchingParent");
  CHECK(external.message ==
        "Service shop/external is of type ExternalName; mesh routes attach to Services with a "
        "cluster IP");
  CHECK(accepted(*r, http_key("shop", "to-missing")).message == "Service shop/missing not found");
  CHECK(accepted(*r, http_key("shop", "to-node")).status == "True");

  auto t = table(*r, "shop");
  CHECK(find_service(*t, "shop", "headless") == nullptr);  // no frontend
  CHECK(find_service(*t, "shop", "external") == nullptr);
  CHECK(route_names(*t, "shop", "node") == std::vector<std::string>{"HTTPRoute shop/to-node"});
  // A headless Service still has endpoints, as a backend; an ExternalName one none.
  CHECK(find_endpoints(*t, "shop", "headless", 80) != nullptr);
  CHECK(find_endpoints(*t, "shop", "external", 80) == nullptr);

  // Gateway parents are not ours: no status entry, no attachment.
  feed(*r, http_route("shop", "to-gateway", R"([{"name":"gw"}])"));
  CHECK(r->status(http_key("shop", "to-gateway")).empty());
  // group "core" is the core group too.
  feed(*r, http_route("shop", "core", R"([{"group":"core","kind":"Service","name":"echo"}])"));
  CHECK(accepted(*r, http_key("shop", "core")).status == "True");
}

TEST_CASE("GRPCRoute beats HTTPRoute on the same Service port") {
  auto r = shop();
  feed(*r, http_route("shop", "http-7070", parent("echo", R"(,"port":7070)")));
  feed(*r, http_route("shop", "http-all", parent("echo")));
  CHECK(accepted(*r, http_key("shop", "http-7070")).status == "True");
  Changes changes = feed(*r, grpc_route("shop", "grpc", parent("echo", R"(,"port":7070)")));
  // Adding the GRPCRoute changes the HTTPRoutes' status.
  CHECK(changes.routes.count(http_key("shop", "http-7070")) == 1);
  CHECK(changes.routes.count(http_key("shop", "http-all")) == 1);

  gateway::Condition lost = accepted(*r, http_key("shop", "http-7070"));
  CHECK(lost.status == "False");
  CHECK(lost.reason == "Conflicted");
  CHECK(lost.message ==
        "GRPCRoute shop/grpc takes precedence over HTTPRoutes on Service shop/echo port 7070 "
        "(GEP-1294: GRPCRoute wins on the same Service port)");
  gateway::Condition partly = accepted(*r, http_key("shop", "http-all"));
  CHECK(partly.status == "True");
  CHECK(partly.message == "Accepted; GRPCRoute shop/grpc takes precedence on port 7070");
  CHECK(accepted(*r, grpc_key("shop", "grpc")).status == "True");

  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"GRPCRoute shop/grpc:7070", "HTTPRoute shop/http-all:80"});

  // A consumer HTTPRoute is in another group: the producer GRPCRoute does not beat it.
  feed(*r, http_route("web", "mine", parent("echo", R"(,"namespace":"shop")")));
  CHECK(accepted(*r, http_key("web", "mine")).status == "True");
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute web/mine"});

  r->remove_route(grpc_key("shop", "grpc"));
  CHECK(accepted(*r, http_key("shop", "http-7070")).status == "True");
}

TEST_CASE("backendRefs: missing and foreign backends fail ResolvedRefs, the rule stays") {
  auto r = shop();
  feed(*r, service("shop", "external", R"({"type":"ExternalName","externalName":"example.org"})"));
  feed(*r, http_route("shop", "refs", parent("echo"),
                       R"([{"backendRefs":[{"group":"example.com","kind":"Bucket","name":"b"},)"
                       R"({"name":"echo","port":80},{"name":"gone","port":80},)"
                       R"({"name":"echo","port":81},{"name":"external","port":80}]},)"
                       R"({"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":)"
                       R"({"name":"gone-too","namespace":"other","port":80}}}],)"
                       R"("backendRefs":[{"name":"echo","port":80}]}])"));
  auto status = r->status(http_key("shop", "refs"));
  const gateway::Condition* refs = condition(status, 0, "ResolvedRefs");
  REQUIRE(refs != nullptr);
  CHECK(refs->status == "False");
  CHECK(refs->reason == "InvalidKind");  // the first problem's
  CHECK(refs->message ==
        "spec.rules[0].backendRefs[0]: unsupported kind example.com/Bucket (want Service); "
        "spec.rules[0].backendRefs[2]: Service shop/gone not found; "
        "spec.rules[0].backendRefs[3]: Service shop/echo has no TCP port 81; "
        "spec.rules[0].backendRefs[4]: Service shop/external is of type ExternalName, which the "
        "mesh does not route to; "
        "spec.rules[1].filters[0].requestMirror.backendRef: Service other/gone-too not found");
  CHECK(condition(status, 0, "Accepted")->status == "True");
  auto t = table(*r, "shop");
  REQUIRE(find_service(*t, "shop", "echo")->routes.size() == 1);
  CHECK(find_service(*t, "shop", "echo")->routes[0].http_rules.at(0).backend_refs.size() == 5);

  // The backend appears: resolved (cross-namespace, no ReferenceGrant needed).
  Changes changes = feed(*r, cluster_ip_service("other", "gone-too", "10.96.3.3"));
  CHECK(changes.routes.count(http_key("shop", "refs")) == 1);
  feed(*r, http_route("shop", "refs", parent("echo"),
                       R"([{"backendRefs":[{"name":"gone-too","namespace":"other","port":80}]}])"));
  status = r->status(http_key("shop", "refs"));
  CHECK(condition(status, 0, "ResolvedRefs")->status == "True");
  CHECK(condition(status, 0, "ResolvedRefs")->message == "All references resolved");
}

TEST_CASE("a broken route gets a False condition, and everything else keeps working") {
  auto r = shop();
  feed(*r, http_route("shop", "good", parent("echo", R"(,"port":80)")));
  feed(*r, http_route("shop", "bad-regex", parent("echo"),
                       R"([{"matches":[{"path":{"type":"RegularExpression","value":"(["}}]}])"));
  feed(*r, http_route("shop", "bad-filter", parent("echo"),
                       R"([{"filters":[{"type":"ExternalAuth","externalAuth":{}}]}])"));
  for (std::string name : {"bad-regex", "bad-filter"}) {
    CAPTURE(name);
    auto status = r->status(http_key("shop", name));
    REQUIRE(status.size() == 1);
    const gateway::Condition* c = condition(status, 0, "Accepted");
    CHECK(c->status == "False");
    CHECK(c->reason == "UnsupportedValue");
    CHECK(c->message == r->route(http_key("shop", name))->spec_error);
    CHECK(condition(status, 0, "ResolvedRefs") == nullptr);
  }
  CHECK(accepted(*r, http_key("shop", "bad-regex")).message ==
        "spec.rules[0].matches[0].path.value: invalid regular expression: missing ]: [");
  CHECK(accepted(*r, http_key("shop", "bad-filter")).message.rfind(
            "spec.rules[0].filters[0].type: unknown value 'ExternalAuth'", 0) == 0);
  // Every namespace's table still has the good route.
  for (const char* ns : {"shop", "web"}) {
    CHECK(route_names(*table(*r, ns), "shop", "echo") ==
          std::vector<std::string>{"HTTPRoute shop/good:80"});
  }
  // A broken consumer route does not hide the producer routes from its namespace.
  feed(*r, http_route("web", "broken", parent("echo", R"(,"namespace":"shop")"),
                       R"([{"matches":[{"method":"FETCH"}]}])"));
  CHECK(route_names(*table(*r, "web"), "shop", "echo") ==
        std::vector<std::string>{"HTTPRoute shop/good:80"});
}

TEST_CASE("named targetPorts resolve per EndpointSlice port") {
  auto r = make_resolver();
  feed(*r, service("shop", "api",
                    R"({"clusterIP":"10.96.5.5","clusterIPs":["10.96.5.5"],)"
                    R"("ports":[{"name":"http","port":80,"targetPort":"web"}]})"));
  auto t = table(*r, "shop");
  CHECK(find_service(*t, "shop", "api")->ports.at(0).target_port == 80);  // unknown yet
  feed(*r, pod("shop", "api-1", false));
  feed(*r, pod("shop", "api-2", false));
  feed(*r, slice("shop", "api-a", "api", "[" + endpoint("10.244.5.1", "shop", "api-1") + "]",
                  R"([{"name":"http","port":9000}])"));
  feed(*r, slice("shop", "api-b", "api", "[" + endpoint("10.244.5.2", "shop", "api-2") + "]",
                  R"([{"name":"http","port":9001}])"));
  t = table(*r, "shop");
  CHECK(find_service(*t, "shop", "api")->ports.at(0).target_port == 9000);
  const routes::Endpoints* e = find_endpoints(*t, "shop", "api", 80);
  REQUIRE(e->addresses.size() == 2);
  CHECK(e->addresses[0].port == 9000);  // each address its own slice's port
  CHECK(e->addresses[1].port == 9001);
}

TEST_CASE("endpoint conditions: ready, terminating, never eligible") {
  auto r = shop();
  feed(*r, pod("shop", "p2", true));
  feed(*r, pod("shop", "p3", true));
  feed(*r, pod("shop", "p4", true));
  feed(*r, slice("shop", "echo-abc", "echo",
                  "[" + endpoint("10.244.1.1", "shop", "echo-1") + "," +
                      endpoint("10.244.1.2", "shop", "p2",
                               R"({"ready":false,"serving":true,"terminating":true})") +
                      "," +
                      endpoint("10.244.1.3", "shop", "p3",
                               R"({"ready":false,"serving":false,"terminating":true})") +
                      "," + endpoint("10.244.1.4", "shop", "p4", R"({"ready":false})") + "," +
                      endpoint("10.244.1.5", "shop", "echo-1", "{}") + "]",
                  kSlicePorts));
  auto t = table(*r, "shop");
  const auto& a = find_endpoints(*t, "shop", "echo", 80)->addresses;
  REQUIRE(a.size() == 3);
  CHECK(a[0].ip == "10.244.1.1");
  CHECK(a[0].ready);
  CHECK_FALSE(a[0].serving.has_value());
  CHECK_FALSE(a[0].terminating.has_value());
  CHECK(a[1].ip == "10.244.1.2");  // terminating but serving: the fallback
  CHECK_FALSE(a[1].ready);
  CHECK(a[1].serving == true);
  CHECK(a[1].terminating == true);
  CHECK(a[2].ip == "10.244.1.5");  // unknown conditions read as ready
  CHECK(a[2].ready);
}

TEST_CASE("identity: meshed pods get their SPIFFE ID, others none, unknown pods no address") {
  Config config;
  config.trust_domain = "example.org";
  auto r = shop(config);
  feed(*r, pod("shop", "api-sa", true, "api"));
  feed(*r, pod("shop", "plain", false));
  feed(*r, slice("shop", "echo-abc", "echo",
                  "[" + endpoint("10.244.1.1", "shop", "echo-1") + "," +
                      endpoint("10.244.1.2", "shop", "api-sa") + "," +
                      endpoint("10.244.1.3", "shop", "plain") + "," +
                      endpoint("10.244.1.4", "shop", "not-yet") + "," +
                      R"({"addresses":["10.244.1.5"]})" + "]",
                  kSlicePorts));
  auto t = table(*r, "web");
  const auto& a = find_endpoints(*t, "shop", "echo", 80)->addresses;
  REQUIRE(a.size() == 4);
  CHECK(a[0].identity == "spiffe://example.org/ns/shop/sa/default");
  CHECK(a[1].identity == "spiffe://example.org/ns/shop/sa/api");
  CHECK(a[2].pod == "plain");
  CHECK_FALSE(a[2].identity.has_value());
  CHECK(a[3].ip == "10.244.1.5");  // no targetRef: not a pod, plaintext
  CHECK_FALSE(a[3].pod.has_value());
  CHECK_FALSE(a[3].identity.has_value());

  // The pod appears: its address too.
  Changes changes = feed(*r, pod("shop", "not-yet", true));
  CHECK(changes.all_namespaces);
  CHECK(find_endpoints(*table(*r, "web"), "shop", "echo", 80)->addresses.size() == 5);
}

TEST_CASE("whatever the objects say, the table parses") {
  auto r = shop();
  // UDP ports are dropped (DNS on 53 TCP and UDP would otherwise repeat port 53).
  feed(*r, service("kube-system", "dns",
                    R"({"clusterIP":"10.96.0.53","clusterIPs":["10.96.0.53"],"ports":[)"
                    R"({"name":"dns","port":53,"protocol":"UDP"},)"
                    R"({"name":"dns-tcp","port":53,"protocol":"TCP","appProtocol":""}]})"));
  // A cluster IP claimed twice (a stale object): the first by namespace/name keeps it.
  feed(*r, cluster_ip_service("zzz", "copy", "10.96.1.1"));
  // An address that is not an IP, a slice of FQDNs.
  feed(*r, slice("shop", "echo-bad", "echo", R"([{"addresses":["not-an-ip"]}])", kSlicePorts));
  feed(*r, R"({"kind":"EndpointSlice","metadata":{"name":"echo-fqdn","namespace":"shop",
      "labels":{"kubernetes.io/service-name":"echo"}},"addressType":"FQDN",
      "endpoints":[{"addresses":["example.org"]}],"ports":[{"name":"http","port":80}]})");
  auto t = table(*r, "web");
  const routes::Service* dns = find_service(*t, "kube-system", "dns");
  REQUIRE(dns != nullptr);
  REQUIRE(dns->ports.size() == 1);
  CHECK(dns->ports[0].name == "dns-tcp");
  CHECK_FALSE(dns->ports[0].app_protocol.has_value());
  CHECK(find_service(*t, "shop", "echo")->cluster_ips.size() == 1);
  CHECK(find_service(*t, "zzz", "copy") == nullptr);  // no address left: no frontend
  CHECK(find_endpoints(*t, "shop", "echo", 80)->addresses.size() == 1);

  // The first claimant goes: the other Service gets the address.
  Changes changes = r->remove_service("shop", "echo");
  CHECK(changes.all_namespaces);
  t = table(*r, "web");
  REQUIRE(find_service(*t, "zzz", "copy") != nullptr);
  CHECK(find_service(*t, "zzz", "copy")->cluster_ips == std::vector<std::string>{"10.96.1.1"});
  CHECK(find_endpoints(*t, "shop", "echo", 80) == nullptr);
}

TEST_CASE("removing objects") {
  auto r = shop();
  feed(*r, http_route("shop", "split", parent("echo")));
  Changes changes = r->remove_service("shop", "echo");
  CHECK(changes.all_namespaces);
  CHECK(changes.routes.count(http_key("shop", "split")) == 1);
  CHECK(accepted(*r, http_key("shop", "split")).message == "Service shop/echo not found");
  CHECK(table(*r, "web")->services.empty());
  CHECK(r->remove_service("shop", "echo").empty());  // already gone

  feed(*r, cluster_ip_service("shop", "echo", "10.96.1.1"));
  CHECK(accepted(*r, http_key("shop", "split")).status == "True");
  CHECK(find_endpoints(*table(*r, "web"), "shop", "echo", 80)->addresses.size() == 1);
  CHECK(r->remove_endpoint_slice("shop", "echo-abc").all_namespaces);
  CHECK(find_endpoints(*table(*r, "web"), "shop", "echo", 80)->addresses.empty());
  CHECK(r->remove_endpoint_slice("shop", "echo-abc").empty());

  CHECK(r->remove_route(http_key("shop", "split")).all_namespaces);
  CHECK(r->route(http_key("shop", "split")) == nullptr);
  CHECK(r->status(http_key("shop", "split")).empty());
  CHECK(r->remove_route(http_key("shop", "split")).empty());
  CHECK(route_names(*table(*r, "web"), "shop", "echo").empty());
}

TEST_CASE("status: observedGeneration, parentRef echoed, one entry per Service parentRef") {
  auto r = shop();
  feed(*r, route("HTTPRoute", "shop", "multi",
                  R"([{"name":"gw"},{"group":"","kind":"Service","name":"echo","port":80},)"
                  R"({"group":"","kind":"Service","name":"nope","namespace":"other"}])",
                  "[{}]", "2026-01-02T03:04:05Z", 7));
  auto status = r->status(http_key("shop", "multi"));
  REQUIRE(status.size() == 2);
  CHECK(status[0].parent_ref.name == "echo");
  CHECK(status[0].parent_ref.port == 80);
  CHECK_FALSE(status[0].parent_ref.ns.has_value());
  CHECK(status[1].parent_ref.ns == "other");
  for (const auto& s : status) {
    for (const auto& c : s.conditions) CHECK(c.observed_generation == 7);
  }
  CHECK(condition(status, 0, "Accepted")->status == "True");
  CHECK(condition(status, 1, "Accepted")->message == "Service other/nope not found");
  // The rule without backendRefs resolves trivially (the proxy answers 500).
  CHECK(condition(status, 0, "ResolvedRefs")->status == "True");
  CHECK(r->status(http_key("shop", "unknown")).empty());
}

TEST_CASE("precedence data and rule order are carried into the table") {
  auto r = shop();
  feed(*r, route("HTTPRoute", "shop", "old", parent("echo"),
                  R"([{"name":"first","matches":[{"path":{"type":"Exact","value":"/a"}}]},)"
                  R"({"name":"second"}])",
                  "2025-06-07T08:09:10.5+02:00"));
  auto t = table(*r, "web");
  const routes::Route& entry = find_service(*t, "shop", "echo")->routes.at(0);
  CHECK(entry.ns == "shop");
  CHECK(entry.name == "old");
  CHECK(entry.creation_timestamp == "2025-06-07T08:09:10.5+02:00");
  REQUIRE(entry.http_rules.size() == 2);
  CHECK(entry.http_rules[0].name == "first");
  CHECK(entry.http_rules[1].name == "second");
}
