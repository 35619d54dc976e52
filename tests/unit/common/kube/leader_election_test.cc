#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/kube/leader_election.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/common/kube/fake_transport.h"

namespace kube = trellis::kube;
namespace json = trellis::json;
using kube::LeaseElection;
using kube::testing::FakeTransport;
using std::chrono::milliseconds;
using std::chrono::seconds;
using trellis::event::testing::run_until;

namespace {

using Wall = std::chrono::system_clock::time_point;
using Mono = std::chrono::steady_clock::time_point;

const Wall kWall = kube::parse_time("2026-01-02T03:04:05Z").value();
const Mono kMono{};

kube::LeaderElectionConfig config_for(const std::string& identity) {
  kube::LeaderElectionConfig c;
  c.lease_namespace = "trellis";
  c.lease_name = "controller";
  c.identity = identity;
  c.lease_duration = seconds(15);
  c.renew_deadline = milliseconds(10000);
  c.retry_period = milliseconds(2000);
  return c;
}

kube::Lease held_by(const std::string& holder, const std::string& rv, int transitions = 3,
                    int duration = 15) {
  kube::Lease l;
  l.metadata.name = "controller";
  l.metadata.namespace_ = "trellis";
  l.metadata.resource_version = rv;
  l.spec = kube::LeaseSpec{holder, duration, "2026-01-01T00:00:00.000000Z",
                           "2026-01-01T00:00:01.000000Z", transitions};
  return l;
}

}  // namespace

TEST_CASE("no lease yet: create it, holding it") {
  LeaseElection e(config_for("pod-a"));
  auto plan = e.plan(std::nullopt, kWall, kMono);
  CHECK(plan.action == LeaseElection::Action::create);
  CHECK(plan.lease.metadata.name == "controller");
  CHECK(plan.lease.metadata.namespace_ == "trellis");
  CHECK(plan.lease.metadata.resource_version.empty());
  CHECK(plan.lease.spec == kube::LeaseSpec{"pod-a", 15, "2026-01-02T03:04:05.000000Z",
                                           "2026-01-02T03:04:05.000000Z", 0});
}

TEST_CASE("another holder's lease is taken only after it went unrenewed for its duration") {
  LeaseElection e(config_for("pod-b"));
  auto lease = held_by("pod-a", "7");
  CHECK(e.plan(lease, kWall, kMono).action == LeaseElection::Action::wait);
  CHECK(e.observed_holder() == "pod-a");
  CHECK(e.plan(lease, kWall, kMono + seconds(14)).action == LeaseElection::Action::wait);
  // The holder renews: the clock starts again from this observation.
  auto renewed = held_by("pod-a", "8");
  renewed.spec.renew_time = "2026-01-01T00:00:20.000000Z";
  CHECK(e.plan(renewed, kWall, kMono + seconds(14)).action == LeaseElection::Action::wait);
  CHECK(e.plan(renewed, kWall, kMono + seconds(28)).action == LeaseElection::Action::wait);
  auto take = e.plan(renewed, kWall + seconds(29), kMono + seconds(29));
  CHECK(take.action == LeaseElection::Action::update);
  CHECK(take.lease.metadata.resource_version == "8");  // optimistic concurrency
  CHECK(take.lease.spec == kube::LeaseSpec{"pod-b", 15, "2026-01-02T03:04:34.000000Z",
                                           "2026-01-02T03:04:34.000000Z", 4});
}

TEST_CASE("the holder's own leaseDurationSeconds decides expiry") {
  LeaseElection e(config_for("pod-b"));
  auto lease = held_by("pod-a", "7", 3, 2);
  CHECK(e.plan(lease, kWall, kMono).action == LeaseElection::Action::wait);
  CHECK(e.plan(lease, kWall, kMono + seconds(2)).action == LeaseElection::Action::update);
}

TEST_CASE("the holder renews without a transition; an empty holder is free") {
  LeaseElection mine(config_for("pod-a"));
  auto renew = mine.plan(held_by("pod-a", "9"), kWall, kMono);
  CHECK(renew.action == LeaseElection::Action::update);
  CHECK(renew.lease.spec == kube::LeaseSpec{"pod-a", 15, "2026-01-01T00:00:00.000000Z",
                                            "2026-01-02T03:04:05.000000Z", 3});

  LeaseElection other(config_for("pod-b"));
  auto free = other.plan(held_by("", "10"), kWall, kMono);
  CHECK(free.action == LeaseElection::Action::update);
  CHECK(free.lease.spec.holder_identity == "pod-b");
  CHECK(free.lease.spec.lease_transitions == 4);
}

TEST_CASE("release clears the holder and shortens the lease") {
  LeaseElection e(config_for("pod-a"));
  auto released = e.release(held_by("pod-a", "11"), kWall);
  CHECK(released.metadata.resource_version == "11");
  CHECK(released.spec == kube::LeaseSpec{"", 1, "2026-01-02T03:04:05.000000Z",
                                         "2026-01-02T03:04:05.000000Z", 3});
}

TEST_CASE("leader election config is validated") {
  auto c = config_for("a");
  CHECK(kube::validate(c).ok());
  c.identity.clear();
  CHECK(kube::validate(c).error().message == "identity is empty");
  c = config_for("a");
  c.renew_deadline = milliseconds(15000);
  CHECK(kube::validate(c).error().message ==
        "lease_duration (15000 ms) must be longer than renew_deadline (15000 ms)");
  c = config_for("a");
  c.retry_period = milliseconds(9000);
  CHECK(kube::validate(c).error().message ==
        "renew_deadline (10000 ms) must be longer than 1.2 × retry_period (9000 ms)");
  c.lease_namespace.clear();
  CHECK(kube::validate(c).error().message == "lease_namespace is empty");
}

namespace {

// The apiserver's side of one Lease: GET, POST and PUT with resourceVersion
// checks, served to any number of fake transports.
struct LeaseServer {
  std::optional<kube::Lease> lease;
  int version = 100;
  int writes = 0;
  bool down_for_a = false;  // fail every request of transport `a`

  void serve(FakeTransport& fake, bool down = false) {
    while (!fake.pending.empty()) {
      if (down) {
        fake.fail("connect to 10.77.0.1:6443: connection refused");
        continue;
      }
      const kube::HttpRequest& r = fake.next();
      if (r.method == "GET") {
        if (!lease) {
          fake.respond(404, R"({"kind":"Status","reason":"NotFound","code":404})");
        } else {
          fake.respond(200, kube::encode_lease(*lease));
        }
        continue;
      }
      auto doc = json::Document::parse(r.body, {});
      REQUIRE(doc.ok());
      auto written = kube::decode_lease(doc->root());
      REQUIRE(written.ok());
      bool conflict = r.method == "POST" ? lease.has_value()
                                         : (!lease || written->metadata.resource_version !=
                                                          lease->metadata.resource_version);
      if (conflict) {
        fake.respond(409, R"({"kind":"Status","reason":"Conflict","code":409})");
        continue;
      }
      lease = *written;
      lease->metadata.resource_version = std::to_string(++version);
      ++writes;
      fake.respond(r.method == "POST" ? 201 : 200, kube::encode_lease(*lease));
    }
  }
};

struct Replica {
  Replica(trellis::event::EventLoop& loop, const std::string& identity) {
    auto t = std::make_unique<FakeTransport>();
    fake = t.get();
    client = std::make_unique<kube::Client>(loop, std::move(t));
    auto c = config_for(identity);
    c.lease_duration = seconds(1);
    c.renew_deadline = milliseconds(500);
    c.retry_period = milliseconds(50);
    kube::LeaderElector::Callbacks callbacks;
    callbacks.on_started_leading = [this] { events.push_back("started"); };
    callbacks.on_stopped_leading = [this] { events.push_back("stopped"); };
    callbacks.on_new_leader = [this](const std::string& h) { events.push_back("leader " + h); };
    elector = kube::LeaderElector::create(*client, c, callbacks).value();
  }

  FakeTransport* fake = nullptr;
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<kube::LeaderElector> elector;
  std::vector<std::string> events;
};

}  // namespace

TEST_CASE("two electors: one leads, release hands over quickly") {
  auto loop = trellis::event::testing::make_loop();
  LeaseServer server;
  Replica a(*loop, "pod-a"), b(*loop, "pod-b");
  auto serve = [&] {
    server.serve(*a.fake);
    server.serve(*b.fake);
  };
  a.elector->start();
  REQUIRE(run_until(*loop, [&] { serve(); return a.elector->is_leader(); }));
  b.elector->start();
  // b sees a's lease and keeps waiting while a renews.
  int writes_before = server.writes;
  REQUIRE(run_until(*loop, [&] { serve(); return server.writes >= writes_before + 5; }));
  CHECK_FALSE(b.elector->is_leader());
  CHECK(b.elector->leader() == "pod-a");
  CHECK(server.lease->spec.holder_identity == "pod-a");
  CHECK(server.lease->spec.lease_transitions == 0);

  std::optional<trellis::Status> released;
  a.elector->release([&](const trellis::Status& s) { released = s; });
  REQUIRE(run_until(*loop, [&] { serve(); return released.has_value(); }));
  CHECK(released->ok());
  CHECK_FALSE(a.elector->is_leader());
  // b takes over at its next retry, long before the 1 s lease would expire.
  auto start = std::chrono::steady_clock::now();
  REQUIRE(run_until(*loop, [&] { serve(); return b.elector->is_leader(); }));
  CHECK(std::chrono::steady_clock::now() - start < milliseconds(800));
  CHECK(server.lease->spec.holder_identity == "pod-b");
  CHECK(server.lease->spec.lease_transitions == 1);  // released by a, taken by b
  CHECK(a.events == std::vector<std::string>{"leader pod-a", "started", "stopped"});
  CHECK(b.events == std::vector<std::string>{"leader pod-a", "leader ", "leader pod-b", "started"});
}

TEST_CASE("a leader that cannot renew stops leading; another takes over after expiry") {
  auto loop = trellis::event::testing::make_loop();
  LeaseServer server;
  Replica a(*loop, "pod-a"), b(*loop, "pod-b");
  bool a_down = false;
  auto serve = [&] {
    server.serve(*a.fake, a_down);
    server.serve(*b.fake);
  };
  a.elector->start();
  REQUIRE(run_until(*loop, [&] { serve(); return a.elector->is_leader(); }));
  b.elector->start();
  a_down = true;
  auto start = std::chrono::steady_clock::now();
  REQUIRE(run_until(*loop, [&] { serve(); return !a.elector->is_leader(); }));
  CHECK(std::chrono::steady_clock::now() - start >= milliseconds(400));
  REQUIRE(run_until(*loop, [&] { serve(); return b.elector->is_leader(); }));
  CHECK(server.lease->spec.holder_identity == "pod-b");
  // a comes back, sees b's live lease and stays a follower.
  a_down = false;
  (void)run_until(*loop, [&] { serve(); return false; }, milliseconds(300));
  CHECK_FALSE(a.elector->is_leader());
  CHECK(a.events == std::vector<std::string>{"leader pod-a", "started", "stopped", "leader pod-b"});
}

TEST_CASE("releasing without leading is a no-op that still answers") {
  auto loop = trellis::event::testing::make_loop();
  Replica a(*loop, "pod-a");
  std::optional<trellis::Status> released;
  a.elector->release([&](const trellis::Status& s) { released = s; });
  REQUIRE(run_until(*loop, [&] { return released.has_value(); }));
  CHECK(released->ok());
  CHECK(a.fake->requests.empty());
}
