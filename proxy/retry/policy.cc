#include "proxy/retry/policy.h"

#include <algorithm>
#include <string>

namespace trellis::proxy::retry {

Status validate(const Config& config) {
  if (config.default_attempts < 1) return make_error("retry.default_attempts: must be at least 1");
  if (config.default_backoff.count() < 0) {
    return make_error("retry.default_backoff: must not be negative");
  }
  // Bounded so that backoff * factor fits: Gateway API durations reach 99999h.
  if (config.backoff_cap_factor < 1 || config.backoff_cap_factor > 1000) {
    return make_error("retry.backoff_cap_factor: must be in [1, 1000]");
  }
  return validate(config.budget);
}

Result<Policy> make_policy(std::string_view path, const std::vector<int32_t>& codes,
                           std::optional<int32_t> attempts,
                           std::optional<std::chrono::milliseconds> backoff,
                           const Config& config) {
  Policy policy;
  policy.configured = true;
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] < 400 || codes[i] > 599) {
      return make_error(std::string(path) + ".codes[" + std::to_string(i) + "]: " +
                        std::to_string(codes[i]) + " is not in [400, 599]");
    }
    policy.codes.set(static_cast<size_t>(codes[i] - 400));
  }
  if (attempts && *attempts < 0) {
    return make_error(std::string(path) + ".attempts: must not be negative");
  }
  policy.max_retries = attempts ? static_cast<uint32_t>(*attempts) : config.default_attempts;
  if (backoff && backoff->count() < 0) {
    return make_error(std::string(path) + ".backoff: must not be negative");
  }
  policy.backoff = backoff ? *backoff : config.default_backoff;
  policy.max_backoff = policy.backoff * config.backoff_cap_factor;
  return policy;
}

Policy implicit_policy(const Config& config) {
  Policy policy;
  policy.max_retries = config.implicit_retries;
  return policy;
}

std::string_view name(Refusal refusal) {
  switch (refusal) {
    case Refusal::none: return "none";
    case Refusal::not_retryable: return "not_retryable";
    case Refusal::attempts_exhausted: return "attempts_exhausted";
    case Refusal::body_too_large: return "body_too_large";
    case Refusal::timeout: return "timeout";
    case Refusal::budget_exhausted: return "budget_exhausted";
  }
  return "unknown";
}

std::chrono::milliseconds backoff_delay(const Policy& policy, uint32_t retries_done,
                                        uint64_t draw) {
  int64_t cap = policy.max_backoff.count();
  int64_t b = policy.backoff.count();
  for (uint32_t k = 0; k < retries_done && b < cap; ++k) b *= 2;
  b = std::min(b, cap);
  // floor(b * draw / 2^64), exactly.
  auto jitter = static_cast<int64_t>(
      (static_cast<unsigned __int128>(draw) * static_cast<uint64_t>(b)) >> 64);
  return std::chrono::milliseconds(b + jitter);
}

namespace {

bool retryable(const Policy& policy, const Outcome& outcome) {
  if (!outcome.failure) return policy.configured && policy.retries_status(outcome.status);
  switch (*outcome.failure) {
    case Failure::connect_failed:
    case Failure::refused_stream:
      return true;
    case Failure::reset:
    case Failure::protocol_error:
    case Failure::backend_timeout:
      return policy.configured;
  }
  return false;
}

}  // namespace

Decision should_retry(const Policy& policy, uint32_t retries_done, const Outcome& outcome,
                      bool body_buffered, std::optional<std::chrono::milliseconds> remaining,
                      Budget& budget, const Random& random) {
  if (!retryable(policy, outcome)) return {Refusal::not_retryable};
  if (retries_done >= policy.max_retries) return {Refusal::attempts_exhausted};
  if (!body_buffered) return {Refusal::body_too_large};
  std::chrono::milliseconds delay = backoff_delay(policy, retries_done, random());
  if (remaining && *remaining <= delay) return {Refusal::timeout};
  if (!budget.try_withdraw()) return {Refusal::budget_exhausted};
  return {Refusal::none, delay};
}

}  // namespace trellis::proxy::retry
