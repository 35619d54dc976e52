#include "proxy/retry/policy.h"

#include <doctest/doctest.h>

#include <random>
#include <string>

namespace trellis::proxy::retry {
namespace {

using std::chrono::milliseconds;
using std::nullopt;

constexpr std::string_view kPath = "services[0].routes[1].rules[2].retry";

Clock fixed_clock() {
  return [] { return TimePoint{} + std::chrono::hours(1); };
}

std::unique_ptr<Budget> plenty() {
  BudgetConfig config;
  config.min_per_second = 1000000;
  return Budget::create(config, fixed_clock()).value();
}

std::unique_ptr<Budget> empty_budget() {
  BudgetConfig config;
  config.min_per_second = 0;
  config.ratio = 0;
  return Budget::create(config, fixed_clock()).value();
}

Policy policy(std::vector<int32_t> codes, std::optional<int32_t> attempts,
              std::optional<milliseconds> backoff) {
  auto p = make_policy(kPath, codes, attempts, backoff, Config{});
  REQUIRE(p.ok());
  return p.value();
}

TEST_CASE("config: every invalid field is named") {
  CHECK(validate(Config{}).ok());
  auto error = [](Config c) { return validate(c).error().message; };
  Config c;
  c.default_attempts = 0;
  CHECK(error(c) == "retry.default_attempts: must be at least 1");
  c = {};
  c.default_backoff = milliseconds(-1);
  CHECK(error(c) == "retry.default_backoff: must not be negative");
  c = {};
  c.backoff_cap_factor = 0;
  CHECK(error(c) == "retry.backoff_cap_factor: must be in [1, 1000]");
  c.backoff_cap_factor = 1001;
  CHECK(error(c) == "retry.backoff_cap_factor: must be in [1, 1000]");
  c = {};
  c.budget.ratio = 11;
  CHECK(error(c) == "retry_budget.ratio: must be in [0, 10]");
}

TEST_CASE("make_policy: a rule's retry stanza, with defaults and exact errors") {
  Policy p = policy({500, 503, 429}, 3, milliseconds(100));
  CHECK(p.configured);
  CHECK(p.retries_status(500));
  CHECK(p.retries_status(503));
  CHECK(p.retries_status(429));
  CHECK(!p.retries_status(502));
  CHECK(!p.retries_status(200));
  CHECK(!p.retries_status(-1));
  CHECK(!p.retries_status(600));
  CHECK(p.max_retries == 3);
  CHECK(p.backoff == milliseconds(100));
  CHECK(p.max_backoff == milliseconds(1000));

  Policy defaults = policy({}, nullopt, nullopt);
  CHECK(defaults.codes.none());
  CHECK(defaults.max_retries == 2);
  CHECK(defaults.backoff == milliseconds(25));
  CHECK(defaults.max_backoff == milliseconds(250));

  auto bad = [](std::vector<int32_t> codes, std::optional<int32_t> attempts,
                std::optional<milliseconds> backoff) {
    return make_policy(kPath, codes, attempts, backoff, Config{}).error().message;
  };
  CHECK(bad({500, 399}, 1, nullopt) ==
        "services[0].routes[1].rules[2].retry.codes[1]: 399 is not in [400, 599]");
  CHECK(bad({600}, 1, nullopt) ==
        "services[0].routes[1].rules[2].retry.codes[0]: 600 is not in [400, 599]");
  CHECK(bad({}, -1, nullopt) ==
        "services[0].routes[1].rules[2].retry.attempts: must not be negative");
  CHECK(bad({}, 1, milliseconds(-5)) ==
        "services[0].routes[1].rules[2].retry.backoff: must not be negative");

  Policy implicit = implicit_policy(Config{});
  CHECK(!implicit.configured);
  CHECK(implicit.max_retries == 1);
  CHECK(implicit.backoff == milliseconds(0));
}

TEST_CASE("refusal names are the metric labels") {
  CHECK(name(Refusal::none) == "none");
  CHECK(name(Refusal::not_retryable) == "not_retryable");
  CHECK(name(Refusal::attempts_exhausted) == "attempts_exhausted");
  CHECK(name(Refusal::body_too_large) == "body_too_large");
  CHECK(name(Refusal::timeout) == "timeout");
  CHECK(name(Refusal::budget_exhausted) == "budget_exhausted");
}

TEST_CASE("should_retry: the decision table") {
  const Policy configured = policy({500, 503}, 2, milliseconds(100));
  const Policy no_codes = policy({}, 1, milliseconds(100));
  const Policy none = implicit_policy(Config{});
  const Random zero = [] { return uint64_t{0}; };
  struct Row {
    const char* what;
    const Policy* policy;
    uint32_t retries_done;
    Outcome outcome;
    bool body_buffered;
    std::optional<milliseconds> remaining;
    Refusal expected;
  };
  const Row rows[] = {
      {"listed code", &configured, 0, Outcome::response(503), true, nullopt, Refusal::none},
      {"listed code, last retry", &configured, 1, Outcome::response(500), true, nullopt,
       Refusal::none},
      {"unlisted code", &configured, 0, Outcome::response(502), true, nullopt,
       Refusal::not_retryable},
      {"success", &configured, 0, Outcome::response(200), true, nullopt, Refusal::not_retryable},
      {"attempts exhausted", &configured, 2, Outcome::response(503), true, nullopt,
       Refusal::attempts_exhausted},
      {"body not buffered", &configured, 0, Outcome::response(503), false, nullopt,
       Refusal::body_too_large},
      {"connect failure", &configured, 0, Outcome::failed(Failure::connect_failed), true, nullopt,
       Refusal::none},
      {"reset, policy without codes", &no_codes, 0, Outcome::failed(Failure::reset), true, nullopt,
       Refusal::none},
      {"malformed response", &no_codes, 0, Outcome::failed(Failure::protocol_error), true, nullopt,
       Refusal::none},
      {"backend timeout", &no_codes, 0, Outcome::failed(Failure::backend_timeout), true, nullopt,
       Refusal::none},
      {"a status, policy without codes", &no_codes, 0, Outcome::response(503), true, nullopt,
       Refusal::not_retryable},
      {"no policy: connect failure", &none, 0, Outcome::failed(Failure::connect_failed), true,
       nullopt, Refusal::none},
      {"no policy: refused stream", &none, 0, Outcome::failed(Failure::refused_stream), true,
       nullopt, Refusal::none},
      {"no policy: second connect failure", &none, 1, Outcome::failed(Failure::connect_failed),
       true, nullopt, Refusal::attempts_exhausted},
      {"no policy: reset", &none, 0, Outcome::failed(Failure::reset), true, nullopt,
       Refusal::not_retryable},
      {"no policy: backend timeout", &none, 0, Outcome::failed(Failure::backend_timeout), true,
       nullopt, Refusal::not_retryable},
      {"no policy: 503", &none, 0, Outcome::response(503), true, nullopt, Refusal::not_retryable},
      {"no policy: body not buffered", &none, 0, Outcome::failed(Failure::connect_failed), false,
       nullopt, Refusal::body_too_large},
      {"time left after the backoff", &configured, 0, Outcome::response(503), true,
       milliseconds(101), Refusal::none},
      {"time left equals the backoff", &configured, 0, Outcome::response(503), true,
       milliseconds(100), Refusal::timeout},
      {"less time left than the backoff", &configured, 1, Outcome::response(503), true,
       milliseconds(150), Refusal::timeout},
      {"no time left, no backoff", &none, 0, Outcome::failed(Failure::connect_failed), true,
       milliseconds(0), Refusal::timeout},
  };
  for (const Row& row : rows) {
    CAPTURE(row.what);
    auto budget = plenty();
    const int64_t before = budget->available();
    Decision d = should_retry(*row.policy, row.retries_done, row.outcome, row.body_buffered,
                              row.remaining, *budget, zero);
    CHECK(name(d.refusal) == name(row.expected));
    CHECK(d.retry() == (row.expected == Refusal::none));
    // Only a retry costs budget.
    CHECK(budget->available() == before - (d.retry() ? 1 : 0));
  }
}

TEST_CASE("should_retry: the delay is the backoff, grown per retry") {
  const Policy p = policy({503}, 5, milliseconds(100));
  auto budget = plenty();
  const Random zero = [] { return uint64_t{0}; };
  std::vector<int64_t> delays;
  for (uint32_t done = 0; done < 5; ++done) {
    Decision d = should_retry(p, done, Outcome::response(503), true, nullopt, *budget, zero);
    REQUIRE(d.retry());
    delays.push_back(d.delay.count());
  }
  CHECK(delays == std::vector<int64_t>{100, 200, 400, 800, 1000});
}

TEST_CASE("should_retry: an exhausted budget refuses, after every other check") {
  const Policy p = policy({503}, 2, milliseconds(0));
  auto budget = empty_budget();
  const Random zero = [] { return uint64_t{0}; };
  CHECK(should_retry(p, 0, Outcome::response(503), true, nullopt, *budget, zero).refusal ==
        Refusal::budget_exhausted);
  CHECK(should_retry(p, 2, Outcome::response(503), true, nullopt, *budget, zero).refusal ==
        Refusal::attempts_exhausted);
  CHECK(should_retry(p, 0, Outcome::response(404), true, nullopt, *budget, zero).refusal ==
        Refusal::not_retryable);

  BudgetConfig one;
  one.min_per_second = 1;
  one.ratio = 0;
  one.ttl = std::chrono::seconds(1);
  auto single = Budget::create(one, fixed_clock()).value();
  CHECK(should_retry(p, 0, Outcome::response(503), true, nullopt, *single, zero).retry());
  CHECK(should_retry(p, 0, Outcome::response(503), true, nullopt, *single, zero).refusal ==
        Refusal::budget_exhausted);
}

TEST_CASE("backoff: [b, 2b) with b = min(backoff * 2^k, cap), exact at the ends") {
  const Policy p = policy({}, 10, milliseconds(100));  // cap 1 s
  struct Expect {
    uint32_t done;
    int64_t low, high;
  };
  const Expect expected[] = {{0, 100, 199}, {1, 200, 399},  {2, 400, 799},
                             {3, 800, 1599}, {4, 1000, 1999}, {9, 1000, 1999}};
  for (const Expect& e : expected) {
    CAPTURE(e.done);
    CHECK(backoff_delay(p, e.done, 0).count() == e.low);
    CHECK(backoff_delay(p, e.done, UINT64_MAX).count() == e.high);
    CHECK(backoff_delay(p, e.done, uint64_t{1} << 63).count() == e.low + e.low / 2);
  }
  // Far past the cap, the doubling stops early and nothing overflows.
  CHECK(backoff_delay(p, 4000000000u, UINT64_MAX).count() == 1999);

  std::mt19937_64 rng(17);
  int64_t sum = 0;
  for (int i = 0; i < 10000; ++i) {
    int64_t d = backoff_delay(p, 1, rng()).count();
    CHECK(d >= 200);
    CHECK(d < 400);
    sum += d;
  }
  CHECK(sum / 10000.0 == doctest::Approx(300).epsilon(0.02));

  const Policy immediate = policy({}, 1, milliseconds(0));
  CHECK(backoff_delay(immediate, 0, UINT64_MAX).count() == 0);
  CHECK(backoff_delay(immediate, 3, UINT64_MAX).count() == 0);

  // The largest Gateway API duration with the largest cap factor still fits.
  Config big;
  big.backoff_cap_factor = 1000;
  auto huge = make_policy(kPath, {}, 1, milliseconds(int64_t{99999} * 3600 * 1000), big);
  REQUIRE(huge.ok());
  CHECK(backoff_delay(*huge, 50, UINT64_MAX).count() > 0);
}

}  // namespace
}  // namespace trellis::proxy::retry
