#include "proxy/pool/http2.h"

#include <algorithm>
#include <utility>

#include "common/log/log.h"

namespace trellis::proxy::pool {
namespace {

namespace h2 = trellis::http2;

// Client stream ids are odd and end at 2^31-1: the connection goes away
// before nghttp2 runs out, so the next stream lands on a fresh one.
constexpr int32_t kLastStreamId = 0x7fffffff - 2;

h2::SessionConfig session_config(const PoolConfig& config) {
  h2::SessionConfig c;
  c.role = h2::Role::client;
  c.initial_stream_window = config.h2_stream_window;
  c.connection_window = config.h2_connection_window;
  return c;
}

}  // namespace

// --- Http2Stream ------------------------------------------------------------

Http2Stream::~Http2Stream() {
  if (ctx_ == nullptr) return;
  if (connection_ != nullptr) {
    connection_->cancel(*this);
  } else if (endpoint_ != nullptr) {
    endpoint_->cancel(*this);
  }
}

void Http2Stream::orphan() {
  StreamBase::orphan();
  endpoint_ = nullptr;
  connection_ = nullptr;
}

void Http2Stream::send_request_head(trellis::http::RequestHead&& head, bool end_stream) {
  if (ctx_ == nullptr || finished_ || connection_ != nullptr || buffered_.head) return;
  buffer_head(std::move(head), end_stream);
  if (endpoint_ != nullptr) endpoint_->dispatch();
}

void Http2Stream::send_request_data(std::string_view data, bool end_stream) {
  if (ctx_ == nullptr || finished_) return;
  if (connection_ != nullptr) {
    connection_->send_data(*this, data, end_stream);
  } else {
    buffer_data(data, end_stream);
  }
}

void Http2Stream::send_request_trailers(trellis::http::HeaderMap&& trailers) {
  if (ctx_ == nullptr || finished_) return;
  if (connection_ != nullptr) {
    connection_->send_trailers(*this, std::move(trailers));
  } else {
    buffer_trailers(std::move(trailers));
  }
}

void Http2Stream::pause_response_body() { paused_ = true; }

void Http2Stream::resume_response_body() {
  paused_ = false;
  if (connection_ != nullptr && owed_ > 0) connection_->consume(*this, std::exchange(owed_, 0));
}

size_t Http2Stream::queued_request_bytes() const {
  return connection_ != nullptr ? connection_->queued_bytes(*this) : buffered_.body.size();
}

void Http2Stream::submitted(Http2Connection& connection, int32_t id) {
  connection_ = &connection;
  id_ = id;
  endpoint_ = nullptr;
  // Congestion is unchanged by the move (same bytes, now in the session's
  // queue); the connection settles it as they leave.
  replaying_ = true;
  std::string body;
  body.swap(buffered_.body);
  std::optional<trellis::http::HeaderMap> trailers = std::move(buffered_.trailers);
  buffered_.trailers.reset();
  if (!buffered_.head_end) {
    if (!body.empty() || buffered_.body_end) connection.send_data(*this, body, buffered_.body_end);
    if (connection_ != nullptr && trailers) connection_->send_trailers(*this, std::move(*trailers));
  }
  replaying_ = false;
}

// --- Http2Connection --------------------------------------------------------

Http2Connection::Http2Connection(Context& context, Http2Endpoint& endpoint)
    : ctx_(context),
      endpoint_(endpoint),
      flush_task_(context.loop, [this] { flush(); }),
      idle_deadline_(context.loop, [this] {
        if (state_ == State::ready && streams_.empty() && session_->open_streams() == 0) go_away();
      }) {}

Http2Connection::~Http2Connection() {
  // Only when the pool itself goes: streams the exchange holds go inert.
  for (Http2Stream* s : streams_) s->orphan();
  for (const Closed& c : closed_) c.stream->orphan();
  if (counted_open_) ctx_.connection_closed(endpoint_.target().protocol);
}

Status Http2Connection::connect() {
  auto transport = ctx_.transports(ctx_.loop, endpoint_.target(), ctx_.transport_options(),
                                   [this](const Status& status) { on_connected(status); });
  if (!transport.ok()) return std::move(transport).error();
  transport_ = std::move(transport).value();
  return ok_status();
}

void Http2Connection::on_connected(const Status& status) {
  Status started = status;
  if (started.ok()) {
    auto session = h2::Session::create(session_config(ctx_.config), *this);
    if (session.ok()) {
      session_ = std::move(session).value();
      started = transport_->start(*this);
    } else {
      started = std::move(session).error();
    }
  }
  if (!started.ok()) {
    state_ = State::closed;
    endpoint_.on_connect_failed(*this, started.error());
    return;
  }
  state_ = State::ready;
  counted_open_ = true;
  ctx_.connection_opened(endpoint_.target().protocol);
  flush();  // our preface and SETTINGS, and the first stream
}

bool Http2Connection::can_take() const {
  if (state_ != State::ready) return false;
  uint32_t limit = peer_settings_ ? session_->peer_max_concurrent_streams() : 1;
  return session_->open_streams() < limit;
}

void Http2Connection::submit(Http2Stream& s) {
  trellis::http::RequestHead head = std::move(*s.buffered().head);
  s.buffered().head.reset();
  bool has_body = !s.buffered().head_end;
  trellis::http::strip_hop_by_hop(head.headers);
  // HTTP/2 requires an authority; an HTTP/1.0 request may have had none.
  if (head.authority.empty()) head.authority = endpoint_.target().address.to_string();
  if (endpoint_.target().protocol == UpstreamProtocol::mesh) {
    // Only this sidecar decides what the peer sidecar restores.
    head.headers.remove(kOrigProtoHeader);
    if (head.version != trellis::http::Version::http2) {
      head.headers.add(kOrigProtoHeader, trellis::http::version_name(head.version));
    }
  }
  Result<int32_t> id = session_->submit_request(head, has_body, &s);
  if (!id.ok()) {
    s.set_waiting(nullptr);
    s.fail(UpstreamFailure::reset, make_error(upstream_prefix(endpoint_.target()) +
                                              "cannot send the request: " + id.error().message));
    return;
  }
  list(s);
  idle_deadline_.disarm();
  s.request_ended_ = !has_body;
  s.submitted(*this, id.value());
  flush_task_.schedule();
  if (id.value() >= kLastStreamId) go_away();
}

void Http2Connection::send_data(Http2Stream& s, std::string_view data, bool end_stream) {
  if (state_ == State::closed) return;
  // Fails only when the stream has already ended: nothing to send then.
  bool queued = session_->send_data(s.id_, data, end_stream).ok();
  if (!queued) return;
  if (end_stream) s.request_ended_ = true;
  flush_task_.schedule();
  s.sync_congestion();
}

void Http2Connection::send_trailers(Http2Stream& s, trellis::http::HeaderMap&& trailers) {
  if (state_ == State::closed) return;
  if (Status st = session_->submit_trailers(s.id_, trailers); !st.ok()) {
    abandon(s, "cannot send the request trailers: " + st.error().message);
    return;
  }
  s.request_ended_ = true;
  flush_task_.schedule();
}

void Http2Connection::abandon(Http2Stream& s, const std::string& why) {
  unlist(s);
  (void)session_->set_stream_user_data(s.id_, nullptr);
  (void)session_->reset_stream(s.id_, h2::error_code::internal_error);
  s.detached();
  s.fail(UpstreamFailure::reset, make_error(upstream_prefix(endpoint_.target()) + why));
  flush_task_.schedule();
}

void Http2Connection::consume(Http2Stream& s, size_t n) {
  if (state_ == State::closed) return;
  (void)session_->consume(s.id_, n);
  flush_task_.schedule();  // the WINDOW_UPDATE
}

void Http2Connection::cancel(Http2Stream& s) {
  auto closed = std::find_if(closed_.begin(), closed_.end(),
                             [&](const Closed& c) { return c.stream == &s; });
  if (closed != closed_.end()) {
    closed_.erase(closed);  // already closed by the session: nothing to reset
    return;
  }
  unlist(s);
  if (state_ == State::closed) return;
  (void)session_->set_stream_user_data(s.id_, nullptr);
  // A complete response to a complete request: the stream closes by itself
  // once our END_STREAM has left (often the exchange lets go before the
  // session reports the close). A reset would be a wasted frame that peers
  // count against their rapid-reset limit (CVE-2023-44487), answering
  // GOAWAY after about a thousand of them.
  if (s.response_complete() && s.request_ended_) return;
  // Otherwise one side is unfinished and nobody will finish it.
  (void)session_->reset_stream(s.id_, h2::error_code::cancel);  // fails if already closed: fine
  flush_task_.schedule();
}

size_t Http2Connection::queued_bytes(const Http2Stream& s) const {
  return session_ != nullptr ? session_->queued_bytes(s.id_) : 0;
}

void Http2Connection::go_away() {
  if (state_ != State::ready) return;
  state_ = State::draining;
  idle_deadline_.disarm();
  endpoint_.on_going_away(*this);
  (void)session_->shutdown_gracefully();
  flush_task_.schedule();
}

void Http2Connection::flush() {
  if (session_ == nullptr || state_ == State::closed || in_session_) return;
  endpoint_.dispatch();
  if (state_ == State::closed) return;
  if (transport_->queued_bytes() > ctx_.config.high_water) {
    // The peer does not read: stop reading it too (its frames would make
    // replies pile up) until our bytes drain.
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
  settle_closed(produced);
  if (state_ == State::closed) return;
  if (!out_.empty()) {
    if (Status written = transport_->write(out_); !written.ok()) {
      lost(written.error().message);
      return;
    }
  }
  if (!produced.ok() || session_->is_closed()) {
    close(true);  // after the GOAWAY that explains a failure, if any
    return;
  }
  // Streams whose queued bytes left may take more from the exchange.
  std::vector<Http2Stream*> congested;
  for (Http2Stream* s : streams_) {
    if (s->congested()) congested.push_back(s);
  }
  for (Http2Stream* s : congested) {
    if (listed(s)) s->sync_congestion();  // may destroy streams
  }
  if (state_ == State::closed) return;
  maybe_idle();
}

void Http2Connection::maybe_idle() {
  if (state_ != State::ready || !streams_.empty() || session_->open_streams() != 0 ||
      endpoint_.has_waiting()) {
    return;
  }
  if (ctx_.draining) {
    go_away();
  } else if (!idle_deadline_.armed()) {
    idle_deadline_.arm(ctx_.config.idle_timeout);
  }
}

Http2Stream* Http2Connection::stream(int32_t id) const {
  return session_->stream_data<Http2Stream>(id);
}

void Http2Connection::list(Http2Stream& s) {
  s.slot_ = streams_.size();
  streams_.push_back(&s);
}

void Http2Connection::unlist(Http2Stream& s) {
  if (s.slot_ == Http2Stream::kUnlisted) return;
  Http2Stream* last = streams_.back();
  streams_[s.slot_] = last;
  last->slot_ = s.slot_;
  streams_.pop_back();
  s.slot_ = Http2Stream::kUnlisted;
}

bool Http2Connection::listed(const Http2Stream* s) const {
  return std::find(streams_.begin(), streams_.end(), s) != streams_.end();
}

void Http2Connection::note_peer_preface(size_t length) {
  if (peer_settings_) return;
  // Frame header: 24-bit length, type, flags, stream id (RFC 9113 §4.1).
  preface_bytes_ += length;
  if (preface_bytes_ >= 9 + preface_length_) peer_settings_ = true;
}

void Http2Connection::on_transport_data(const char* data, size_t length) {
  if (state_ == State::closed) return;
  // The first three bytes the peer ever sends size its SETTINGS frame.
  if (!peer_settings_) {
    for (size_t i = 0; i < length && preface_bytes_ + i < 3; ++i) {
      preface_length_ = (preface_length_ << 8) | static_cast<uint8_t>(data[i]);
    }
  }
  in_session_ = true;
  Status received = session_->receive(data, length);
  in_session_ = false;
  if (received.ok()) note_peer_preface(length);
  settle_closed(received);
  if (state_ == State::closed) return;
  flush();
}

void Http2Connection::on_transport_eof() { lost("connection closed by the peer"); }

void Http2Connection::on_transport_error(const Error& error) { lost(error.message); }

void Http2Connection::on_transport_drained() {
  if (!write_blocked_ || state_ == State::closed) return;
  write_blocked_ = false;
  transport_->resume_reading();
  flush();
}

void Http2Connection::lost(const std::string& why) {
  if (state_ == State::closed) return;
  lost_reason_ = "connection lost: " + why;
  // Requests that never left are refused_stream, the others cancelled.
  session_->abort(h2::error_code::cancel);
  close(false);
}

void Http2Connection::close(bool graceful) {
  if (state_ == State::closed) return;
  if (!streams_.empty() && session_ != nullptr) {
    if (lost_reason_.empty()) lost_reason_ = "connection closed";
    session_->abort(h2::error_code::cancel);
  }
  state_ = State::closed;
  idle_deadline_.disarm();
  if (counted_open_) {
    counted_open_ = false;
    ctx_.connection_closed(endpoint_.target().protocol);
  }
  if (graceful) {
    ctx_.linger(std::move(transport_));
  } else {
    transport_->abort();
  }
  endpoint_.remove(*this);
}

void Http2Connection::settle_closed(const Status& session_status) {
  if (closed_.empty()) return;
  std::optional<Error> session_error;
  if (!session_status.ok()) session_error = session_error_ ? *session_error_ : session_status.error();
  std::vector<Closed> closed;
  closed.swap(closed_);
  for (const Closed& c : closed) close_stream(*c.stream, c.code, session_error);
}

void Http2Connection::close_stream(Http2Stream& s, uint32_t code,
                                   const std::optional<Error>& session_error) {
  s.detached();
  if (s.finished()) return;
  std::string prefix = upstream_prefix(endpoint_.target());
  if (code == h2::error_code::refused_stream) {
    s.fail(UpstreamFailure::refused_stream,
           make_error(prefix + "stream refused by the peer (REFUSED_STREAM or GOAWAY): not processed"));
  } else if (s.malformed_) {
    s.fail(UpstreamFailure::protocol_error,
           make_error(prefix + "malformed response: " + s.malformed_->message));
  } else if (session_error && static_cast<int>(code) == session_error->code) {
    s.fail(UpstreamFailure::protocol_error, make_error(prefix + session_error->message));
  } else if (!lost_reason_.empty()) {
    s.fail(UpstreamFailure::reset, make_error(prefix + lost_reason_));
  } else {
    s.fail(UpstreamFailure::reset, make_error(prefix + "stream reset (" +
                                              std::string(h2::error_code_name(code)) + ")"));
  }
}

void Http2Connection::on_response_head(int32_t id, trellis::http::ResponseHead&& head, bool end_stream) {
  Http2Stream* s = stream(id);
  if (s == nullptr || head.status < 200) return;  // interim heads stay here
  s->deliver_head(std::move(head), end_stream);
}

void Http2Connection::on_data(int32_t id, const char* data, size_t len) {
  Http2Stream* s = stream(id);
  if (s == nullptr || s->finished()) {
    (void)session_->consume(id, len);  // nobody forwards it
    return;
  }
  if (!s->deliver_data(std::string_view(data, len), false)) return;  // cancelled: credit returns at close
  if (s->response_paused()) {
    s->owed_ += len;
  } else {
    (void)session_->consume(id, len);
  }
}

void Http2Connection::on_trailers(int32_t id, trellis::http::HeaderMap&& trailers) {
  if (Http2Stream* s = stream(id)) s->deliver_trailers(std::move(trailers));
}

void Http2Connection::on_end_stream(int32_t id) {
  if (Http2Stream* s = stream(id)) s->deliver_data({}, true);
}

void Http2Connection::on_stream_close(int32_t id, uint32_t error_code) {
  Http2Stream* s = stream(id);
  flush_task_.schedule();  // room for waiting streams; maybe idle now
  if (s == nullptr) return;  // cancelled earlier
  unlist(*s);
  if (in_session_) {
    closed_.push_back(Closed{s, error_code});  // a connection error may still explain it
  } else {
    close_stream(*s, error_code, std::nullopt);
  }
}

void Http2Connection::on_goaway(int32_t last_stream_id, uint32_t error_code) {
  log::info("upstream sent GOAWAY", {{"upstream", endpoint_.target().address.to_string()},
                                     {"last_stream_id", last_stream_id},
                                     {"error_code", std::string(h2::error_code_name(error_code))}});
  if (state_ != State::ready) return;
  state_ = State::draining;
  idle_deadline_.disarm();
  endpoint_.on_going_away(*this);
}

void Http2Connection::on_stream_error(int32_t id, const Error& error) {
  log::warn("malformed upstream response",
            {{"upstream", endpoint_.target().address.to_string()}, {"error", error.message}});
  if (Http2Stream* s = stream(id)) s->malformed_ = error;
}

void Http2Connection::on_session_error(const Error& error) {
  log::warn("upstream http2 connection error",
            {{"upstream", endpoint_.target().address.to_string()}, {"error", error.message}});
  session_error_ = error;
}

// --- Http2Endpoint ----------------------------------------------------------

Http2Endpoint::~Http2Endpoint() {
  for (Http2Stream* s : pending_) s->orphan();
}

std::unique_ptr<http::UpstreamStream> Http2Endpoint::new_stream(http::UpstreamCallbacks& callbacks) {
  auto stream = std::make_unique<Http2Stream>(ctx_, *this, callbacks);
  if (pending_.size() >= ctx_.config.max_pending_per_endpoint) {
    stream->set_waiting(nullptr);
    stream->fail(UpstreamFailure::connect_failed,
                 make_error(upstream_prefix(target_) + std::to_string(pending_.size()) +
                            " requests already wait for a stream"));
    return stream;
  }
  pending_.push_back(stream.get());
  ctx_.pending_added();
  ensure_connection();
  return stream;
}

void Http2Endpoint::ensure_connection() {
  if (active_ != nullptr || pending_.empty()) return;
  auto connection = std::make_unique<Http2Connection>(ctx_, *this);
  if (Status s = connection->connect(); !s.ok()) {
    ctx_.connect_failed();
    fail_waiting(s.error());
    return;
  }
  active_ = connection.get();
  connections_.emplace(active_, std::move(connection));
}

void Http2Endpoint::dispatch() {
  // A submit may reach the exchange, which may start another stream here.
  if (dispatching_) {
    redispatch_ = true;
    return;
  }
  dispatching_ = true;
  do {
    redispatch_ = false;
    while (active_ != nullptr && active_->can_take()) {
      auto it = std::find_if(pending_.begin(), pending_.end(),
                             [](const Http2Stream* s) { return s->ready(); });
      if (it == pending_.end()) break;
      Http2Stream* stream = *it;
      pending_.erase(it);
      ctx_.pending_removed();
      active_->submit(*stream);
    }
  } while (redispatch_);
  dispatching_ = false;
  ensure_connection();
}

void Http2Endpoint::cancel(Http2Stream& stream) {
  auto it = std::find(pending_.begin(), pending_.end(), &stream);
  if (it == pending_.end()) return;
  pending_.erase(it);
  ctx_.pending_removed();
  if (active_ != nullptr) active_->poke();
  if (empty()) ctx_.sweep_later(*this);
}

void Http2Endpoint::fail_waiting(const Error& error) {
  std::deque<Http2Stream*> waiting;
  waiting.swap(pending_);
  for (Http2Stream* s : waiting) {
    ctx_.pending_removed();
    s->set_waiting(nullptr);
    s->fail(UpstreamFailure::connect_failed, error);
  }
}

void Http2Endpoint::on_connect_failed(Http2Connection& connection, const Error& error) {
  if (active_ == &connection) active_ = nullptr;
  ctx_.connect_failed();
  log::debug("upstream connect failed",
             {{"upstream", target_.address.to_string()}, {"error", error.message}});
  // Every waiting stream was waiting for this connection.
  fail_waiting(error);
  remove(connection);
}

void Http2Endpoint::on_going_away(Http2Connection& connection) {
  if (active_ != &connection) return;
  active_ = nullptr;
  ensure_connection();
}

void Http2Endpoint::remove(Http2Connection& connection) {
  if (active_ == &connection) active_ = nullptr;
  auto it = connections_.find(&connection);
  if (it == connections_.end()) return;
  std::unique_ptr<Http2Connection> owned = std::move(it->second);
  connections_.erase(it);
  ctx_.retire(std::move(owned));
  ensure_connection();
  if (empty()) ctx_.sweep_later(*this);
}

void Http2Endpoint::drain() {
  std::vector<Http2Connection*> all;
  all.reserve(connections_.size());
  for (auto& entry : connections_) all.push_back(entry.first);
  for (Http2Connection* c : all) c->go_away();
}

}  // namespace trellis::proxy::pool
