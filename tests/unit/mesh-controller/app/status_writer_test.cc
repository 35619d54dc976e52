#include "mesh-controller/app/status_writer.h"

#include <doctest/doctest.h>

#include "common/json/json.h"
#include "common/metrics/exposition.h"
#include "mesh-controller/gateway/status.h"
#include "tests/unit/mesh-controller/app/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::app;
using namespace trellis::controller::app::test;
using std::chrono::milliseconds;

namespace {

const std::chrono::system_clock::time_point kNow =
    kube::parse_time("2026-03-04T05:06:07Z").value();

struct Harness : KubeHarness {
  explicit Harness(StatusWriterOptions options = fast()) {
    resolver = std::move(resolve::Resolver::create({}).value());
    upsert(service_object("shop", "echo", "10.96.0.10"));
    auto w = StatusWriter::create(*client, *resolver, registry, std::move(options));
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().message));
    writer = std::move(*w);
  }

  static StatusWriterOptions fast() {
    StatusWriterOptions o;
    o.conflict_retry = milliseconds(20);
    o.error_backoff.initial = milliseconds(20);
    o.now = [] { return kNow; };
    return o;
  }

  void upsert(const std::string& text) {
    auto doc = json::Document::parse(text, json::Limits{});
    REQUIRE_MESSAGE(doc.ok(), (doc.ok() ? "" : doc.error().message));
    std::string kind(*doc->root().object()->required_string("kind"));
    if (kind == "Service") {
      (void)resolver->upsert_service(kube::decode_service(doc->root()).value());
    } else {
      (void)resolver->upsert_route(gateway::decode_http_route(doc->root()).value());
    }
  }

  std::string metrics() { return metrics::text_exposition(registry); }

  std::unique_ptr<resolve::Resolver> resolver;
  std::unique_ptr<StatusWriter> writer;
};

resolve::RouteKey key(const std::string& name) {
  return resolve::RouteKey{routes::RouteKind::http_route, "shop", name};
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

const char kOursAccepted[] =
    R"({"parentRef":{"group":"","kind":"Service","namespace":"shop","name":"echo","port":80},)"
    R"("controllerName":"trellis.dev/mesh-controller","conditions":[)"
    R"({"type":"Accepted","status":"True","reason":"Accepted","message":"Accepted",)"
    R"("observedGeneration":3,"lastTransitionTime":"2026-03-04T05:06:07Z"},)"
    R"({"type":"ResolvedRefs","status":"True","reason":"ResolvedRefs","message":"All references resolved",)"
    R"("observedGeneration":3,"lastTransitionTime":"2026-03-04T05:06:07Z"}]})";

}  // namespace

TEST_CASE("StatusWriterOptions are validated") {
  StatusWriterOptions o;
  o.max_in_flight = 0;
  CHECK(validate(o).error().message == "max_in_flight must be positive");
  o = StatusWriterOptions{};
  o.writes_per_second = 0;
  CHECK(validate(o).error().message == "writes_per_second must be positive");
  o = StatusWriterOptions{};
  o.burst = 0.5;
  CHECK(validate(o).error().message == "burst must be at least 1");
  o = StatusWriterOptions{};
  o.error_backoff.multiplier = 0.5;
  CHECK(validate(o).error().message == "error_backoff: multiplier must be at least 1");
}

TEST_CASE("nothing is written while inactive") {
  Harness h;
  h.upsert(route_object("shop", "r", "shop", "echo"));
  h.writer->enqueue(key("r"));
  h.run_for(milliseconds(30));
  CHECK(h.patches().empty());
  CHECK(h.writer->queued() == 0);
}

TEST_CASE("an active writer merge-patches the status subresource with the resourceVersion read") {
  Harness h;
  h.upsert(route_object("shop", "r", "shop", "echo", R"({"backendRefs":[{"name":"echo","port":80}]})", "7"));
  h.writer->set_active(true);
  h.writer->enqueue(key("r"));
  h.writer->enqueue(key("r"));  // coalesced
  REQUIRE(h.run_until([&] { return !h.transport->pending.empty(); }));
  h.run_for(milliseconds(20));
  auto patches = h.patches();
  REQUIRE(patches.size() == 1);
  CHECK(patches[0].target == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r/status");
  CHECK(patches[0].content_type == "application/merge-patch+json");
  CHECK(patches[0].body == std::string(R"({"metadata":{"resourceVersion":"7"},"status":{"parents":[)") +
                               kOursAccepted + "]}}");
  h.transport->respond(200, "{}");
  CHECK(contains(h.metrics(), "trellis_controller_status_writes_total{result=\"ok\"} 1\n"));
  CHECK(h.writer->in_flight() == 0);
}

TEST_CASE("a route that already carries this status is not written; other controllers' entries are kept") {
  Harness h;
  std::string other =
      R"({"parentRef":{"group":"","kind":"Service","name":"echo","port":80},)"
      R"("controllerName":"example.com/other","conditions":[{"type":"Accepted","status":"False",)"
      R"("reason":"Pending","message":"","lastTransitionTime":"2025-01-01T00:00:00Z"}]})";
  h.upsert(route_object("shop", "current", "shop", "echo",
                        R"({"backendRefs":[{"name":"echo","port":80}]})", "8",
                        std::string(R"({"parents":[)") + kOursAccepted + "]}"));
  h.upsert(route_object("shop", "shared", "shop", "echo",
                        R"({"backendRefs":[{"name":"echo","port":80}]})", "9",
                        R"({"parents":[)" + other + "]}"));
  h.writer->set_active(true);
  h.writer->enqueue(key("current"));
  h.writer->enqueue(key("shared"));
  REQUIRE(h.run_until([&] { return !h.transport->pending.empty(); }));
  h.run_for(milliseconds(20));
  auto patches = h.patches();
  REQUIRE(patches.size() == 1);
  CHECK(patches[0].target == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shared/status");
  CHECK(patches[0].body == R"({"metadata":{"resourceVersion":"9"},"status":{"parents":[)" + other +
                               "," + kOursAccepted + "]}}");
}

TEST_CASE("a broken route gets Accepted=False with the reason and the decoding error") {
  Harness h;
  h.upsert(route_object("shop", "bad", "shop", "echo",
                        R"({"matches":[{"path":{"type":"RegularExpression","value":"(unclosed"}}],)"
                        R"("backendRefs":[{"name":"echo","port":80}]})"));
  h.upsert(route_object("shop", "lost", "shop", "nowhere"));
  h.writer->set_active(true);
  h.writer->enqueue(key("bad"));
  h.writer->enqueue(key("lost"));
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 2; }));
  auto patches = h.patches();
  REQUIRE(patches.size() == 2);
  CHECK(contains(patches[0].body,
                 R"({"type":"Accepted","status":"False","reason":"UnsupportedValue",)"
                 R"("message":"spec.rules[0].matches[0].path.value: )"));
  CHECK(contains(patches[1].body,
                 R"({"type":"Accepted","status":"False","reason":"NoMatchingParent")"));
}

TEST_CASE("409 Conflict is retried with the object as it is then; 404 is not retried") {
  Harness h;
  h.upsert(route_object("shop", "r", "shop", "echo", R"({"backendRefs":[{"name":"echo","port":80}]})", "7"));
  h.upsert(route_object("shop", "gone", "shop", "echo"));
  h.writer->set_active(true);
  h.writer->enqueue(key("r"));
  h.writer->enqueue(key("gone"));
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 2; }));
  h.transport->respond(409, R"({"kind":"Status","reason":"Conflict","code":409,"message":"modified"})");
  h.transport->respond(404, R"({"kind":"Status","reason":"NotFound","code":404})");
  // The informer delivers the fresh object meanwhile.
  h.upsert(route_object("shop", "r", "shop", "echo", R"({"backendRefs":[{"name":"echo","port":80}]})", "8"));
  REQUIRE(h.run_until([&] { return !h.transport->pending.empty(); }));
  h.run_for(milliseconds(60));
  auto patches = h.patches();
  REQUIRE(patches.size() == 3);
  CHECK(patches[2].target == "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r/status");
  CHECK(contains(patches[2].body, R"({"metadata":{"resourceVersion":"8"})"));
  std::string m = h.metrics();
  CHECK(contains(m, "trellis_controller_status_writes_total{result=\"conflict\"} 1\n"));
  CHECK(contains(m, "trellis_controller_status_writes_total{result=\"not_found\"} 1\n"));
}

TEST_CASE("other failures back off and retry; a route queued while in flight is written again") {
  Harness h;
  h.upsert(route_object("shop", "r", "shop", "echo"));
  h.writer->set_active(true);
  h.writer->enqueue(key("r"));
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 1; }));
  h.transport->fail("connect to 10.0.0.1:6443: connection refused");
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 1; }));
  CHECK(contains(h.metrics(), "trellis_controller_status_writes_total{result=\"error\"} 1\n"));

  h.writer->enqueue(key("r"));  // while in flight
  CHECK(h.writer->in_flight() == 1);
  h.transport->respond(200, "{}");
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 1; }));
  CHECK(h.patches().size() == 3);
}

TEST_CASE("writes are rate-limited and bounded in flight") {
  StatusWriterOptions o = Harness::fast();
  o.burst = 2;
  o.writes_per_second = 10;
  o.max_in_flight = 8;
  Harness h(o);
  for (const char* name : {"a", "b", "c"}) h.upsert(route_object("shop", name, "shop", "echo"));
  h.writer->set_active(true);
  for (const char* name : {"a", "b", "c"}) h.writer->enqueue(key(name));
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 2; }));
  h.run_for(milliseconds(30));
  CHECK(h.transport->pending.size() == 2);  // the bucket is empty
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 3; }, milliseconds(2000)));

  StatusWriterOptions one = Harness::fast();
  one.max_in_flight = 1;
  Harness g(one);
  for (const char* name : {"a", "b"}) g.upsert(route_object("shop", name, "shop", "echo"));
  g.writer->set_active(true);
  for (const char* name : {"a", "b"}) g.writer->enqueue(key(name));
  g.run_for(milliseconds(30));
  CHECK(g.transport->pending.size() == 1);
  g.transport->respond(200, "{}");
  REQUIRE(g.run_until([&] { return g.transport->pending.size() == 1; }));
  CHECK(g.patches().size() == 2);
}

TEST_CASE("deactivating cancels writes in flight and drops the queue") {
  StatusWriterOptions o = Harness::fast();
  o.max_in_flight = 1;
  Harness h(o);
  for (const char* name : {"a", "b"}) h.upsert(route_object("shop", name, "shop", "echo"));
  h.writer->set_active(true);
  for (const char* name : {"a", "b"}) h.writer->enqueue(key(name));
  REQUIRE(h.run_until([&] { return h.transport->pending.size() == 1; }));
  h.writer->set_active(false);
  CHECK(h.transport->pending.empty());
  CHECK(h.transport->cancelled.size() == 1);
  CHECK(h.writer->queued() == 0);
  h.run_for(milliseconds(30));
  CHECK(h.patches().size() == 1);
}

TEST_CASE("a deleted route is not written") {
  Harness h;
  h.writer->set_active(true);
  h.writer->enqueue(key("never-seen"));
  h.run_for(milliseconds(30));
  CHECK(h.patches().empty());
}
