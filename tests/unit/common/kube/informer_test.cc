#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/kube/errors.h"
#include "common/kube/informer.h"
#include "common/log/log.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/common/kube/fake_transport.h"

namespace kube = trellis::kube;
namespace json = trellis::json;
using kube::testing::FakeTransport;
using trellis::event::testing::run_for;
using trellis::event::testing::run_until;

namespace {

// A ConfigMap with one required string, data.value: a number there makes the
// object malformed.
struct Item {
  kube::ObjectMeta metadata;
  std::string value;
};

trellis::Result<Item> decode_item(const json::Value& object) {
  auto meta = kube::decode_object_meta(object);
  if (!meta) return std::move(meta).error();
  auto data = object.object()->required_object("data");
  if (!data) return std::move(data).error();
  auto value = data->required_string("value");
  if (!value) return std::move(value).error();
  return Item{std::move(*meta), std::string(*value)};
}

std::string item(const std::string& name, const std::string& rv, const std::string& value) {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"shop","resourceVersion":")" + rv +
         R"("},"data":{"value":")" + value + R"("}})";
}

std::string malformed(const std::string& name, const std::string& rv) {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"shop","resourceVersion":")" + rv +
         R"("},"data":{"value":42}})";
}

std::string page(const std::string& rv, const std::vector<std::string>& items,
                 const std::string& next = "") {
  std::string out = R"({"kind":"ConfigMapList","metadata":{"resourceVersion":")" + rv + "\"";
  if (!next.empty()) out += R"(,"continue":")" + next + "\"";
  out += R"(},"items":[)";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]}";
}

std::string event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}

std::string gone() {
  return event("ERROR", R"j({"kind":"Status","status":"Failure","message":"too old resource version: 5 (90)","reason":"Expired","code":410})j");
}

struct Fixture {
  Fixture() {
    loop = trellis::event::testing::make_loop();
    REQUIRE(loop);
    auto t = std::make_unique<FakeTransport>();
    fake = t.get();
    kube::ClientOptions client_options;
    client_options.metrics = kube::Metrics::create(registry).value();
    client = std::make_unique<kube::Client>(*loop, std::move(t), client_options);
    options.namespace_ = "shop";
    options.page_size = 2;
    options.watch_timeout = std::chrono::seconds(300);
    options.backoff.initial = std::chrono::milliseconds(20);
    options.backoff.max = std::chrono::milliseconds(40);
    options.random = [] { return 0.0; };
  }

  void start() {
    kube::Informer<Item>::Handlers handlers;
    handlers.on_add = [this](const auto& o) {
      log.push_back("add " + o->metadata.name + "=" + o->value);
      if (after_handler) after_handler();
    };
    handlers.on_update = [this](const auto& old, const auto& now) {
      log.push_back("update " + old->metadata.name + " " + old->value + "->" + now->value);
      if (after_handler) after_handler();
    };
    handlers.on_delete = [this](const auto& o) {
      log.push_back("delete " + o->metadata.name + "=" + o->value);
      if (after_handler) after_handler();
    };
    handlers.on_synced = [this] { log.push_back("synced"); };
    informer = std::make_unique<kube::Informer<Item>>(*client, kube::resources::kConfigMaps,
                                                      decode_item, handlers, options);
    informer->start();
  }

  // Lists the given items in one page and opens the watch.
  void sync(const std::string& rv, const std::vector<std::string>& items) {
    fake->respond(200, page(rv, items));
    REQUIRE(fake->open_streams() == 1);
    fake->stream_open();
  }

  std::vector<std::string> take_log() {
    auto out = std::move(log);
    log.clear();
    return out;
  }

  double metric(const std::string& name, const std::string& label = "",
                const std::string& value = "") const {
    double total = 0;
    for (const auto& family : registry.collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        bool match = label.empty();
        for (const auto& l : m.label) match = match || (l.name == label && l.value == value);
        if (match) total += m.counter.value;
      }
    }
    return total;
  }

  std::string value_of(const std::string& name) {
    auto o = informer->get("shop", name);
    return o ? o->value : "(none)";
  }

  trellis::metrics::Registry registry;
  std::unique_ptr<trellis::event::EventLoop> loop;
  FakeTransport* fake = nullptr;
  std::unique_ptr<kube::Client> client;
  kube::InformerOptions options;
  std::unique_ptr<kube::Informer<Item>> informer;
  std::vector<std::string> log;
  std::function<void()> after_handler;
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "lists page by page, delivers adds after the last page, then watches") {
  start();
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps?limit=2");
  fake->respond(200, page("50", {item("a", "10", "1"), item("b", "11", "2")}, "next-page"));
  CHECK(log.empty());  // nothing before the list is complete
  CHECK_FALSE(informer->has_synced());
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps?limit=2&continue=next-page");
  fake->respond(200, page("50", {item("c", "12", "3")}));
  CHECK(take_log() == std::vector<std::string>{"add a=1", "add b=2", "add c=3", "synced"});
  CHECK(informer->has_synced());
  CHECK(informer->size() == 3);
  CHECK(informer->resource_version() == "50");
  REQUIRE(fake->open_streams() == 1);
  CHECK(fake->stream().request.target ==
        "/api/v1/namespaces/shop/configmaps?resourceVersion=50&watch=true"
        "&allowWatchBookmarks=true&timeoutSeconds=300");
  CHECK(metric("trellis_kube_relists_total") == 0);
}

TEST_CASE_FIXTURE(Fixture, "watch events update the cache; bookmarks advance the resourceVersion") {
  start();
  sync("50", {item("a", "10", "1")});
  take_log();
  fake->stream_data(event("ADDED", item("b", "51", "2")) + event("MODIFIED", item("a", "52", "9")));
  fake->stream_data(event("BOOKMARK", R"({"kind":"ConfigMap","metadata":{"resourceVersion":"60"}})"));
  CHECK(informer->resource_version() == "60");
  fake->stream_data(event("DELETED", item("b", "61", "2")));
  CHECK(take_log() == std::vector<std::string>{"add b=2", "update a 1->9", "delete b=2"});
  CHECK(informer->resource_version() == "61");
  CHECK(value_of("a") == "9");
  CHECK(value_of("b") == "(none)");
  CHECK(metric("trellis_kube_watch_events_total", "type", "BOOKMARK") == 1);
  CHECK(metric("trellis_kube_watch_events_total", "type", "ADDED") == 1);

  // The server ends the watch at timeoutSeconds: resume from the last
  // resourceVersion, no relist.
  size_t requests = fake->requests.size();
  fake->stream_end(trellis::ok_status());
  REQUIRE(fake->open_streams() == 1);
  CHECK(fake->stream().request.target.find("resourceVersion=61&watch=true") != std::string::npos);
  CHECK(fake->requests.size() == requests);
}

TEST_CASE_FIXTURE(Fixture, "410 in the stream relists and delivers the difference") {
  start();
  sync("50", {item("same", "10", "s"), item("changed", "11", "old"), item("gone", "12", "g")});
  take_log();
  auto same_before = informer->get("shop", "same");
  fake->stream_data(gone());
  CHECK(fake->streams.back()->closed);
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps?limit=2");
  fake->respond(200, page("90", {item("changed", "80", "new"), item("fresh", "81", "f")}, "p2"));
  CHECK(log.empty());
  fake->respond(200, page("90", {item("same", "10", "s")}));
  CHECK(take_log() == std::vector<std::string>{"update changed old->new", "add fresh=f", "delete gone=g"});
  CHECK(informer->get("shop", "same").get() == same_before.get());  // unchanged: same snapshot
  CHECK(informer->resource_version() == "90");
  CHECK(fake->stream().request.target.find("resourceVersion=90&watch=true") != std::string::npos);
  CHECK(metric("trellis_kube_relists_total") == 1);
  CHECK(metric("trellis_kube_watch_events_total", "type", "ERROR") == 1);
}

TEST_CASE_FIXTURE(Fixture, "a 410 answer to the watch request relists too") {
  start();
  sync("50", {item("a", "10", "1")});
  take_log();
  fake->stream_end(kube::api_error(
      410, R"({"kind":"Status","reason":"Expired","message":"too old","code":410})"));
  fake->respond(200, page("95", {}));
  CHECK(take_log() == std::vector<std::string>{"delete a=1"});
  CHECK(informer->size() == 0);
}

TEST_CASE_FIXTURE(Fixture, "a broken watch resumes from the last resourceVersion after a back-off") {
  start();
  sync("50", {});
  fake->stream_data(event("ADDED", item("a", "55", "1")));
  size_t requests = fake->requests.size();
  fake->stream_end(trellis::make_error("connection closed by the server", 0));
  CHECK(fake->open_streams() == 0);  // not at once: back-off
  REQUIRE(run_until(*loop, [&] { return fake->open_streams() == 1; }));
  CHECK(fake->stream().request.target.find("resourceVersion=55&watch=true") != std::string::npos);
  CHECK(fake->requests.size() == requests);  // no relist
  CHECK(metric("trellis_kube_errors_total", "operation", "watch") == 1);
  // The resumed watch itself answers 410: relist.
  fake->stream_end(kube::api_error(410, R"({"kind":"Status","reason":"Expired","code":410})"));
  CHECK(fake->pending.size() == 1);
}

TEST_CASE_FIXTURE(Fixture, "a watch the server ends at once without events is retried after a back-off") {
  start();
  sync("50", {});
  fake->stream_end(trellis::ok_status());
  CHECK(fake->open_streams() == 0);
  REQUIRE(run_until(*loop, [&] { return fake->open_streams() == 1; }));
}

TEST_CASE_FIXTURE(Fixture, "a failed relist keeps the cache; the next one applies") {
  start();
  sync("50", {item("a", "10", "1")});
  take_log();
  fake->stream_data(gone());
  fake->respond(503, "busy");
  CHECK(value_of("a") == "1");
  CHECK(log.empty());
  CHECK(metric("trellis_kube_errors_total", "operation", "list") == 1);
  CHECK(fake->pending.empty());
  REQUIRE(run_until(*loop, [&] { return !fake->pending.empty(); }));
  fake->respond(200, page("99", {item("a", "98", "2")}));
  CHECK(take_log() == std::vector<std::string>{"update a 1->2"});
}

TEST_CASE_FIXTURE(Fixture, "an expired continue token restarts the list from its first page") {
  start();
  fake->respond(200, page("50", {item("a", "10", "1"), item("b", "11", "2")}, "p2"));
  fake->respond(410, R"({"kind":"Status","reason":"Expired","message":"The provided continue parameter is too old","code":410})");
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps?limit=2");
  fake->respond(200, page("70", {item("b", "11", "2")}));
  CHECK(take_log() == std::vector<std::string>{"add b=2", "synced"});
}

TEST_CASE_FIXTURE(Fixture, "an initial list failure is retried; synced waits for success") {
  start();
  fake->fail("connect to 10.77.0.1:6443: connection refused");
  CHECK_FALSE(informer->has_synced());
  REQUIRE(run_until(*loop, [&] { return !fake->pending.empty(); }));
  sync("5", {item("a", "1", "x")});
  CHECK(take_log() == std::vector<std::string>{"add a=x", "synced"});
  CHECK(metric("trellis_kube_relists_total") == 0);
}

TEST_CASE_FIXTURE(Fixture, "malformed objects are skipped and counted, never emptying the cache") {
  std::vector<std::string> lines;
  trellis::log::reset_for_test();  // no rate-limit history from earlier cases
  trellis::log::set_sink([&](std::string_view line) { lines.emplace_back(line); });
  start();
  sync("50", {item("a", "10", "1"), malformed("bad", "11"), item("c", "12", "3")});
  trellis::log::reset_for_test();
  CHECK(take_log() == std::vector<std::string>{"add a=1", "add c=3", "synced"});
  CHECK(metric("trellis_kube_decode_errors_total") == 1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find(R"("msg":"kube: skipping a malformed object","resource":"configmaps",)"
                      R"("object":"shop/bad","error":"items[1].data.value: expected a string, got number")") !=
        std::string::npos);

  // A malformed update keeps the last good version.
  fake->stream_data(event("MODIFIED", malformed("a", "51")) + "not json\n");
  CHECK(value_of("a") == "1");
  CHECK(metric("trellis_kube_decode_errors_total") == 3);

  // In a relist too: the object is kept, not deleted.
  fake->stream_data(gone());
  fake->respond(200, page("90", {malformed("a", "60"), item("c", "12", "3")}));
  CHECK(log.empty());
  CHECK(value_of("a") == "1");
  CHECK(informer->size() == 2);

  // A malformed DELETED still deletes by its name.
  fake->stream_open();
  fake->stream_data(event("DELETED", malformed("a", "91")));
  CHECK(take_log() == std::vector<std::string>{"delete a=1"});
  // An object without a readable name is dropped from a list entirely.
  fake->stream_data(gone());
  fake->respond(200, page("95", {R"({"metadata":{}})", item("c", "12", "3")}));
  CHECK(informer->size() == 1);
}

TEST_CASE_FIXTURE(Fixture, "stop keeps the cache; start relists and delivers what changed") {
  start();
  sync("50", {item("a", "10", "1"), item("b", "11", "2")});
  take_log();
  informer->stop();
  CHECK(fake->open_streams() == 0);
  CHECK(informer->has_synced());
  CHECK(informer->size() == 2);
  informer->start();
  // A stop in the middle of a list drops the staged page.
  fake->respond(200, page("60", {item("a", "10", "1"), item("c", "55", "3")}, "p2"));
  informer->stop();
  CHECK(fake->pending.empty());
  informer->start();
  fake->respond(200, page("70", {item("a", "65", "9")}));
  CHECK(take_log() == std::vector<std::string>{"update a 1->9", "delete b=2"});
  CHECK(fake->open_streams() == 1);
  CHECK(informer->resource_version() == "70");
}

TEST_CASE_FIXTURE(Fixture, "a handler may stop the informer while a list is delivered") {
  start();
  after_handler = [this] { informer->stop(); };
  fake->respond(200, page("50", {item("a", "10", "1"), item("b", "11", "2")}));
  CHECK(log == std::vector<std::string>{"add a=1", "add b=2", "synced"});
  CHECK(fake->open_streams() == 0);  // no watch after a stop
  CHECK(fake->pending.empty());
}

TEST_CASE_FIXTURE(Fixture, "a handler may destroy the informer") {
  start();
  after_handler = [this] { informer.reset(); };
  fake->respond(200, page("50", {item("a", "10", "1"), item("b", "11", "2")}));
  CHECK(log == std::vector<std::string>{"add a=1"});
  CHECK(fake->open_streams() == 0);
}

TEST_CASE_FIXTURE(Fixture, "destroying the informer cancels its list and closes its watch") {
  start();
  informer.reset();
  CHECK(fake->cancelled.size() == 1);
  start();
  sync("1", {});
  informer.reset();
  CHECK(fake->open_streams() == 0);
}

TEST_CASE("informer options are validated") {
  kube::InformerOptions o;
  CHECK(kube::validate(o).ok());
  o.page_size = 0;
  CHECK(kube::validate(o).error().message == "page_size must be positive");
  o.page_size = 1;
  o.namespace_ = "a/b";
  CHECK(kube::validate(o).error().message == "invalid namespace 'a/b'");
  o.namespace_ = "shop";
  o.backoff.jitter = 2;
  CHECK(kube::validate(o).error().message == "backoff: jitter must be between 0 and 1");
}

TEST_CASE("jittered exponential back-off") {
  double r = 0.0;
  kube::Backoff b({std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 2.0, 0.5},
                  [&] { return r; });
  CHECK(b.next().count() == 100);
  CHECK(b.next().count() == 200);
  CHECK(b.next().count() == 400);
  CHECK(b.next().count() == 800);
  CHECK(b.next().count() == 1000);
  r = 0.999;
  CHECK(b.next().count() == 1499);
  b.reset();
  r = 0.5;
  CHECK(b.next().count() == 125);
  CHECK(kube::validate(kube::BackoffOptions{std::chrono::milliseconds(0)}).error().message ==
        "initial must be positive");
  CHECK(kube::validate(kube::BackoffOptions{std::chrono::milliseconds(10), std::chrono::milliseconds(5)})
            .error()
            .message == "max must not be less than initial");
  CHECK(kube::validate(kube::BackoffOptions{std::chrono::milliseconds(10), std::chrono::milliseconds(50), 0.5})
            .error()
            .message == "multiplier must be at least 1");
}
