#include "proxy/tcp/splice.h"

#include <algorithm>
#include <cerrno>
#include <utility>

namespace trellis::proxy::tcp {
namespace {

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// Makes `handler` the connection's handler whether or not an earlier owner
// (protocol detection) already started it.
Status attach(net::TcpConnection& connection, net::TcpConnection::Handler& handler) {
  Status s = connection.start(handler);
  if (!s.ok() && s.error().code == EALREADY) {
    connection.set_handler(handler);
    return ok_status();
  }
  return s;
}

Error prefixed(std::string_view prefix, const Error& e) {
  return make_error(std::string(prefix) + e.message, e.code);
}

}  // namespace

Status validate(const SpliceOptions& o) {
  if (o.idle_timeout.count() < 0) return make_error("idle_timeout must not be negative", EINVAL);
  if (o.connect_timeout.count() <= 0) {
    return make_error("connect_timeout must be positive, got " + ms_text(o.connect_timeout), EINVAL);
  }
  if (Status s = net::validate(o.upstream); !s.ok()) return prefixed("upstream: ", s.error());
  return ok_status();
}

std::string_view splice_end_name(SpliceEnd end) {
  switch (end) {
    case SpliceEnd::completed: return "completed";
    case SpliceEnd::connect_failed: return "connect_failed";
    case SpliceEnd::client_failed: return "client_failed";
    case SpliceEnd::upstream_failed: return "upstream_failed";
    case SpliceEnd::idle_timeout: return "idle_timeout";
  }
  return "completed";
}

Splice::Splice(event::EventLoop& loop, const SpliceOptions& options, DoneCallback done,
               const SpliceMetrics* metrics)
    : loop_(loop),
      options_(options),
      done_(std::move(done)),
      metrics_(metrics),
      client_(*this, true),
      upstream_(*this, false),
      idle_timer_(loop, [this] { on_idle_tick(); }) {
  if (metrics_ != nullptr) metrics_->open.inc();
}

Splice::~Splice() {
  if (metrics_ != nullptr) metrics_->open.dec();
}

Result<std::unique_ptr<Splice>> Splice::create(std::unique_ptr<net::TcpConnection> client,
                                               std::unique_ptr<net::TcpConnection> upstream,
                                               std::string replay, bool client_eof,
                                               const SpliceOptions& options, DoneCallback done,
                                               const SpliceMetrics* metrics) {
  if (Status s = validate(options); !s.ok()) return prefixed("splice: ", s.error());
  if (!done) return make_error("splice: no done callback", EINVAL);
  if (!client || !upstream) return make_error("splice: missing connection", EINVAL);
  std::unique_ptr<Splice> splice(new Splice(client->loop(), options, std::move(done), metrics));
  if (Status s = splice->take_client(std::move(client), std::move(replay), client_eof); !s.ok()) {
    return prefixed("splice: client: ", s.error());
  }
  if (Status s = splice->begin_relay(std::move(upstream)); !s.ok()) {
    return prefixed("splice: upstream: ", s.error());
  }
  return splice;
}

Result<std::unique_ptr<Splice>> Splice::connect(std::unique_ptr<net::TcpConnection> client,
                                                const net::Address& upstream, std::string replay,
                                                bool client_eof, const SpliceOptions& options,
                                                DoneCallback done, const SpliceMetrics* metrics) {
  if (Status s = validate(options); !s.ok()) return prefixed("splice: ", s.error());
  if (!done) return make_error("splice: no done callback", EINVAL);
  if (!client) return make_error("splice: missing connection", EINVAL);
  event::EventLoop& loop = client->loop();
  std::unique_ptr<Splice> splice(new Splice(loop, options, std::move(done), metrics));
  if (Status s = splice->take_client(std::move(client), std::move(replay), client_eof); !s.ok()) {
    return prefixed("splice: client: ", s.error());
  }
  Splice* raw = splice.get();
  // The callback is owned by the upstream connection, which the splice owns:
  // it can never run after the splice is gone.
  auto connection = net::TcpConnection::connect(
      loop, upstream, options.connect_timeout, [raw](const Status& s) { raw->on_connected(s); },
      options.upstream);
  if (!connection.ok()) return prefixed("splice: ", connection.error());
  splice->upstream_.connection = std::move(connection).value();
  splice->connecting_ = true;
  return splice;
}

Status Splice::take_client(std::unique_ptr<net::TcpConnection> client, std::string replay,
                           bool client_eof) {
  client_.connection = std::move(client);
  // Not read until the upstream can take the bytes.
  client_.connection->pause_reading();
  if (Status s = attach(*client_.connection, client_); !s.ok()) return s;
  client_.eof = client_eof;
  client_eof_at_start_ = client_eof;
  client_.bytes_read = replay.size();
  if (metrics_ != nullptr) metrics_->bytes_from_client.inc(static_cast<double>(replay.size()));
  replay_ = std::move(replay);
  return ok_status();
}

Status Splice::begin_relay(std::unique_ptr<net::TcpConnection> upstream) {
  if (upstream) upstream_.connection = std::move(upstream);
  net::TcpConnection& up = *upstream_.connection;
  if (Status s = attach(up, upstream_); !s.ok()) return s;
  if (!replay_.empty()) {
    if (Status s = up.write(replay_); !s.ok()) return s;
    std::string().swap(replay_);
  }
  if (client_eof_at_start_) {
    if (Status s = up.shutdown_write(); !s.ok()) return s;
  }
  update_reading(client_);
  update_reading(upstream_);
  if (options_.idle_timeout.count() > 0) {
    last_progress_ = loop_.now();
    // Ticks at a quarter of the timeout bound how late an idle splice ends.
    auto tick = std::max(options_.idle_timeout / 4, std::chrono::milliseconds(1));
    idle_timer_.start(tick, tick);
  }
  return ok_status();
}

void Splice::on_connected(const Status& status) {
  connecting_ = false;
  if (!status.ok()) {
    client_.connection->abort();
    finish(SpliceEnd::connect_failed, status.error());
    return;
  }
  if (Status s = begin_relay(nullptr); !s.ok()) fail(upstream_, SpliceEnd::upstream_failed, s.error());
}

size_t Splice::queued_to_client() const {
  return client_.connection ? client_.connection->queued_bytes() : 0;
}

size_t Splice::queued_to_upstream() const {
  return upstream_.connection && !connecting_ ? upstream_.connection->queued_bytes() : 0;
}

void Splice::on_data(Side& from, const char* data, size_t length) {
  if (finished_ || closing_) return;
  from.bytes_read += length;
  if (metrics_ != nullptr) {
    (from.client ? metrics_->bytes_from_client : metrics_->bytes_from_upstream)
        .inc(static_cast<double>(length));
  }
  forward(from, std::string_view(data, length));
}

void Splice::forward(Side& from, std::string_view bytes) {
  Side& to = other(from);
  // write() reports high water from inside, which pauses `from` at once.
  if (Status s = to.connection->write(bytes); !s.ok()) {
    fail(to, to.client ? SpliceEnd::client_failed : SpliceEnd::upstream_failed, s.error());
  }
}

void Splice::on_eof(Side& from) {
  if (finished_ || closing_) return;
  from.eof = true;
  Side& to = other(from);
  if (Status s = to.connection->shutdown_write(); !s.ok()) {
    fail(to, to.client ? SpliceEnd::client_failed : SpliceEnd::upstream_failed, s.error());
    return;
  }
  if (client_.eof && upstream_.eof) close_both(SpliceEnd::completed);
}

void Splice::on_error(Side& side, const Error& error) {
  if (finished_) return;
  fail(side, side.client ? SpliceEnd::client_failed : SpliceEnd::upstream_failed, error);
}

void Splice::on_high_water(Side& side) {
  Side& source = other(side);
  source.blocked = true;
  update_reading(source);
}

void Splice::on_drained(Side& side) {
  Side& source = other(side);
  source.blocked = false;
  update_reading(source);
}

void Splice::update_reading(Side& side) {
  if (!side.connection || connecting_ || closing_ || finished_) return;
  if (side.blocked || side.eof) {
    side.connection->pause_reading();
  } else {
    side.connection->resume_reading();
  }
}

void Splice::on_connection_idle() {
  // A connection's own idle timer (set by whoever accepted it) means the same.
  if (!closing_ && !finished_) close_both(SpliceEnd::idle_timeout);
}

void Splice::on_idle_tick() {
  if (closing_ || finished_) return;
  uint64_t progress = 0;
  for (const Side* side : {&client_, &upstream_}) {
    progress += side->connection->bytes_read() + side->connection->bytes_written();
  }
  std::chrono::milliseconds now = loop_.now();
  if (progress != progress_mark_) {
    progress_mark_ = progress;
    last_progress_ = now;
    return;
  }
  if (now - last_progress_ >= options_.idle_timeout) close_both(SpliceEnd::idle_timeout);
}

void Splice::close_both(SpliceEnd end) {
  closing_ = true;
  closing_end_ = end;
  idle_timer_.stop();
  // close() flushes what is queued, sends FIN and reports on_closed later.
  client_.connection->close();
  upstream_.connection->close();
}

void Splice::on_closed(Side& side) {
  side.closed = true;
  if (closing_ && client_.closed && upstream_.closed) finish(closing_end_, Error{});
}

void Splice::fail(Side& failed, SpliceEnd end, Error error) {
  failed.connection->abort();
  Side& peer = other(failed);
  if (peer.connection) peer.connection->abort();
  finish(end, std::move(error));
}

void Splice::finish(SpliceEnd end, Error error) {
  if (finished_) return;
  finished_ = true;
  idle_timer_.stop();
  SpliceResult result;
  result.end = end;
  result.error = std::move(error);
  result.client_to_upstream = client_.bytes_read;
  result.upstream_to_client = upstream_.bytes_read;
  // Last action: the owner may destroy the splice inside the callback.
  DoneCallback done = std::move(done_);
  done(result);
}

}  // namespace trellis::proxy::tcp
