#include "proxy/app/worker.h"

#include "common/log/log.h"

namespace trellis::proxy::app {
namespace {

std::chrono::steady_clock::time_point steady_now() { return std::chrono::steady_clock::now(); }

Result<std::shared_ptr<retry::Budget>> make_budget(const retry::BudgetConfig& config) {
  auto b = retry::Budget::create(config, steady_now);
  if (!b.ok()) return std::move(b).error();
  return std::shared_ptr<retry::Budget>(std::move(*b));
}

}  // namespace

Result<std::shared_ptr<const WorkerEnvironment>> WorkerEnvironment::create(const ProxyConfig& config,
                                                                           metrics::Registry& registry) {
  auto env = std::make_shared<WorkerEnvironment>();
  env->config = config;
  env->exchange.retry.max_buffered_body = config.retry_buffer_bytes;
  env->exchange.retry.budget.ratio = config.retry_budget_ratio;
  env->exchange.retry.budget.min_per_second = static_cast<uint32_t>(config.retry_budget_min_per_second);
  env->exchange.inbound_target_ip = config.inbound_target_ip;
  RETURN_IF_ERROR(exchange::validate(env->exchange));

  ASSIGN_OR_RETURN(env->exchange_metrics, exchange::ExchangeMetrics::create(registry));
  ASSIGN_OR_RETURN(env->downstream_families, downstream::DownstreamMetricFamilies::create(registry));
  ASSIGN_OR_RETURN(env->pool_metrics, pool::PoolMetrics::create(registry));
  ASSIGN_OR_RETURN(env->tcp_received,
                   registry.counter("trellis_tcp_received_bytes_total",
                                    "Bytes read from clients of opaque TCP connections.", {"direction"}));
  ASSIGN_OR_RETURN(env->tcp_sent,
                   registry.counter("trellis_tcp_sent_bytes_total",
                                    "Bytes read from upstreams of opaque TCP connections.", {"direction"}));
  ASSIGN_OR_RETURN(env->refused,
                   registry.counter("trellis_tcp_connections_refused_total",
                                    "Accepted connections closed at once: not redirected, or a loop.",
                                    {"direction", "reason"}));
  ASSIGN_OR_RETURN(env->unrouted_budget, make_budget(env->exchange.retry.budget));
  ASSIGN_OR_RETURN(env->inbound_budget, make_budget(env->exchange.retry.budget));
  return std::shared_ptr<const WorkerEnvironment>(std::move(env));
}

Worker::Worker(event::EventLoop& loop, std::shared_ptr<const WorkerEnvironment> env)
    : loop_(loop), env_(std::move(env)), random_(std::random_device{}()) {
  outbound_.direction = http::Direction::outbound;
  inbound_.direction = http::Direction::inbound;
}

Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::create(event::EventLoop& loop,
                                               std::shared_ptr<const WorkerEnvironment> env, size_t index) {
  std::unique_ptr<Worker> w(new Worker(loop, std::move(env)));
  RETURN_IF_ERROR(w->start(index));
  return w;
}

Status Worker::start(size_t index) {
  const ProxyConfig& config = env_->config;
  scheduler_ = std::make_unique<exchange::LoopScheduler>(loop_);

  pool::PoolConfig pool_config;
  pool_config.connect_timeout = config.connect_timeout;
  ASSIGN_OR_RETURN(pool_, pool::Pool::create(loop_, pool_config, env_->pool_metrics));

  auto random = [this] { return random_(); };
  auto turn_time = [this] { return loop_.turn_time(); };
  ASSIGN_OR_RETURN(balancer_, balancer::Balancer::create({}, turn_time, random));

  exchange::WorkerContext context;
  context.pool = pool_.get();
  context.scheduler = scheduler_.get();
  context.balancer = balancer_.get();
  context.random = random;
  ASSIGN_OR_RETURN(outbound_factory_, exchange::OutboundFactory::create(env_->exchange, context,
                                                                       env_->exchange_metrics,
                                                                       env_->unrouted_budget));
  ASSIGN_OR_RETURN(inbound_factory_, exchange::InboundFactory::create(env_->exchange, context,
                                                                     env_->exchange_metrics,
                                                                     env_->inbound_budget));

  for (DirectionState* d : {&outbound_, &inbound_}) {
    std::string name(http::direction_name(d->direction));
    ASSIGN_OR_RETURN(d->downstream_metrics, env_->downstream_families.resolve(d->direction));
    ASSIGN_OR_RETURN(d->splice_metrics.open, env_->downstream_families.connections_open.with_labels({name}));
    ASSIGN_OR_RETURN(d->splice_metrics.bytes_from_client, env_->tcp_received.with_labels({name}));
    ASSIGN_OR_RETURN(d->splice_metrics.bytes_from_upstream, env_->tcp_sent.with_labels({name}));
    ASSIGN_OR_RETURN(d->refused_not_redirected, env_->refused.with_labels({name, "not_redirected"}));
    ASSIGN_OR_RETURN(d->refused_loop, env_->refused.with_labels({name, "loop"}));
    d->connections = std::make_unique<downstream::ConnectionManager>(loop_);
  }
  RETURN_IF_ERROR(listen(outbound_, config.outbound_port));
  RETURN_IF_ERROR(listen(inbound_, config.inbound_port));
  log::debug("worker started", {{"worker", index}});
  return ok_status();
}

Status Worker::listen(DirectionState& d, uint16_t port) {
  auto on_accept = [this, &d](std::unique_ptr<net::TcpConnection> c) { accept(d, std::move(c)); };
  net::ListenerOptions options;
  options.connection.idle_timeout = std::chrono::milliseconds(0);  // the protocol layers time out
  ASSIGN_OR_RETURN(auto v4, net::Address::from_ip("0.0.0.0", port));
  ASSIGN_OR_RETURN(d.listener_v4, net::Listener::listen(loop_, v4, on_accept, options));
  // IPv6 where the kernel has it; a pod without IPv6 is normal.
  ASSIGN_OR_RETURN(auto v6, net::Address::from_ip("::", port));
  auto listener_v6 = net::Listener::listen(loop_, v6, on_accept, options);
  if (listener_v6.ok()) d.listener_v6 = std::move(*listener_v6);
  return ok_status();
}

void Worker::accept(DirectionState& d, std::unique_ptr<net::TcpConnection> connection) {
  http::DownstreamInfo info;
  info.direction = d.direction;
  if (auto peer = connection->peer_address(); peer.ok()) info.peer = *peer;
  auto original = connection->original_destination();
  auto local = connection->local_address();
  // A connection that was not redirected was dialled to our own port: relaying
  // it to its "original destination" would loop back to us.
  if (!original.ok() || (local.ok() && *original == *local)) {
    (original.ok() ? d.refused_loop : d.refused_not_redirected).inc();
    connection->abort();
    return;
  }
  info.original_destination = *original;
  if (d.direction == http::Direction::inbound &&
      (original->port() == env_->config.inbound_port || original->port() == env_->config.outbound_port)) {
    d.refused_loop.inc();
    connection->abort();
    return;
  }

  if (d.direction == http::Direction::outbound) {
    const auto& table = outbound_factory_->current();
    const router::Frontend* frontend =
        table ? table->table().router().frontend(original->sockaddr_ptr()) : nullptr;
    if (frontend == nullptr) {  // not a Service: forwarded untouched, no detection delay
      splice(d, std::move(connection), *original, {}, false);
      return;
    }
    std::optional<detect::Protocol> hint;
    if (frontend->port->app_protocol) hint = detect::protocol_for_app_protocol(*frontend->port->app_protocol);
    if (hint == detect::Protocol::opaque) {
      auto target = opaque_target(*original);
      if (!target) {
        connection->abort();
        return;
      }
      splice(d, std::move(connection), *target, {}, false);
      return;
    }
  }
  detect(d, std::move(connection), info);
}

void Worker::detect(DirectionState& d, std::unique_ptr<net::TcpConnection> connection,
                    http::DownstreamInfo info) {
  detect::DetectOptions options;
  options.timeout = env_->config.detect_timeout;
  // The callback never runs inside start(), so the slot is filled by then.
  auto self = std::make_shared<detect::Detector*>(nullptr);
  auto detector = detect::Detector::start(
      std::move(connection), options, [this, &d, info, self](Result<detect::Detection> result) {
        if (auto it = detectors_.find(*self); it != detectors_.end()) {
          loop_.delete_later(std::move(it->second));
          detectors_.erase(it);
        }
        if (result.ok()) {
          dispatch(d, std::move(*result), info);
        } else {
          log::debug("protocol detection failed", {{"error", result.error().message}});
        }
        update_open_count();
      });
  if (!detector.ok()) {
    log::debug("protocol detection could not start", {{"error", detector.error().message}});
    return;
  }
  *self = detector->get();
  detectors_.emplace(*self, std::move(*detector));
  update_open_count();
}

void Worker::dispatch(DirectionState& d, detect::Detection detection, http::DownstreamInfo info) {
  const ProxyConfig& config = env_->config;
  http::ExchangeFactory& factory = d.direction == http::Direction::outbound
                                       ? static_cast<http::ExchangeFactory&>(*outbound_factory_)
                                       : static_cast<http::ExchangeFactory&>(*inbound_factory_);
  switch (detection.protocol) {
    case detect::Protocol::http1: {
      downstream::Http1Options options;
      options.header_timeout = config.header_timeout;
      options.idle_timeout = config.idle_timeout;
      auto c = downstream::Http1ServerConnection::create(std::move(detection.connection), factory, info,
                                                         options, d.downstream_metrics);
      if (!c.ok()) {
        log::error("HTTP/1 connection could not start", {{"error", c.error().message}});
        return;
      }
      d.connections->add(std::move(*c), std::move(detection.bytes), detection.eof);
      return;
    }
    case detect::Protocol::http2: {
      downstream::Http2Options options;
      options.idle_timeout = config.idle_timeout;
      info.protocol = trellis::http::Version::http2;
      auto c = downstream::Http2ServerConnection::create(std::move(detection.connection), factory, info,
                                                         options, d.downstream_metrics);
      if (!c.ok()) {
        log::error("HTTP/2 connection could not start", {{"error", c.error().message}});
        return;
      }
      d.connections->add(std::move(*c), std::move(detection.bytes), detection.eof);
      return;
    }
    case detect::Protocol::tls:
    case detect::Protocol::opaque: {
      std::optional<net::Address> target;
      if (d.direction == http::Direction::inbound) {
        auto a = net::Address::from_ip(config.inbound_target_ip, info.original_destination.port());
        if (a.ok()) target = *a;
      } else {
        target = opaque_target(info.original_destination);
      }
      if (!target) {
        detection.connection->abort();
        return;
      }
      splice(d, std::move(detection.connection), *target, std::move(detection.bytes), detection.eof);
      return;
    }
  }
}

void Worker::splice(DirectionState& d, std::unique_ptr<net::TcpConnection> client, const net::Address& to,
                    std::string replay, bool eof) {
  tcp::SpliceOptions options;
  options.connect_timeout = env_->config.connect_timeout;
  options.idle_timeout = env_->config.idle_timeout;
  auto self = std::make_shared<tcp::Splice*>(nullptr);
  auto s = tcp::Splice::connect(
      std::move(client), to, std::move(replay), eof, options,
      [this, self](const tcp::SpliceResult&) {
        if (auto it = splices_.find(*self); it != splices_.end()) {
          loop_.delete_later(std::move(it->second));
          splices_.erase(it);
        }
        update_open_count();
      },
      &d.splice_metrics);
  if (!s.ok()) {
    log::debug("splice could not start", {{"to", to.to_string()}, {"error", s.error().message}});
    return;
  }
  *self = s->get();
  splices_.emplace(*self, std::move(*s));
  update_open_count();
}

std::optional<net::Address> Worker::opaque_target(const net::Address& original_destination) {
  const auto& table = outbound_factory_->current();
  if (!table) return std::nullopt;
  const router::Frontend* frontend = table->table().router().frontend(original_destination.sockaddr_ptr());
  if (frontend == nullptr) return original_destination;
  const exchange::FrontendPlan* plan = table->table().frontend(*frontend);
  if (plan != nullptr && plan->endpoint_set) {
    balancer::Choice choice = balancer_->pick(table->candidates(*plan->endpoint_set));
    if (choice) return choice.endpoint->address();
  }
  // Routed Services keep their own endpoints for opaque traffic.
  if (frontend->endpoints == nullptr || frontend->endpoints->eligible.empty()) return std::nullopt;
  const auto& eligible = frontend->endpoints->eligible;
  const routes::EndpointAddress* address = eligible[random_() % eligible.size()];
  auto a = net::Address::from_ip(address->ip, address->port);
  if (!a.ok()) return std::nullopt;
  return *a;
}

void Worker::install(std::shared_ptr<const exchange::InstalledTable> table) {
  outbound_factory_->install(std::move(table));
}

void Worker::drain() {
  if (draining_) return;
  draining_ = true;
  for (DirectionState* d : {&outbound_, &inbound_}) {
    d->listener_v4.reset();
    d->listener_v6.reset();
    d->connections->drain();
  }
  pool_->drain();
  update_open_count();
}

void Worker::close_all() {
  for (DirectionState* d : {&outbound_, &inbound_}) d->connections->close_all();
  splices_.clear();
  detectors_.clear();
  update_open_count();
}

void Worker::update_open_count() {
  open_.store(outbound_.connections->size() + inbound_.connections->size() + splices_.size() +
                  detectors_.size(),
              std::memory_order_relaxed);
}

}  // namespace trellis::proxy::app
