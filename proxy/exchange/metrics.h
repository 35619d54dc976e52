// Metrics of the exchanges (design.md, "Observability"). Families, registered
// once per process by ExchangeMetrics::create:
//
//   trellis_requests_total{direction, parent_namespace, parent_name, parent_port,
//       route_kind, route_namespace, route_name, route_rule,
//       backend_namespace, backend_name, backend_port, target_port, peer_identity,
//       status_code}                                                  counter
//   trellis_request_duration_seconds{the same labels without status_code}  histogram
//   trellis_retries_total{direction, parent_*, route_*, reason}        counter
//   trellis_retry_budget_exhausted_total{direction, parent_*, route_*} counter
//   trellis_timeouts_total{direction, parent_*, route_*, kind}         counter
//   trellis_local_responses_total{direction, reason}                   counter
//   trellis_mirror_requests_total{parent_*, route_*, backend_*, outcome}  counter
//
// Label values: empty when they do not apply. Outbound: parent_* is the
// Service port dialled, route_* the matched rule (route_rule is the rule's
// name, else its index), backend_* the backendRef chosen (for a passthrough
// Service port: the Service itself); target_port and peer_identity are empty.
// Inbound: only target_port (the app's port) and peer_identity (the client
// sidecar's SPIFFE ID, empty when unknown) are set. Unrouted outbound traffic
// (the table changed under the connection) has every label empty.
//
// status_code is the HTTP status sent to the client ("200" for the gRPC-form
// local replies, whose outcome is in grpc-status and in
// trellis_local_responses_total), or "0" when the exchange ended without a
// complete response: the client reset or went away, or the proxy reset the
// response (an upstream failure or timeout after the head was sent). Every
// exchange counts once in trellis_requests_total and observes its duration
// (request head to end of response, retries and backoffs included) once.
//
// Handles are resolved lazily, per worker, on first use of a label set (one
// lock then; lock-free after), not for every rule of a table at install time:
// a table at the route-table limits would otherwise expose hundreds of
// thousands of all-zero series. A worker adopting a new table copies the
// handles of label sets the new table keeps, so their counts survive the swap
// (WorkerTable, installed_table.h). One gap: a status first seen by an
// exchange that started on the previous table, after the swap, is resolved
// in that table's cache only, and its count resets once that table is gone.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"
#include "common/metrics/metrics.h"
#include "proxy/http/stream.h"

namespace trellis::proxy::exchange {

// Why the proxy answered a request itself. Label values of
// trellis_local_responses_total{reason}.
enum class LocalReason {
  no_route,                 // 404: routes attached, none matched
  no_backend,               // 500: chosen backendRef missing or not a Service, or all weights 0
  unsupported_filter,       // 500: ExtensionRef
  no_endpoint,              // 503: the backend has no eligible endpoint
  redirect,                 // RequestRedirect
  cors_preflight,           // CORS preflight answered
  connect_failed,           // 503: connect failures, retries exhausted or refused
  refused_stream,           // 503: refused streams, likewise
  upstream_reset,           // 502
  upstream_protocol_error,  // 502: malformed response
  request_timeout,          // 504: timeouts.request
  backend_timeout,          // 504: timeouts.backendRequest, not retried
  bad_request,              // 400: inbound request with an invalid trellis-orig-proto
};
inline constexpr size_t kLocalReasonCount = 13;
std::string_view local_reason_name(LocalReason reason);

// Why an attempt was retried: trellis_retries_total{reason}.
enum class RetryReason {
  connect_failed,
  refused_stream,
  reset,
  protocol_error,
  backend_timeout,
  response,  // a status in retry.codes
};
inline constexpr size_t kRetryReasonCount = 6;
std::string_view retry_reason_name(RetryReason reason);

enum class TimeoutKind { request, backend_request };
inline constexpr size_t kTimeoutKindCount = 2;
std::string_view timeout_kind_name(TimeoutKind kind);

// How a mirrored request ended: trellis_mirror_requests_total{outcome}.
enum class MirrorOutcome {
  completed,    // the mirror backend answered (any status); the answer was discarded
  failed,       // an upstream failure
  timeout,      // no complete answer within ExchangeConfig::mirror_timeout
  no_endpoint,  // the mirror backend has no eligible endpoint (or is missing)
  skipped,      // the request body was not fully buffered, or the request never completed
};
inline constexpr size_t kMirrorOutcomeCount = 5;
std::string_view mirror_outcome_name(MirrorOutcome outcome);


// The label values of one series, before the per-family varying label.
struct SeriesLabels {
  http::Direction direction = http::Direction::outbound;
  std::string parent_namespace, parent_name, parent_port;
  std::string route_kind, route_namespace, route_name, route_rule;
  std::string backend_namespace, backend_name, backend_port;
  std::string target_port, peer_identity;

  // trellis_requests_total without status_code (= trellis_request_duration_seconds).
  std::vector<std::string> request_values() const;
  // trellis_retries_total without reason (= trellis_retry_budget_exhausted_total).
  std::vector<std::string> scope_values() const;
  // trellis_mirror_requests_total without outcome.
  std::vector<std::string> mirror_values() const;
};

// The families, and the fixed handles of trellis_local_responses_total.
// Cheap to copy (shared state); every worker uses the same families.
struct ExchangeMetrics {
  metrics::CounterFamily requests;
  metrics::HistogramFamily duration;
  metrics::CounterFamily retries;
  metrics::CounterFamily budget_exhausted;
  metrics::CounterFamily timeouts;
  metrics::CounterFamily local_responses;
  metrics::CounterFamily mirrors;
  std::array<std::array<metrics::Counter, kLocalReasonCount>, 2> local;  // [direction][reason]

  // Main thread, once per registry. Errors are the registry's.
  static Result<ExchangeMetrics> create(metrics::Registry& registry);

  void count_local(http::Direction direction, LocalReason reason) const {
    local[static_cast<size_t>(direction)][static_cast<size_t>(reason)].inc();
  }
};

// trellis_requests_total and trellis_request_duration_seconds of one label set,
// on one worker. `metrics` and `labels` must outlive it.
class RequestSeries {
 public:
  RequestSeries() = default;
  RequestSeries(const ExchangeMetrics* metrics, const std::vector<std::string>* labels)
      : metrics_(metrics), labels_(labels) {}

  void record(int status, double seconds);
  // Takes the handles `previous` resolved (a series with the same labels).
  void adopt(const RequestSeries& previous);
  bool used() const { return duration_.has_value() || !by_status_.empty(); }

 private:
  const ExchangeMetrics* metrics_ = nullptr;
  const std::vector<std::string>* labels_ = nullptr;
  std::optional<metrics::Histogram> duration_;
  // Few distinct statuses per series: a linear scan beats hashing.
  std::vector<std::pair<int, metrics::Counter>> by_status_;
};

// trellis_retries_total, _retry_budget_exhausted_total and _timeouts_total of
// one route scope (a rule, a passthrough Service port, inbound, unrouted) on
// one worker.
class ScopeSeries {
 public:
  ScopeSeries() = default;
  ScopeSeries(const ExchangeMetrics* metrics, const std::vector<std::string>* labels)
      : metrics_(metrics), labels_(labels) {}

  void count_retry(RetryReason reason);
  void count_budget_exhausted();
  void count_timeout(TimeoutKind kind);
  void adopt(const ScopeSeries& previous);
  bool used() const;

 private:
  const ExchangeMetrics* metrics_ = nullptr;
  const std::vector<std::string>* labels_ = nullptr;
  std::array<std::optional<metrics::Counter>, kRetryReasonCount> retries_;
  std::optional<metrics::Counter> budget_exhausted_;
  std::array<std::optional<metrics::Counter>, kTimeoutKindCount> timeouts_;
};

// trellis_mirror_requests_total of one mirror filter on one worker.
class MirrorSeries {
 public:
  MirrorSeries() = default;
  MirrorSeries(const ExchangeMetrics* metrics, const std::vector<std::string>* labels)
      : metrics_(metrics), labels_(labels) {}

  void count(MirrorOutcome outcome);
  void adopt(const MirrorSeries& previous);
  bool used() const;

 private:
  const ExchangeMetrics* metrics_ = nullptr;
  const std::vector<std::string>* labels_ = nullptr;
  std::array<std::optional<metrics::Counter>, kMirrorOutcomeCount> outcomes_;
};

}  // namespace trellis::proxy::exchange
