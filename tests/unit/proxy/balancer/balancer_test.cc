#include "proxy/balancer/balancer.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/support/allocation/allocation_counter.h"

namespace trellis::proxy::balancer {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr double kMs = 1e6;  // nanoseconds

struct FakeClock {
  TimePoint now = TimePoint{} + std::chrono::hours(1);
  Clock clock() {
    return [this] { return now; };
  }
};

// u = 0.5 for ejection jitter (factor exactly 1); picks draw the middle.
constexpr uint64_t kHalf = uint64_t{1} << 63;

net::Address address(int i, uint16_t port = 8080) {
  std::string ip = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
  return net::Address::from_ip(ip, port).value();
}

std::vector<net::Address> addresses(int n) {
  std::vector<net::Address> out;
  for (int i = 0; i < n; ++i) out.push_back(address(i));
  return out;
}

std::unique_ptr<Balancer> make(FakeClock& clock, Random random, const Config& config = {}) {
  auto balancer = Balancer::create(config, clock.clock(), std::move(random));
  REQUIRE(balancer.ok());
  return std::move(balancer).value();
}

Endpoint& endpoint_at(EndpointSets& sets, const net::Address& a) {
  const Endpoint* e = sets.find(a);
  REQUIRE(e != nullptr);
  return const_cast<Endpoint&>(*e);
}

void fail(Balancer& b, Endpoint& e, int times = 1) {
  for (int i = 0; i < times; ++i) b.finish(b.start(e), milliseconds(1), Outcome::failure);
}

void succeed(Balancer& b, Endpoint& e, nanoseconds latency = milliseconds(1)) {
  b.finish(b.start(e), latency, Outcome::success);
}

// Counts how often each address wins `n` picks.
std::map<std::string, int> tally(Balancer& b, Candidates& c, int n) {
  std::map<std::string, int> wins;
  for (int i = 0; i < n; ++i) {
    Choice choice = b.pick(c);
    REQUIRE(choice);
    ++wins[choice.endpoint->address().to_string()];
  }
  return wins;
}

TEST_CASE("config: every invalid field is named") {
  Config c;
  CHECK(validate(c).ok());
  auto error = [](Config bad) { return validate(bad).error().message; };
  c = {};
  c.default_rtt = milliseconds(0);
  CHECK(error(c) == "balancer.default_rtt: must be positive");
  c = {};
  c.decay = milliseconds(-1);
  CHECK(error(c) == "balancer.decay: must be positive");
  c = {};
  c.failure_threshold = 0;
  CHECK(error(c) == "balancer.failure_threshold: must be at least 1");
  c = {};
  c.ejection_base = milliseconds(0);
  CHECK(error(c) == "balancer.ejection_base: must be positive");
  c = {};
  c.ejection_max = milliseconds(999);
  CHECK(error(c) == "balancer.ejection_max: must not be below ejection_base");
  c = {};
  c.ejection_jitter = 1;
  CHECK(error(c) == "balancer.ejection_jitter: must be in [0, 1)");
  c.ejection_jitter = std::nan("");
  CHECK(error(c) == "balancer.ejection_jitter: must be in [0, 1)");
  c.ejection_jitter = -0.1;
  CHECK(error(c) == "balancer.ejection_jitter: must be in [0, 1)");

  FakeClock clock;
  auto bad = Balancer::create(Config{}, clock.clock(), nullptr);
  REQUIRE(!bad.ok());
  CHECK(bad.error().message == "balancer: clock and random source are required");
  c = {};
  c.failure_threshold = 0;
  auto invalid = Balancer::create(c, clock.clock(), [] { return kHalf; });
  REQUIRE(!invalid.ok());
  CHECK(invalid.error().message == "balancer.failure_threshold: must be at least 1");
}

TEST_CASE("pick: no candidate gives no choice; one candidate is the choice") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{}, {address(7)}});
  CHECK(!b->pick((*sets)[0]));
  Choice only = b->pick((*sets)[1]);
  REQUIRE(only);
  CHECK(only.endpoint->address() == address(7));
  CHECK(only.index == 0);
  CHECK(b->panics() == 0);
}

TEST_CASE("p2c: the cheapest endpoint wins its pairs, the dearest never wins") {
  FakeClock clock;
  std::mt19937_64 rng(42);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({addresses(3)});
  // Peaks above the 30 ms default replace it at once; the clock stands still,
  // so nothing decays.
  succeed(*b, endpoint_at(*sets, address(0)), milliseconds(40));
  succeed(*b, endpoint_at(*sets, address(1)), milliseconds(80));
  succeed(*b, endpoint_at(*sets, address(2)), milliseconds(160));
  auto wins = tally(*b, (*sets)[0], 30000);
  // Of the three equally likely pairs, the fastest wins two, the middle one one.
  CHECK(wins[address(0).to_string()] > 19000);
  CHECK(wins[address(0).to_string()] < 21000);
  CHECK(wins[address(1).to_string()] > 9000);
  CHECK(wins[address(1).to_string()] < 11000);
  CHECK(wins.count(address(2).to_string()) == 0);
}

TEST_CASE("p2c: outstanding requests make an endpoint dearer") {
  FakeClock clock;
  std::mt19937_64 rng(7);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({addresses(4)});
  Endpoint& busy = endpoint_at(*sets, address(3));
  std::vector<Attempt> in_flight;
  for (int i = 0; i < 3; ++i) in_flight.push_back(b->start(busy));
  CHECK(busy.outstanding() == 3);
  CHECK(b->cost(busy) == doctest::Approx(4 * 30 * kMs));

  auto wins = tally(*b, (*sets)[0], 30000);
  CHECK(wins.count(address(3).to_string()) == 0);
  for (int i = 0; i < 3; ++i) {
    CHECK(wins[address(i).to_string()] > 9000);
    CHECK(wins[address(i).to_string()] < 11000);
  }

  in_flight.clear();  // abandoned: no longer outstanding
  CHECK(busy.outstanding() == 0);
  wins = tally(*b, (*sets)[0], 30000);
  CHECK(wins[address(3).to_string()] > 6500);
}

TEST_CASE("p2c: traffic moves away from an endpoint that gets slow") {
  FakeClock clock;
  std::mt19937_64 rng(1234);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({addresses(5)});
  std::map<std::string, int> wins;
  for (int i = 0; i < 10000; ++i) {
    clock.now += milliseconds(1);
    Choice choice = b->pick((*sets)[0]);
    REQUIRE(choice);
    bool slow = choice.endpoint->address() == address(0);
    ++wins[choice.endpoint->address().to_string()];
    b->finish(b->start(*choice.endpoint), milliseconds(slow ? 200 : 10), Outcome::success);
  }
  // Uniform would give it 2000 of 10000.
  CHECK(wins[address(0).to_string()] < 50);
}

TEST_CASE("peak EWMA: exact values") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));
  CHECK(e.rtt_estimate_ns() == 30 * kMs);  // the default before any sample

  succeed(*b, e, milliseconds(100));  // a peak replaces the estimate at once
  CHECK(e.rtt_estimate_ns() == 100 * kMs);

  clock.now += seconds(5);  // a lower sample: decay toward it, tau = 10 s
  succeed(*b, e, milliseconds(20));
  const double w = std::exp(-0.5);
  const double v = 100 * kMs * w + 20 * kMs * (1 - w);
  CHECK(e.rtt_estimate_ns() == doctest::Approx(v).epsilon(1e-12));

  // cost = estimate * (outstanding + 1), read at the same instant: no decay.
  CHECK(b->cost(e) == doctest::Approx(v).epsilon(1e-12));
  Attempt held = b->start(e);
  CHECK(b->cost(e) == doctest::Approx(2 * v).epsilon(1e-12));

  // Reading the cost 10 s later decays the estimate toward zero.
  clock.now += seconds(10);
  const double decayed = v * std::exp(-1.0);
  CHECK(b->cost(e) == doctest::Approx(2 * decayed).epsilon(1e-12));
  CHECK(e.rtt_estimate_ns() == doctest::Approx(decayed).epsilon(1e-12));

  // A fast failure never makes the endpoint look faster.
  clock.now += seconds(1);
  fail(*b, e);
  CHECK(e.rtt_estimate_ns() == doctest::Approx(decayed).epsilon(1e-12));

  // A slow failure is a peak like any other.
  b->finish(std::move(held), milliseconds(500), Outcome::failure);
  CHECK(e.rtt_estimate_ns() == 500 * kMs);
  CHECK(e.outstanding() == 0);
}

TEST_CASE("failure accrual: N consecutive failures eject; a success resets the count") {
  FakeClock clock;
  std::mt19937_64 rng(3);
  bool fixed = true;  // u = 0.5 while ejecting, seeded draws while picking
  auto b = make(clock, [&] { return fixed ? kHalf : rng(); });
  auto sets = b->install({{address(0), address(1)}});
  Endpoint& a = endpoint_at(*sets, address(0));
  Endpoint& other = endpoint_at(*sets, address(1));

  fail(*b, a, 4);
  CHECK(a.consecutive_failures() == 4);
  succeed(*b, a);
  CHECK(a.consecutive_failures() == 0);
  fail(*b, a, 4);
  CHECK(!a.ejected(clock.now));
  fail(*b, a);
  CHECK(a.ejected(clock.now));
  CHECK(a.ejected_until() == clock.now + seconds(1));  // u = 0.5: no jitter
  CHECK(a.consecutive_ejections() == 1);
  CHECK(a.consecutive_failures() == 0);
  CHECK(b->ejections() == 1);

  fixed = false;
  auto wins = tally(*b, (*sets)[0], 200);
  CHECK(wins[other.address().to_string()] == 200);
  CHECK(b->panics() == 0);

  clock.now += seconds(1);  // the ejection has ended
  CHECK(!a.ejected(clock.now));
  wins = tally(*b, (*sets)[0], 200);
  CHECK(wins[a.address().to_string()] > 0);
}

TEST_CASE("probation: one failure after readmission re-ejects; a success resets the back-off") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));

  fail(*b, e, 5);
  CHECK(e.ejected_until() == clock.now + seconds(1));
  clock.now = e.ejected_until();
  fail(*b, e);  // on probation: one failure is enough, and the back-off doubles
  CHECK(e.consecutive_ejections() == 2);
  CHECK(e.ejected_until() == clock.now + seconds(2));

  clock.now = e.ejected_until();
  succeed(*b, e);
  CHECK(e.consecutive_ejections() == 0);
  CHECK(e.consecutive_failures() == 0);
  fail(*b, e, 4);  // out of probation: N failures again, and the base back-off
  CHECK(!e.ejected(clock.now));
  fail(*b, e);
  CHECK(e.ejected_until() == clock.now + seconds(1));
}

TEST_CASE("back-off doubles per ejection in a row and stops at the cap") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));
  auto ejected_for = [&] {
    return std::chrono::duration_cast<seconds>(e.ejected_until() - clock.now).count();
  };
  fail(*b, e, 5);
  std::vector<int64_t> got{ejected_for()};
  for (int i = 0; i < 8; ++i) {
    clock.now = e.ejected_until();
    fail(*b, e);
    got.push_back(ejected_for());
  }
  CHECK(got == std::vector<int64_t>{1, 2, 4, 8, 16, 32, 60, 60, 60});
  CHECK(e.ejected_until() - clock.now == seconds(60));
}

TEST_CASE("ejection jitter: within ±10 %, never above the cap") {
  FakeClock clock;
  uint64_t draw = 0;
  auto b = make(clock, [&] { return draw; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));

  draw = 0;  // u = 0: the shortest
  fail(*b, e, 5);
  CHECK(e.ejected_until() - clock.now == milliseconds(900));

  clock.now = e.ejected_until();
  draw = UINT64_MAX;  // u just below 1: the longest, +10 % (to double precision)
  fail(*b, e);
  nanoseconds longest = e.ejected_until() - clock.now;
  CHECK(longest <= milliseconds(2200));
  CHECK(longest > milliseconds(2199));

  std::mt19937_64 rng(99);
  for (int i = 0; i < 5; ++i) {  // 4, 8, 16, 32 s, then the cap
    clock.now = e.ejected_until();
    draw = rng();
    fail(*b, e);
  }
  for (int i = 0; i < 50; ++i) {
    clock.now = e.ejected_until();
    draw = rng();
    fail(*b, e);
    nanoseconds d = e.ejected_until() - clock.now;
    CHECK(d >= seconds(54));
    CHECK(d <= seconds(60));
  }
  clock.now = e.ejected_until();
  draw = UINT64_MAX;
  fail(*b, e);
  CHECK(e.ejected_until() - clock.now == seconds(60));
}

TEST_CASE("outcomes from before the ejection, or during it, leave the accrual alone") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));

  Attempt early = b->start(e);
  Attempt during;
  fail(*b, e, 5);
  CHECK(e.ejected(clock.now));
  during = b->start(e);  // panic mode sends it anyway
  clock.now += milliseconds(500);
  fail(*b, e);  // while ejected: does not extend it
  b->finish(std::move(during), milliseconds(1), Outcome::failure);
  CHECK(e.ejected_until() == TimePoint(clock.now - milliseconds(500) + seconds(1)));
  CHECK(e.consecutive_ejections() == 1);

  clock.now += seconds(1);  // readmitted, on probation
  b->finish(std::move(early), milliseconds(1), Outcome::failure);  // stale
  CHECK(!e.ejected(clock.now));
  CHECK(e.consecutive_failures() == 0);
  CHECK(e.outstanding() == 0);
}

TEST_CASE("panic mode: all candidates ejected, pick among them and count it") {
  FakeClock clock;
  std::mt19937_64 rng(5);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({{address(0), address(1), address(2)}, {address(0)}});
  for (int i = 0; i < 3; ++i) fail(*b, endpoint_at(*sets, address(i)), 5);

  std::map<std::string, int> wins = tally(*b, (*sets)[0], 300);
  CHECK(wins.size() >= 2);
  CHECK(b->panics() == 300);

  Choice single = b->pick((*sets)[1]);  // a single ejected candidate is still the choice
  CHECK(single.endpoint == &endpoint_at(*sets, address(0)));
  CHECK(b->panics() == 301);

  clock.now += seconds(2);  // every ejection (0.9 .. 1.1 s) has ended
  tally(*b, (*sets)[0], 100);
  b->pick((*sets)[1]);
  CHECK(b->panics() == 301);
}

TEST_CASE("ejected endpoints are skipped; they come back when their ejection ends") {
  FakeClock clock;
  std::mt19937_64 rng(11);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({addresses(100)});
  for (int i = 10; i < 100; ++i) fail(*b, endpoint_at(*sets, address(i)), 5);

  std::map<std::string, int> wins = tally(*b, (*sets)[0], 5000);
  CHECK(wins.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(wins.count(address(i).to_string()) == 1);
  CHECK(b->panics() == 0);

  clock.now += seconds(2);
  wins = tally(*b, (*sets)[0], 20000);
  CHECK(wins.size() == 100);
}

TEST_CASE("readmission: passes at most every 10 ms, but never a needless panic") {
  FakeClock clock;
  std::mt19937_64 rng(8);
  bool fixed = true;  // u = 0.5 while ejecting: exact ejection times
  auto b = make(clock, [&] { return fixed ? kHalf : rng(); });
  auto sets = b->install({addresses(3)});
  Candidates& c = (*sets)[0];
  Endpoint& a = endpoint_at(*sets, address(0));
  Endpoint& bee = endpoint_at(*sets, address(1));
  Endpoint& cee = endpoint_at(*sets, address(2));
  const TimePoint t0 = clock.now;

  fail(*b, a, 5);  // until t0 + 1 s
  fixed = false;
  tally(*b, c, 20);  // moves a behind the others
  fixed = true;
  clock.now = t0 + milliseconds(4);
  fail(*b, bee, 5);  // until t0 + 1.004 s
  clock.now = t0 + milliseconds(500);
  fail(*b, cee, 5);  // until t0 + 1.5 s

  clock.now = t0 + milliseconds(1001);  // a pass readmits a; b and c go behind
  fixed = false;
  CHECK(b->pick(c).endpoint == &a);
  fixed = true;
  fail(*b, a);  // on probation: ejected again, until t0 + 3.001 s

  // 5 ms after the last pass, b's ejection has ended but no routine pass runs;
  // rather than panic, the pick looks again and finds b.
  clock.now = t0 + milliseconds(1006);
  fixed = false;
  CHECK(b->pick(c).endpoint == &bee);
  CHECK(b->panics() == 0);
}

TEST_CASE("install keeps the state of addresses still present and drops the rest") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto first = b->install({{address(0), address(1)}});
  Endpoint& a = endpoint_at(*first, address(0));
  Endpoint& kept = endpoint_at(*first, address(1));
  fail(*b, a, 3);
  fail(*b, kept, 2);
  Attempt on_a = b->start(a);
  Attempt on_kept = b->start(kept);
  succeed(*b, kept, milliseconds(250));

  auto second = b->install({{address(1), address(2)}});
  CHECK(b->endpoint_count() == 2);
  CHECK(second->find(address(0)) == nullptr);
  const Endpoint& carried = endpoint_at(*second, address(1));
  CHECK(&carried == &kept);
  CHECK(carried.outstanding() == 1);
  CHECK(carried.rtt_estimate_ns() == 250 * kMs);
  const Endpoint& fresh = endpoint_at(*second, address(2));
  CHECK(fresh.outstanding() == 0);
  CHECK(fresh.rtt_estimate_ns() == 30 * kMs);

  // The dropped endpoint lives on while its attempt and the old sets need it.
  b->finish(std::move(on_a), milliseconds(1), Outcome::failure);
  CHECK(a.outstanding() == 0);
  CHECK(a.consecutive_failures() == 4);
  first.reset();

  // An address that comes back starts fresh.
  auto third = b->install({{address(0), address(1), address(2)}});
  const Endpoint& back = endpoint_at(*third, address(0));
  CHECK(back.consecutive_failures() == 0);
  CHECK(back.outstanding() == 0);
  CHECK(&endpoint_at(*third, address(1)) == &kept);
  b->finish(std::move(on_kept), milliseconds(1), Outcome::success);
  CHECK(kept.outstanding() == 0);
  CHECK(kept.consecutive_failures() == 0);
}

TEST_CASE("install: duplicates count once, sets share state, index is the position in the set") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  net::Address v6 = net::Address::from_ip("2001:db8::1", 80).value();
  net::Address v6_spelled_out = net::Address::from_ip("2001:0db8:0:0:0:0:0:1", 80).value();
  auto sets = b->install({{address(0), address(0), v6, v6_spelled_out}, {address(5), address(0)}});
  REQUIRE(sets->size() == 2);
  CHECK((*sets)[0].size() == 2);
  CHECK((*sets)[0].index(0) == 0);
  CHECK((*sets)[0].index(1) == 2);
  CHECK((*sets)[1].size() == 2);
  CHECK(&(*sets)[1].endpoint(1) == &(*sets)[0].endpoint(0));
  CHECK(b->endpoint_count() == 3);
  CHECK(sets->find(v6_spelled_out) == &(*sets)[0].endpoint(1));

  auto again = b->install({{v6_spelled_out}});
  CHECK(&(*again)[0].endpoint(0) == &(*sets)[0].endpoint(1));

  Choice choice = b->pick((*sets)[1]);
  REQUIRE(choice);
  CHECK(choice.endpoint->address() == (choice.index == 0 ? address(5) : address(0)));
}

TEST_CASE("an abandoned attempt stops counting as outstanding; an empty one finishes as a no-op") {
  FakeClock clock;
  auto b = make(clock, [] { return kHalf; });
  auto sets = b->install({{address(0)}});
  Endpoint& e = endpoint_at(*sets, address(0));
  {
    Attempt a = b->start(e);
    Attempt moved = std::move(a);
    CHECK(!a);  // NOLINT: moved-from is empty by contract
    CHECK(e.outstanding() == 1);
    Attempt replaced = b->start(e);
    CHECK(e.outstanding() == 2);
    replaced = std::move(moved);  // abandons what `replaced` held
    CHECK(e.outstanding() == 1);
  }
  CHECK(e.outstanding() == 0);
  b->finish(Attempt(), milliseconds(1), Outcome::failure);  // an empty attempt is a no-op
  CHECK(e.consecutive_failures() == 0);
}

TEST_CASE("50 000 endpoints: pick, start and finish allocate nothing") {
  FakeClock clock;
  std::mt19937_64 rng(2024);
  auto b = make(clock, [&] { return rng(); });
  auto sets = b->install({addresses(50000)});
  Candidates& all = (*sets)[0];
  for (int i = 0; i < 50000; i += 10) fail(*b, endpoint_at(*sets, address(i)), 5);

  trellis::testing::start_counting_allocations();
  size_t ejected_picks = 0;
  for (int i = 0; i < 100000; ++i) {
    clock.now += std::chrono::microseconds(50);  // crosses every ejection's end
    Choice choice = b->pick(all);
    if (choice.endpoint->ejected(clock.now)) ++ejected_picks;
    b->finish(b->start(*choice.endpoint), milliseconds(i % 7),
              i % 100 == 0 ? Outcome::failure : Outcome::success);
  }
  size_t allocations = trellis::testing::stop_counting_allocations();
  CHECK(allocations == 0);
  CHECK(ejected_picks == 0);
  CHECK(b->panics() == 0);
}

}  // namespace
}  // namespace trellis::proxy::balancer
