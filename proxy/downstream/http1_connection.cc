#include "proxy/downstream/http1_connection.h"

#include <cerrno>
#include <utility>

#include "common/http1/syntax.h"
#include "common/log/log.h"

namespace trellis::proxy::downstream {

namespace h = trellis::http;

namespace {

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// A Content-Length value the response can be framed by: digits only, no
// overflow. Anything else is ignored (the body is then chunked).
std::optional<uint64_t> parse_content_length(const std::string* value) {
  if (value == nullptr || value->empty() || value->size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : *value) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

}  // namespace

// One request and its response; the exchange's view of the client.
class Http1ServerConnection::Stream final
    : public AttachedStream<Http1ServerConnection, Http1ServerConnection::Stream> {
 public:
  using AttachedStream::AttachedStream;

  // The request.
  h::Version version = h::Version::http11;
  bool is_head = false;
  bool keep_alive = true;
  bool expect_continue = false;
  bool upgrade_request = false;
  std::optional<uint64_t> request_length;  // a Content-Length body's size
  uint64_t request_bytes = 0;
  bool request_complete = false;  // the decoder finished the request message
  bool end_delivered = false;     // the exchange has seen the request end
  bool request_paused = false;
  std::optional<h::HeaderMap> trailers;

  // The response.
  bool continue_sent = false;
  bool head_sent = false;  // the final (or 101) head
  bool upgrade_accepted = false;
  bool body_allowed = true;
  http1::Framing framing;
  uint64_t remaining = 0;  // Content-Length bytes still owed
  bool close_after = false;
  bool congested_notified = false;
};

Status validate(const Http1Options& o) {
  if (o.header_timeout.count() <= 0) {
    return make_error("http1: header_timeout must be positive, got " + ms_text(o.header_timeout),
                      EINVAL);
  }
  if (o.idle_timeout.count() <= 0) {
    return make_error("http1: idle_timeout must be positive, got " + ms_text(o.idle_timeout),
                      EINVAL);
  }
  if (o.max_read_ahead_bytes == 0) {
    return make_error("http1: max_read_ahead_bytes must be positive", EINVAL);
  }
  return ok_status();
}

Result<std::unique_ptr<Http1ServerConnection>> Http1ServerConnection::create(
    std::unique_ptr<net::TcpConnection> connection, http::ExchangeFactory& factory,
    http::DownstreamInfo info, const Http1Options& options, const DownstreamMetrics& metrics) {
  if (Status s = validate(options); !s.ok()) return s.error();
  if (!connection) return make_error("http1: no connection", EINVAL);
  return std::unique_ptr<Http1ServerConnection>(
      new Http1ServerConnection(std::move(connection), factory, std::move(info), options, metrics));
}

namespace {
http1::DecoderOptions decoder_options(const Http1Options& o) {
  http1::DecoderOptions d;
  d.limits = o.limits;
  d.pause_after_message = true;
  return d;
}
}  // namespace

Http1ServerConnection::Http1ServerConnection(std::unique_ptr<net::TcpConnection> connection,
                                             http::ExchangeFactory& factory,
                                             http::DownstreamInfo info,
                                             const Http1Options& options,
                                             const DownstreamMetrics& metrics)
    : connection_(std::move(connection)),
      factory_(factory),
      info_(std::move(info)),
      options_(options),
      metrics_(metrics),
      events_(*this),
      decoder_(events_, decoder_options(options)),
      header_deadline_(connection_->loop(), [this] { on_wait_timeout(); }),
      idle_deadline_(connection_->loop(), [this] { on_wait_timeout(); }),
      kick_(connection_->loop(), [this] { on_kick(); }) {
  metrics_.connections_open.inc();
}

Http1ServerConnection::~Http1ServerConnection() {
  metrics_.connections_open.dec();
  if (stream_) {
    std::unique_ptr<Stream> s = std::move(stream_);
    s->detach();
    if (s->exchange) s->exchange->on_downstream_reset();
  }
}

void Http1ServerConnection::start(std::string replay, bool peer_eof) {
  if (started_) return;
  started_ = true;
  Status s = connection_->start(*this);
  if (!s.ok() && s.error().code == EALREADY) {
    connection_->set_handler(*this);  // detection read first
  } else if (!s.ok()) {
    closing_ = true;  // gone before we got it
    kick();
    return;
  }
  peer_eof_ = peer_eof;
  input_ = std::move(replay);
  arm_wait(Wait::idle);
  advance({});
}

void Http1ServerConnection::drain() {
  bool was_draining = draining_;
  draining_ = true;
  if (was_draining || closing_) return;
  if (!stream_ && !partial_head_ && buffered() == 0) close_gracefully();
  // Otherwise the response in progress (or the one to the request arriving)
  // carries "Connection: close" and the connection closes after it.
}

// --- input ---------------------------------------------------------------

void Http1ServerConnection::on_data(const char* data, size_t length) {
  if (closing_) return;
  advance(std::string_view(data, length));
}

void Http1ServerConnection::on_eof() {
  peer_eof_ = true;
  if (!closing_) advance({});
}

void Http1ServerConnection::advance(std::string_view fresh) {
  for (;;) {
    if (closing_) return;
    if (tunnel_) {
      pump_tunnel(fresh);
      break;
    }
    http1::DecoderState state = decoder_.state();
    if (state == http1::DecoderState::active) {
      bool from_input = buffered() > 0;
      std::string_view next = from_input ? std::string_view(input_).substr(input_offset_) : fresh;
      if (next.empty()) {
        if (feed_due_) {
          feed_due_ = false;
          decoder_.feed(nullptr, 0);
          continue;
        }
        if (peer_eof_ && !decoder_finished_) {
          decoder_finished_ = true;
          decoder_.finish();
          continue;
        }
        break;
      }
      feed_due_ = false;
      if (!stream_ && !discarding_ && !partial_head_) {
        partial_head_ = true;  // the first byte of a request head starts its clock
        arm_wait(Wait::header);
      }
      size_t consumed = decoder_.feed(next);
      if (from_input) {
        input_offset_ += consumed;
        if (input_offset_ == input_.size()) {
          input_.clear();
          input_offset_ = 0;
        }
      } else {
        fresh.remove_prefix(consumed);
      }
      if (consumed == 0 && decoder_.state() == http1::DecoderState::active) break;
      continue;
    }
    if (state == http1::DecoderState::paused || state == http1::DecoderState::upgraded) {
      if (stream_) {
        // Waiting for the exchange: to resume the body, for the response, or
        // (upgrade) to accept with 101, which opens the tunnel.
        if (state == http1::DecoderState::upgraded && stream_->upgrade_accepted &&
            stream_->request_complete) {
          tunnel_ = true;
          continue;
        }
        break;
      }
      // Between requests (a refused upgrade continues with HTTP as well).
      if (draining_) {
        close_gracefully();
        return;
      }
      if (congested_) break;  // on_write_drained() continues
      decoder_.resume();
      feed_due_ = true;
      continue;
    }
    if (state == http1::DecoderState::closed) {
      if (!stream_) {
        close_gracefully();
        return;
      }
      break;
    }
    break;  // failed: reject() has answered
  }
  if (!fresh.empty()) {
    if (input_offset_ > 0) {
      input_.erase(0, input_offset_);
      input_offset_ = 0;
    }
    input_.append(fresh.data(), fresh.size());
  }
  update_reading();
}

void Http1ServerConnection::pump_tunnel(std::string_view& fresh) {
  Stream* s = stream_.get();
  if (s == nullptr || s->request_paused || tunnel_client_done_) return;
  if (buffered() > 0) {
    std::string bytes = input_.substr(input_offset_);
    input_.clear();
    input_offset_ = 0;
    s->exchange->on_request_data(bytes, false);
    if (closing_ || stream_.get() != s || s->request_paused) return;
  }
  if (!fresh.empty()) {
    std::string_view bytes = fresh;
    fresh = {};
    s->exchange->on_request_data(bytes, false);
    if (closing_ || stream_.get() != s) return;
  }
  if (peer_eof_ && buffered() == 0) {
    tunnel_client_done_ = true;
    s->exchange->on_request_data({}, true);
    if (closing_ || stream_.get() != s) return;
    maybe_end_tunnel();
  }
}

void Http1ServerConnection::update_reading() {
  if (closing_ || !started_) return;
  bool want = !peer_eof_ && buffered() < options_.max_read_ahead_bytes &&
              !(stream_ && stream_->request_paused);
  if (want) {
    connection_->resume_reading();
  } else {
    connection_->pause_reading();
  }
}

void Http1ServerConnection::on_request_head(h::RequestHead&& head, const http1::MessageInfo& info) {
  arm_wait(Wait::none);
  partial_head_ = false;
  if (closing_) return;
  metrics_.count_request(head.version);
  if (head.method == "CONNECT") {
    reject(501, "CONNECT is not supported");
    return;
  }
  http::DownstreamInfo stream_info = info_;
  stream_info.protocol = head.version;
  auto stream = std::make_unique<Stream>(*this, std::move(stream_info));
  Stream* s = stream.get();
  s->version = head.version;
  s->is_head = head.method == "HEAD";
  s->keep_alive = info.keep_alive;
  s->expect_continue = info.expect_continue && info.has_body();
  s->upgrade_request = info.upgrade;
  if (info.body == http1::BodyFraming::content_length) s->request_length = info.content_length;
  // An Upgrade request stays open for the tunnel (see the header).
  bool end_stream = !info.has_body() && !info.upgrade;
  s->end_delivered = end_stream;
  stream_ = std::move(stream);

  std::unique_ptr<http::DownstreamCallbacks> exchange =
      factory_.create(*s, std::move(head), end_stream);
  // If the exchange already answered (and so was retired) the stream lives
  // on until the next loop turn and takes the exchange with it.
  s->exchange = std::move(exchange);
  if (!s->attached()) return;
  if (!s->exchange) {
    log::error("exchange factory returned no exchange", {{"peer", info_.peer.to_string()}});
    reset_stream(false);
    abort_connection();
    return;
  }
  maybe_send_continue(*s);
}

void Http1ServerConnection::on_request_body(const char* data, size_t len) {
  if (closing_) return;
  if (stream_) {
    stream_->request_bytes += len;
    stream_->exchange->on_request_data(std::string_view(data, len), false);
    return;
  }
  // The response has ended: drop the rest of this body, within a limit.
  discarded_ += len;
  if (discarded_ > options_.max_discard_bytes) close_gracefully();
}

void Http1ServerConnection::on_request_trailers(h::HeaderMap&& trailers) {
  if (stream_ && !closing_) stream_->trailers = std::move(trailers);
}

void Http1ServerConnection::on_request_complete() {
  if (closing_) return;
  if (!stream_) {
    discarding_ = false;
    discarded_ = 0;
    return;
  }
  Stream& s = *stream_;
  s.request_complete = true;
  // An Upgrade request's end is the tunnel's business (see the header).
  if (s.upgrade_request || s.end_delivered) return;
  s.end_delivered = true;
  if (s.trailers) {
    h::HeaderMap trailers = std::move(*s.trailers);
    s.trailers.reset();
    s.exchange->on_request_trailers(std::move(trailers));
  } else {
    s.exchange->on_request_data({}, true);
  }
}

// --- output --------------------------------------------------------------

void Http1ServerConnection::send_head(Stream& s, h::ResponseHead&& head, bool end_stream) {
  if (head.status == 101) {
    send_upgrade(s, std::move(head), end_stream);
    return;
  }
  if (head.status >= 100 && head.status < 200) {
    send_interim(s, std::move(head));
    return;
  }
  if (s.head_sent) {
    exchange_misuse(s, "a second response head");
    return;
  }
  h::HeaderMap& fields = head.headers;
  bool close_asked = false;
  fields.for_each_value("connection", [&](std::string_view v) {
    close_asked = close_asked || http1::has_token(v, "close");
  });
  h::strip_hop_by_hop(fields);
  std::optional<uint64_t> length = parse_content_length(fields.get("content-length"));

  s.body_allowed = !s.is_head && head.status != 204 && head.status != 304;
  http1::Framing framing;
  if (head.status == 204) {
    framing = http1::Framing::no_body();
  } else if (!s.body_allowed) {
    // HEAD and 304 announce the length a GET would have had.
    framing = length ? http1::Framing::content_length(*length) : http1::Framing::no_body();
  } else if (end_stream) {
    framing = http1::Framing::content_length(0);
  } else if (length) {
    framing = http1::Framing::content_length(*length);
  } else if (s.version == h::Version::http11) {
    framing = http1::Framing::chunked();
  } else {
    framing = http1::Framing::close_delimited();
  }

  bool close = !s.keep_alive || close_asked || draining_ ||
               framing.kind == http1::Framing::Kind::close_delimited;
  if (!s.request_complete) {
    // The client may be holding its body back for a 100 it will not get,
    // or the body left is too large to read and drop.
    if (s.expect_continue && !s.continue_sent) close = true;
    if (s.request_length && *s.request_length - s.request_bytes > options_.max_discard_bytes) {
      close = true;
    }
  }
  s.close_after = close;
  if (close) {
    fields.add("Connection", "close");
  } else if (s.version == h::Version::http10) {
    fields.add("Connection", "keep-alive");
  }
  head.version = h::Version::http11;

  out_.clear();
  if (Status st = http1::encode_response_head(head, framing, out_); !st.ok()) {
    exchange_misuse(s, "response head: " + st.error().message);
    return;
  }
  s.head_sent = true;
  s.framing = framing;
  s.remaining = framing.kind == http1::Framing::Kind::content_length && s.body_allowed
                    ? framing.length
                    : 0;
  write(out_);
  // The write may have called the exchange back (congested), which may
  // have ended or reset the stream meanwhile.
  if (closing_ || !s.attached()) return;
  if (end_stream) end_response(s);
}

void Http1ServerConnection::send_interim(Stream& s, h::ResponseHead&& head) {
  // 1xx only before the final head, never to HTTP/1.0 (RFC 9110 §15.2), one 100.
  if (s.head_sent || s.version == h::Version::http10) return;
  if (head.status == 100) {
    if (s.continue_sent) return;
    s.continue_sent = true;
  }
  h::strip_hop_by_hop(head.headers);
  head.version = h::Version::http11;
  out_.clear();
  if (Status st = http1::encode_response_head(head, http1::Framing::no_body(), out_); !st.ok()) {
    log::debug("interim response dropped", {{"error", st.error().message}});
    return;
  }
  write(out_);
}

void Http1ServerConnection::send_upgrade(Stream& s, h::ResponseHead&& head, bool end_stream) {
  if (!s.upgrade_request || s.head_sent) {
    exchange_misuse(s, "101 to a request that did not ask to upgrade");
    return;
  }
  head.version = h::Version::http11;
  out_.clear();
  // Upgrade and Connection stay: they are what the client is waiting for.
  if (Status st = http1::encode_response_head(head, http1::Framing::no_body(), out_); !st.ok()) {
    exchange_misuse(s, "response head: " + st.error().message);
    return;
  }
  s.head_sent = true;
  s.upgrade_accepted = true;
  write(out_);
  if (closing_ || !s.attached()) return;
  if (end_stream) end_tunnel_server_side();
  kick();  // the tunnel opens once the request message is complete
}

void Http1ServerConnection::maybe_send_continue(Stream& s) {
  if (!s.expect_continue || s.continue_sent || s.head_sent || s.request_paused ||
      s.request_complete) {
    return;
  }
  s.continue_sent = true;
  out_.clear();
  http1::encode_continue(out_);
  write(out_);
}

void Http1ServerConnection::send_data(Stream& s, std::string_view data, bool end_stream) {
  if (!s.head_sent) {
    exchange_misuse(s, "response data before the response head");
    return;
  }
  if (s.upgrade_accepted) {
    if (tunnel_server_done_) return;
    write(data);
    if (closing_ || !s.attached()) return;
    if (end_stream) end_tunnel_server_side();
    return;
  }
  if (s.body_allowed && !data.empty()) {
    switch (s.framing.kind) {
      case http1::Framing::Kind::chunked:
        out_.clear();
        http1::encode_chunk(data, out_);
        write(out_);
        break;
      case http1::Framing::Kind::content_length:
        if (data.size() > s.remaining) {
          exchange_misuse(s, "response body longer than its Content-Length");
          return;
        }
        s.remaining -= data.size();
        write(data);
        break;
      case http1::Framing::Kind::close_delimited:
      case http1::Framing::Kind::none:
        write(data);
        break;
    }
    if (closing_ || !s.attached()) return;
  }
  if (!end_stream) return;
  if (s.body_allowed && s.framing.kind == http1::Framing::Kind::chunked) {
    out_.clear();
    (void)http1::encode_last_chunk(nullptr, out_);  // cannot fail without trailers
    write(out_);
    if (closing_ || !s.attached()) return;
  } else if (s.remaining > 0) {
    exchange_misuse(s, "response body shorter than its Content-Length");
    return;
  }
  end_response(s);
}

void Http1ServerConnection::send_trailers(Stream& s, h::HeaderMap&& trailers) {
  if (!s.head_sent || s.upgrade_accepted) {
    exchange_misuse(s, "response trailers without a response body");
    return;
  }
  if (s.body_allowed && s.framing.kind == http1::Framing::Kind::chunked) {
    out_.clear();
    if (Status st = http1::encode_last_chunk(&trailers, out_); !st.ok()) {
      log::warn("response trailers dropped", {{"error", st.error().message}});
      (void)http1::encode_last_chunk(nullptr, out_);
    }
    write(out_);
    if (closing_ || !s.attached()) return;
  } else if (s.remaining > 0) {
    exchange_misuse(s, "response body shorter than its Content-Length");
    return;
  }
  // Other framings cannot carry trailers: the body simply ends.
  end_response(s);
}

void Http1ServerConnection::end_response(Stream& s) {
  bool close = s.close_after || draining_;
  bool request_done = s.request_complete;
  retire_stream();
  if (close) {
    close_gracefully();
    return;
  }
  if (!request_done) {
    discarding_ = true;
    discarded_ = 0;
  }
  arm_wait(Wait::idle);
  kick();  // the next request, on a fresh stack
}

void Http1ServerConnection::end_tunnel_server_side() {
  tunnel_server_done_ = true;
  if (Status st = connection_->shutdown_write(); !st.ok()) {
    reset_stream(false);
    abort_connection();
    return;
  }
  maybe_end_tunnel();
}

void Http1ServerConnection::maybe_end_tunnel() {
  if (!tunnel_client_done_ || !tunnel_server_done_) return;
  retire_stream();
  close_gracefully();
}

void Http1ServerConnection::reset_from_exchange(Stream&) {
  reset_stream(false);
  abort_connection();
}

void Http1ServerConnection::pause_body(Stream& s) {
  if (tunnel_ ? tunnel_client_done_ : s.request_complete) return;
  s.request_paused = true;
  if (!tunnel_) decoder_.pause();
  update_reading();
}

void Http1ServerConnection::resume_body(Stream& s) {
  if (!s.request_paused) return;
  s.request_paused = false;
  if (!tunnel_ && !s.request_complete) {
    decoder_.resume();
    feed_due_ = true;
  }
  maybe_send_continue(s);
  if (!closing_) kick();
}

void Http1ServerConnection::exchange_misuse(Stream& s, std::string_view what) {
  log::warn("exchange broke the HTTP/1 response", {{"error", what}, {"peer", info_.peer.to_string()}});
  bool head_sent = s.head_sent;
  reset_stream(false);
  if (head_sent) {
    abort_connection();
    return;
  }
  write_local_reply(502, "invalid response from the proxy");
  close_gracefully();
}

// --- socket events -------------------------------------------------------

void Http1ServerConnection::on_write_high_water() {
  congested_ = true;
  if (stream_ && stream_->exchange && !stream_->congested_notified) {
    stream_->congested_notified = true;
    stream_->exchange->on_response_congested();
  }
}

void Http1ServerConnection::on_write_drained() {
  congested_ = false;
  if (closing_) return;
  if (stream_ && stream_->congested_notified) {
    stream_->congested_notified = false;
    stream_->exchange->on_response_writable();
  }
  if (!closing_) kick();  // a pipelined request may have been waiting
}

void Http1ServerConnection::on_error(const Error& error) {
  log::debug("downstream connection failed", {{"error", error.message}, {"peer", info_.peer.to_string()}});
  closing_ = true;
  arm_wait(Wait::none);
  kick_.cancel();
  reset_stream(true);
  report_closed();  // last action
}

void Http1ServerConnection::on_closed() {
  reset_stream(true);
  report_closed();  // last action
}

// --- timers --------------------------------------------------------------

void Http1ServerConnection::arm_wait(Wait wait) {
  wait_ = wait;
  if (wait == Wait::header) {
    header_deadline_.arm(options_.header_timeout);
  } else {
    header_deadline_.disarm();
  }
  if (wait == Wait::idle) {
    idle_deadline_.arm(options_.idle_timeout);
  } else {
    idle_deadline_.disarm();
  }
}

void Http1ServerConnection::on_wait_timeout() {
  Wait wait = std::exchange(wait_, Wait::none);
  if (closing_ || stream_) return;
  if (wait == Wait::header) {
    reject(408, "request head not complete within " + ms_text(options_.header_timeout));
  } else if (wait == Wait::idle) {
    close_gracefully();
  }
}

void Http1ServerConnection::kick() { kick_.schedule(); }

void Http1ServerConnection::on_kick() {
  // Ended streams and their exchanges: no call of theirs is on the stack now.
  while (!retired_.empty()) {
    std::unique_ptr<Stream> s = std::move(retired_.back());
    retired_.pop_back();
  }
  if (closing_) {
    // An abort reports nothing by itself: tell the owner from here.
    if (connection_->state() == net::TcpConnection::State::closed) {
      reset_stream(true);
      report_closed();  // last action
    }
    return;
  }
  advance({});
}

// --- endings -------------------------------------------------------------

void Http1ServerConnection::reject(int status, const std::string& message) {
  if (closing_) return;
  metrics_.count_malformed(malformed_reason_for_status(status));
  log::debug("malformed request", {{"status", status}, {"error", message},
                                   {"peer", info_.peer.to_string()}});
  bool head_sent = stream_ && stream_->head_sent;
  reset_stream(true);
  if (head_sent) {
    abort_connection();  // too late for an answer
    return;
  }
  write_local_reply(status, message);
  close_gracefully();
}

void Http1ServerConnection::write_local_reply(int status, const std::string& message) {
  if (closing_) return;
  h::ResponseHead head;
  head.status = status;
  head.headers.add("Content-Type", "text/plain; charset=utf-8");
  head.headers.add("Connection", "close");
  std::string body = message + "\n";
  out_.clear();
  // Our own head with fixed fields: it always encodes.
  (void)http1::encode_response_head(head, http1::Framing::content_length(body.size()), out_);
  out_ += body;
  write(out_);
}

void Http1ServerConnection::write(std::string_view bytes) {
  Status s = connection_->write(bytes);
  if (s.ok() || closing_) return;
  // write() reports a dead socket only through its result.
  log::debug("downstream write failed", {{"error", s.error().message}});
  reset_stream(false);
  abort_connection();
}

void Http1ServerConnection::retire_stream() {
  if (!stream_) return;
  std::unique_ptr<Stream> s = std::move(stream_);
  s->detach();
  retired_.push_back(std::move(s));
  kick();
}

void Http1ServerConnection::reset_stream(bool notify) {
  if (!stream_) return;
  std::unique_ptr<Stream> s = std::move(stream_);
  s->detach();
  if (notify && s->exchange) s->exchange->on_downstream_reset();
  retired_.push_back(std::move(s));
  kick();
}

void Http1ServerConnection::close_gracefully() {
  if (closing_) return;
  closing_ = true;
  arm_wait(Wait::none);
  decoder_.pause();
  connection_->close();  // flushes, FIN, then on_closed()
  if (connection_->state() == net::TcpConnection::State::closed) kick();
}

void Http1ServerConnection::abort_connection() {
  if (closing_ && connection_->state() == net::TcpConnection::State::closed) return;
  closing_ = true;
  arm_wait(Wait::none);
  decoder_.pause();
  connection_->abort();
  kick();  // reports closed on a fresh stack
}

}  // namespace trellis::proxy::downstream
