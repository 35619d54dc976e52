// Jittered exponential back-off for retries against the API server, so that
// many replicas (or informers) that failed together do not retry together.
//
//   delay(n) = min(max, initial * multiplier^n) * (1 + jitter * r),  r in [0, 1)
#pragma once

#include <chrono>
#include <functional>
#include <random>

#include "common/base/result.h"

namespace trellis::kube {

struct BackoffOptions {
  std::chrono::milliseconds initial{500};
  std::chrono::milliseconds max{30000};
  double multiplier = 2.0;
  double jitter = 0.5;
};

// "initial must be positive", "max must not be less than initial",
// "multiplier must be at least 1", "jitter must be between 0 and 1".
Status validate(const BackoffOptions& options);

// Uniform in [0, 1); injectable so tests are deterministic.
using RandomSource = std::function<double()>;
RandomSource default_random_source();

// `base` stretched by up to `jitter` (1 + jitter * r): spreads timers.
std::chrono::milliseconds jittered(std::chrono::milliseconds base, double jitter,
                                   const RandomSource& random);

class Backoff {
 public:
  explicit Backoff(BackoffOptions options = {}, RandomSource random = default_random_source());

  // The delay before the next attempt; each call lengthens the following one.
  std::chrono::milliseconds next();
  // After a success: the next failure waits `initial` again.
  void reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  BackoffOptions options_;
  RandomSource random_;
  int attempts_ = 0;
};

}  // namespace trellis::kube
