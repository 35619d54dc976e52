#include "proxy/downstream/http2_connection.h"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "common/log/log.h"

namespace trellis::proxy::downstream {

namespace h = trellis::http;

namespace {

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

void log_if_failed(const Status& s, std::string_view what) {
  if (!s.ok()) log::debug(what, {{"error", s.error().message}});
}

}  // namespace

// One HTTP/2 stream: the exchange's view of the client.
class Http2ServerConnection::Stream final
    : public AttachedStream<Http2ServerConnection, Http2ServerConnection::Stream> {
 public:
  Stream(Http2ServerConnection& connection, int32_t stream_id, http::DownstreamInfo info)
      : AttachedStream(connection, std::move(info)), id(stream_id) {}

  const int32_t id;
  bool request_complete = false;
  bool head_sent = false;
  bool response_complete = false;
  bool paused = false;
  size_t unconsumed = 0;  // request bytes delivered while paused, credit withheld
  bool congested_notified = false;
};

Status validate(const Http2Options& o) {
  if (Status s = http2::validate(o.session); !s.ok()) return s;
  if (o.idle_timeout.count() <= 0) {
    return make_error("http2: idle_timeout must be positive, got " + ms_text(o.idle_timeout), EINVAL);
  }
  if (o.stream_high_water == 0) return make_error("http2: stream_high_water must be positive", EINVAL);
  if (o.stream_low_water > o.stream_high_water) {
    return make_error("http2: stream_low_water (" + std::to_string(o.stream_low_water) +
                          ") must not exceed stream_high_water (" +
                          std::to_string(o.stream_high_water) + ")",
                      EINVAL);
  }
  return ok_status();
}

Result<std::unique_ptr<Http2ServerConnection>> Http2ServerConnection::create(
    std::unique_ptr<net::TcpConnection> connection, http::ExchangeFactory& factory,
    http::DownstreamInfo info, const Http2Options& options, const DownstreamMetrics& metrics) {
  if (Status s = validate(options); !s.ok()) return s.error();
  if (!connection) return make_error("http2: no connection", EINVAL);
  info.protocol = h::Version::http2;
  std::unique_ptr<Http2ServerConnection> c(
      new Http2ServerConnection(std::move(connection), factory, std::move(info), options, metrics));
  http2::SessionConfig config = options.session;
  config.role = http2::Role::server;
  auto session = http2::Session::create(config, *c);
  if (!session.ok()) return session.error();
  c->session_ = std::move(session).value();
  return c;
}

Http2ServerConnection::Http2ServerConnection(std::unique_ptr<net::TcpConnection> connection,
                                             http::ExchangeFactory& factory,
                                             http::DownstreamInfo info,
                                             const Http2Options& options,
                                             const DownstreamMetrics& metrics)
    : connection_(std::move(connection)),
      factory_(factory),
      info_(std::move(info)),
      options_(options),
      metrics_(metrics),
      idle_deadline_(connection_->loop(), [this] { on_idle_timeout(); }),
      kick_(connection_->loop(), [this] { on_kick(); }) {
  metrics_.connections_open.inc();
}

Http2ServerConnection::~Http2ServerConnection() {
  metrics_.connections_open.dec();
  in_session_ = true;  // nothing is flushed from here on
  closing_ = true;
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& entry : streams) {
    Stream& s = *entry.second;
    bool notify = s.attached();
    s.detach();
    if (notify && s.exchange) s.exchange->on_downstream_reset();
  }
}

Http2ServerConnection::Stream* Http2ServerConnection::find(int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Http2ServerConnection::start(std::string replay, bool peer_eof) {
  if (started_) return;
  started_ = true;
  Status s = connection_->start(*this);
  if (!s.ok() && s.error().code == EALREADY) {
    connection_->set_handler(*this);  // detection read first
  } else if (!s.ok()) {
    closing_ = true;
    kick_.schedule();
    return;
  }
  update_idle_timer();
  if (!replay.empty()) {
    receive(replay.data(), replay.size());
  } else {
    flush();  // our SETTINGS
  }
  if (closing_) return;
  if (peer_eof) {
    on_eof();
    return;
  }
  connection_->resume_reading();
}

void Http2ServerConnection::drain() {
  if (draining_ || closing_) return;
  draining_ = true;
  log_if_failed(session_->shutdown_gracefully(), "http2 graceful shutdown failed");
  flush();
}

// --- socket events -------------------------------------------------------

void Http2ServerConnection::on_data(const char* data, size_t length) {
  if (closing_) return;
  receive(data, length);
}

void Http2ServerConnection::receive(const char* data, size_t length) {
  in_session_ = true;
  Status s = session_->receive(data, length);
  in_session_ = false;
  // A connection error leaves its GOAWAY (if owed) in the Session: flush it,
  // then the Session is closed and so is the connection.
  if (!s.ok()) log::debug("http2 connection error", {{"error", s.error().message},
                                                    {"peer", info_.peer.to_string()}});
  flush();
}

void Http2ServerConnection::on_eof() {
  if (closing_) return;
  // The client is gone: streams it left open cannot finish.
  abort_session();
  close_gracefully();
}

void Http2ServerConnection::on_error(const Error& error) {
  log::debug("downstream connection failed", {{"error", error.message}, {"peer", info_.peer.to_string()}});
  closing_ = true;
  idle_deadline_.disarm();
  kick_.cancel();
  abort_session();
  report_closed();  // last action
}

void Http2ServerConnection::on_closed() {
  abort_session();
  report_closed();  // last action
}

void Http2ServerConnection::on_write_high_water() {
  socket_congested_ = true;
  // A client that does not read must not make the Session queue replies.
  connection_->pause_reading();
  std::vector<int32_t> ids;
  ids.reserve(streams_.size());
  for (const auto& entry : streams_) ids.push_back(entry.first);
  for (int32_t id : ids) {
    if (Stream* s = find(id)) update_congestion(*s);
  }
}

void Http2ServerConnection::on_write_drained() {
  socket_congested_ = false;
  if (closing_) return;
  connection_->resume_reading();
  std::vector<int32_t> ids = congested_streams_;
  for (int32_t id : ids) {
    if (Stream* s = find(id)) update_congestion(*s);
  }
}

// --- session events ------------------------------------------------------

void Http2ServerConnection::on_request_head(int32_t stream_id, h::RequestHead&& head,
                                            bool end_stream) {
  metrics_.count_request(h::Version::http2);
  idle_deadline_.disarm();
  auto stream = std::make_unique<Stream>(*this, stream_id, info_);
  Stream* s = stream.get();
  s->request_complete = end_stream;
  streams_.emplace(stream_id, std::move(stream));
  s->exchange = factory_.create(*s, std::move(head), end_stream);
  if (!s->exchange && s->attached()) {
    log::error("exchange factory returned no exchange", {{"peer", info_.peer.to_string()}});
    stream_failed(*s, "no exchange");
  }
}

void Http2ServerConnection::on_data(int32_t stream_id, const char* data, size_t len) {
  Stream* s = find(stream_id);
  if (s == nullptr || !s->attached()) {
    // Nobody reads it any more (early response, reset): return the credit.
    log_if_failed(session_->consume(stream_id, len), "http2 consume failed");
    return;
  }
  s->exchange->on_request_data(std::string_view(data, len), false);
  if (s->paused) {
    s->unconsumed += len;
  } else {
    log_if_failed(session_->consume(stream_id, len), "http2 consume failed");
  }
}

void Http2ServerConnection::on_trailers(int32_t stream_id, h::HeaderMap&& trailers) {
  Stream* s = find(stream_id);
  if (s == nullptr) return;
  s->request_complete = true;
  if (s->attached()) s->exchange->on_request_trailers(std::move(trailers));
}

void Http2ServerConnection::on_end_stream(int32_t stream_id) {
  Stream* s = find(stream_id);
  if (s == nullptr) return;
  s->request_complete = true;
  if (s->attached()) s->exchange->on_request_data({}, true);
}

void Http2ServerConnection::on_stream_close(int32_t stream_id, uint32_t) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> s = std::move(it->second);
  streams_.erase(it);
  // Detached streams ended their response or were reset by their exchange:
  // nothing to tell. Any other close is the client's (or the connection's) doing.
  bool notify = s->attached();
  s->detach();
  if (notify && s->exchange) s->exchange->on_downstream_reset();
  retired_.push_back(std::move(s));
  kick_.schedule();
  update_idle_timer();
}

void Http2ServerConnection::on_stream_error(int32_t stream_id, const Error& error) {
  metrics_.count_malformed(MalformedReason::stream_error);
  log::debug("malformed http2 stream", {{"stream", stream_id}, {"error", error.message},
                                        {"peer", info_.peer.to_string()}});
}

void Http2ServerConnection::on_session_error(const Error&) {
  metrics_.count_malformed(MalformedReason::connection_error);
}

// --- the exchange's calls ------------------------------------------------

void Http2ServerConnection::send_head(Stream& s, h::ResponseHead&& head, bool end_stream) {
  if (head.status == 101) {
    stream_failed(s, "101 does not exist in HTTP/2");
    return;
  }
  bool interim = head.status >= 100 && head.status < 200;
  if (s.head_sent) {
    if (!interim) stream_failed(s, "a second response head");
    return;  // a 1xx after the final head is dropped
  }
  if (Status st = session_->submit_response(s.id, head, interim || !end_stream); !st.ok()) {
    stream_failed(s, st.error().message);
    return;
  }
  if (!interim) {
    s.head_sent = true;
    if (end_stream) end_response(s);
  }
  flush();
}

void Http2ServerConnection::send_data(Stream& s, std::string_view data, bool end_stream) {
  if (!s.head_sent) {
    stream_failed(s, "response data before the response head");
    return;
  }
  if (Status st = session_->send_data(s.id, data, end_stream); !st.ok()) {
    stream_failed(s, st.error().message);
    return;
  }
  if (end_stream) end_response(s);
  flush();
  if (s.attached()) update_congestion(s);
}

void Http2ServerConnection::send_trailers(Stream& s, h::HeaderMap&& trailers) {
  if (!s.head_sent) {
    stream_failed(s, "response trailers before the response head");
    return;
  }
  if (Status st = session_->submit_trailers(s.id, trailers); !st.ok()) {
    stream_failed(s, st.error().message);
    return;
  }
  end_response(s);
  flush();
}

void Http2ServerConnection::reset_from_exchange(Stream& s) {
  s.detach();
  log_if_failed(session_->reset_stream(s.id, http2::error_code::internal_error),
                "http2 reset failed");
  flush();
}

void Http2ServerConnection::pause_body(Stream& s) { s.paused = true; }

void Http2ServerConnection::resume_body(Stream& s) {
  s.paused = false;
  if (s.unconsumed == 0) return;
  log_if_failed(session_->consume(s.id, s.unconsumed), "http2 consume failed");
  s.unconsumed = 0;
  flush();  // the WINDOW_UPDATE
}

void Http2ServerConnection::end_response(Stream& s) {
  s.response_complete = true;
  s.detach();
  if (!s.request_complete) early_responses_.push_back(s.id);
}

void Http2ServerConnection::stream_failed(Stream& s, std::string_view what) {
  log::warn("exchange broke the HTTP/2 response",
            {{"stream", s.id}, {"error", what}, {"peer", info_.peer.to_string()}});
  reset_from_exchange(s);
}

// --- output --------------------------------------------------------------

void Http2ServerConnection::flush() {
  if (closing_ || !started_) return;
  if (in_session_ || flushing_) {
    flush_again_ = true;  // the flush in progress (or the one after receive()) goes on
    return;
  }
  flushing_ = true;
  do {
    flush_again_ = false;
    in_session_ = true;
    Status produced = session_->produce(out_);
    in_session_ = false;
    if (!produced.ok()) log::debug("http2 produce failed", {{"error", produced.error().message}});
    if (!out_.empty()) {
      Status written = connection_->write(out_);
      out_.clear();
      if (!written.ok()) {
        // write() reports a dead socket only through its result.
        flushing_ = false;
        closing_ = true;
        abort_session();
        connection_->abort();
        kick_.schedule();
        return;
      }
    }
    after_flush();
  } while (flush_again_ && !closing_);
  flushing_ = false;
  if (!closing_ && session_->is_closed()) close_gracefully();
}

void Http2ServerConnection::after_flush() {
  // Early responses that have left the Session: stop the upload (RFC 9113 §8.1).
  for (size_t i = 0; i < early_responses_.size();) {
    int32_t id = early_responses_[i];
    if (find(id) != nullptr && session_->queued_bytes(id) > 0) {
      ++i;
      continue;
    }
    if (find(id) != nullptr) {
      log_if_failed(session_->reset_stream(id, http2::error_code::no_error), "http2 reset failed");
      flush_again_ = true;
    }
    early_responses_[i] = early_responses_.back();
    early_responses_.pop_back();
  }
  std::vector<int32_t> ids = congested_streams_;
  for (int32_t id : ids) {
    Stream* s = find(id);
    if (s != nullptr) {
      update_congestion(*s);
    } else {
      congested_streams_.erase(std::remove(congested_streams_.begin(), congested_streams_.end(), id),
                               congested_streams_.end());
    }
  }
}

void Http2ServerConnection::update_congestion(Stream& s) {
  if (!s.attached()) {
    if (s.congested_notified) {
      s.congested_notified = false;
      congested_streams_.erase(
          std::remove(congested_streams_.begin(), congested_streams_.end(), s.id),
          congested_streams_.end());
    }
    return;
  }
  size_t queued = session_->queued_bytes(s.id);
  if (!s.congested_notified) {
    if (socket_congested_ || queued > options_.stream_high_water) {
      s.congested_notified = true;
      congested_streams_.push_back(s.id);
      s.exchange->on_response_congested();
    }
    return;
  }
  if (!socket_congested_ && queued <= options_.stream_low_water) {
    s.congested_notified = false;
    congested_streams_.erase(std::remove(congested_streams_.begin(), congested_streams_.end(), s.id),
                             congested_streams_.end());
    s.exchange->on_response_writable();
  }
}

// --- endings -------------------------------------------------------------

void Http2ServerConnection::update_idle_timer() {
  if (closing_) return;
  if (streams_.empty()) {
    idle_deadline_.arm(options_.idle_timeout);
  } else {
    idle_deadline_.disarm();
  }
}

void Http2ServerConnection::on_idle_timeout() {
  if (closing_ || !streams_.empty()) return;
  in_session_ = true;
  Status s = session_->terminate(http2::error_code::no_error);
  in_session_ = false;
  log_if_failed(s, "http2 terminate failed");
  flush();  // the GOAWAY; the Session is closed after it
}

void Http2ServerConnection::on_kick() {
  // Closed streams and their exchanges: no call of theirs is on the stack now.
  while (!retired_.empty()) {
    std::unique_ptr<Stream> s = std::move(retired_.back());
    retired_.pop_back();
  }
  if (closing_ && connection_->state() == net::TcpConnection::State::closed) {
    abort_session();
    report_closed();  // last action
  }
}

void Http2ServerConnection::close_gracefully() {
  if (closing_) return;
  closing_ = true;
  idle_deadline_.disarm();
  connection_->close();  // flushes, FIN, then on_closed()
  if (connection_->state() == net::TcpConnection::State::closed) {
    kick_.schedule();
  }
}

void Http2ServerConnection::abort_session() {
  bool was_in_session = in_session_;
  in_session_ = true;  // on_stream_close calls into exchanges, which may try to flush
  session_->abort(http2::error_code::cancel);
  in_session_ = was_in_session;
}

}  // namespace trellis::proxy::downstream
