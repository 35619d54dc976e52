// One sidecar worker: its loop's listeners (outbound and inbound, with
// SO_REUSEPORT so every worker accepts), protocol detection, the downstream
// connections, the upstream pool, the balancer and the exchange factories.
// Everything here lives on the worker's thread; the main thread talks to it
// only through Workers::post (install a table, drain).
#pragma once

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/event/event_loop.h"
#include "common/event/workers.h"
#include "common/metrics/metrics.h"
#include "common/net/listener.h"
#include "proxy/balancer/balancer.h"
#include "proxy/config/proxy_config.h"
#include "proxy/detect/detect.h"
#include "proxy/downstream/connection_manager.h"
#include "proxy/downstream/http1_connection.h"
#include "proxy/downstream/http2_connection.h"
#include "proxy/downstream/metrics.h"
#include "proxy/exchange/exchange.h"
#include "proxy/exchange/installed_table.h"
#include "proxy/exchange/scheduler.h"
#include "proxy/pool/pool.h"
#include "proxy/tcp/splice.h"

namespace trellis::proxy::app {

// Built once on the main thread before the workers start; read-only after.
struct WorkerEnvironment {
  ProxyConfig config;
  exchange::ExchangeConfig exchange;
  exchange::ExchangeMetrics exchange_metrics;
  downstream::DownstreamMetricFamilies downstream_families;
  pool::PoolMetrics pool_metrics;
  metrics::CounterFamily tcp_received;  // trellis_tcp_received_bytes_total{direction}
  metrics::CounterFamily tcp_sent;      // trellis_tcp_sent_bytes_total{direction}
  metrics::CounterFamily refused;       // trellis_tcp_connections_refused_total{direction,reason}
  std::shared_ptr<retry::Budget> unrouted_budget;
  std::shared_ptr<retry::Budget> inbound_budget;

  static Result<std::shared_ptr<const WorkerEnvironment>> create(const ProxyConfig& config,
                                                                 metrics::Registry& registry);
};

class Worker final : public event::WorkerState {
 public:
  static Result<std::unique_ptr<Worker>> create(event::EventLoop& loop,
                                                std::shared_ptr<const WorkerEnvironment> env,
                                                size_t index);
  ~Worker() override;

  // Worker thread: requests that start from now on use `table`.
  void install(std::shared_ptr<const exchange::InstalledTable> table);
  // Worker thread: stop accepting; connections finish what they have, then close.
  void drain();
  // Worker thread: cut whatever is left (the drain deadline passed).
  void close_all();
  // Any thread: connections (and detections, splices) still open, as of the
  // worker's last change; refresh_open_count() (worker thread) recounts.
  size_t open_connections() const { return open_.load(std::memory_order_relaxed); }
  void refresh_open_count() { update_open_count(); }

 private:
  struct DirectionState {
    http::Direction direction;
    std::unique_ptr<net::Listener> listener_v4;
    std::unique_ptr<net::Listener> listener_v6;
    downstream::DownstreamMetrics downstream_metrics;
    tcp::SpliceMetrics splice_metrics;
    metrics::Counter refused_not_redirected;
    metrics::Counter refused_loop;
    std::unique_ptr<downstream::ConnectionManager> connections;
  };

  Worker(event::EventLoop& loop, std::shared_ptr<const WorkerEnvironment> env);
  Status start(size_t index);
  Status listen(DirectionState& d, uint16_t port);
  void accept(DirectionState& d, std::unique_ptr<net::TcpConnection> connection);
  void detect(DirectionState& d, std::unique_ptr<net::TcpConnection> connection, http::DownstreamInfo info);
  void dispatch(DirectionState& d, detect::Detection detection, http::DownstreamInfo info);
  void splice(DirectionState& d, std::unique_ptr<net::TcpConnection> client, const net::Address& to,
              std::string replay, bool eof);
  // Where opaque traffic to a Service frontend goes: a balanced endpoint,
  // or nothing when the Service has none.
  std::optional<net::Address> opaque_target(const net::Address& original_destination);
  void update_open_count();

  event::EventLoop& loop_;
  std::shared_ptr<const WorkerEnvironment> env_;
  std::mt19937_64 random_;
  std::unique_ptr<exchange::LoopScheduler> scheduler_;
  std::unique_ptr<pool::Pool> pool_;
  std::unique_ptr<balancer::Balancer> balancer_;
  std::unique_ptr<exchange::OutboundFactory> outbound_factory_;
  std::unique_ptr<exchange::InboundFactory> inbound_factory_;
  DirectionState outbound_;
  DirectionState inbound_;
  std::unordered_map<detect::Detector*, std::unique_ptr<detect::Detector>> detectors_;
  std::unordered_map<tcp::Splice*, std::unique_ptr<tcp::Splice>> splices_;
  bool draining_ = false;
  std::atomic<size_t> open_{0};
};

}  // namespace trellis::proxy::app
