#include "mesh-controller/stream/server.h"

#include <algorithm>
#include <utility>

#include "common/log/log.h"

namespace trellis::controller::stream {
namespace {

constexpr int kOk = 200;
constexpr int kServiceUnavailable = 503;

std::optional<Clock::time_point> earliest(std::optional<Clock::time_point> a,
                                          std::optional<Clock::time_point> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

}  // namespace

Status validate(const ServerOptions& options) {
  if (options.feed_bytes == 0) return make_error("feed_bytes must be positive");
  if (options.high_water == 0) return make_error("high_water must be positive");
  if (options.heartbeat_interval.count() <= 0) return make_error("heartbeat_interval must be positive");
  if (options.shutdown_timeout.count() <= 0) return make_error("shutdown_timeout must be positive");
  return http2::validate(options.session);
}

// A table as streams write it: its pieces, computed once for every stream.
struct Server::Published {
  std::shared_ptr<const resolve::Table> table;
  std::vector<std::string_view> pieces;  // views into `table`

  const std::string& version() const { return table->version(); }
};

// One stream of one connection: a sidecar waiting for its namespace's tables.
struct Server::Subscriber {
  Connection* connection = nullptr;
  int32_t id = 0;
  std::string ns;
  // The table being written and how far its pieces have been queued.
  std::shared_ptr<const Published> writing;
  std::optional<Clock::time_point> writing_changed_at;
  size_t piece = 0;
  size_t offset = 0;
  bool newline_queued = false;
  // The latest version waiting behind the one being written.
  std::shared_ptr<const Published> pending;
  std::optional<Clock::time_point> pending_changed_at;
  std::string sent_version;  // the last table written completely
  bool active = false;       // bytes were queued since the last heartbeat tick
};

class Server::Connection final : private Transport::Handler, private http2::SessionHandler {
 public:
  Connection(Server& server, std::unique_ptr<Transport> transport)
      : server_(server),
        transport_(std::move(transport)),
        flush_timer_(server.loop_, [this] { flush(); }) {}

  ~Connection() override = default;

  Status start() {
    http2::SessionConfig config = server_.options_.session;
    config.role = http2::Role::server;
    ASSIGN_OR_RETURN(session_, http2::Session::create(config, *this));
    RETURN_IF_ERROR(transport_->start(*this));
    flush();  // our SETTINGS
    return ok_status();
  }

  // A table for one of this connection's streams (see the header's rules).
  void offer(Subscriber& s, const std::shared_ptr<const Published>& table,
             std::optional<Clock::time_point> changed_at) {
    const std::string& target = s.pending   ? s.pending->version()
                                : s.writing ? s.writing->version()
                                            : s.sent_version;
    if (table->version() == target) return;
    if (!s.writing) {
      begin(s, table, changed_at);
      return;
    }
    if (table->version() == s.writing->version()) {
      // Back to the version being written: what waited behind it is stale.
      s.pending.reset();
      s.pending_changed_at.reset();
      return;
    }
    s.pending_changed_at = earliest(s.pending ? s.pending_changed_at : std::nullopt, changed_at);
    s.pending = table;
  }

  // An empty line on streams that were quiet since the last tick.
  void heartbeat() {
    if (finished_ || going_away_) return;
    for (auto& [id, s] : subscribers_) {
      if (!s->active && !s->writing) (void)session_->send_data(id, "\n", false);
      s->active = false;
    }
    schedule_flush();
  }

  // Ends every stream and sends GOAWAY; the connection closes when both
  // sides are done (Server::shutdown bounds the wait).
  void go_away() {
    if (finished_ || going_away_) return;
    going_away_ = true;
    for (auto& [id, s] : subscribers_) {
      s->writing.reset();
      s->pending.reset();
      (void)session_->send_data(id, {}, true);
    }
    (void)session_->shutdown_gracefully();
    schedule_flush();
  }

  // Drops the connection without further callbacks to the server.
  void detach() {
    finished_ = true;
    subscribers_.clear();
  }

  std::vector<Subscriber*> subscribers() const {
    std::vector<Subscriber*> out;
    for (const auto& entry : subscribers_) out.push_back(entry.second.get());
    return out;
  }

  void schedule_flush() {
    if (!finished_ && !flush_timer_.active()) flush_timer_.start(std::chrono::milliseconds(0));
  }

 private:
  void begin(Subscriber& s, const std::shared_ptr<const Published>& table,
             std::optional<Clock::time_point> changed_at) {
    s.writing = table;
    s.writing_changed_at = changed_at;
    s.piece = 0;
    s.offset = 0;
    s.newline_queued = false;
    s.active = true;
    schedule_flush();
  }

  // Tops the stream's HTTP/2 queue up to feed_bytes from its table.
  void feed(Subscriber& s) {
    while (s.writing && !s.newline_queued) {
      size_t queued = session_->queued_bytes(s.id);
      if (queued >= server_.options_.feed_bytes) return;
      const std::vector<std::string_view>& pieces = s.writing->pieces;
      bool last = s.piece == pieces.size();
      std::string_view rest = last ? std::string_view("\n") : pieces[s.piece].substr(s.offset);
      size_t n = std::min(rest.size(), server_.options_.feed_bytes - queued);
      if (n > 0 && !session_->send_data(s.id, rest.substr(0, n), false).ok()) {
        // The stream is closing (its on_stream_close is on the way): stop feeding it.
        s.writing.reset();
        s.pending.reset();
        return;
      }
      if (last) {
        s.newline_queued = true;
        return;
      }
      s.offset += n;
      if (s.offset == pieces[s.piece].size()) {
        ++s.piece;
        s.offset = 0;
      }
    }
  }

  // The table left the session's queue completely: it is in the socket.
  void complete(Subscriber& s) {
    server_.metrics_.tables_sent.inc();
    if (s.writing_changed_at) {
      server_.metrics_.push_latency.observe(
          std::chrono::duration<double>(Clock::now() - *s.writing_changed_at).count());
    }
    s.sent_version = s.writing->version();
    s.writing.reset();
    std::shared_ptr<const Published> next = std::move(s.pending);
    std::optional<Clock::time_point> next_changed_at = s.pending_changed_at;
    s.pending.reset();
    s.pending_changed_at.reset();
    if (next && next->version() != s.sent_version) begin(s, next, next_changed_at);
  }

  void flush() {
    if (finished_ || in_session_ || session_ == nullptr) return;
    for (;;) {
      if (!going_away_) {
        for (auto& entry : subscribers_) feed(*entry.second);
      }
      if (transport_->queued_bytes() > server_.options_.high_water) {
        // The sidecar does not read: stop reading it too, so its frames
        // cannot make our replies pile up, until the socket drains.
        if (!write_blocked_) {
          write_blocked_ = true;
          transport_->pause_reading();
        }
        return;
      }
      out_.clear();
      in_session_ = true;
      Status produced = session_->produce(out_);
      in_session_ = false;
      if (finished_) return;
      if (!out_.empty()) {
        if (Status written = transport_->write(out_); !written.ok()) {
          finish(written.error());
          return;
        }
      }
      if (!produced.ok() || session_->is_closed()) {
        close_transport();
        return;
      }
      // Again while a table completed and another follows, or the peer's
      // window let bytes out and there are more to feed; a closed window
      // leaves feed_bytes queued, which ends the loop.
      bool again = false;
      for (auto& [id, s] : subscribers_) {
        if (!s->writing) continue;
        size_t queued = session_->queued_bytes(id);
        if (s->newline_queued && queued == 0) {
          complete(*s);
          again = again || s->writing != nullptr;
        } else if (!s->newline_queued && queued < server_.options_.feed_bytes) {
          again = true;
        }
      }
      if (!again || going_away_) return;
    }
  }

  void respond_error(int32_t id, const Error& error) {
    http::ResponseHead head;
    head.status = error.code;
    head.version = http::Version::http2;
    head.headers.add("content-type", "text/plain; charset=utf-8");
    if (error.code == 405) head.headers.add("allow", "GET");
    if (session_->submit_response(id, head, true).ok()) {
      (void)session_->send_data(id, error.message + "\n", true);
    }
    server_.count_request(error.code);
  }

  void close_transport() {
    if (closing_) return;
    closing_ = true;
    transport_->close();
  }

  void finish(const Status& why) {
    if (finished_) return;
    finished_ = true;
    flush_timer_.stop();
    if (!why.ok()) {
      log::debug("route-table connection failed",
                 {{"peer", transport_->peer_address()}, {"error", why.error().message}});
    }
    for (auto& entry : subscribers_) server_.unsubscribe(*entry.second);
    subscribers_.clear();
    server_.remove(this);
  }

  // Transport::Handler
  void on_transport_data(const char* data, size_t length) override {
    if (finished_) return;
    in_session_ = true;
    Status received = session_->receive(data, length);
    in_session_ = false;
    if (finished_) return;
    if (!received.ok()) {
      server_.metrics_.protocol_errors.inc();
      log::warn("route-table connection: HTTP/2 protocol error",
                {{"peer", transport_->peer_address()}, {"error", received.error().message}});
    }
    flush();  // replies, and the GOAWAY explaining a failure
  }

  void on_transport_drained() override {
    if (!write_blocked_ || finished_) return;
    write_blocked_ = false;
    transport_->resume_reading();
    flush();
  }

  void on_transport_closed(const Status& why) override { finish(why); }

  // http2::SessionHandler
  void on_request_head(int32_t id, http::RequestHead&& head, bool) override {
    if (server_.shutting_down_) {
      respond_error(id, make_error("the controller is shutting down; reconnect",
                                   kServiceUnavailable));
      return;
    }
    Result<std::string> ns =
        client_namespace(head, transport_->peer_identity(), server_.options_.policy);
    if (!ns.ok()) {
      log::info("route-table request refused", {{"peer", transport_->peer_address()},
                                                {"status", ns.error().code},
                                                {"error", ns.error().message}});
      respond_error(id, ns.error());
      return;
    }
    http::ResponseHead response;
    response.status = kOk;
    response.version = http::Version::http2;
    response.headers.add("content-type", kRouteTableContentType);
    response.headers.add("cache-control", "no-store");
    if (Status s = session_->submit_response(id, response, true); !s.ok()) return;
    server_.count_request(kOk);
    auto subscriber = std::make_unique<Subscriber>();
    subscriber->connection = this;
    subscriber->id = id;
    subscriber->ns = std::move(*ns);
    Subscriber& s = *subscriber;
    subscribers_.emplace(id, std::move(subscriber));
    log::debug("route-table stream opened",
               {{"peer", transport_->peer_address()}, {"namespace", s.ns}, {"stream", id}});
    server_.subscribe(s);
  }

  void on_data(int32_t id, const char*, size_t len) override {
    (void)session_->consume(id, len);  // a request body means nothing here
  }
  void on_trailers(int32_t, http::HeaderMap&&) override {}
  void on_end_stream(int32_t) override {}

  void on_stream_close(int32_t id, uint32_t) override {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) return;
    server_.unsubscribe(*it->second);
    subscribers_.erase(it);
    schedule_flush();  // the session may be done now (going away)
  }

  Server& server_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<http2::Session> session_;
  std::map<int32_t, std::unique_ptr<Subscriber>> subscribers_;
  event::Timer flush_timer_;
  std::string out_;
  bool in_session_ = false;
  bool write_blocked_ = false;
  bool going_away_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

Server::Server(event::EventLoop& loop, ServerOptions options, Observer& observer)
    : loop_(loop),
      options_(std::move(options)),
      observer_(observer),
      heartbeat_timer_(loop, [this] { heartbeat(); }),
      shutdown_timer_(loop, [this] { finish_shutdown(); }) {}

Server::~Server() {
  for (auto& entry : connections_) entry.second->detach();
  connections_.clear();
}

Result<std::unique_ptr<Server>> Server::create(event::EventLoop& loop, ServerOptions options,
                                               metrics::Registry& registry, Observer& observer) {
  RETURN_IF_ERROR(validate(options));
  std::unique_ptr<Server> server(new Server(loop, std::move(options), observer));
  Metrics& m = server->metrics_;
  ASSIGN_OR_RETURN(auto streams, registry.gauge("trellis_controller_streams",
                                                "Open route-table streams."));
  ASSIGN_OR_RETURN(m.streams, streams.with_labels({}));
  ASSIGN_OR_RETURN(m.namespace_streams,
                   registry.gauge("trellis_controller_namespace_streams",
                                  "Open route-table streams per client namespace.",
                                  {"namespace"}));
  ASSIGN_OR_RETURN(auto connections,
                   registry.gauge("trellis_controller_stream_connections",
                                  "Open connections to the route-table service."));
  ASSIGN_OR_RETURN(m.connections, connections.with_labels({}));
  ASSIGN_OR_RETURN(m.requests, registry.counter("trellis_controller_stream_requests_total",
                                                "Route-table requests by response status.",
                                                {"code"}));
  ASSIGN_OR_RETURN(auto errors,
                   registry.counter("trellis_controller_stream_protocol_errors_total",
                                    "Route-table connections failed for an HTTP/2 protocol error."));
  ASSIGN_OR_RETURN(m.protocol_errors, errors.with_labels({}));
  ASSIGN_OR_RETURN(auto sent, registry.counter("trellis_controller_tables_sent_total",
                                               "Route tables completely written to a stream."));
  ASSIGN_OR_RETURN(m.tables_sent, sent.with_labels({}));
  ASSIGN_OR_RETURN(auto latency,
                   registry.histogram("trellis_controller_push_latency_seconds",
                                      "From the change that produced a route table to its "
                                      "last byte handed to a stream's socket.",
                                      {}, metrics::controller_duration_buckets()));
  ASSIGN_OR_RETURN(m.push_latency, latency.with_labels({}));
  server->heartbeat_timer_.start(server->options_.heartbeat_interval,
                                 server->options_.heartbeat_interval);
  return server;
}

Status Server::listen(const net::Address& address, const net::ListenerOptions& options) {
  ASSIGN_OR_RETURN(listener_, net::Listener::listen(
                                  loop_, address,
                                  [this](std::unique_ptr<net::TcpConnection> connection) {
                                    accept(std::move(connection));
                                  },
                                  options));
  return ok_status();
}

std::optional<net::Address> Server::local_address() const {
  if (!listener_) return std::nullopt;
  return listener_->local_address();
}

void Server::accept(std::unique_ptr<net::TcpConnection> connection) {
  adopt(tcp_transport(std::move(connection)));
}

void Server::adopt(std::unique_ptr<Transport> transport) {
  if (shutting_down_) return;  // dropping it closes it
  auto connection = std::make_unique<Connection>(*this, std::move(transport));
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  metrics_.connections.inc();
  if (Status s = raw->start(); !s.ok()) {
    log::warn("route-table connection not started", {{"error", s.error().message}});
    raw->detach();
    remove(raw);
  }
}

void Server::remove(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  std::unique_ptr<Connection> doomed = std::move(it->second);
  connections_.erase(it);
  metrics_.connections.dec();
  loop_.delete_later(std::move(doomed));  // we may be inside its callback
  if (shutting_down_ && connections_.empty()) finish_shutdown();
}

void Server::subscribe(Subscriber& subscriber) {
  ++stream_count_;
  metrics_.streams.inc();
  auto [it, first] = watched_.try_emplace(subscriber.ns);
  Watched& w = it->second;
  if (first) {
    auto gauge = metrics_.namespace_streams.with_labels({subscriber.ns});
    if (gauge.ok()) w.streams = std::move(*gauge);
  }
  w.streams.inc();
  w.subscribers.insert(&subscriber);
  if (first) {
    observer_.on_namespace_watched(subscriber.ns);  // may publish() to it at once
  } else if (w.table) {
    subscriber.connection->offer(subscriber, w.table, std::nullopt);
  }
}

void Server::unsubscribe(Subscriber& subscriber) {
  auto it = watched_.find(subscriber.ns);
  if (it == watched_.end() || it->second.subscribers.erase(&subscriber) == 0) return;
  --stream_count_;
  metrics_.streams.dec();
  it->second.streams.dec();
  log::debug("route-table stream closed", {{"namespace", subscriber.ns}, {"stream", subscriber.id}});
  if (!it->second.subscribers.empty()) return;
  std::string ns = it->first;
  watched_.erase(it);
  observer_.on_namespace_unwatched(ns);
}

void Server::publish(const std::string& ns, std::shared_ptr<const resolve::Table> table,
                     std::optional<Clock::time_point> changed_at) {
  auto it = watched_.find(ns);
  if (it == watched_.end() || !table) return;
  Watched& w = it->second;
  if (w.table && w.table->version() == table->version()) return;
  auto published = std::make_shared<Published>();
  published->pieces = table->chunks();
  published->table = std::move(table);
  w.table = std::move(published);
  w.changed_at = changed_at;
  for (Subscriber* s : w.subscribers) s->connection->offer(*s, w.table, changed_at);
}

std::vector<std::string> Server::watched_namespaces() const {
  std::vector<std::string> out;
  out.reserve(watched_.size());
  for (const auto& entry : watched_) out.push_back(entry.first);
  return out;
}

bool Server::watched(std::string_view ns) const { return watched_.find(ns) != watched_.end(); }

void Server::count_request(int status) {
  auto it = request_counters_.find(status);
  if (it == request_counters_.end()) {
    auto counter = metrics_.requests.with_labels({std::to_string(status)});
    if (!counter.ok()) return;
    it = request_counters_.emplace(status, std::move(*counter)).first;
  }
  it->second.inc();
}

void Server::heartbeat() {
  for (auto& entry : connections_) entry.second->heartbeat();
}

void Server::shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  if (listener_) listener_->stop();
  heartbeat_timer_.stop();
  log::info("route-table service shutting down", {{"connections", connections_.size()},
                                                  {"streams", stream_count_}});
  if (connections_.empty()) {
    finish_shutdown();
    return;
  }
  for (auto& entry : connections_) entry.second->go_away();
  shutdown_timer_.start(options_.shutdown_timeout);
}

void Server::finish_shutdown() {
  shutdown_timer_.stop();
  if (!connections_.empty()) {
    log::warn("route-table connections still open after GOAWAY; closing them",
              {{"connections", connections_.size()}});
    std::vector<Connection*> left;
    for (auto& entry : connections_) left.push_back(entry.first);
    for (Connection* c : left) {
      for (Subscriber* s : c->subscribers()) unsubscribe(*s);
      c->detach();
      auto it = connections_.find(c);
      metrics_.connections.dec();
      loop_.delete_later(std::move(it->second));
      connections_.erase(it);
    }
  }
  if (!shutdown_done_) return;
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  loop_.defer(std::move(done));
}

}  // namespace trellis::controller::stream
