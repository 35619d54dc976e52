#include "common/kube/backoff.h"

#include <algorithm>
#include <memory>

namespace trellis::kube {

Status validate(const BackoffOptions& o) {
  if (o.initial.count() <= 0) return make_error("initial must be positive");
  if (o.max < o.initial) return make_error("max must not be less than initial");
  if (!(o.multiplier >= 1.0)) return make_error("multiplier must be at least 1");
  if (!(o.jitter >= 0.0 && o.jitter <= 1.0)) return make_error("jitter must be between 0 and 1");
  return ok_status();
}

RandomSource default_random_source() {
  auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}

std::chrono::milliseconds jittered(std::chrono::milliseconds base, double jitter,
                                   const RandomSource& random) {
  double r = std::clamp(random(), 0.0, 1.0);
  return std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(base.count()) * (1.0 + jitter * r)));
}

Backoff::Backoff(BackoffOptions options, RandomSource random)
    : options_(options), random_(std::move(random)) {}

std::chrono::milliseconds Backoff::next() {
  double base = static_cast<double>(options_.initial.count());
  double cap = static_cast<double>(options_.max.count());
  for (int i = 0; i < attempts_ && base < cap; ++i) base *= options_.multiplier;
  base = std::min(base, cap);
  ++attempts_;
  return jittered(std::chrono::milliseconds(static_cast<int64_t>(base)), options_.jitter, random_);
}

}  // namespace trellis::kube
