// common/kube against the sandbox's real kube-apiserver: CRUD, pagination,
// watches, server-side apply, the status subresource, informers, 410 Gone,
// leader election and both kinds of authentication. Each case works in a
// namespace of its own, deleted at the end.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/kube/client.h"
#include "common/kube/errors.h"
#include "common/kube/informer.h"
#include "common/kube/leader_election.h"
#include "common/log/log.h"
#include "tests/integration/support/sandbox.h"
#include "tests/unit/common/event/loop_test_util.h"

namespace kube = trellis::kube;
namespace json = trellis::json;
namespace ti = trellis::integration;
using kube::resources::kConfigMaps;
using std::chrono::milliseconds;
using std::chrono::seconds;
using trellis::Result;

namespace {

constexpr milliseconds kWait{30000};

const ti::Sandbox& sandbox() {
  static auto result = [] {
    auto sb = ti::ensure_sandbox();
    if (sb.ok()) {
      // Before any thread exists (setns moves only the calling thread).
      auto entered = ti::enter_sandbox_network(*sb);
      if (!entered.ok()) return Result<ti::Sandbox>(entered.error());
    }
    return sb;
  }();
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.error().message));
  return *result;
}

const kube::ClientConfig& admin_config() {
  static auto config = kube::load_kubeconfig(sandbox().kubeconfig);
  REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
  return *config;
}

std::string unique_namespace() {
  static int counter = 0;
  return "kube-it-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

// The string at a dotted path of an object ("data.k", "metadata.uid"), or "".
std::string field(const json::Value& object, const std::string& dotted) {
  std::optional<json::Value> v = object;
  size_t start = 0;
  while (v && start <= dotted.size()) {
    size_t dot = dotted.find('.', start);
    std::string key = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    auto o = v->object();
    if (!o.ok()) return "";
    v = o->find(key);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (!v || !v->is_string()) return "";
  return std::string(*v->string());
}

std::string config_map(const std::string& ns, const std::string& name, const std::string& value,
                       const std::string& labels = "{}") {
  return R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":")" + name +
         R"(","namespace":")" + ns + R"(","labels":)" + labels + R"(},"data":{"k":")" + value +
         R"("}})";
}

// One loop and one admin client per case, and the case's namespace.
struct Harness {
  Harness() : ns(unique_namespace()) {
    (void)sandbox();
    loop = trellis::event::testing::make_loop();
    REQUIRE(loop);
    kube::ClientOptions options;
    options.metrics = kube::Metrics::create(registry).value();
    auto c = kube::Client::from_config(*loop, admin_config(), options);
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
    client = std::move(*c);
    auto created = call([&](auto done) {
      return client->create(kube::resources::kNamespaces, "",
                            R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + ns +
                                R"("}})",
                            done);
    });
    REQUIRE_MESSAGE(created.ok(), (created.ok() ? "" : created.error().message));
  }

  ~Harness() {
    auto deleted = call([&](auto done) {
      return client->remove(kube::resources::kNamespaces, "", ns, done);
    });
    CHECK_MESSAGE(deleted.ok(), (deleted.ok() ? "" : deleted.error().message));
  }

  // Starts a request and runs the loop until it is answered.
  Result<json::Document> call(
      const std::function<kube::RequestId(kube::Client::Callback)>& start) {
    std::optional<Result<json::Document>> answer;
    start([&](Result<json::Document> doc) { answer.emplace(std::move(doc)); });
    REQUIRE(trellis::event::testing::run_until(*loop, [&] { return answer.has_value(); }, kWait));
    return std::move(*answer);
  }

  json::Document ok(const std::function<kube::RequestId(kube::Client::Callback)>& start) {
    auto answer = call(start);
    REQUIRE_MESSAGE(answer.ok(), (answer.ok() ? "" : answer.error().message));
    return std::move(answer).value();
  }

  bool run_until(const std::function<bool()>& done, milliseconds limit = kWait) {
    return trellis::event::testing::run_until(*loop, done, limit);
  }

  trellis::metrics::Registry registry;
  std::string ns;
  std::unique_ptr<trellis::event::EventLoop> loop;
  std::unique_ptr<kube::Client> client;
};

std::string conflict_message(const std::string& ns, const std::string& name) {
  return "PUT /api/v1/namespaces/" + ns + "/configmaps/" + name +
         ": Conflict (409): Operation cannot be fulfilled on configmaps \"" + name +
         "\": the object has been modified; please apply your changes to the latest version and "
         "try again";
}

}  // namespace

TEST_CASE("CRUD of a ConfigMap, with 409 on a stale resourceVersion and 404 after delete") {
  Harness h;
  auto created = h.ok([&](auto done) {
    return h.client->create(kConfigMaps, h.ns, config_map(h.ns, "settings", "v1"), done);
  });
  std::string rv1 = field(created.root(), "metadata.resourceVersion");
  std::string uid = field(created.root(), "metadata.uid");
  CHECK_FALSE(rv1.empty());

  auto got = h.ok([&](auto done) { return h.client->get(kConfigMaps, h.ns, "settings", done); });
  CHECK(field(got.root(), "data.k") == "v1");

  std::string body = R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings",)"
                     R"("resourceVersion":")" + rv1 + R"("},"data":{"k":"v2"}})";
  auto updated = h.ok([&](auto done) {
    return h.client->update(kConfigMaps, h.ns, "settings", body, done);
  });
  CHECK(field(updated.root(), "data.k") == "v2");
  CHECK(field(updated.root(), "metadata.resourceVersion") != rv1);

  auto stale = h.call([&](auto done) {
    return h.client->update(kConfigMaps, h.ns, "settings", body, done);
  });
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().code == 409);
  CHECK(stale.error().message == conflict_message(h.ns, "settings"));

  auto merged = h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "settings", kube::PatchType::merge,
                           R"({"data":{"m":"merged"}})", done);
  });
  CHECK(field(merged.root(), "data.m") == "merged");
  auto json_patched = h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "settings", kube::PatchType::json,
                           R"([{"op":"replace","path":"/data/k","value":"v3"}])", done);
  });
  CHECK(field(json_patched.root(), "data.k") == "v3");
  auto strategic = h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "settings", kube::PatchType::strategic_merge,
                           R"({"metadata":{"labels":{"s":"yes"}}})", done);
  });
  CHECK(field(strategic.root(), "metadata.labels.s") == "yes");

  kube::DeleteOptions wrong_uid;
  wrong_uid.uid = "00000000-0000-0000-0000-000000000000";
  auto refused = h.call([&](auto done) {
    return h.client->remove(kConfigMaps, h.ns, "settings", done, wrong_uid);
  });
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == 409);
  CHECK(refused.error().message ==
        "DELETE /api/v1/namespaces/" + h.ns + "/configmaps/settings: Conflict (409): Operation "
        "cannot be fulfilled on ConfigMap \"settings\": the UID in the precondition "
        "(00000000-0000-0000-0000-000000000000) does not match the UID in record (" + uid +
        "). The object might have been deleted and then recreated");

  kube::DeleteOptions right_uid;
  right_uid.uid = uid;
  h.ok([&](auto done) { return h.client->remove(kConfigMaps, h.ns, "settings", done, right_uid); });
  auto gone = h.call([&](auto done) { return h.client->get(kConfigMaps, h.ns, "settings", done); });
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == 404);
  CHECK(gone.error().message == "GET /api/v1/namespaces/" + h.ns +
                                    "/configmaps/settings: NotFound (404): configmaps \"settings\" "
                                    "not found");
}

TEST_CASE("list pagination: limit=2 over 7 objects") {
  Harness h;
  for (int i = 0; i < 7; ++i) {
    h.ok([&](auto done) {
      return h.client->create(kConfigMaps, h.ns,
                              config_map(h.ns, "item-" + std::to_string(i), "x",
                                         R"({"batch":"pages"})"),
                              done);
    });
  }
  kube::ListOptions o;
  o.label_selector = "batch=pages";
  o.limit = 2;
  std::vector<std::string> names;
  std::vector<size_t> page_sizes;
  std::string list_rv;
  do {
    auto page = h.ok([&](auto done) { return h.client->list(kConfigMaps, h.ns, o, done); });
    auto items = page.root().object()->required_array("items").value();
    page_sizes.push_back(items.size());
    for (size_t i = 0; i < items.size(); ++i) names.push_back(field(items[i], "metadata.name"));
    std::string rv = field(page.root(), "metadata.resourceVersion");
    if (list_rv.empty()) list_rv = rv;
    CHECK(rv == list_rv);  // every page is the same snapshot
    o.continue_token = field(page.root(), "metadata.continue");
  } while (!o.continue_token.empty());
  CHECK(page_sizes == std::vector<size_t>{2, 2, 2, 1});
  CHECK(names == std::vector<std::string>{"item-0", "item-1", "item-2", "item-3", "item-4",
                                          "item-5", "item-6"});
}

namespace {

struct EventLog : kube::WatchHandler {
  std::vector<std::string> events;  // "TYPE name"
  std::optional<trellis::Status> end;
  bool opened = false;
  void on_open() override { opened = true; }
  void on_event(kube::WatchEvent&& e) override {
    if (e.type == kube::WatchEventType::bookmark) return;
    if (e.type == kube::WatchEventType::error) {
      events.push_back("ERROR " + kube::status_error(e.object()).message);
      return;
    }
    events.push_back(std::string(kube::watch_event_type_name(e.type)) + " " +
                     field(e.object(), "metadata.name"));
  }
  void on_malformed(const trellis::Error& e) override { events.push_back("malformed " + e.message); }
  void on_end(const trellis::Status& s) override { end = s; }
  std::string joined() const {
    std::string all;
    for (const auto& e : events) all += (all.empty() ? "" : ", ") + e;
    return all;
  }
};

}  // namespace

TEST_CASE("a watch sees add, update and delete") {
  Harness h;
  // The controller manager publishes kube-root-ca.crt into every new
  // namespace, at a moment of its choosing: watch only our object.
  kube::ListOptions o;
  o.field_selector = "metadata.name=watched";
  auto list = h.ok([&](auto done) { return h.client->list(kConfigMaps, h.ns, o, done); });
  EventLog log;
  o.resource_version = field(list.root(), "metadata.resourceVersion");
  o.allow_watch_bookmarks = true;
  o.timeout_seconds = 60;
  auto watch = h.client->watch(kConfigMaps, h.ns, o, log);
  REQUIRE(h.run_until([&] { return log.opened || log.end.has_value(); }));
  REQUIRE(log.opened);
  h.ok([&](auto done) {
    return h.client->create(kConfigMaps, h.ns, config_map(h.ns, "watched", "1"), done);
  });
  h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "watched", kube::PatchType::merge,
                           R"({"data":{"k":"2"}})", done);
  });
  h.ok([&](auto done) { return h.client->remove(kConfigMaps, h.ns, "watched", done); });
  REQUIRE(h.run_until([&] { return log.events.size() >= 3 || log.end.has_value(); }));
  const std::vector<std::string> expected{"ADDED watched", "MODIFIED watched", "DELETED watched"};
  CHECK_MESSAGE(log.events == expected, log.joined());
  CHECK_FALSE(log.end.has_value());
}

TEST_CASE("server-side apply: create, conflict between managers, force") {
  Harness h;
  std::string mine = R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"applied",)"
                     R"("namespace":")" + h.ns + R"("},"data":{"owner":"a"}})";
  kube::PatchOptions a;
  a.field_manager = "trellis-test-a";
  auto created = h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "applied", kube::PatchType::apply, mine, done, a);
  });
  CHECK(field(created.root(), "data.owner") == "a");

  std::string theirs = R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"applied",)"
                       R"("namespace":")" + h.ns + R"("},"data":{"owner":"b"}})";
  kube::PatchOptions b;
  b.field_manager = "trellis-test-b";
  auto conflict = h.call([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "applied", kube::PatchType::apply, theirs, done, b);
  });
  REQUIRE_FALSE(conflict.ok());
  CHECK(conflict.error().code == 409);
  CHECK(conflict.error().message.find(
            "Conflict (409): Apply failed with 1 conflict: conflict with \"trellis-test-a\": "
            ".data.owner") != std::string::npos);

  b.force = true;
  auto forced = h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "applied", kube::PatchType::apply, theirs, done, b);
  });
  CHECK(field(forced.root(), "data.owner") == "b");
  auto managers = forced.root().object()->required_object("metadata")->required_array("managedFields");
  REQUIRE(managers.ok());
  std::vector<std::string> names;
  for (size_t i = 0; i < managers->size(); ++i) names.push_back(field((*managers)[i], "manager"));
  CHECK(std::find(names.begin(), names.end(), "trellis-test-b") != names.end());
}

TEST_CASE("the status subresource of a Gateway API HTTPRoute") {
  Harness h;
  h.ok([&](auto done) {
    return h.client->create(kube::resources::kServices, h.ns,
                            R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"echo"},
                                "spec":{"ports":[{"name":"http","port":80,"targetPort":8080}]}})",
                            done);
  });
  auto route = h.ok([&](auto done) {
    return h.client->create(kube::resources::kHttpRoutes, h.ns,
                            R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
                                "metadata":{"name":"split"},
                                "spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo","port":80}],
                                        "rules":[{"backendRefs":[{"name":"echo","port":80}]}]}})",
                            done);
  });
  CHECK(field(route.root(), "metadata.name") == "split");

  std::string status = R"({"status":{"parents":[{
      "parentRef":{"group":"","kind":"Service","name":"echo","port":80},
      "controllerName":"trellis.dev/mesh-controller",
      "conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"ok",
                     "lastTransitionTime":"2026-01-01T00:00:00Z","observedGeneration":1}]}]}})";
  auto patched = h.ok([&](auto done) {
    return h.client->patch_status(kube::resources::kHttpRoutes, h.ns, "split",
                                  kube::PatchType::merge, status, done);
  });
  CHECK(field(patched.root(), "metadata.name") == "split");
  auto read = h.ok([&](auto done) {
    return h.client->get_status(kube::resources::kHttpRoutes, h.ns, "split", done);
  });
  auto parents = read.root().object()->required_object("status")->required_array("parents");
  REQUIRE(parents.ok());
  REQUIRE(parents->size() == 1);
  CHECK(field((*parents)[0], "controllerName") == "trellis.dev/mesh-controller");

  // A write to the main resource leaves status alone; one to status, spec.
  auto spec_write = h.ok([&](auto done) {
    return h.client->patch(kube::resources::kHttpRoutes, h.ns, "split", kube::PatchType::merge,
                           R"({"status":{"parents":[]},"metadata":{"labels":{"x":"y"}}})", done);
  });
  auto still = spec_write.root().object()->required_object("status")->required_array("parents");
  CHECK(still->size() == 1);

  // update_status with the resourceVersion read: succeeds once, then conflicts.
  auto current = h.ok([&](auto done) {
    return h.client->get(kube::resources::kHttpRoutes, h.ns, "split", done);
  });
  std::string body = R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
      "metadata":{"name":"split","resourceVersion":")" +
                     field(current.root(), "metadata.resourceVersion") +
                     R"("},"spec":{"parentRefs":[{"group":"","kind":"Service","name":"echo","port":80}]},
      "status":{"parents":[]}})";
  h.ok([&](auto done) {
    return h.client->update_status(kube::resources::kHttpRoutes, h.ns, "split", body, done);
  });
  auto stale = h.call([&](auto done) {
    return h.client->update_status(kube::resources::kHttpRoutes, h.ns, "split", body, done);
  });
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().code == 409);
  CHECK(stale.error().message.rfind("PUT /apis/gateway.networking.k8s.io/v1/namespaces/" + h.ns +
                                        "/httproutes/split/status: Conflict (409): ",
                                    0) == 0);
}

TEST_CASE("an informer syncs, follows the watch, and delivers the diff after a relist") {
  Harness h;
  for (const char* name : {"a", "b", "c"}) {
    h.ok([&](auto done) {
      return h.client->create(kConfigMaps, h.ns, config_map(h.ns, name, "1"), done);
    });
  }
  std::vector<std::string> log;
  kube::Informer<kube::RawObject>::Handlers handlers;
  handlers.on_add = [&](const auto& o) { log.push_back("add " + o->metadata.name); };
  handlers.on_update = [&](const auto& old, const auto& now) {
    if (old->metadata.resource_version != now->metadata.resource_version) {
      log.push_back("update " + now->metadata.name);
    }
  };
  handlers.on_delete = [&](const auto& o) { log.push_back("delete " + o->metadata.name); };
  handlers.on_synced = [&] { log.push_back("synced"); };
  kube::InformerOptions options;
  options.namespace_ = h.ns;
  options.page_size = 2;  // the first list takes two pages
  kube::Informer<kube::RawObject> informer(*h.client, kConfigMaps, kube::decode_raw_object,
                                           handlers, options);
  informer.start();
  REQUIRE(h.run_until([&] { return informer.has_synced(); }));
  // kube-root-ca.crt is published into every namespace by the controller manager.
  auto without_root_ca = [&] {
    std::vector<std::string> out;
    for (const auto& l : log) {
      if (l.find("kube-root-ca.crt") == std::string::npos) out.push_back(l);
    }
    log.clear();
    return out;
  };
  CHECK(without_root_ca() == std::vector<std::string>{"add a", "add b", "add c", "synced"});

  h.ok([&](auto done) {
    return h.client->create(kConfigMaps, h.ns, config_map(h.ns, "d", "1"), done);
  });
  REQUIRE(h.run_until([&] { return informer.get(h.ns, "d").get() != nullptr; }));
  CHECK(without_root_ca() == std::vector<std::string>{"add d"});

  // Changes made while it is stopped arrive as the relist's diff.
  informer.stop();
  h.ok([&](auto done) {
    return h.client->patch(kConfigMaps, h.ns, "b", kube::PatchType::merge, R"({"data":{"k":"2"}})",
                           done);
  });
  h.ok([&](auto done) { return h.client->remove(kConfigMaps, h.ns, "c", done); });
  h.ok([&](auto done) {
    return h.client->create(kConfigMaps, h.ns, config_map(h.ns, "e", "1"), done);
  });
  trellis::event::testing::run_for(*h.loop, milliseconds(200));
  CHECK(without_root_ca().empty());  // stopped: nothing arrives
  informer.start();
  REQUIRE(h.run_until([&] { return informer.get(h.ns, "e").get() != nullptr; }));
  CHECK(without_root_ca() == std::vector<std::string>{"update b", "add e", "delete c"});
  CHECK(informer.get(h.ns, "c").get() == nullptr);

  // And it watches again after the relist.
  h.ok([&](auto done) { return h.client->remove(kConfigMaps, h.ns, "a", done); });
  REQUIRE(h.run_until([&] { return informer.get(h.ns, "a").get() == nullptr; }));
  CHECK(without_root_ca() == std::vector<std::string>{"delete a"});
}

// Compacts the sandbox's etcd up to its head revision, as the apiserver does
// every five minutes: history before it is gone. This process is inside the
// node's network namespace, where etcd listens on loopback.
void compact_etcd() {
  auto compacted = ti::run_command(
      {"bash", "-c",
       R"SH(set -e
rev=$(curl -sf -X POST http://127.0.0.1:2379/v3/kv/range -d '{"key":"AA=="}' |
      sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
curl -sf -X POST http://127.0.0.1:2379/v3/kv/compaction -d "{\"revision\":\"$rev\",\"physical\":true}")SH"});
  REQUIRE(compacted.ok());
  REQUIRE_MESSAGE(compacted->exit_code == 0, compacted->err);
}

TEST_CASE("a watch from a long-gone resourceVersion gets 410 Gone") {
  Harness h;
  h.ok([&](auto done) {
    return h.client->create(
        kube::resources::kEvents, h.ns,
        R"({"apiVersion":"v1","kind":"Event","metadata":{"name":"compaction"},)"
        R"("involvedObject":{"kind":"ConfigMap","name":"x","namespace":")" + h.ns + R"("},)"
        R"("reason":"Test","message":"before the compaction","type":"Normal"})",
        done);
  });
  // The apiserver serves watches of most resources from its watch cache,
  // which keeps recent history whatever etcd holds; Events bypass that cache,
  // so a watch of them from before etcd's compaction is answered with 410.
  compact_etcd();
  EventLog log;
  kube::ListOptions o;
  o.resource_version = "1";
  o.timeout_seconds = 30;
  auto watch = h.client->watch(kube::resources::kEvents, h.ns, o, log);
  (void)h.run_until(
      [&] {
        for (const auto& e : log.events) {
          if (e.rfind("ERROR ", 0) == 0) return true;
        }
        return log.end.has_value();
      },
      milliseconds(10000));
  // Either a 410 answer or an ERROR event carrying a Status with code 410.
  bool gone = log.end && !log.end->ok() && kube::is_gone(log.end->error());
  for (const auto& e : log.events) gone = gone || e.find("Expired (410)") != std::string::npos;
  std::string seen = log.events.empty() ? std::string("no events") : log.events.back();
  if (log.end && !log.end->ok()) seen += " / " + log.end->error().message;
  CHECK_MESSAGE(gone, seen);
}

TEST_CASE("leader election between two electors: one leads, release hands over") {
  Harness h;
  auto second = kube::Client::from_config(*h.loop, admin_config());
  REQUIRE(second.ok());
  struct Replica {
    std::unique_ptr<kube::LeaderElector> elector;
    std::vector<std::string> events;
  };
  Replica a, b;
  auto make = [&](kube::Client& client, const std::string& identity, Replica& r) {
    kube::LeaderElectionConfig c;
    c.lease_namespace = h.ns;
    c.lease_name = "controller";
    c.identity = identity;
    c.lease_duration = seconds(6);
    c.renew_deadline = milliseconds(4000);
    c.retry_period = milliseconds(500);
    kube::LeaderElector::Callbacks callbacks;
    callbacks.on_started_leading = [&r] { r.events.push_back("started"); };
    callbacks.on_stopped_leading = [&r] { r.events.push_back("stopped"); };
    auto e = kube::LeaderElector::create(client, c, callbacks);
    REQUIRE(e.ok());
    r.elector = std::move(*e);
  };
  make(*h.client, "replica-a", a);
  make(**second, "replica-b", b);
  a.elector->start();
  REQUIRE(h.run_until([&] { return a.elector->is_leader(); }));
  b.elector->start();
  trellis::event::testing::run_for(*h.loop, milliseconds(2000));
  CHECK(a.elector->is_leader());
  CHECK_FALSE(b.elector->is_leader());
  CHECK(b.elector->leader() == "replica-a");

  std::optional<trellis::Status> released;
  a.elector->release([&](const trellis::Status& s) { released = s; });
  REQUIRE(h.run_until([&] { return released.has_value(); }));
  CHECK(released->ok());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(h.run_until([&] { return b.elector->is_leader(); }, milliseconds(5000)));
  CHECK(std::chrono::steady_clock::now() - start < seconds(3));  // well before the 6 s expiry
  auto lease = h.ok([&](auto done) {
    return h.client->get(kube::resources::kLeases, h.ns, "controller", done);
  });
  auto decoded = kube::decode_lease(lease.root());
  REQUIRE(decoded.ok());
  CHECK(decoded->spec.holder_identity == "replica-b");
  CHECK(decoded->spec.lease_transitions == 1);
  CHECK(a.events == std::vector<std::string>{"started", "stopped"});
  CHECK(b.events == std::vector<std::string>{"started"});
  std::optional<trellis::Status> b_released;
  b.elector->release([&](const trellis::Status& s) { b_released = s; });
  REQUIRE(h.run_until([&] { return b_released.has_value(); }));
  b.elector.reset();
  a.elector.reset();
}

TEST_CASE("bearer tokens: a service account's token, from a string and from a rotating file") {
  Harness h;
  h.ok([&](auto done) {
    return h.client->create(kube::resources::kServiceAccounts, h.ns,
                            R"({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"reader"}})",
                            done);
  });
  auto token_path = kube::object_path(kube::resources::kServiceAccounts, h.ns, "reader", "token");
  REQUIRE(token_path.ok());
  std::optional<Result<kube::HttpResponse>> minted;
  h.client->raw({"POST", *token_path, "application/json",
                 R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}})",
                 {}},
                [&](Result<kube::HttpResponse> r) { minted.emplace(std::move(r)); });
  REQUIRE(h.run_until([&] { return minted.has_value(); }));
  REQUIRE(minted->ok());
  REQUIRE((*minted)->status == 201);
  auto doc = json::Document::parse((*minted)->body, {});
  REQUIRE(doc.ok());
  std::string token = field(doc->root(), "status.token");
  REQUIRE_FALSE(token.empty());

  kube::ClientConfig config = admin_config();
  config.client_certificate_pem.clear();
  config.client_key_pem.clear();
  config.token = token;
  auto with_token = kube::Client::from_config(*h.loop, config);
  REQUIRE(with_token.ok());
  // Authenticated as the service account, which may not list ConfigMaps.
  std::optional<Result<json::Document>> answer;
  (*with_token)->list(kConfigMaps, h.ns, {}, [&](Result<json::Document> d) { answer.emplace(std::move(d)); });
  REQUIRE(h.run_until([&] { return answer.has_value(); }));
  REQUIRE_FALSE(answer->ok());
  CHECK(answer->error().code == 403);
  CHECK(answer->error().message ==
        "GET /api/v1/namespaces/" + h.ns + "/configmaps: Forbidden (403): configmaps is forbidden: "
        "User \"system:serviceaccount:" + h.ns + ":reader\" cannot list resource \"configmaps\" in "
        "API group \"\" in the namespace \"" + h.ns + "\"");

  // From a file that rotates: first a bad token (401), then the real one.
  char dir_template[] = "/tmp/trellis-kube-it-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  std::string file = std::string(dir_template) + "/token";
  auto write = [&](const std::string& content) {
    std::string tmp = file + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    REQUIRE(f != nullptr);
    fputs(content.c_str(), f);
    fclose(f);
    REQUIRE(rename(tmp.c_str(), file.c_str()) == 0);
  };
  write("not-a-token\n");
  config.token.clear();
  config.token_file = file;
  auto with_file = kube::Client::from_config(*h.loop, config);
  REQUIRE(with_file.ok());
  answer.reset();
  (*with_file)->list(kConfigMaps, h.ns, {}, [&](Result<json::Document> d) { answer.emplace(std::move(d)); });
  REQUIRE(h.run_until([&] { return answer.has_value(); }));
  REQUIRE_FALSE(answer->ok());
  CHECK(answer->error().code == 401);
  CHECK(answer->error().message ==
        "GET /api/v1/namespaces/" + h.ns + "/configmaps: Unauthorized (401): Unauthorized");
  write(token + "\n");
  answer.reset();
  (*with_file)->list(kConfigMaps, h.ns, {}, [&](Result<json::Document> d) { answer.emplace(std::move(d)); });
  REQUIRE(h.run_until([&] { return answer.has_value(); }));
  CHECK(answer->error().code == 403);
  unlink(file.c_str());
  rmdir(dir_template);
}

TEST_CASE("TLS and connection failures are reported as no answer (code 0)") {
  Harness h;
  kube::ClientConfig wrong_name = admin_config();
  wrong_name.tls_server_name = "not-the-apiserver.example";
  auto client = kube::Client::from_config(*h.loop, wrong_name);
  REQUIRE(client.ok());
  std::optional<Result<json::Document>> answer;
  (*client)->get(kConfigMaps, h.ns, "x", [&](Result<json::Document> d) { answer.emplace(std::move(d)); });
  REQUIRE(h.run_until([&] { return answer.has_value(); }));
  REQUIRE_FALSE(answer->ok());
  CHECK(answer->error().code == 0);
  CHECK(answer->error().message ==
        "GET /api/v1/namespaces/" + h.ns +
            "/configmaps/x: tls handshake failed: certificate verify failed: Hostname mismatch");

  kube::ClientConfig closed_port = admin_config();
  closed_port.port = 6444;
  auto refused = kube::Client::from_config(*h.loop, closed_port);
  REQUIRE(refused.ok());
  answer.reset();
  (*refused)->get(kConfigMaps, h.ns, "x", [&](Result<json::Document> d) { answer.emplace(std::move(d)); });
  REQUIRE(h.run_until([&] { return answer.has_value(); }));
  CHECK(answer->error().code == 0);
  CHECK(answer->error().message == "GET /api/v1/namespaces/" + h.ns +
                                       "/configmaps/x: connect to 10.77.0.1:6444: connection refused");
}
