#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/kube/client.h"
#include "common/kube/errors.h"
#include "common/kube/objects.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/common/kube/fake_transport.h"

namespace kube = trellis::kube;
namespace json = trellis::json;
using kube::resources::kConfigMaps;
using kube::resources::kHttpRoutes;
using kube::testing::FakeTransport;
using trellis::Result;

namespace {

struct Fixture {
  Fixture() {
    loop = trellis::event::testing::make_loop();
    REQUIRE(loop);
    auto t = std::make_unique<FakeTransport>();
    fake = t.get();
    kube::ClientOptions options;
    options.metrics = kube::Metrics::create(registry).value();
    client = std::make_unique<kube::Client>(*loop, std::move(t), options);
  }

  // A callback that stores its answer.
  kube::Client::Callback capture() {
    answer.reset();
    return [this](Result<json::Document> doc) {
      answer.emplace(std::move(doc));
    };
  }

  std::string answer_name() {
    REQUIRE(answer.has_value());
    REQUIRE_MESSAGE(answer->ok(), (answer->ok() ? "" : answer->error().message));
    auto meta = kube::decode_object_meta((*answer)->root());
    REQUIRE(meta.ok());
    return meta->name;
  }

  const trellis::Error& answer_error() {
    REQUIRE(answer.has_value());
    REQUIRE_FALSE(answer->ok());
    return answer->error();
  }

  trellis::metrics::Registry registry;
  std::unique_ptr<trellis::event::EventLoop> loop;
  FakeTransport* fake = nullptr;
  std::unique_ptr<kube::Client> client;
  std::optional<Result<json::Document>> answer;
};

const char* kConfigMap = R"({"kind":"ConfigMap","metadata":{"name":"settings","namespace":"shop","resourceVersion":"5"}})";

}  // namespace

TEST_CASE_FIXTURE(Fixture, "get: request and answer") {
  client->get(kConfigMaps, "shop", "settings", capture());
  CHECK(fake->next().method == "GET");
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps/settings");
  CHECK(fake->next().body.empty());
  CHECK_FALSE(answer.has_value());
  fake->respond(200, kConfigMap);
  CHECK(answer_name() == "settings");
}

TEST_CASE_FIXTURE(Fixture, "API errors carry the request, reason, message and HTTP status") {
  client->get(kConfigMaps, "shop", "missing", capture());
  fake->respond(404, R"({"kind":"Status","status":"Failure","message":"configmaps \"missing\" not found","reason":"NotFound","code":404})");
  CHECK(answer_error().code == 404);
  CHECK(answer_error().message ==
        "GET /api/v1/namespaces/shop/configmaps/missing: NotFound (404): configmaps \"missing\" "
        "not found");

  client->update(kConfigMaps, "shop", "settings", kConfigMap, capture());
  fake->respond(409, R"({"kind":"Status","message":"Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again","reason":"Conflict","code":409})");
  CHECK(kube::is_conflict(answer_error()));
  CHECK(answer_error().message ==
        "PUT /api/v1/namespaces/shop/configmaps/settings: Conflict (409): Operation cannot be "
        "fulfilled on configmaps \"settings\": the object has been modified; please apply your "
        "changes to the latest version and try again");

  client->list(kConfigMaps, "shop", {}, capture());
  fake->fail("connect to 10.77.0.1:6443: connection refused");
  CHECK(answer_error().code == 0);
  CHECK(answer_error().message ==
        "GET /api/v1/namespaces/shop/configmaps: connect to 10.77.0.1:6443: connection refused");

  client->get(kConfigMaps, "shop", "settings", capture());
  fake->respond(200, "{not json");
  CHECK(answer_error().message ==
        "GET /api/v1/namespaces/shop/configmaps/settings: invalid answer: invalid JSON at offset 1: "
        "Missing a name for object member.");
}

TEST_CASE_FIXTURE(Fixture, "list carries its options; the path drops the query in errors") {
  kube::ListOptions o;
  o.label_selector = "app=echo";
  o.limit = 2;
  o.continue_token = "abc";
  o.watch = true;  // ignored by list
  client->list(kConfigMaps, "", o, capture());
  CHECK(fake->next().target == "/api/v1/configmaps?labelSelector=app%3Decho&limit=2&continue=abc");
  fake->respond(410, R"({"kind":"Status","reason":"Expired","message":"continue token expired","code":410})");
  CHECK(kube::is_gone(answer_error()));
  CHECK(answer_error().message == "GET /api/v1/configmaps: Expired (410): continue token expired");
}

TEST_CASE_FIXTURE(Fixture, "writes: methods, content types and query parameters") {
  client->create(kConfigMaps, "shop", kConfigMap, capture(), {"", "trellis", true});
  CHECK(fake->next().method == "POST");
  CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps?fieldManager=trellis&dryRun=All");
  CHECK(fake->next().content_type == "application/json");
  CHECK(fake->next().body == kConfigMap);
  fake->respond(201, kConfigMap);
  CHECK(answer_name() == "settings");

  struct Case {
    kube::PatchType type;
    const char* content_type;
  };
  for (Case c : {Case{kube::PatchType::merge, "application/merge-patch+json"},
                 Case{kube::PatchType::json, "application/json-patch+json"},
                 Case{kube::PatchType::strategic_merge, "application/strategic-merge-patch+json"}}) {
    client->patch(kConfigMaps, "shop", "settings", c.type, "{}", capture());
    CHECK(fake->next().method == "PATCH");
    CHECK(fake->next().content_type == c.content_type);
    CHECK(fake->next().target == "/api/v1/namespaces/shop/configmaps/settings");
    fake->respond(200, kConfigMap);
  }
  kube::PatchOptions apply;
  apply.field_manager = "trellis-controller";
  apply.force = true;
  client->patch(kHttpRoutes, "shop", "split", kube::PatchType::apply, "{}", capture(), apply);
  CHECK(fake->next().content_type == "application/apply-patch+yaml");
  CHECK(fake->next().target ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/split"
        "?fieldManager=trellis-controller&force=true");
  fake->respond(200, kConfigMap);
}

TEST_CASE_FIXTURE(Fixture, "the status subresource") {
  client->get_status(kHttpRoutes, "shop", "split", capture());
  CHECK(fake->next().target ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/split/status");
  fake->respond(200, kConfigMap);
  client->update_status(kHttpRoutes, "shop", "split", "{}", capture());
  CHECK(fake->next().method == "PUT");
  CHECK(fake->next().target ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/split/status");
  fake->respond(200, kConfigMap);
  client->patch_status(kHttpRoutes, "shop", "split", kube::PatchType::merge, "{}", capture());
  CHECK(fake->next().method == "PATCH");
  CHECK(fake->next().target ==
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/split/status");
  fake->respond(200, kConfigMap);
}

TEST_CASE_FIXTURE(Fixture, "delete with and without preconditions") {
  client->remove(kConfigMaps, "shop", "settings", capture());
  CHECK(fake->next().method == "DELETE");
  CHECK(fake->next().body.empty());
  CHECK(fake->next().content_type.empty());
  fake->respond(200, R"({"kind":"Status","status":"Success","metadata":{"name":"settings"}})");
  kube::DeleteOptions o;
  o.uid = "u-1";
  o.resource_version = "5";
  o.propagation_policy = "Foreground";
  o.grace_period_seconds = 0;
  client->remove(kConfigMaps, "shop", "settings", capture(), o);
  CHECK(fake->next().content_type == "application/json");
  CHECK(fake->next().body ==
        R"({"apiVersion":"v1","kind":"DeleteOptions","preconditions":{"uid":"u-1","resourceVersion":"5"},)"
        R"("propagationPolicy":"Foreground","gracePeriodSeconds":0})");
  fake->respond(409, R"({"kind":"Status","reason":"Conflict","message":"Precondition failed: UID in precondition: u-1, UID in object meta: u-2","code":409})");
  CHECK(answer_error().code == 409);
}

TEST_CASE_FIXTURE(Fixture, "refused requests answer on the next loop turn and can be cancelled") {
  client->get(kConfigMaps, "shop", "a/b", capture());
  CHECK(fake->pending.empty());
  CHECK_FALSE(answer.has_value());  // never inside the call
  trellis::event::testing::run_until(*loop, [&] { return answer.has_value(); });
  CHECK(answer_error().message == "GET configmaps: invalid name 'a/b'");
  CHECK(answer_error().code == 0);

  client->patch(kConfigMaps, "shop", "x", kube::PatchType::apply, "{}", capture());
  trellis::event::testing::run_until(*loop, [&] { return answer.has_value(); });
  CHECK(answer_error().message == "PATCH configmaps: server-side apply needs a field manager");
  kube::PatchOptions forced;
  forced.force = true;
  client->patch(kConfigMaps, "shop", "x", kube::PatchType::merge, "{}", capture(), forced);
  trellis::event::testing::run_until(*loop, [&] { return answer.has_value(); });
  CHECK(answer_error().message == "PATCH configmaps: force applies to server-side apply only");

  auto id = client->create(kConfigMaps, "", "{}", capture());
  client->cancel(id);
  trellis::event::testing::run_for(*loop, std::chrono::milliseconds(20));
  CHECK_FALSE(answer.has_value());
}

TEST_CASE_FIXTURE(Fixture, "cancel reaches the transport; no callback runs") {
  auto id = client->get(kConfigMaps, "shop", "settings", capture());
  client->cancel(id);
  CHECK(fake->cancelled == std::vector<kube::RequestId>{id});
  CHECK(fake->pending.empty());
}

TEST_CASE_FIXTURE(Fixture, "requests are counted by verb and status") {
  client->get(kConfigMaps, "shop", "settings", capture());
  fake->respond(200, kConfigMap);
  client->get(kConfigMaps, "shop", "settings", capture());
  fake->respond(404, "");
  client->list(kConfigMaps, "shop", {}, capture());
  fake->fail("boom");
  std::map<std::string, double> seen;
  for (const auto& family : registry.collect()) {
    if (family.name != "trellis_kube_requests_total") continue;
    for (const auto& m : family.metric) {
      seen[m.label[0].value + "/" + m.label[1].value] = m.counter.value;  // labels sorted: code, verb
    }
  }
  CHECK(seen == std::map<std::string, double>{{"0/list", 1}, {"200/get", 1}, {"404/get", 1}});
}

namespace {

struct Recorder : kube::WatchHandler {
  std::vector<std::string> seen;
  std::optional<trellis::Status> end;
  std::function<void()> after_event;

  void on_open() override { seen.push_back("open"); }
  void on_event(kube::WatchEvent&& e) override {
    seen.push_back(std::string(kube::watch_event_type_name(e.type)));
    if (after_event) after_event();
  }
  void on_malformed(const trellis::Error& e) override { seen.push_back("malformed: " + e.message); }
  void on_end(const trellis::Status& s) override { end = s; }
};

}  // namespace

TEST_CASE_FIXTURE(Fixture, "watch: request, events across chunks, malformed lines, end") {
  Recorder r;
  kube::ListOptions o;
  o.resource_version = "100";
  o.allow_watch_bookmarks = true;
  o.timeout_seconds = 300;
  auto watch = client->watch(kConfigMaps, "shop", o, r);
  CHECK(fake->stream().request.target ==
        "/api/v1/namespaces/shop/configmaps?resourceVersion=100&watch=true&allowWatchBookmarks=true"
        "&timeoutSeconds=300");
  CHECK(fake->stream().request.timeout == std::chrono::seconds(360));
  fake->stream_open();
  fake->stream_data(R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})" "\n" R"({"type":"MOD)");
  fake->stream_data(R"(IFIED","object":{"metadata":{"name":"a"}}})" "\ngarbage\n");
  fake->stream_end(trellis::ok_status());
  CHECK(r.seen == std::vector<std::string>{
                      "open", "ADDED", "MODIFIED",
                      "malformed: watch event: invalid JSON at offset 0: Invalid value."});
  REQUIRE(r.end.has_value());
  CHECK(r.end->ok());
}

TEST_CASE_FIXTURE(Fixture, "watch failures carry the request and the status") {
  Recorder r;
  auto watch = client->watch(kConfigMaps, "shop", {}, r);
  fake->stream_end(kube::api_error(410, R"j({"kind":"Status","reason":"Expired","message":"too old resource version: 1 (40)","code":410})j"));
  REQUIRE(r.end.has_value());
  CHECK(r.end->error().code == 410);
  CHECK(r.end->error().message ==
        "GET /api/v1/namespaces/shop/configmaps: Expired (410): too old resource version: 1 (40)");

  Recorder bad;
  auto refused = client->watch(kube::resources::kNamespaces, "shop", {}, bad);
  CHECK_FALSE(bad.end.has_value());
  trellis::event::testing::run_until(*loop, [&] { return bad.end.has_value(); });
  CHECK(bad.end->error().message ==
        "GET namespaces: namespaces is cluster-scoped: namespace 'shop' not allowed");
}

TEST_CASE_FIXTURE(Fixture, "a handler may destroy its watch inside on_event") {
  Recorder r;
  auto watch = client->watch(kConfigMaps, "shop", {}, r);
  r.after_event = [&] { watch.reset(); };
  fake->stream_data(R"({"type":"ADDED","object":{}})" "\n" R"({"type":"ADDED","object":{}})" "\n");
  CHECK(r.seen == std::vector<std::string>{"ADDED"});
  CHECK(fake->streams.back()->closed);
}
