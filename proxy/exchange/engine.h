// The exchange engine behind both factories (exchange.h): one Exchange per
// request, carrying out a Plan the factory made from routing, and the
// factory's set of mirrored requests. Private to proxy/exchange.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/http/message.h"
#include "common/net/address.h"
#include "proxy/balancer/balancer.h"
#include "proxy/exchange/exchange.h"
#include "proxy/exchange/installed_table.h"
#include "proxy/exchange/metrics.h"
#include "proxy/exchange/scheduler.h"
#include "proxy/http/stream.h"
#include "proxy/retry/policy.h"
#include "proxy/router/table.h"

namespace trellis::proxy::exchange {

// What routing decided for one request.
struct Plan {
  http::Direction direction = http::Direction::outbound;
  // Keeps every pointer below that points into a table alive (outbound).
  std::shared_ptr<WorkerTable> table;
  // Attempts go to an endpoint of this set of `table`, chosen by the
  // balancer, or else to `fixed`.
  std::optional<size_t> endpoint_set;
  net::Address fixed;
  // Forced protocol (inbound); otherwise mesh for an endpoint with an
  // identity, else h2c for HTTP/2 requests and http1 for HTTP/1.
  std::optional<http::UpstreamProtocol> protocol;
  // Response filters (routed requests only).
  const router::Rule* rule = nullptr;
  const router::Backend* backend = nullptr;
  const retry::Policy* policy = nullptr;
  retry::Budget* budget = nullptr;
  std::chrono::milliseconds request_timeout{0};  // 0: none
  std::chrono::milliseconds backend_timeout{0};  // 0: none
  RequestSeries* series = nullptr;
  ScopeSeries* scope = nullptr;
  // Mirror backends selected for this request (outbound, routed).
  std::vector<const router::Backend*> mirrors;
};

// The factory's mirrored requests: fire-and-forget, each owned here until it
// completes, fails or times out, then destroyed on a later loop turn.
class MirrorSet {
 public:
  explicit MirrorSet(Shared& shared);
  ~MirrorSet();  // cancels what is in flight

  // Sends a copy of the request (as forwarded) to one endpoint of `backend`
  // (a mirror backend of `table`), or counts why not.
  void send(const std::shared_ptr<WorkerTable>& table, const router::Backend& backend,
            const trellis::http::RequestHead& head, std::string_view body,
            const trellis::http::HeaderMap* trailers);
  size_t in_flight() const { return requests_.size(); }

 private:
  class Request;
  void retire(Request& request, MirrorOutcome outcome);

  Shared& shared_;
  std::unordered_map<Request*, std::unique_ptr<Request>> requests_;
};

class Exchange final : public http::DownstreamCallbacks, public http::UpstreamCallbacks {
 public:
  // `forwarded`: the head to send upstream (filters applied); `original`:
  // the head as received, when response filters need it (CORS); `grpc`:
  // the request is a gRPC call (local answers in gRPC form). `mirrors` may
  // be null when the plan has none.
  Exchange(Shared& shared, MirrorSet* mirrors, http::DownstreamStream& downstream, Plan plan,
           trellis::http::RequestHead forwarded,
           std::optional<trellis::http::RequestHead> original, bool grpc, bool request_complete);
  // The downstream connection destroys the exchange once it ended, or after
  // resetting it, possibly without on_downstream_reset(): an exchange that
  // did not end cancels its attempt and counts as reset.
  ~Exchange() override;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Forwards: the first attempt, the request timeout, mirrors of a complete request.
  void start();
  // Answers locally instead (routing decided): `head` as is for HTTP, in
  // gRPC form for gRPC requests when it is an error.
  void answer(trellis::http::ResponseHead head, LocalReason reason);
  void answer(int status, LocalReason reason);

  // DownstreamCallbacks
  void on_request_data(std::string_view data, bool end_stream) override;
  void on_request_trailers(trellis::http::HeaderMap&& trailers) override;
  void on_downstream_reset() override;
  void on_response_congested() override;
  void on_response_writable() override;

  // UpstreamCallbacks (of the current attempt; earlier attempts' streams
  // are destroyed, so they never call back)
  void on_response_head(trellis::http::ResponseHead&& head, bool end_stream) override;
  void on_response_data(std::string_view data, bool end_stream) override;
  void on_response_trailers(trellis::http::HeaderMap&& trailers) override;
  void on_upstream_failure(http::UpstreamFailure failure, const Error& detail) override;
  void on_request_congested() override;
  void on_request_writable() override;

 private:
  enum class State { attempting, backoff, streaming, done };

  void start_attempt();
  void on_attempt_timeout();
  void on_request_timeout();
  void on_backoff_done();
  // The current attempt failed before a response head: retry or answer.
  void attempt_failed(retry::Failure failure, const Error* detail);
  retry::Decision decide_retry(const retry::Outcome& outcome);
  void retry_after(std::chrono::milliseconds delay, RetryReason reason);
  // Tells the balancer how the current attempt went (once per attempt).
  void judge_attempt(bool failed);
  // The end: metrics (once), timers, upstream. `status` 0 = reset.
  void finish(int status);
  void reset_downstream();
  void buffer(std::string_view data);
  bool body_needed() const;
  void drop_body();
  void send_mirrors();
  void update_request_flow();
  std::chrono::milliseconds elapsed() const;

  Shared& shared_;
  MirrorSet* mirror_set_;
  http::DownstreamStream& downstream_;
  Plan plan_;
  trellis::http::RequestHead forwarded_;
  std::optional<trellis::http::RequestHead> original_;
  bool grpc_;
  TimePoint start_;
  State state_ = State::attempting;

  // Request side.
  bool request_complete_;
  std::string body_;          // copy of the body so far, for retries and mirrors
  bool body_dropped_ = false;  // the copy is incomplete: no retry, no mirror
  std::optional<trellis::http::HeaderMap> request_trailers_;
  bool downstream_paused_ = false;  // what we last asked of the client's body

  // The current attempt.
  std::unique_ptr<http::UpstreamStream> upstream_;
  balancer::Attempt attempt_;
  const balancer::Endpoint* last_endpoint_ = nullptr;  // compared, never dereferenced
  net::Address last_target_;                            // for logs
  TimePoint attempt_start_;
  uint32_t retries_ = 0;
  bool upstream_congested_ = false;
  bool response_paused_ = false;
  int response_status_ = 0;

  std::unique_ptr<Alarm> request_alarm_;
  std::unique_ptr<Alarm> attempt_alarm_;
  std::unique_ptr<Alarm> backoff_alarm_;
};

}  // namespace trellis::proxy::exchange
