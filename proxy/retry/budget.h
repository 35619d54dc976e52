// A retry budget (Linkerd's TpsBudget, after Finagle's RetryBudget): retries
// may add at most `ratio` of the route's traffic, plus a reserve, so that a
// failing backend is not stormed. One Budget per route, shared by every worker;
// lock-free.
//
// Arithmetic, exact in integer units (a retry is 1000 units):
//   an original request deposits round(ratio * 1000) units (a retry deposits none)
//   a retry withdraws 1000 units
//   reserve = min_per_second * ttl in milliseconds, in units
//   a retry is allowed iff balance + reserve >= 1000,
//     balance = deposits - withdrawals still inside the window
// so the retries a window allows are
//   floor(min_per_second * ttl_seconds + ratio * requests - retries)
// With the defaults (0.2, 10/s, 10 s), 100 requests allow 100 + 20 = 120
// retries; with a 1 s ttl, 10 + 20 = 30. The ratio counts to 1/1000.
//
// Window: 10 buckets, each ttl/10 wide, numbered by time since create(). A
// deposit or withdrawal lands in the bucket of its time and expires with it: it
// counts for between 0.9 * ttl and ttl. Bucket numbers are 32-bit, good for
// 13 years of uptime at the shortest ttl.
//
// Concurrency: each bucket is one atomic 64-bit word (bucket number, value);
// `balance` is a separate atomic kept equal to the sum of the live buckets —
// whoever clears an expired bucket subtracts its value. A withdrawal is a
// compare-and-swap on balance, so concurrent retries never overdraw it; when no
// call is in progress, balance equals the sum of the buckets exactly. A bucket
// saturates at ±2^31 units (about 2 million retries, or 2^31 / (ratio * 1000)
// requests, per bucket): past that, requests stop earning budget and retries
// are refused.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/base/result.h"

namespace trellis::proxy::retry {

using TimePoint = std::chrono::steady_clock::time_point;
// Called from every worker at once: must be thread-safe (steady_clock::now is).
using Clock = std::function<TimePoint()>;

struct BudgetConfig {
  double ratio = 0.2;             // retries per original request, [0, 10]
  uint32_t min_per_second = 10;   // the reserve, [0, 1000000]
  std::chrono::milliseconds ttl{10000};  // the window, [1s, 60s]
};

// Errors name the field: "retry_budget.ttl: must be in [1s, 60s]".
Status validate(const BudgetConfig& config);

class Budget {
 public:
  static Result<std::unique_ptr<Budget>> create(const BudgetConfig& config, Clock clock);

  void deposit();       // one original request
  bool try_withdraw();  // one retry; false: the budget is exhausted
  // Retries the window allows now (never negative). For metrics and tests.
  int64_t available();

 private:
  static constexpr int kBuckets = 10;

  Budget(const BudgetConfig& config, Clock clock);
  uint64_t bucket_number();
  void expire(uint64_t now_bucket);
  bool add(uint64_t now_bucket, int64_t units);

  Clock clock_;
  TimePoint origin_;
  std::chrono::nanoseconds width_;
  int64_t deposit_units_;
  int64_t reserve_units_;
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<int64_t> balance_{0};
};

}  // namespace trellis::proxy::retry
