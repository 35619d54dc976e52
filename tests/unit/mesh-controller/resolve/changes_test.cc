// What each update reports as changed: the client namespaces whose table may
// differ and the routes whose status may differ.
#include "tests/unit/mesh-controller/resolve/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::resolve;
using namespace trellis::controller::resolve::test;

namespace {

constexpr char kEchoSlice[] = R"({"kind":"EndpointSlice","metadata":{"name":"echo-abc",
  "namespace":"shop","resourceVersion":"%RV%","labels":{"kubernetes.io/service-name":"echo"}},
  "addressType":"IPv4","endpoints":[{"addresses":["10.244.1.1"],"conditions":{"ready":%READY%},
  "targetRef":{"kind":"Pod","namespace":"shop","name":"echo-1"}}],
  "ports":[{"name":"http","port":8080}]})";

std::string echo_slice(std::string_view rv, bool ready) {
  std::string s = kEchoSlice;
  s.replace(s.find("%RV%"), 4, rv);
  s.replace(s.find("%READY%"), 7, ready ? "true" : "false");
  return s;
}

std::string echo_service(std::string_view labels) {
  return R"({"kind":"Service","metadata":{"name":"echo","namespace":"shop","labels":)" +
         std::string(labels) +
         R"(},"spec":{"clusterIP":"10.96.1.1","clusterIPs":["10.96.1.1"],)"
         R"("ports":[{"name":"http","port":80,"targetPort":8080}]}})";
}

std::string echo_pod(std::string_view annotations, std::string_view phase) {
  return R"({"kind":"Pod","metadata":{"name":"echo-1","namespace":"shop","annotations":)" +
         std::string(annotations) + R"(},"spec":{},"status":{"phase":")" + std::string(phase) +
         R"("}})";
}

std::string echo_route(std::string_view ns, std::string_view name, std::string_view path,
                       std::string_view status = "{}") {
  std::string parent = R"({"group":"","kind":"Service","name":"echo")";
  parent += ns == "shop" ? "}" : R"(,"namespace":"shop"})";
  return R"({"kind":"HTTPRoute","metadata":{"name":")" + std::string(name) +
         R"(","namespace":")" + std::string(ns) +
         R"(","creationTimestamp":"2026-01-02T03:04:05Z"},"spec":{"parentRefs":[)" + parent +
         R"(],"rules":[{"matches":[{"path":{"type":"PathPrefix","value":")" + std::string(path) +
         R"("}}],"backendRefs":[{"name":"echo","namespace":"shop","port":80}]}]},"status":)" +
         std::string(status) + "}";
}

std::unique_ptr<Resolver> world() {
  auto r = make_resolver();
  feed(*r, R"({"kind":"Namespace","metadata":{"name":"shop"}})");
  feed(*r, R"({"kind":"Namespace","metadata":{"name":"web"}})");
  feed(*r, echo_service("{}"));
  feed(*r, echo_pod("{}", "Running"));
  feed(*r, echo_slice("1", true));
  return r;
}

}  // namespace

TEST_CASE("Changes: touches, empty, merge") {
  Changes a;
  CHECK(a.empty());
  CHECK_FALSE(a.touches("shop"));
  a.namespaces.insert("shop");
  CHECK(a.touches("shop"));
  CHECK_FALSE(a.touches("web"));
  Changes b;
  b.routes.insert(http_key("shop", "r"));
  a.merge(b);
  CHECK(a.routes.size() == 1);
  CHECK_FALSE(a.all_namespaces);
  b.all_namespaces = true;
  a.merge(b);
  CHECK(a.touches("anything"));
}

TEST_CASE("Namespaces: a new client namespace, a deleted one") {
  auto r = make_resolver();
  Changes c = feed(*r, R"({"kind":"Namespace","metadata":{"name":"shop"}})");
  CHECK(c.namespaces == std::set<std::string>{"shop"});
  CHECK_FALSE(c.all_namespaces);
  CHECK(feed(*r, R"({"kind":"Namespace","metadata":{"name":"shop","labels":{"a":"b"}}})").empty());
  CHECK(r->namespaces() == std::vector<std::string>{"shop"});
  c = r->remove_namespace("shop");
  CHECK(c.namespaces == std::set<std::string>{"shop"});
  CHECK(r->namespaces().empty());
  CHECK(r->remove_namespace("shop").empty());
}

TEST_CASE("Services: every table lists every Service; changes that no table reads are none") {
  auto r = world();
  Changes c = feed(*r, echo_service(R"({"team":"a"})"));  // a label: nothing tables read
  CHECK(c.empty());
  c = feed(*r, R"({"kind":"Service","metadata":{"name":"db","namespace":"data"},
      "spec":{"clusterIP":"10.96.9.9","clusterIPs":["10.96.9.9"],"ports":[{"port":5432}]}})");
  CHECK(c.all_namespaces);
  CHECK(c.routes.empty());
}

TEST_CASE("EndpointSlices: a change dirties every table once; a no-op none") {
  auto r = world();
  r->compute("web");
  Changes c = feed(*r, echo_slice("2", true));  // same content, new resourceVersion
  CHECK(c.empty());
  c = feed(*r, echo_slice("3", false));
  CHECK(c.all_namespaces);
  CHECK(c.touches("web"));
  CHECK(c.routes.empty());
}

TEST_CASE("Pods: only an identity change matters") {
  auto r = world();
  CHECK(feed(*r, echo_pod("{}", "Succeeded")).empty());  // status churn
  Changes c = feed(*r, echo_pod(R"({"trellis.dev/proxy-version":"0.1.0"})", "Running"));
  CHECK(c.all_namespaces);
  CHECK(find_endpoints(*table(*r, "web"), "shop", "echo", 80)->addresses.at(0).identity ==
        "spiffe://cluster.local/ns/shop/sa/default");
  // A pod no slice points at changes nothing.
  CHECK(feed(*r, R"({"kind":"Pod","metadata":{"name":"lonely","namespace":"shop"}})").empty());
  CHECK(r->remove_pod("shop", "lonely").empty());
  // The pod goes: its address goes (it might still be meshed somewhere).
  c = r->remove_pod("shop", "echo-1");
  CHECK(c.all_namespaces);
  CHECK(find_endpoints(*table(*r, "web"), "shop", "echo", 80)->addresses.empty());
}

TEST_CASE("Routes: producer routes dirty every table, consumer routes one") {
  auto r = world();
  Changes c = feed(*r, echo_route("shop", "producer", "/a"));
  CHECK(c.all_namespaces);
  CHECK(c.routes == std::set<RouteKey>{http_key("shop", "producer")});

  c = feed(*r, echo_route("web", "consumer", "/b"));
  CHECK_FALSE(c.all_namespaces);
  CHECK(c.namespaces == std::set<std::string>{"web"});
  CHECK(c.routes.count(http_key("web", "consumer")) == 1);

  c = feed(*r, echo_route("web", "consumer", "/c"));
  CHECK_FALSE(c.all_namespaces);
  CHECK(c.namespaces == std::set<std::string>{"web"});

  c = r->remove_route(http_key("web", "consumer"));
  CHECK_FALSE(c.all_namespaces);
  CHECK(c.namespaces == std::set<std::string>{"web"});

  c = feed(*r, echo_route("shop", "producer", "/z"));
  CHECK(c.all_namespaces);
}

TEST_CASE("Routes: a status-only update changes no table; the status may need writing") {
  auto r = world();
  feed(*r, echo_route("shop", "producer", "/a"));
  std::shared_ptr<const Table> before = r->compute("web");
  Changes c = feed(*r, echo_route("shop", "producer", "/a",
                                   R"({"parents":[{"parentRef":{"name":"x"},)"
                                   R"("controllerName":"example.com/x","conditions":[]}]})"));
  CHECK_FALSE(c.all_namespaces);
  CHECK(c.namespaces.empty());
  CHECK(c.routes == std::set<RouteKey>{http_key("shop", "producer")});
  CHECK(r->compute("web") == before);
  CHECK(r->route(http_key("shop", "producer"))->status_parents.size() == 1);
}

TEST_CASE("Services: the routes that use one get a new status") {
  auto r = world();
  feed(*r, echo_route("shop", "producer", "/a"));
  feed(*r, echo_route("web", "consumer", "/b"));
  Changes c = r->remove_service("shop", "echo");
  CHECK(c.all_namespaces);
  CHECK(c.routes ==
        std::set<RouteKey>{http_key("shop", "producer"), http_key("web", "consumer")});
  c = feed(*r, echo_service("{}"));
  CHECK(c.all_namespaces);
  CHECK(c.routes.size() == 2);
}

TEST_CASE("tables are recomputed only for the namespaces a change touches") {
  auto r = world();
  feed(*r, echo_route("web", "consumer", "/b"));
  std::shared_ptr<const Table> shop = r->compute("shop");
  std::shared_ptr<const Table> web = r->compute("web");
  feed(*r, echo_route("web", "consumer", "/c"));
  CHECK(r->compute("shop") == shop);
  CHECK(r->compute("web") != web);
  CHECK(r->compute("web")->version() != web->version());
  // Every table shares the namespace-independent part.
  CHECK(r->compute("shop")->json().size() < r->compute("web")->json().size());
}
