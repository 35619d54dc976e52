#include "proxy/exchange/engine.h"

#include <algorithm>
#include <utility>

#include "common/log/log.h"
#include "proxy/exchange/local_reply.h"
#include "proxy/router/filters.h"

namespace trellis::proxy::exchange {

namespace h = trellis::http;

namespace {

// Re-draws when the balancer offers the endpoint the previous attempt just
// failed on, while the set has others: a retry should go elsewhere, and
// p2c ties (a fast failure's cost equals a fresh endpoint's) go to the first
// draw.
constexpr int kRepicks = 2;

retry::Failure to_retry_failure(http::UpstreamFailure f) {
  switch (f) {
    case http::UpstreamFailure::connect_failed: return retry::Failure::connect_failed;
    case http::UpstreamFailure::refused_stream: return retry::Failure::refused_stream;
    case http::UpstreamFailure::reset: return retry::Failure::reset;
    case http::UpstreamFailure::protocol_error: return retry::Failure::protocol_error;
  }
  return retry::Failure::reset;
}

RetryReason retry_reason(retry::Failure f) {
  switch (f) {
    case retry::Failure::connect_failed: return RetryReason::connect_failed;
    case retry::Failure::refused_stream: return RetryReason::refused_stream;
    case retry::Failure::reset: return RetryReason::reset;
    case retry::Failure::protocol_error: return RetryReason::protocol_error;
    case retry::Failure::backend_timeout: return RetryReason::backend_timeout;
  }
  return RetryReason::reset;
}

LocalReason failure_reason(retry::Failure f) {
  switch (f) {
    case retry::Failure::connect_failed: return LocalReason::connect_failed;
    case retry::Failure::refused_stream: return LocalReason::refused_stream;
    case retry::Failure::reset: return LocalReason::upstream_reset;
    case retry::Failure::protocol_error: return LocalReason::upstream_protocol_error;
    case retry::Failure::backend_timeout: return LocalReason::backend_timeout;
  }
  return LocalReason::upstream_reset;
}

int failure_status(retry::Failure f) {
  switch (f) {
    case retry::Failure::connect_failed:
    case retry::Failure::refused_stream: return 503;
    case retry::Failure::reset:
    case retry::Failure::protocol_error: return 502;
    case retry::Failure::backend_timeout: return 504;
  }
  return 502;
}

http::UpstreamProtocol protocol_for(std::string_view identity, h::Version version) {
  if (!identity.empty()) return http::UpstreamProtocol::mesh;
  return version == h::Version::http2 ? http::UpstreamProtocol::h2c
                                      : http::UpstreamProtocol::http1;
}

}  // namespace

// --- mirrors -----------------------------------------------------------------

class MirrorSet::Request final : public http::UpstreamCallbacks {
 public:
  Request(MirrorSet& set, std::shared_ptr<WorkerTable> table, MirrorSeries& series,
          balancer::Attempt attempt)
      : set_(set),
        table_(std::move(table)),
        series_(series),
        attempt_(std::move(attempt)),
        start_(set.shared_.context.scheduler->now()) {}

  void start(const http::UpstreamTarget& target, h::RequestHead head, std::string_view body,
             const h::HeaderMap* trailers) {
    Shared& shared = set_.shared_;
    alarm_ = shared.context.scheduler->alarm(
        [this] { set_.retire(*this, MirrorOutcome::timeout); });
    alarm_->arm(shared.config.mirror_timeout);
    stream_ = shared.context.pool->new_stream(target, *this);
    if (!stream_) {
      set_.retire(*this, MirrorOutcome::failed);
      return;
    }
    bool body_follows = !body.empty() || trailers != nullptr;
    stream_->send_request_head(std::move(head), !body_follows);
    if (stream_ && !body.empty()) stream_->send_request_data(body, trailers == nullptr);
    if (stream_ && trailers != nullptr) stream_->send_request_trailers(h::HeaderMap(*trailers));
  }

  void on_response_head(h::ResponseHead&& head, bool end_stream) override {
    judge(head.status >= 500);
    if (end_stream) set_.retire(*this, MirrorOutcome::completed);
  }
  void on_response_data(std::string_view, bool end_stream) override {
    if (end_stream) set_.retire(*this, MirrorOutcome::completed);
  }
  void on_response_trailers(h::HeaderMap&&) override {
    set_.retire(*this, MirrorOutcome::completed);
  }
  void on_upstream_failure(http::UpstreamFailure, const Error&) override {
    judge(true);
    set_.retire(*this, MirrorOutcome::failed);
  }
  // The whole request is handed over at once; the pool holds what it cannot send yet.
  void on_request_congested() override {}
  void on_request_writable() override {}

  // Cancels whatever is in flight; the set then destroys it on a later turn.
  void stop() {
    stream_.reset();
    if (alarm_) alarm_->disarm();
    attempt_ = balancer::Attempt();
  }

  MirrorSeries& series() { return series_; }
  bool retired = false;

 private:
  void judge(bool failed) {
    if (!attempt_) return;
    auto latency = set_.shared_.context.scheduler->now() - start_;
    set_.shared_.context.balancer->finish(std::move(attempt_), latency,
                                          failed ? balancer::Outcome::failure
                                                 : balancer::Outcome::success);
  }

  MirrorSet& set_;
  std::shared_ptr<WorkerTable> table_;  // keeps series_ and the endpoint alive
  MirrorSeries& series_;
  balancer::Attempt attempt_;
  TimePoint start_;
  std::unique_ptr<http::UpstreamStream> stream_;
  std::unique_ptr<Alarm> alarm_;
};

MirrorSet::MirrorSet(Shared& shared) : shared_(shared) {}

MirrorSet::~MirrorSet() {
  for (auto& [request, owned] : requests_) owned->stop();
}

void MirrorSet::send(const std::shared_ptr<WorkerTable>& table, const router::Backend& backend,
                     const h::RequestHead& head, std::string_view body,
                     const h::HeaderMap* trailers) {
  const BackendPlan& plan = table->table().backend(backend);
  MirrorSeries& series = table->mirror_series(plan.series);
  if (backend.state != router::BackendState::ok || !plan.endpoint_set) {
    series.count(MirrorOutcome::no_endpoint);
    return;
  }
  balancer::Balancer& balancer = *shared_.context.balancer;
  balancer::Choice choice = balancer.pick(table->candidates(*plan.endpoint_set));
  if (!choice) {
    series.count(MirrorOutcome::no_endpoint);
    return;
  }
  http::UpstreamTarget target;
  target.address = choice.endpoint->address();
  std::string_view identity = table->table().identity(*plan.endpoint_set, choice.index);
  target.identity = std::string(identity);
  target.protocol = protocol_for(identity, head.version);
  auto owned = std::make_unique<Request>(*this, table, series, balancer.start(*choice.endpoint));
  Request& request = *owned;
  requests_.emplace(&request, std::move(owned));
  request.start(target, head, body, trailers);
}

void MirrorSet::retire(Request& request, MirrorOutcome outcome) {
  if (request.retired) return;
  request.retired = true;
  request.series().count(outcome);
  request.stop();
  auto it = requests_.find(&request);
  // Often called from inside the request's own callbacks: it dies on a later turn.
  std::shared_ptr<Request> doomed(std::move(it->second));
  requests_.erase(it);
  shared_.context.scheduler->defer([doomed] {});
}

// --- the exchange ---------------------------------------------------------------

Exchange::Exchange(Shared& shared, MirrorSet* mirrors, http::DownstreamStream& downstream,
                   Plan plan, h::RequestHead forwarded, std::optional<h::RequestHead> original,
                   bool grpc, bool request_complete)
    : shared_(shared),
      mirror_set_(mirrors),
      downstream_(downstream),
      plan_(std::move(plan)),
      forwarded_(std::move(forwarded)),
      original_(std::move(original)),
      grpc_(grpc),
      start_(shared.context.scheduler->now()),
      request_complete_(request_complete) {}

Exchange::~Exchange() {
  upstream_.reset();
  finish(0);
}

void Exchange::start() {
  // Connection-specific fields describe the client's hop, not the next one.
  h::strip_hop_by_hop(forwarded_.headers);
  if (plan_.budget != nullptr) plan_.budget->deposit();
  if (plan_.request_timeout.count() > 0) {
    request_alarm_ = shared_.context.scheduler->alarm([this] { on_request_timeout(); });
    request_alarm_->arm(plan_.request_timeout);
  }
  start_attempt();
  if (request_complete_) send_mirrors();  // after the request: never delay it
}

void Exchange::start_attempt() {
  state_ = State::attempting;
  http::UpstreamTarget target;
  std::string_view identity;
  if (plan_.endpoint_set) {
    balancer::Balancer& balancer = *shared_.context.balancer;
    balancer::Candidates& candidates = plan_.table->candidates(*plan_.endpoint_set);
    balancer::Choice choice = balancer.pick(candidates);
    for (int i = 0; i < kRepicks && choice && choice.endpoint == last_endpoint_ &&
                    candidates.size() > 1;
         ++i) {
      choice = balancer.pick(candidates);
    }
    if (!choice) {
      answer(503, LocalReason::no_endpoint);
      return;
    }
    target.address = choice.endpoint->address();
    identity = plan_.table->table().identity(*plan_.endpoint_set, choice.index);
    target.identity = std::string(identity);
    attempt_ = balancer.start(*choice.endpoint);
    last_endpoint_ = choice.endpoint;
  } else {
    target.address = plan_.fixed;
  }
  target.protocol = plan_.protocol ? *plan_.protocol : protocol_for(identity, forwarded_.version);
  last_target_ = target.address;
  attempt_start_ = shared_.context.scheduler->now();
  upstream_congested_ = false;
  response_paused_ = false;
  upstream_ = shared_.context.pool->new_stream(target, *this);
  if (!upstream_) {
    log::error("upstream pool returned no stream", {{"target", target.address.to_string()}});
    answer(503, LocalReason::connect_failed);
    return;
  }
  if (plan_.backend_timeout.count() > 0) {
    if (!attempt_alarm_) {
      attempt_alarm_ = shared_.context.scheduler->alarm([this] { on_attempt_timeout(); });
    }
    attempt_alarm_->arm(plan_.backend_timeout);
  }
  bool body_follows = !request_complete_ || !body_.empty() || request_trailers_.has_value();
  upstream_->send_request_head(h::RequestHead(forwarded_), !body_follows);
  if (upstream_ && !body_.empty()) {
    upstream_->send_request_data(body_, request_complete_ && !request_trailers_);
  }
  if (upstream_ && request_trailers_) {
    upstream_->send_request_trailers(h::HeaderMap(*request_trailers_));
  }
  if (!body_needed()) drop_body();  // the last attempt the policy allows
  update_request_flow();
}

void Exchange::answer(int status, LocalReason reason) {
  answer(local_reply(status, reason), reason);
}

void Exchange::answer(h::ResponseHead head, LocalReason reason) {
  if (state_ == State::done) return;
  if (head.status >= 400) {
    if (grpc_) {
      head = grpc_local_reply(head.status, reason);
    } else {
      head.headers.set(kProxyErrorHeader, local_reason_name(reason));
    }
  }
  shared_.metrics.count_local(plan_.direction, reason);
  upstream_.reset();
  int status = head.status;
  finish(status);
  downstream_.send_response_head(std::move(head), true);
}

// --- request side ---------------------------------------------------------------

void Exchange::on_request_data(std::string_view data, bool end_stream) {
  if (state_ == State::done) return;
  if (end_stream) request_complete_ = true;
  buffer(data);
  if (upstream_) upstream_->send_request_data(data, end_stream);
  if (end_stream) send_mirrors();
  update_request_flow();
}

void Exchange::on_request_trailers(h::HeaderMap&& trailers) {
  if (state_ == State::done) return;
  request_complete_ = true;
  if (!body_dropped_ && body_needed()) request_trailers_ = trailers;
  if (upstream_) upstream_->send_request_trailers(std::move(trailers));
  send_mirrors();
  update_request_flow();
}

bool Exchange::body_needed() const {
  if (!plan_.mirrors.empty() || state_ == State::backoff) return true;  // a retry is pending
  return state_ == State::attempting && plan_.policy != nullptr &&
         retries_ < plan_.policy->max_retries;
}

void Exchange::buffer(std::string_view data) {
  if (body_dropped_) return;
  if (!body_needed()) {
    drop_body();
    return;
  }
  // During a backoff the client is paused: what still arrives was in flight,
  // bounded by the downstream's own buffering, and the retry needs it.
  if (state_ != State::backoff &&
      body_.size() + data.size() > shared_.config.retry.max_buffered_body) {
    drop_body();
    return;
  }
  body_.append(data.data(), data.size());
}

void Exchange::drop_body() {
  body_dropped_ = true;
  std::string().swap(body_);
  request_trailers_.reset();
}

void Exchange::send_mirrors() {
  if (plan_.mirrors.empty()) return;
  std::vector<const router::Backend*> mirrors = std::move(plan_.mirrors);
  plan_.mirrors.clear();
  for (const router::Backend* backend : mirrors) {
    if (body_dropped_ || mirror_set_ == nullptr) {
      plan_.table->mirror_series(plan_.table->table().backend(*backend).series)
          .count(MirrorOutcome::skipped);
      continue;
    }
    mirror_set_->send(plan_.table, *backend, forwarded_, body_,
                      request_trailers_ ? &*request_trailers_ : nullptr);
  }
  if (!body_needed()) drop_body();
}

void Exchange::update_request_flow() {
  bool pause = state_ != State::done && !request_complete_ &&
               (state_ == State::backoff || upstream_congested_);
  if (pause == downstream_paused_) return;
  downstream_paused_ = pause;
  if (pause) {
    downstream_.pause_request_body();
  } else {
    downstream_.resume_request_body();
  }
}

void Exchange::on_request_congested() {
  upstream_congested_ = true;
  update_request_flow();
}

void Exchange::on_request_writable() {
  upstream_congested_ = false;
  update_request_flow();
}

// --- downstream events ------------------------------------------------------------

void Exchange::on_downstream_reset() {
  if (state_ == State::done) return;
  upstream_.reset();
  finish(0);
}

void Exchange::on_response_congested() {
  if (state_ != State::streaming || response_paused_) return;
  response_paused_ = true;
  if (upstream_) upstream_->pause_response_body();
}

void Exchange::on_response_writable() {
  if (!response_paused_) return;
  response_paused_ = false;
  if (state_ == State::streaming && upstream_) upstream_->resume_response_body();
}

// --- response side ------------------------------------------------------------------

void Exchange::on_response_head(h::ResponseHead&& head, bool end_stream) {
  if (state_ != State::attempting) return;
  int status = head.status;
  bool server_error = status >= 500;
  if (plan_.policy->retries_status(status)) {
    retry::Decision decision = decide_retry(retry::Outcome::response(status));
    if (decision.retry()) {
      judge_attempt(server_error);
      upstream_.reset();
      if (attempt_alarm_) attempt_alarm_->disarm();
      retry_after(decision.delay, RetryReason::response);
      return;
    }
  }
  judge_attempt(server_error);
  if (plan_.rule != nullptr) {
    router::apply_response_filters(*plan_.rule, plan_.backend,
                                   original_ ? *original_ : forwarded_, head);
  }
  state_ = State::streaming;
  response_status_ = status;
  if (!body_needed()) drop_body();
  if (end_stream) {
    upstream_.reset();
    finish(status);
  }
  downstream_.send_response_head(std::move(head), end_stream);
}

void Exchange::on_response_data(std::string_view data, bool end_stream) {
  if (state_ != State::streaming) return;
  if (end_stream) finish(response_status_);
  downstream_.send_response_data(data, end_stream);
  // After the send: `data` may live in the stream's connection.
  if (end_stream) upstream_.reset();
}

void Exchange::on_response_trailers(h::HeaderMap&& trailers) {
  if (state_ != State::streaming) return;
  finish(response_status_);
  upstream_.reset();
  downstream_.send_response_trailers(std::move(trailers));
}

void Exchange::on_upstream_failure(http::UpstreamFailure failure, const Error& detail) {
  if (state_ == State::streaming) {
    // The head is out: nothing left to answer with.
    log::debug("upstream failed mid-response",
               {{"failure", http::failure_name(failure)},
                {"target", last_target_.to_string()},
                {"error", detail.message}});
    upstream_.reset();
    reset_downstream();
    return;
  }
  if (state_ != State::attempting) return;
  attempt_failed(to_retry_failure(failure), &detail);
}

void Exchange::attempt_failed(retry::Failure failure, const Error* detail) {
  judge_attempt(true);
  upstream_.reset();
  if (attempt_alarm_) attempt_alarm_->disarm();
  retry::Decision decision = decide_retry(retry::Outcome::failed(failure));
  if (decision.retry()) {
    retry_after(decision.delay, retry_reason(failure));
    return;
  }
  LocalReason reason = failure_reason(failure);
  log::warn("upstream request failed",
            {{"reason", local_reason_name(reason)},
             {"target", last_target_.to_string()},
             {"error", detail != nullptr ? std::string_view(detail->message)
                                         : std::string_view("backendRequest timeout")},
             {"retries", retries_},
             {"not_retried", retry::name(decision.refusal)}});
  answer(failure_status(failure), reason);
}

retry::Decision Exchange::decide_retry(const retry::Outcome& outcome) {
  std::optional<std::chrono::milliseconds> remaining;
  if (plan_.request_timeout.count() > 0) {
    remaining = std::max(std::chrono::milliseconds(0), plan_.request_timeout - elapsed());
  }
  retry::Decision decision =
      retry::should_retry(*plan_.policy, retries_, outcome, !body_dropped_, remaining,
                          *plan_.budget, shared_.context.random);
  if (decision.refusal == retry::Refusal::budget_exhausted) plan_.scope->count_budget_exhausted();
  return decision;
}

void Exchange::retry_after(std::chrono::milliseconds delay, RetryReason reason) {
  ++retries_;
  plan_.scope->count_retry(reason);
  // Even without a delay the retry starts from the loop, not from inside the
  // failed stream's callback.
  state_ = State::backoff;
  if (!backoff_alarm_) {
    backoff_alarm_ = shared_.context.scheduler->alarm([this] { on_backoff_done(); });
  }
  backoff_alarm_->arm(delay);
  update_request_flow();
}

void Exchange::on_backoff_done() {
  if (state_ == State::backoff) start_attempt();
}

void Exchange::judge_attempt(bool failed) {
  if (!attempt_) return;
  auto latency = shared_.context.scheduler->now() - attempt_start_;
  shared_.context.balancer->finish(std::move(attempt_), latency,
                                   failed ? balancer::Outcome::failure
                                          : balancer::Outcome::success);
}

// --- timeouts -------------------------------------------------------------------------

void Exchange::on_attempt_timeout() {
  if (state_ == State::attempting) {
    plan_.scope->count_timeout(TimeoutKind::backend_request);
    attempt_failed(retry::Failure::backend_timeout, nullptr);
  } else if (state_ == State::streaming) {
    plan_.scope->count_timeout(TimeoutKind::backend_request);
    upstream_.reset();
    reset_downstream();
  }
}

void Exchange::on_request_timeout() {
  if (state_ == State::done) return;
  plan_.scope->count_timeout(TimeoutKind::request);
  upstream_.reset();
  if (state_ == State::streaming) {
    reset_downstream();
    return;
  }
  answer(504, LocalReason::request_timeout);
}

// --- the end ----------------------------------------------------------------------------

void Exchange::reset_downstream() {
  finish(0);
  downstream_.reset();
}

void Exchange::finish(int status) {
  if (state_ == State::done) return;
  state_ = State::done;
  if (request_alarm_) request_alarm_->disarm();
  if (attempt_alarm_) attempt_alarm_->disarm();
  if (backoff_alarm_) backoff_alarm_->disarm();
  attempt_ = balancer::Attempt();  // an attempt not judged yet is abandoned
  for (const router::Backend* backend : plan_.mirrors) {
    plan_.table->mirror_series(plan_.table->table().backend(*backend).series)
        .count(MirrorOutcome::skipped);
  }
  plan_.mirrors.clear();
  drop_body();
  std::chrono::duration<double> seconds = shared_.context.scheduler->now() - start_;
  if (plan_.series != nullptr) plan_.series->record(status, seconds.count());
}

std::chrono::milliseconds Exchange::elapsed() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(shared_.context.scheduler->now() -
                                                               start_);
}

}  // namespace trellis::proxy::exchange
