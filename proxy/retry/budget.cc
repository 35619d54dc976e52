#include "proxy/retry/budget.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace trellis::proxy::retry {

namespace {

constexpr int64_t kUnitsPerRetry = 1000;

uint64_t pack(uint64_t bucket, int64_t value) {
  return (bucket << 32) | static_cast<uint32_t>(static_cast<int32_t>(value));
}
uint64_t number_of(uint64_t word) { return word >> 32; }
int64_t value_of(uint64_t word) { return static_cast<int32_t>(static_cast<uint32_t>(word)); }

}  // namespace

Status validate(const BudgetConfig& config) {
  // Also rejects NaN.
  if (!(config.ratio >= 0 && config.ratio <= 10)) {
    return make_error("retry_budget.ratio: must be in [0, 10]");
  }
  if (config.min_per_second > 1000000) {
    return make_error("retry_budget.min_per_second: must be in [0, 1000000]");
  }
  if (config.ttl < std::chrono::seconds(1) || config.ttl > std::chrono::seconds(60)) {
    return make_error("retry_budget.ttl: must be in [1s, 60s]");
  }
  return ok_status();
}

Result<std::unique_ptr<Budget>> Budget::create(const BudgetConfig& config, Clock clock) {
  if (Status s = validate(config); !s.ok()) return std::move(s).error();
  if (!clock) return make_error("retry_budget: a clock is required");
  return std::unique_ptr<Budget>(new Budget(config, std::move(clock)));
}

Budget::Budget(const BudgetConfig& config, Clock clock)
    : clock_(std::move(clock)),
      origin_(clock_()),
      width_(std::chrono::nanoseconds(config.ttl) / kBuckets),
      deposit_units_(std::llround(config.ratio * kUnitsPerRetry)),
      reserve_units_(static_cast<int64_t>(config.min_per_second) * config.ttl.count()) {}

uint64_t Budget::bucket_number() {
  TimePoint now = clock_();
  if (now <= origin_) return 0;
  return static_cast<uint64_t>((now - origin_) / width_) & 0xffffffffu;
}

void Budget::expire(uint64_t now_bucket) {
  for (auto& bucket : buckets_) {
    uint64_t word = bucket.load();
    while (value_of(word) != 0 && number_of(word) + kBuckets <= now_bucket) {
      if (bucket.compare_exchange_weak(word, pack(number_of(word), 0))) {
        balance_ -= value_of(word);
        break;
      }
    }
  }
}

bool Budget::add(uint64_t now_bucket, int64_t units) {
  auto& bucket = buckets_[now_bucket % kBuckets];
  uint64_t word = bucket.load();
  for (;;) {
    uint64_t desired;
    int64_t expired = 0;
    if (number_of(word) >= now_bucket) {
      // The current bucket, or, for a caller that read the clock just before
      // the bucket turned over, a newer one: lands there rather than nowhere.
      int64_t sum = value_of(word) + units;
      if (sum > std::numeric_limits<int32_t>::max() || sum < std::numeric_limits<int32_t>::min()) {
        return false;
      }
      desired = pack(number_of(word), sum);
    } else {
      expired = value_of(word);
      desired = pack(now_bucket, units);
    }
    if (bucket.compare_exchange_weak(word, desired)) {
      balance_ -= expired;
      return true;
    }
  }
}

void Budget::deposit() {
  uint64_t now_bucket = bucket_number();
  expire(now_bucket);
  if (deposit_units_ != 0 && add(now_bucket, deposit_units_)) balance_ += deposit_units_;
}

bool Budget::try_withdraw() {
  uint64_t now_bucket = bucket_number();
  expire(now_bucket);
  int64_t balance = balance_.load();
  do {
    if (balance + reserve_units_ < kUnitsPerRetry) return false;
  } while (!balance_.compare_exchange_weak(balance, balance - kUnitsPerRetry));
  if (!add(now_bucket, -kUnitsPerRetry)) {
    balance_ += kUnitsPerRetry;
    return false;
  }
  return true;
}

int64_t Budget::available() {
  expire(bucket_number());
  return std::max<int64_t>(0, (balance_.load() + reserve_units_) / kUnitsPerRetry);
}

}  // namespace trellis::proxy::retry
