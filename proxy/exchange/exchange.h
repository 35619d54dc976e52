// The per-request exchange of trellis-proxy: the ExchangeFactory each worker
// hands its downstream connections, one per direction.
//
//   // main thread, once:
//   auto metrics = ExchangeMetrics::create(registry);
//   auto budgets = BudgetRegistry::create(config.retry.budget, steady_now);
//   // main thread, per route table:
//   auto installed = InstalledTable::create(router::Table::compile(routes), config.retry,
//                                           *budgets);
//   workers.post_all([installed](EventLoop&, WorkerState* s) { s->outbound->install(installed); });
//   // worker thread, at start:
//   auto outbound = OutboundFactory::create(config, context, metrics, unrouted_budget);
//   auto inbound = InboundFactory::create(config, context, metrics, inbound_budget);
//
// Outbound (app -> Service): the frontend of the dialled ClusterIP:port
// (never the Host header) decides:
//   - not a frontend of the current table (it changed under the connection):
//     forwarded untouched to the original destination ("unrouted");
//   - passthrough (no route attached): balanced over the Service's endpoints,
//     no filters; connect failures and refused streams retried (implicit
//     policy, per Service-port budget);
//   - routes attached: match -> 404; decide() -> redirect, CORS preflight,
//     500 (missing backend, all weights 0, ExtensionRef), 503 (no endpoint),
//     or forward with the rule's then the backendRef's request filters,
//     mirrors, the rule's retry policy and timeouts (GEP-1742: request
//     bounds the whole exchange, backendRequest each attempt, both to the
//     end of the response; 0s or absent = none).
// Local answers to gRPC requests take the gRPC form (local_reply.h).
//
// Inbound (peer sidecar or plain client -> local app): forwarded to
// inbound_target_ip and the original destination port. An HTTP/2 request
// carrying `trellis-orig-proto: HTTP/1.1` (or HTTP/1.0) was an HTTP/1 request
// on the client side: the header is removed and the request goes to the app as
// HTTP/1 again; other HTTP/2 requests go as h2c; HTTP/1 as HTTP/1 (a
// trellis-orig-proto on them is dropped). Another value of the header answers
// 400. No routing; connect failures and refused streams are retried
// (implicit policy, backoff inbound_retry_backoff: the app may be starting).
//
// The life of one exchange (engine.cc implements it):
//
//   create() ── route ──► local answer (404, redirect, preflight, 500, 503) ──► [done]
//                 │ forward
//                 ▼
//   ┌──► [attempting] ─ final head: response filters, forwarded ─► [streaming] ─ end ─► [done]
//   │      │   │                                                       │
//   │      │   │ retryable head, upstream failure or backendRequest    │ upstream failure,
//   │      │   │ timeout, and should_retry says yes (the attempt is    │ backendRequest or
//   │      │   ▼ discarded: stream destroyed, balancer told)           │ request timeout:
//   └─ alarm ─ [backoff]                                               ▼ client reset
//          │                                                         [done]
//          │ failure and should_retry says no: 503 (connect_failed, refused_stream),
//          ▼ 502 (reset, protocol_error), 504 (backendRequest timeout)
//        [done]
//   From any state but done: client reset -> cancel everything -> [done];
//   request timeout -> 504 (attempting, backoff) or client reset (streaming).
//   A retry always waits for its alarm, even with no delay, so that it never
//   starts inside the failed stream's callback.

// Request body: streamed to the attempt as it arrives, and a copy kept while
// a retry (or a mirror) may still need it, up to retry.max_buffered_body
// bytes; past that the copy is dropped and retries are refused
// (body_too_large). During a backoff the client's body is paused and what is
// already in flight is kept whatever its size, so the retry sends it whole.
// Back-pressure: an attempt's request side congested -> the client's body is
// paused; the client congested -> the attempt's response body is paused.
//
// Balancer outcomes: failure for connect failures, refused streams, resets,
// malformed responses, backendRequest timeouts and 5xx heads; success
// otherwise; latency = time to the response head (or the failure). An attempt
// cut short by the client or by timeouts.request is abandoned, not judged.
//
// Mirrors (RequestMirror) are sent when the request has ended with its whole
// body buffered (else counted as skipped), to one endpoint of the mirror
// backend, fire-and-forget: they are owned by the factory, never delay or
// fail the request, and are bounded by mirror_timeout.
//
// Threading: a factory, its exchanges and mirrors live on one worker loop.
// The pool, scheduler and balancer in WorkerContext must outlive the factory,
// and the factory every exchange it created (the downstream connections).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/base/result.h"
#include "common/net/address.h"
#include "proxy/balancer/balancer.h"
#include "proxy/exchange/installed_table.h"
#include "proxy/exchange/metrics.h"
#include "proxy/exchange/scheduler.h"
#include "proxy/http/stream.h"
#include "proxy/retry/budget.h"
#include "proxy/retry/policy.h"

namespace trellis::proxy::exchange {

// The name of the header that carries an HTTP/1 request's version over a
// mesh HTTP/2 connection (added by the client side's pool).
inline constexpr std::string_view kOrigProtoHeader = "trellis-orig-proto";

struct ExchangeConfig {
  // Policies, budgets and the retry buffer (max_buffered_body is
  // ProxyConfig::retry_buffer_bytes).
  retry::Config retry;
  // A mirrored request that has not completed by then is cancelled.
  std::chrono::milliseconds mirror_timeout{10000};
  // Inbound requests go to this IP and the port the client dialled.
  std::string inbound_target_ip = "127.0.0.1";
  // Backoff before retrying a connect failure to the local app.
  std::chrono::milliseconds inbound_retry_backoff{50};
};

// Errors name the field: "exchange.mirror_timeout: must be positive",
// "exchange.inbound_target_ip: invalid IP address 'x'", or retry::validate's.
Status validate(const ExchangeConfig& config);

// A worker's services, borrowed by its factories.
struct WorkerContext {
  http::UpstreamPool* pool = nullptr;
  Scheduler* scheduler = nullptr;
  balancer::Balancer* balancer = nullptr;  // outbound only
  retry::Random random;                    // uniform over uint64; this worker's own
};

class Exchange;
class MirrorSet;

// State shared by a factory's exchanges.
struct Shared {
  ExchangeConfig config;
  WorkerContext context;
  ExchangeMetrics metrics;
};

class OutboundFactory final : public http::ExchangeFactory {
 public:
  // `unrouted_budget` bounds the retries of unrouted requests; share one
  // between workers. Errors: validate()'s, or "outbound exchange: pool,
  // scheduler, balancer, random source and budget are required".
  static Result<std::unique_ptr<OutboundFactory>> create(
      const ExchangeConfig& config, WorkerContext context, ExchangeMetrics metrics,
      std::shared_ptr<retry::Budget> unrouted_budget);
  ~OutboundFactory() override;

  // Worker thread: adopts a table for the requests that start from now on
  // (Balancer::install, metric handles carried over). Exchanges in flight
  // keep theirs.
  void install(std::shared_ptr<const InstalledTable> table);
  const std::shared_ptr<WorkerTable>& current() const { return current_; }
  // Mirrored requests still in flight.
  size_t mirrors_in_flight() const;

  std::unique_ptr<http::DownstreamCallbacks> create(http::DownstreamStream& stream,
                                                    trellis::http::RequestHead&& head,
                                                    bool end_stream) override;

 private:
  OutboundFactory(const ExchangeConfig& config, WorkerContext context, ExchangeMetrics metrics,
                  std::shared_ptr<retry::Budget> unrouted_budget);

  Shared shared_;
  std::unique_ptr<MirrorSet> mirrors_;
  std::shared_ptr<WorkerTable> current_;
  std::shared_ptr<retry::Budget> unrouted_budget_;
  retry::Policy implicit_policy_;
  std::vector<std::string> unrouted_labels_;
  std::vector<std::string> unrouted_scope_labels_;
  RequestSeries unrouted_series_;
  ScopeSeries unrouted_scope_;
};

class InboundFactory final : public http::ExchangeFactory {
 public:
  // `budget` bounds the connect retries to the app; share one between
  // workers. Errors: validate()'s, or "inbound exchange: pool, scheduler,
  // random source and budget are required".
  static Result<std::unique_ptr<InboundFactory>> create(const ExchangeConfig& config,
                                                        WorkerContext context,
                                                        ExchangeMetrics metrics,
                                                        std::shared_ptr<retry::Budget> budget);
  ~InboundFactory() override;

  std::unique_ptr<http::DownstreamCallbacks> create(http::DownstreamStream& stream,
                                                    trellis::http::RequestHead&& head,
                                                    bool end_stream) override;

 private:
  // The series of one (target port, peer identity); never removed: ports are
  // the app's, identities the mesh's authenticated peers.
  struct PeerSeries {
    std::vector<std::string> labels;
    RequestSeries series;
  };

  struct Port {
    net::Address target;  // inbound_target_ip:port
    // Transparent comparator: lookups by identity do not allocate.
    std::map<std::string, std::unique_ptr<PeerSeries>, std::less<>> peers;
  };

  InboundFactory(const ExchangeConfig& config, WorkerContext context, ExchangeMetrics metrics,
                 std::shared_ptr<retry::Budget> budget);
  Port& port(uint16_t number);
  RequestSeries& series(Port& port, uint16_t number, const std::string& peer_identity);

  Shared shared_;
  std::shared_ptr<retry::Budget> budget_;
  retry::Policy policy_;
  std::vector<std::string> scope_labels_;
  ScopeSeries scope_;
  std::unordered_map<uint16_t, Port> ports_;
};

}  // namespace trellis::proxy::exchange
