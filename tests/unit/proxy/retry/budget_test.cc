#include "proxy/retry/budget.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

namespace trellis::proxy::retry {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Shared by threads: the time is an atomic offset from a fixed origin.
struct FakeClock {
  std::atomic<int64_t> offset_ns{0};
  Clock clock() {
    return [this] {
      return TimePoint{} + std::chrono::hours(1) + std::chrono::nanoseconds(offset_ns.load());
    };
  }
  void advance(std::chrono::nanoseconds d) { offset_ns += d.count(); }
};

std::unique_ptr<Budget> make(FakeClock& clock, const BudgetConfig& config = {}) {
  auto budget = Budget::create(config, clock.clock());
  REQUIRE(budget.ok());
  return std::move(budget).value();
}

void deposit(Budget& budget, int n) {
  for (int i = 0; i < n; ++i) budget.deposit();
}

int withdraw_all(Budget& budget) {
  int n = 0;
  while (budget.try_withdraw()) ++n;
  return n;
}

TEST_CASE("budget config: every invalid field is named") {
  CHECK(validate(BudgetConfig{}).ok());
  auto error = [](BudgetConfig c) { return validate(c).error().message; };
  BudgetConfig c;
  c.ratio = -0.1;
  CHECK(error(c) == "retry_budget.ratio: must be in [0, 10]");
  c.ratio = 10.5;
  CHECK(error(c) == "retry_budget.ratio: must be in [0, 10]");
  c.ratio = std::nan("");
  CHECK(error(c) == "retry_budget.ratio: must be in [0, 10]");
  c = {};
  c.min_per_second = 1000001;
  CHECK(error(c) == "retry_budget.min_per_second: must be in [0, 1000000]");
  c = {};
  c.ttl = milliseconds(999);
  CHECK(error(c) == "retry_budget.ttl: must be in [1s, 60s]");
  c.ttl = milliseconds(60001);
  CHECK(error(c) == "retry_budget.ttl: must be in [1s, 60s]");

  FakeClock clock;
  auto bad = Budget::create(c, clock.clock());
  REQUIRE(!bad.ok());
  CHECK(bad.error().message == "retry_budget.ttl: must be in [1s, 60s]");
  auto no_clock = Budget::create(BudgetConfig{}, nullptr);
  REQUIRE(!no_clock.ok());
  CHECK(no_clock.error().message == "retry_budget: a clock is required");
}

TEST_CASE("budget: min_per_second * ttl + ratio * requests - retries") {
  FakeClock clock;
  SUBCASE("defaults: a 10 s reserve of 10/s, plus 20 % of requests") {
    auto budget = make(clock);
    CHECK(budget->available() == 100);
    deposit(*budget, 100);
    CHECK(budget->available() == 120);
    CHECK(withdraw_all(*budget) == 120);
    CHECK(budget->available() == 0);
    CHECK(!budget->try_withdraw());
  }
  SUBCASE("a 1 s ttl: 100 requests in a second allow 20 + 10 retries") {
    BudgetConfig config;
    config.ttl = seconds(1);
    auto budget = make(clock, config);
    deposit(*budget, 100);
    CHECK(budget->available() == 30);
    CHECK(withdraw_all(*budget) == 30);
  }
  SUBCASE("fractions of a retry round down; deposits accumulate") {
    BudgetConfig config;
    config.min_per_second = 0;
    config.ratio = 0.25;
    auto budget = make(clock, config);
    CHECK(!budget->try_withdraw());
    deposit(*budget, 3);
    CHECK(budget->available() == 0);
    CHECK(!budget->try_withdraw());
    deposit(*budget, 1);
    CHECK(budget->available() == 1);
    deposit(*budget, 6);  // 2.5 in all
    CHECK(budget->available() == 2);
    CHECK(budget->try_withdraw());
    CHECK(budget->try_withdraw());
    CHECK(!budget->try_withdraw());
  }
  SUBCASE("ratio 0 and no reserve: no retry ever") {
    BudgetConfig config;
    config.min_per_second = 0;
    config.ratio = 0;
    auto budget = make(clock, config);
    deposit(*budget, 1000);
    CHECK(budget->available() == 0);
    CHECK(!budget->try_withdraw());
  }
}

TEST_CASE("budget: deposits and withdrawals expire with their bucket") {
  FakeClock clock;
  auto budget = make(clock);  // 10 buckets of 1 s
  deposit(*budget, 100);
  clock.advance(seconds(5));
  deposit(*budget, 50);
  CHECK(budget->available() == 130);
  clock.advance(milliseconds(4999));  // 9.999 s: the first bucket still counts
  CHECK(budget->available() == 130);
  clock.advance(milliseconds(1));  // 10 s: it expires
  CHECK(budget->available() == 110);
  clock.advance(seconds(5));
  CHECK(budget->available() == 100);

  // Withdrawals expire too: the reserve refills.
  CHECK(withdraw_all(*budget) == 100);
  clock.advance(seconds(9));
  CHECK(budget->available() == 0);
  clock.advance(seconds(1));
  CHECK(budget->available() == 100);

  // Long idle: everything has expired, nothing is carried over.
  deposit(*budget, 500);
  clock.advance(std::chrono::hours(24 * 365));
  CHECK(budget->available() == 100);
}

TEST_CASE("budget: an overflowing bucket stops earning, never wraps") {
  FakeClock clock;
  BudgetConfig config;
  config.ratio = 10;  // 10 000 units a request: the bucket holds 214 748 of them
  config.min_per_second = 0;
  config.ttl = seconds(1);
  auto budget = make(clock, config);
  deposit(*budget, 300000);
  CHECK(budget->available() == 2147480);
  clock.advance(milliseconds(100));  // the next bucket earns again
  deposit(*budget, 1);
  CHECK(budget->available() == 2147490);
}

TEST_CASE("budget: 4 threads depositing and withdrawing keep exact totals") {
  FakeClock clock;
  auto budget = make(clock);
  constexpr int kThreads = 4;
  constexpr int kDeposits = 20000;  // per thread; a withdrawal after every 4th
  std::atomic<int> withdrawn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kDeposits; ++i) {
        budget->deposit();
        if (i % 4 == 3 && budget->try_withdraw()) ++withdrawn;
      }
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  // 100 + 20 % of 80 000 = 16 100 allowed; 20 000 tried.
  const int allowed = 100 + kThreads * kDeposits / 5;
  CHECK(withdrawn.load() <= allowed);
  CHECK(withdrawn.load() > 0);
  CHECK(budget->available() == allowed - withdrawn.load());

  // Drain the rest concurrently: exactly what was left, not one more.
  const int64_t left = budget->available();
  std::atomic<int> drained{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      int n = 0;
      while (budget->try_withdraw()) ++n;
      drained += n;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(drained.load() == left);
  CHECK(budget->available() == 0);

  // Once the window has passed, the buckets' sum matched the balance: only the
  // reserve is left.
  clock.advance(seconds(10));
  CHECK(budget->available() == 100);
}

TEST_CASE("budget: threads crossing bucket boundaries keep the balance equal to the buckets") {
  FakeClock clock;
  BudgetConfig config;
  config.ttl = seconds(1);  // buckets of 100 ms
  auto budget = make(clock, config);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        if (t == 0 && i % 100 == 0) clock.advance(milliseconds(7));
        budget->deposit();
        if (i % 3 == 0) budget->try_withdraw();
      }
    });
  }
  for (auto& t : threads) t.join();
  clock.advance(seconds(1));
  CHECK(budget->available() == 10);
}

}  // namespace
}  // namespace trellis::proxy::retry
