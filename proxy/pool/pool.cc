#include "proxy/pool/pool.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "proxy/pool/http1.h"
#include "proxy/pool/http2.h"
#include "proxy/pool/internal.h"

namespace trellis::proxy::pool {
namespace {

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

Error config_error(const std::string& what) { return make_error("pool config: " + what); }

}  // namespace

Status validate(const PoolConfig& c) {
  if (c.connect_timeout.count() <= 0) {
    return config_error("connect_timeout must be positive, got " + ms_text(c.connect_timeout));
  }
  if (c.idle_timeout.count() <= 0) {
    return config_error("idle_timeout must be positive, got " + ms_text(c.idle_timeout));
  }
  if (c.max_connections_per_endpoint == 0) {
    return config_error("max_connections_per_endpoint must be positive");
  }
  if (c.high_water == 0) return config_error("high_water must be positive");
  if (c.low_water > c.high_water) {
    return config_error("low_water (" + std::to_string(c.low_water) +
                        ") must not exceed high_water (" + std::to_string(c.high_water) + ")");
  }
  // The ranges http2::SessionConfig accepts (RFC 9113 §6.5.2, §6.9.2).
  constexpr uint32_t kMaxWindow = 0x7fffffff;
  if (c.h2_stream_window < 1 || c.h2_stream_window > kMaxWindow) {
    return config_error("h2_stream_window: " + std::to_string(c.h2_stream_window) +
                        " is outside [1, " + std::to_string(kMaxWindow) + "]");
  }
  if (c.h2_connection_window < 65535 || c.h2_connection_window > kMaxWindow) {
    return config_error("h2_connection_window: " + std::to_string(c.h2_connection_window) +
                        " is outside [65535, " + std::to_string(kMaxWindow) + "]");
  }
  return ok_status();
}

Result<PoolMetrics> PoolMetrics::create(metrics::Registry& registry) {
  auto open = registry.gauge("trellis_upstream_connections_open",
                             "Upstream connections established and not yet closed.", {"protocol"});
  if (!open.ok()) return std::move(open).error();
  auto failures = registry.counter("trellis_upstream_connect_failures_total",
                                   "Upstream connection attempts that failed or timed out.");
  if (!failures.ok()) return std::move(failures).error();
  PoolMetrics m;
  auto http1 = open->with_labels({"http1"});
  auto h2c = open->with_labels({"h2c"});
  auto mesh = open->with_labels({"mesh"});
  auto total = failures->with_labels({});
  if (!http1.ok()) return std::move(http1).error();
  if (!h2c.ok()) return std::move(h2c).error();
  if (!mesh.ok()) return std::move(mesh).error();
  if (!total.ok()) return std::move(total).error();
  m.open_http1 = std::move(http1).value();
  m.open_h2c = std::move(h2c).value();
  m.open_mesh = std::move(mesh).value();
  m.connect_failures = std::move(total).value();
  return m;
}

// --- Context ----------------------------------------------------------------

// A transport closing gracefully after its connection is gone.
struct Context::Lingering : Transport::Handler {
  Context* context = nullptr;
  std::list<std::unique_ptr<Lingering>>::iterator self;
  std::unique_ptr<Transport> transport;

  void done() { context->lingering_.erase(self); }  // destroys this: the last statement
  void on_transport_data(const char*, size_t) override {}
  void on_transport_eof() override {}
  void on_transport_error(const Error&) override { done(); }
  void on_transport_high_water() override {}
  void on_transport_drained() override {}
  void on_transport_closed() override { done(); }
};

Context::Context(event::EventLoop& event_loop, const PoolConfig& pool_config,
                 PoolMetrics pool_metrics, TransportFactory transport_factory)
    : loop(event_loop),
      config(pool_config),
      metrics(std::move(pool_metrics)),
      transports(std::move(transport_factory)),
      deliver_failures_task_(event_loop, [this] { deliver_failures(); }),
      sweep_task_(event_loop, [this] { sweep(); }) {}

Context::~Context() {
  // Streams the exchange still holds become inert.
  for (StreamBase* s : failures_) s->orphan();
  failures_.clear();
}

TransportOptions Context::transport_options() const {
  TransportOptions o;
  o.connect_timeout = config.connect_timeout;
  o.high_water = config.high_water;
  o.low_water = config.low_water;
  return o;
}

void Context::queue_failure(StreamBase& stream) {
  failures_.push_back(&stream);
  deliver_failures_task_.schedule();
}

void Context::forget_failure(StreamBase& stream) {
  auto it = std::find(failures_.begin(), failures_.end(), &stream);
  if (it != failures_.end()) failures_.erase(it);
}

void Context::deliver_failures() {
  // One at a time: a callback may destroy other queued streams (which then
  // leave the queue) or queue new failures (delivered in this same pass).
  while (!failures_.empty()) {
    StreamBase* s = failures_.front();
    failures_.pop_front();
    s->deliver_failure();
  }
}

void Context::retire(std::unique_ptr<Retired> object) {
  graveyard_.push_back(std::move(object));
  sweep_task_.schedule();
}

void Context::linger(std::unique_ptr<Transport> transport) {
  auto lingering = std::make_unique<Lingering>();
  lingering->context = this;
  lingering->transport = std::move(transport);
  Lingering* raw = lingering.get();
  lingering_.push_front(std::move(lingering));
  raw->self = lingering_.begin();
  raw->transport->set_handler(*raw);
  raw->transport->close();
}

void Context::sweep_later(Endpoint& endpoint) {
  if (endpoint.sweep_queued) return;
  endpoint.sweep_queued = true;
  sweep_candidates_.push_back(&endpoint);
  sweep_task_.schedule();
}

void Context::sweep() {
  // Destroyed objects may retire others: loop until nothing is left.
  while (!graveyard_.empty()) {
    std::vector<std::unique_ptr<Retired>> dead;
    dead.swap(graveyard_);
  }
  std::vector<Endpoint*> candidates;
  candidates.swap(sweep_candidates_);
  for (Endpoint* e : candidates) {
    e->sweep_queued = false;
    if (!e->empty()) continue;
    auto it = endpoints.find(e->key());
    if (it != endpoints.end()) endpoints.erase(it);
  }
}

void Context::connection_opened(UpstreamProtocol protocol) {
  ++stats.connections_opened;
  switch (protocol) {
    case UpstreamProtocol::http1:
      ++stats.open_http1;
      metrics.open_http1.inc();
      break;
    case UpstreamProtocol::h2c:
      ++stats.open_h2c;
      metrics.open_h2c.inc();
      break;
    case UpstreamProtocol::mesh:
      ++stats.open_mesh;
      metrics.open_mesh.inc();
      break;
  }
}

void Context::connection_closed(UpstreamProtocol protocol) {
  ++stats.connections_closed;
  switch (protocol) {
    case UpstreamProtocol::http1:
      --stats.open_http1;
      metrics.open_http1.dec();
      break;
    case UpstreamProtocol::h2c:
      --stats.open_h2c;
      metrics.open_h2c.dec();
      break;
    case UpstreamProtocol::mesh:
      --stats.open_mesh;
      metrics.open_mesh.dec();
      break;
  }
}

void Context::connect_failed() {
  ++stats.connect_failures;
  metrics.connect_failures.inc();
}

Context::Key Context::key_of(const http::UpstreamTarget& target) {
  Key key;
  key.protocol = target.protocol;
  key.family = target.address.family();
  key.port = target.address.port();
  const sockaddr* sa = target.address.sockaddr_ptr();
  if (target.address.is_ipv6()) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    key.ip_bytes.assign(reinterpret_cast<const char*>(&v6->sin6_addr), sizeof(v6->sin6_addr));
  } else {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    key.ip_bytes.assign(reinterpret_cast<const char*>(&v4->sin_addr), sizeof(v4->sin_addr));
  }
  key.identity = target.identity;
  return key;
}

std::string upstream_prefix(const http::UpstreamTarget& target) {
  return "upstream " + target.address.to_string() + ": ";
}

// --- StreamBase -------------------------------------------------------------

StreamBase::~StreamBase() {
  if (ctx_ != nullptr && failure_) ctx_->forget_failure(*this);
}

bool StreamBase::deliver_head(trellis::http::ResponseHead&& head, bool end_stream) {
  if (finished_) return true;
  if (end_stream) finished_ = response_complete_ = true;
  event::CallbackScope scope(destruction_);
  callbacks_.on_response_head(std::move(head), end_stream);
  return !scope.destroyed();
}

bool StreamBase::deliver_data(std::string_view data, bool end_stream) {
  if (finished_) return true;
  if (end_stream) finished_ = response_complete_ = true;
  event::CallbackScope scope(destruction_);
  callbacks_.on_response_data(data, end_stream);
  return !scope.destroyed();
}

bool StreamBase::deliver_trailers(trellis::http::HeaderMap&& trailers) {
  if (finished_) return true;
  finished_ = response_complete_ = true;
  event::CallbackScope scope(destruction_);
  callbacks_.on_response_trailers(std::move(trailers));
  return !scope.destroyed();
}

void StreamBase::fail(UpstreamFailure failure, Error detail) {
  if (finished_ || ctx_ == nullptr) return;
  finished_ = true;
  if (failure == UpstreamFailure::protocol_error) ++ctx_->stats.malformed_responses;
  failure_.emplace(failure, std::move(detail));
  ctx_->queue_failure(*this);
}

void StreamBase::deliver_failure() {
  // The queue no longer holds this stream: the destructor must not look.
  auto failure = std::move(*failure_);
  failure_.reset();
  callbacks_.on_upstream_failure(failure.first, failure.second);
}

bool StreamBase::sync_congestion() {
  if (replaying_ || finished_ || ctx_ == nullptr) return true;
  size_t queued = queued_request_bytes();
  event::CallbackScope scope(destruction_);
  if (!congested_ && queued > ctx_->config.high_water) {
    congested_ = true;
    callbacks_.on_request_congested();
  } else if (congested_ && queued <= ctx_->config.low_water) {
    congested_ = false;
    callbacks_.on_request_writable();
  }
  return !scope.destroyed();
}

void StreamBase::buffer_head(trellis::http::RequestHead&& head, bool end_stream) {
  if (buffered_.head) return;  // one head per request
  buffered_.head = std::move(head);
  buffered_.head_end = end_stream;
}

void StreamBase::buffer_data(std::string_view data, bool end_stream) {
  if (buffered_.head_end || buffered_.body_end || buffered_.trailers) return;  // already ended
  buffered_.body.append(data.data(), data.size());
  buffered_.body_end = end_stream;
  sync_congestion();
}

void StreamBase::buffer_trailers(trellis::http::HeaderMap&& trailers) {
  if (buffered_.head_end || buffered_.body_end || buffered_.trailers) return;
  buffered_.trailers = std::move(trailers);
}

// --- Pool -------------------------------------------------------------------

Pool::Pool(std::unique_ptr<Context> context) : context_(std::move(context)) {}

Pool::~Pool() {
  // Endpoints first: their connections and waiting streams still refer to
  // the context.
  context_->endpoints.clear();
}

Result<std::unique_ptr<Pool>> Pool::create(event::EventLoop& loop, const PoolConfig& config,
                                           PoolMetrics metrics, TransportFactory transports) {
  if (Status s = validate(config); !s.ok()) return std::move(s).error();
  if (!transports) return make_error("pool: no transport factory");
  return std::unique_ptr<Pool>(
      new Pool(std::make_unique<Context>(loop, config, std::move(metrics), std::move(transports))));
}

std::unique_ptr<http::UpstreamStream> Pool::new_stream(const http::UpstreamTarget& target,
                                                       http::UpstreamCallbacks& callbacks) {
  Context& ctx = *context_;
  switch (target.protocol) {
    case UpstreamProtocol::http1: ++ctx.stats.requests_http1; break;
    case UpstreamProtocol::h2c: ++ctx.stats.requests_h2c; break;
    case UpstreamProtocol::mesh: ++ctx.stats.requests_mesh; break;
  }
  Context::Key key = Context::key_of(target);
  auto it = ctx.endpoints.find(key);
  if (it == ctx.endpoints.end()) {
    std::unique_ptr<Endpoint> endpoint;
    if (target.protocol == UpstreamProtocol::http1) {
      endpoint = std::make_unique<Http1Endpoint>(ctx, target, key);
    } else {
      endpoint = std::make_unique<Http2Endpoint>(ctx, target, key);
    }
    it = ctx.endpoints.emplace(std::move(key), std::move(endpoint)).first;
  }
  return it->second->new_stream(callbacks);
}

void Pool::drain() {
  Context& ctx = *context_;
  ctx.draining = true;
  // Draining may erase nothing synchronously (connections retire), but
  // collect first: an endpoint's drain must not invalidate this walk.
  std::vector<Endpoint*> endpoints;
  endpoints.reserve(ctx.endpoints.size());
  for (auto& entry : ctx.endpoints) endpoints.push_back(entry.second.get());
  for (Endpoint* e : endpoints) e->drain();
}

bool Pool::idle() const {
  for (const auto& entry : context_->endpoints) {
    if (entry.second->connections() > 0) return false;
  }
  return true;
}

size_t Pool::endpoints() const { return context_->endpoints.size(); }

const PoolStats& Pool::stats() const { return context_->stats; }
const PoolConfig& Pool::config() const { return context_->config; }

}  // namespace trellis::proxy::pool
