#include "mesh-controller/app/reconciler.h"

#include <doctest/doctest.h>

#include "common/metrics/exposition.h"
#include "tests/unit/mesh-controller/app/support.h"
#include "tests/unit/mesh-controller/stream/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::app;
using namespace trellis::controller::app::test;
using stream::test::Client;
using std::chrono::milliseconds;

namespace {

const char* const kResources[] = {"namespaces", "services", "endpointslices",
                                  "pods",       "httproutes", "grpcroutes"};

// The informers' resource a request or watch is for ("pods", ...).
std::string resource_of(const std::string& target) {
  for (const char* r : kResources) {
    if (target.find(std::string("/") + r + "?") != std::string::npos) return r;
  }
  FAIL("unexpected request " << target);
  return "";
}

struct Harness : KubeHarness {
  Harness() {
    auto r = Reconciler::create(*client, resolve::Config{}, registry, fast_status());
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    reconciler = std::move(*r);
    stream::ServerOptions options;
    options.policy.insecure_namespace_from_query = true;
    auto s = stream::Server::create(*loop, options, registry, *reconciler);
    REQUIRE(s.ok());
    server = std::move(*s);
    reconciler->attach(server.get());
  }
  ~Harness() { reconciler->attach(nullptr); }

  static StatusWriterOptions fast_status() {
    StatusWriterOptions o;
    o.now = [] { return kube::parse_time("2026-03-04T05:06:07Z").value(); };
    return o;
  }

  // Answers the pending LIST of each named resource with `items`.
  void answer_lists(std::map<std::string, std::vector<std::string>> items) {
    while (!items.empty()) {
      REQUIRE(run_until([&] {
        for (const auto& p : transport->pending) {
          if (p.request.method == "GET" && items.count(resource_of(p.request.target)) != 0) return true;
        }
        return false;
      }));
      for (auto it = transport->pending.begin(); it != transport->pending.end(); ++it) {
        std::string r = resource_of(it->request.target);
        auto found = items.find(r);
        if (it->request.method != "GET" || found == items.end()) continue;
        auto pending = std::move(*it);
        transport->pending.erase(it);
        std::string body = list_of(found->second);
        items.erase(found);
        pending.done(kube::HttpResponse{200, body});
        break;
      }
    }
  }

  // Sends a watch event on the resource's open watch.
  void event(const std::string& resource, const std::string& type, const std::string& object) {
    kube::testing::FakeTransport::StreamState* open = nullptr;
    REQUIRE(run_until([&] {
      for (auto& s : transport->streams) {
        if (!s->closed && !s->ended && resource_of(s->request.target) == resource) open = s.get();
      }
      return open != nullptr;
    }));
    open->handler->on_open();
    open->handler->on_data(watch_line(type, object));
  }

  void end_watch(const std::string& resource, const Status& why) {
    for (auto& s : transport->streams) {
      if (!s->closed && !s->ended && resource_of(s->request.target) == resource) {
        s->ended = true;
        s->handler->on_end(why);
        return;
      }
    }
    FAIL("no watch on " << resource);
  }

  bool pump_until(std::vector<Client*> clients, const std::function<bool()>& done) {
    return run_until([&] {
      for (Client* c : clients) c->pump();
      return done();
    });
  }

  // Lets every timer of this turn run and the clients read.
  void settle(std::vector<Client*> clients) {
    run_for(milliseconds(30));
    for (Client* c : clients) c->pump();
  }

  std::string metrics() { return metrics::text_exposition(registry); }

  std::map<std::string, std::vector<std::string>> world() {
    return {{"namespaces", {ns_object("shop"), ns_object("bank")}},
            {"services", {service_object("shop", "echo", "10.96.0.10")}},
            {"endpointslices", {slice_object("shop", "echo", "echo-1", "10.244.0.5")}},
            {"pods", {pod_object("shop", "echo-1", "10.244.0.5")}},
            {"httproutes", {route_object("shop", "r1", "shop", "echo")}},
            {"grpcroutes", {}}};
  }

  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<stream::Server> server;
};

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

const std::string kShop = "/v1/route-table?namespace=shop";
const std::string kBank = "/v1/route-table?namespace=bank";

}  // namespace

TEST_CASE("no table before every informer has synced; waiting streams then get the first one") {
  Harness h;
  h.reconciler->start();
  Client c(*h.server);
  int32_t id = c.get(kShop);
  auto world = h.world();
  auto routes = world["grpcroutes"];
  world.erase("grpcroutes");
  h.answer_lists(world);
  h.settle({&c});
  CHECK(c.responses[id].head->status == 200);
  CHECK(c.responses[id].body.empty());
  CHECK(h.reconciler->unsynced() == std::vector<std::string>{"grpcroutes"});
  CHECK_FALSE(h.reconciler->synced());
  CHECK(contains(h.metrics(), "trellis_controller_synced 0\n"));

  h.answer_lists({{"grpcroutes", routes}});
  REQUIRE(h.pump_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  CHECK(h.reconciler->synced());
  CHECK(contains(h.metrics(), "trellis_controller_synced 1\n"));
  auto t = parse_table(c.responses[id].tables()[0]);
  CHECK(t->ns == "shop");
  CHECK(route_names(*t) == std::vector<std::string>{"shop/r1"});
  REQUIRE(t->endpoints.size() == 1);
  REQUIRE(t->endpoints[0].addresses.size() == 1);
  CHECK(t->endpoints[0].addresses[0].identity == std::string("spiffe://cluster.local/ns/shop/sa/web"));
}

TEST_CASE("a turn's changes go out as one version, only to the namespaces they touch") {
  Harness h;
  h.reconciler->start();
  h.answer_lists(h.world());
  Client c(*h.server);
  int32_t shop = c.get(kShop);
  int32_t bank = c.get(kBank);
  REQUIRE(h.pump_until({&c}, [&] {
    return c.responses[shop].tables().size() == 1 && c.responses[bank].tables().size() == 1;
  }));

  // Three events in one turn: one new version per namespace.
  h.event("services", "ADDED", service_object("shop", "api", "10.96.0.20"));
  h.event("httproutes", "ADDED", route_object("shop", "r2", "shop", "api",
                                              R"({"backendRefs":[{"name":"api","port":80}]})"));
  h.event("services", "MODIFIED", service_object("shop", "echo", "10.96.0.10", "2"));
  h.settle({&c});
  REQUIRE(c.responses[shop].tables().size() == 2);
  REQUIRE(c.responses[bank].tables().size() == 2);
  CHECK(route_names(*parse_table(c.responses[shop].tables()[1])) ==
        std::vector<std::string>{"shop/r2", "shop/r1"});

  // A consumer route in bank changes bank's table only.
  h.event("httproutes", "ADDED",
          route_object("bank", "mine", "shop", "echo", R"({"backendRefs":[{"name":"echo","namespace":"shop","port":80}]})"));
  h.settle({&c});
  CHECK(c.responses[shop].tables().size() == 2);
  REQUIRE(c.responses[bank].tables().size() == 3);
  CHECK(route_names(*parse_table(c.responses[bank].tables()[2])) ==
        std::vector<std::string>{"shop/r2", "bank/mine"});
  CHECK(contains(h.metrics(), "trellis_controller_push_latency_seconds_count 3\n"));

  // A deleted route is gone from the next version.
  h.event("httproutes", "DELETED", route_object("shop", "r2", "shop", "api"));
  h.settle({&c});
  REQUIRE(c.responses[shop].tables().size() == 3);
  CHECK(route_names(*parse_table(c.responses[shop].tables()[2])) == std::vector<std::string>{"shop/r1"});
}

TEST_CASE("malformed objects and broken routes never crash or empty a table") {
  Harness h;
  h.reconciler->start();
  h.answer_lists(h.world());
  h.reconciler->set_leading(true);
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.pump_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  std::string before = c.responses[id].tables()[0];

  // A Service that does not decode is skipped (and counted); the cached one stays.
  h.event("services", "MODIFIED",
          R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"echo","namespace":"shop",)"
          R"("resourceVersion":"3"},"spec":{"ports":[{"port":0}]}})");
  h.event("httproutes", "ADDED", R"({"kind":"HTTPRoute","metadata":{}})");
  h.settle({&c});
  CHECK(c.responses[id].tables().size() == 1);
  std::string m = h.metrics();
  CHECK(contains(m, "trellis_kube_decode_errors_total{resource=\"services\"} 1\n"));
  CHECK(contains(m, "trellis_kube_decode_errors_total{resource=\"httproutes.gateway.networking.k8s.io\"} 1\n"));

  // A route the sidecar could not honour is left out of the table, with a
  // False condition; the valid route stays.
  h.event("httproutes", "ADDED",
          route_object("shop", "broken", "shop", "echo",
                       R"({"matches":[{"path":{"type":"RegularExpression","value":"(x"}}],)"
                       R"("backendRefs":[{"name":"echo","port":80}]})"));
  h.settle({&c});
  std::vector<std::string> tables = c.responses[id].tables();
  CHECK(route_names(*parse_table(tables.back())) == std::vector<std::string>{"shop/r1"});
  REQUIRE(h.run_until([&] {
    for (const auto& p : h.patches()) {
      if (contains(p.target, "/httproutes/broken/status")) return true;
    }
    return false;
  }));
  for (const auto& p : h.patches()) {
    if (!contains(p.target, "/httproutes/broken/status")) continue;
    CHECK(contains(p.body, R"("type":"Accepted","status":"False","reason":"UnsupportedValue")"));
  }
}

TEST_CASE("status is written only while leading, for every route once synced") {
  Harness h;
  h.reconciler->set_leading(true);
  h.reconciler->start();
  h.run_for(milliseconds(20));
  CHECK(h.patches().empty());  // not synced yet
  h.answer_lists(h.world());
  REQUIRE(h.run_until([&] { return h.patches().size() == 1; }));
  CHECK(h.patches()[0].target == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r1/status");
  h.transport->respond(200, "{}");

  h.reconciler->set_leading(false);
  h.event("httproutes", "ADDED", route_object("shop", "r2", "shop", "echo"));
  h.run_for(milliseconds(50));
  CHECK(h.patches().size() == 1);

  h.reconciler->set_leading(true);  // a new leader owes every route its status
  REQUIRE(h.run_until([&] { return h.patches().size() == 3; }));
  h.reconciler->set_stopping();
  CHECK_FALSE(h.reconciler->status_writer().active());
}

TEST_CASE("a relist after 410 Gone delivers the difference without dropping what still exists") {
  Harness h;
  h.reconciler->start();
  h.answer_lists(h.world());
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.pump_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));

  h.end_watch("httproutes", Status(make_error("Expired (410): too old resource version", 410)));
  h.answer_lists({{"httproutes", {route_object("shop", "r1", "shop", "echo"),
                                  route_object("shop", "r3", "shop", "echo")}}});
  REQUIRE(h.pump_until({&c}, [&] { return c.responses[id].tables().size() == 2; }));
  h.settle({&c});
  for (const std::string& t : c.responses[id].tables()) {
    auto names = route_names(*parse_table(t));
    CHECK(std::find(names.begin(), names.end(), "shop/r1") != names.end());
  }
  CHECK(route_names(*parse_table(c.responses[id].tables().back())) ==
        std::vector<std::string>{"shop/r1", "shop/r3"});
  CHECK(contains(h.metrics(), "trellis_kube_relists_total{resource=\"httproutes.gateway.networking.k8s.io\"} 1\n"));
}
