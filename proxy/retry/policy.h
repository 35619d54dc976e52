// Retry decisions for one exchange: a rule's HTTPRoute `retry` (GEP-1731)
// compiled into a Policy, and should_retry() after each failed attempt. Pure
// logic: randomness is injected; the budget is budget.h.
//
// What is retried:
//   outcome                                  | rule has retry | rule has none
//   connect_failed, refused_stream           | yes            | yes, implicit_retries times
//   reset, protocol_error, backend_timeout   | yes            | no
//   a response with a status in retry.codes  | yes            | -
//   any other response                       | no             | no
// Connect failures and refused streams are always safe to retry: the endpoint
// processed nothing (Linkerd and Envoy retry them too), and the budget still
// bounds them. Resets, malformed responses and per-attempt timeouts
// (timeouts.backendRequest) are the "connection errors" GEP-1731 retries once a
// rule asks for retries, even without codes.
//
// retry.attempts is the maximum number of retries, not tries: attempts 2 sends
// up to three requests. Omitted: default_attempts.
//
// Backoff: retry k (k = retries_done + 1) waits
//   b = min(backoff * 2^(k-1), max_backoff),  max_backoff = backoff * backoff_cap_factor
//   delay = b + floor(b * u),  u uniform in [0, 1)
// in milliseconds, so delay is in [b, 2b) and never below retry.backoff, as the
// GEP requires. Omitted backoff: default_backoff. A rule without retry waits 0:
// the retry goes straight to another endpoint.
//
// A request is sent again only if the exchange still holds its whole body
// (it buffers at most max_buffered_body bytes). timeouts.request bounds the
// whole exchange: a retry whose delay would not end before it expires is
// refused. Every retry withdraws from the route's Budget, checked last so that
// refusals for other reasons cost no budget. The exchange deposits into that
// Budget once per original request.
#pragma once

#include <bitset>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "proxy/retry/budget.h"

namespace trellis::proxy::retry {

// Uniform over all uint64_t values.
using Random = std::function<uint64_t()>;

struct Config {
  uint32_t default_attempts = 2;  // retry.attempts omitted (as Envoy Gateway)
  std::chrono::milliseconds default_backoff{25};  // retry.backoff omitted (Envoy's base interval)
  uint32_t backoff_cap_factor = 10;  // the exponential part stops at backoff * this, [1, 1000]
  uint32_t implicit_retries = 1;     // connect failures and refused streams, rules without retry
  size_t max_buffered_body = 64 * 1024;  // request body the exchange keeps for a retry
  BudgetConfig budget;
};

// Errors name the field: "retry.backoff_cap_factor: must be in [1, 1000]".
Status validate(const Config& config);

// How an attempt failed without a usable response. The first four mirror
// proxy::http::UpstreamFailure; backend_timeout is timeouts.backendRequest.
enum class Failure { connect_failed, refused_stream, reset, protocol_error, backend_timeout };

struct Outcome {
  int status = 0;  // the response status, when there is no failure
  std::optional<Failure> failure;

  static Outcome response(int status) { return Outcome{status, std::nullopt}; }
  static Outcome failed(Failure failure) { return Outcome{0, failure}; }
};

struct Policy {
  bool configured = false;  // false: the rule has no retry stanza
  std::bitset<200> codes;   // statuses 400-599, indexed by status - 400
  uint32_t max_retries = 0;
  std::chrono::milliseconds backoff{0};
  std::chrono::milliseconds max_backoff{0};

  bool retries_status(int status) const {
    return status >= 400 && status <= 599 && codes[static_cast<size_t>(status - 400)];
  }
};

// A rule's retry stanza. `path` locates it in errors:
// "<path>.codes[1]: 399 is not in [400, 599]", "<path>.attempts: must not be
// negative", "<path>.backoff: must not be negative". config must be valid.
Result<Policy> make_policy(std::string_view path, const std::vector<int32_t>& codes,
                           std::optional<int32_t> attempts,
                           std::optional<std::chrono::milliseconds> backoff, const Config& config);
// For rules without a retry stanza.
Policy implicit_policy(const Config& config);

// Why a retry was refused; none = retry. name() gives the metric label.
enum class Refusal {
  none,
  not_retryable,
  attempts_exhausted,
  body_too_large,
  timeout,
  budget_exhausted,
};
std::string_view name(Refusal refusal);

struct Decision {
  Refusal refusal = Refusal::none;
  std::chrono::milliseconds delay{0};  // wait this long before the retry
  bool retry() const { return refusal == Refusal::none; }
};

// The formula above, with u = draw / 2^64.
std::chrono::milliseconds backoff_delay(const Policy& policy, uint32_t retries_done, uint64_t draw);

// After an attempt ended with `outcome`. retries_done: retries already made (0
// when the original request failed). remaining: what is left of
// timeouts.request; nullopt when the rule sets none. Withdraws from `budget`
// when, and only when, it answers retry. Thread-safe as far as `budget` and
// `random` are.
Decision should_retry(const Policy& policy, uint32_t retries_done, const Outcome& outcome,
                      bool body_buffered, std::optional<std::chrono::milliseconds> remaining,
                      Budget& budget, const Random& random);

}  // namespace trellis::proxy::retry
