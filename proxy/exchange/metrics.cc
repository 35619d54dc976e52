#include "proxy/exchange/metrics.h"

#include <algorithm>

#include "common/log/log.h"

namespace trellis::proxy::exchange {

namespace {

const std::vector<std::string> kScopeLabelNames = {
    "direction",  "parent_namespace", "parent_name", "parent_port",
    "route_kind", "route_namespace",  "route_name",  "route_rule"};

std::vector<std::string> request_label_names() {
  std::vector<std::string> names = kScopeLabelNames;
  for (const char* n : {"backend_namespace", "backend_name", "backend_port", "target_port",
                        "peer_identity"}) {
    names.emplace_back(n);
  }
  return names;
}

std::vector<std::string> mirror_label_names() {
  std::vector<std::string> names(kScopeLabelNames.begin() + 1, kScopeLabelNames.end());
  for (const char* n : {"backend_namespace", "backend_name", "backend_port", "outcome"}) {
    names.emplace_back(n);
  }
  return names;
}

std::vector<std::string> with(std::vector<std::string> names, const char* extra) {
  names.emplace_back(extra);
  return names;
}

// Resolves a child on first use. A failure (a label value that is not UTF-8)
// is logged and leaves an empty handle, which counts nothing: metrics never
// fail a request.
template <typename Handle>
Handle resolve(const metrics::Family<Handle>& family, const std::vector<std::string>* fixed,
               std::string_view extra) {
  std::vector<std::string> values;
  if (fixed != nullptr) values = *fixed;
  if (!extra.empty()) values.emplace_back(extra);
  auto handle = family.with_labels(values);
  if (!handle.ok()) {
    log::warn("metric series not resolved",
              {{"metric", family.name()}, {"error", handle.error().message}});
    return Handle();
  }
  return std::move(handle).value();
}

template <typename Handle>
const Handle& lazy(std::optional<Handle>& slot, const metrics::Family<Handle>* family,
                   const std::vector<std::string>* fixed, std::string_view extra) {
  if (!slot) slot = family != nullptr ? resolve(*family, fixed, extra) : Handle();
  return *slot;
}

template <typename T, size_t N>
void adopt_slots(std::array<std::optional<T>, N>& mine,
                 const std::array<std::optional<T>, N>& theirs) {
  for (size_t i = 0; i < N; ++i) {
    if (!mine[i] && theirs[i]) mine[i] = theirs[i];
  }
}

template <typename T, size_t N>
bool any(const std::array<std::optional<T>, N>& slots) {
  return std::any_of(slots.begin(), slots.end(), [](const auto& s) { return s.has_value(); });
}

template <typename T>
Status assign(T& out, Result<T> result) {
  if (!result.ok()) return std::move(result).error();
  out = std::move(result).value();
  return ok_status();
}

}  // namespace

std::string_view local_reason_name(LocalReason reason) {
  switch (reason) {
    case LocalReason::no_route: return "no_route";
    case LocalReason::no_backend: return "no_backend";
    case LocalReason::unsupported_filter: return "unsupported_filter";
    case LocalReason::no_endpoint: return "no_endpoint";
    case LocalReason::redirect: return "redirect";
    case LocalReason::cors_preflight: return "cors_preflight";
    case LocalReason::connect_failed: return "connect_failed";
    case LocalReason::refused_stream: return "refused_stream";
    case LocalReason::upstream_reset: return "upstream_reset";
    case LocalReason::upstream_protocol_error: return "upstream_protocol_error";
    case LocalReason::request_timeout: return "request_timeout";
    case LocalReason::backend_timeout: return "backend_timeout";
    case LocalReason::bad_request: return "bad_request";
  }
  return "unknown";
}

std::string_view retry_reason_name(RetryReason reason) {
  switch (reason) {
    case RetryReason::connect_failed: return "connect_failed";
    case RetryReason::refused_stream: return "refused_stream";
    case RetryReason::reset: return "reset";
    case RetryReason::protocol_error: return "protocol_error";
    case RetryReason::backend_timeout: return "backend_timeout";
    case RetryReason::response: return "response";
  }
  return "unknown";
}

std::string_view timeout_kind_name(TimeoutKind kind) {
  return kind == TimeoutKind::request ? "request" : "backend_request";
}

std::string_view mirror_outcome_name(MirrorOutcome outcome) {
  switch (outcome) {
    case MirrorOutcome::completed: return "completed";
    case MirrorOutcome::failed: return "failed";
    case MirrorOutcome::timeout: return "timeout";
    case MirrorOutcome::no_endpoint: return "no_endpoint";
    case MirrorOutcome::skipped: return "skipped";
  }
  return "unknown";
}

std::vector<std::string> SeriesLabels::scope_values() const {
  return {std::string(http::direction_name(direction)), parent_namespace, parent_name, parent_port,
          route_kind, route_namespace, route_name, route_rule};
}

std::vector<std::string> SeriesLabels::request_values() const {
  std::vector<std::string> v = scope_values();
  for (const std::string* s :
       {&backend_namespace, &backend_name, &backend_port, &target_port, &peer_identity}) {
    v.push_back(*s);
  }
  return v;
}

std::vector<std::string> SeriesLabels::mirror_values() const {
  return {parent_namespace, parent_name, parent_port, route_kind, route_namespace,
          route_name, route_rule, backend_namespace, backend_name, backend_port};
}

Result<ExchangeMetrics> ExchangeMetrics::create(metrics::Registry& registry) {
  ExchangeMetrics m;
  std::vector<std::string> request_labels = request_label_names();
  RETURN_IF_ERROR(assign(
      m.requests, registry.counter("trellis_requests_total",
                                   "Requests handled by the proxy, by route, backend and status.",
                                   with(request_labels, "status_code"))));
  RETURN_IF_ERROR(assign(
      m.duration, registry.histogram("trellis_request_duration_seconds",
                                     "Time from the request head to the end of the response, "
                                     "retries included.",
                                     request_labels, metrics::proxy_duration_buckets())));
  RETURN_IF_ERROR(assign(
      m.retries, registry.counter("trellis_retries_total",
                                  "Requests sent again, by the reason of the retry.",
                                  with(kScopeLabelNames, "reason"))));
  RETURN_IF_ERROR(assign(
      m.budget_exhausted,
      registry.counter("trellis_retry_budget_exhausted_total",
                       "Retries refused because the route's retry budget was spent.",
                       kScopeLabelNames)));
  RETURN_IF_ERROR(assign(
      m.timeouts, registry.counter("trellis_timeouts_total",
                                   "Requests or attempts that ran out of time.",
                                   with(kScopeLabelNames, "kind"))));
  RETURN_IF_ERROR(assign(
      m.local_responses, registry.counter("trellis_local_responses_total",
                                          "Responses the proxy generated itself, by reason.",
                                          {"direction", "reason"})));
  RETURN_IF_ERROR(assign(
      m.mirrors, registry.counter("trellis_mirror_requests_total",
                                  "Mirrored requests (RequestMirror), by outcome.",
                                  mirror_label_names())));
  for (http::Direction d : {http::Direction::outbound, http::Direction::inbound}) {
    for (size_t r = 0; r < kLocalReasonCount; ++r) {
      std::vector<std::string> values = {
          std::string(http::direction_name(d)),
          std::string(local_reason_name(static_cast<LocalReason>(r)))};
      RETURN_IF_ERROR(assign(m.local[static_cast<size_t>(d)][r],
                             m.local_responses.with_labels(values)));
    }
  }
  return m;
}

void RequestSeries::record(int status, double seconds) {
  if (metrics_ == nullptr) return;
  lazy(duration_, &metrics_->duration, labels_, {}).observe(seconds);
  for (const auto& [code, counter] : by_status_) {
    if (code == status) {
      counter.inc();
      return;
    }
  }
  by_status_.emplace_back(status, resolve(metrics_->requests, labels_, std::to_string(status)));
  by_status_.back().second.inc();
}

void RequestSeries::adopt(const RequestSeries& previous) {
  if (!duration_ && previous.duration_) duration_ = previous.duration_;
  for (const auto& entry : previous.by_status_) {
    bool have = std::any_of(by_status_.begin(), by_status_.end(),
                            [&](const auto& mine) { return mine.first == entry.first; });
    if (!have) by_status_.push_back(entry);
  }
}

void ScopeSeries::count_retry(RetryReason reason) {
  if (metrics_ == nullptr) return;
  lazy(retries_[static_cast<size_t>(reason)], &metrics_->retries, labels_,
       retry_reason_name(reason))
      .inc();
}

void ScopeSeries::count_budget_exhausted() {
  if (metrics_ == nullptr) return;
  lazy(budget_exhausted_, &metrics_->budget_exhausted, labels_, {}).inc();
}

void ScopeSeries::count_timeout(TimeoutKind kind) {
  if (metrics_ == nullptr) return;
  lazy(timeouts_[static_cast<size_t>(kind)], &metrics_->timeouts, labels_, timeout_kind_name(kind))
      .inc();
}

void ScopeSeries::adopt(const ScopeSeries& previous) {
  adopt_slots(retries_, previous.retries_);
  if (!budget_exhausted_) budget_exhausted_ = previous.budget_exhausted_;
  adopt_slots(timeouts_, previous.timeouts_);
}

bool ScopeSeries::used() const {
  return any(retries_) || budget_exhausted_.has_value() || any(timeouts_);
}

void MirrorSeries::count(MirrorOutcome outcome) {
  if (metrics_ == nullptr) return;
  lazy(outcomes_[static_cast<size_t>(outcome)], &metrics_->mirrors, labels_,
       mirror_outcome_name(outcome))
      .inc();
}

void MirrorSeries::adopt(const MirrorSeries& previous) {
  adopt_slots(outcomes_, previous.outcomes_);
}

bool MirrorSeries::used() const { return any(outcomes_); }

}  // namespace trellis::proxy::exchange
