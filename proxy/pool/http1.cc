#include "proxy/pool/http1.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "common/log/log.h"

namespace trellis::proxy::pool {
namespace {

// Methods whose requests carry content by definition: an empty one still
// says "Content-Length: 0" (RFC 9110 §8.6), as some servers insist.
bool method_defines_content(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// A Content-Length value as the codecs accept it: digits only, no overflow.
std::optional<uint64_t> parse_length(std::string_view value) {
  if (value.empty() || value.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

http1::DecoderOptions decoder_options(const PoolConfig& config) {
  http1::DecoderOptions options;
  options.limits = config.http1_limits;
  return options;
}

}  // namespace

// --- Http1Stream ------------------------------------------------------------

Http1Stream::~Http1Stream() {
  if (ctx_ == nullptr) return;
  if (connection_ != nullptr) {
    connection_->detach(*this);
  } else if (endpoint_ != nullptr) {
    endpoint_->cancel(*this);
  }
}

void Http1Stream::orphan() {
  StreamBase::orphan();
  endpoint_ = nullptr;
  connection_ = nullptr;
}

void Http1Stream::send_request_head(trellis::http::RequestHead&& head, bool end_stream) {
  if (ctx_ == nullptr || finished_) return;
  if (connection_ != nullptr) {
    connection_->send_head(std::move(head), end_stream);
  } else {
    buffer_head(std::move(head), end_stream);
  }
}

void Http1Stream::send_request_data(std::string_view data, bool end_stream) {
  if (ctx_ == nullptr || finished_) return;
  if (connection_ != nullptr) {
    connection_->send_data(data, end_stream);
  } else {
    buffer_data(data, end_stream);
  }
}

void Http1Stream::send_request_trailers(trellis::http::HeaderMap&& trailers) {
  if (ctx_ == nullptr || finished_) return;
  if (connection_ != nullptr) {
    connection_->send_trailers(std::move(trailers));
  } else {
    buffer_trailers(std::move(trailers));
  }
}

void Http1Stream::pause_response_body() {
  paused_ = true;
  if (connection_ != nullptr) connection_->pause_reading();
}

void Http1Stream::resume_response_body() {
  paused_ = false;
  if (connection_ != nullptr) connection_->resume_reading();
}

size_t Http1Stream::queued_request_bytes() const {
  return connection_ != nullptr ? connection_->queued_bytes() : buffered_.body.size();
}

void Http1Stream::attached(Http1Connection& connection) {
  connection_ = &connection;
  endpoint_ = nullptr;
  if (!buffered_.head) return;  // the head comes later, straight to the connection
  // Nothing here calls the exchange (failures are deferred, congestion is
  // settled at the end), so the stream cannot die during the replay; the
  // connection can drop it, which clears connection_.
  replaying_ = true;
  trellis::http::RequestHead head = std::move(*buffered_.head);
  buffered_.head.reset();
  std::string body;
  body.swap(buffered_.body);
  std::optional<trellis::http::HeaderMap> trailers = std::move(buffered_.trailers);
  buffered_.trailers.reset();
  connection.send_head(std::move(head), buffered_.head_end);
  if (connection_ != nullptr && (!body.empty() || buffered_.body_end)) {
    connection_->send_data(body, buffered_.body_end);
  }
  if (connection_ != nullptr && trailers) connection_->send_trailers(std::move(*trailers));
  replaying_ = false;
  sync_congestion();
}

// --- Http1Connection --------------------------------------------------------

Http1Connection::Http1Connection(Context& context, Http1Endpoint& endpoint)
    : ctx_(context),
      endpoint_(endpoint),
      decoder_(*this, decoder_options(context.config)),
      idle_deadline_(context.loop, [this] {
        if (state_ == State::idle) close(true);
      }) {}

Http1Connection::~Http1Connection() {
  // Only when the pool itself goes: the stream the exchange holds goes inert.
  if (stream_ != nullptr) stream_->orphan();
  if (counted_open_) ctx_.connection_closed(UpstreamProtocol::http1);
}

Status Http1Connection::connect() {
  auto transport = ctx_.transports(ctx_.loop, endpoint_.target(), ctx_.transport_options(),
                                   [this](const Status& status) { on_connected(status); });
  if (!transport.ok()) return std::move(transport).error();
  transport_ = std::move(transport).value();
  return ok_status();
}

void Http1Connection::on_connected(const Status& status) {
  Status started = status.ok() ? transport_->start(*this) : status;
  if (!started.ok()) {
    state_ = State::closed;
    endpoint_.on_connect_failed(*this, started.error());
    return;
  }
  counted_open_ = true;
  ctx_.connection_opened(UpstreamProtocol::http1);
  state_ = State::idle;
  endpoint_.on_connected(*this);
}

void Http1Connection::attach(Http1Stream& stream) {
  state_ = State::busy;
  idle_deadline_.disarm();
  stream_ = &stream;
  reused_ = served_ > 0 || was_parked_;
  head_sent_ = false;
  wrote_ = false;
  request_complete_ = false;
  framing_ = http1::Framing::no_body();
  body_remaining_ = 0;
  response_started_ = false;
  response_ended_ = false;
  response_complete_ = false;
  keep_alive_ = false;
  response_sized_ = false;
  response_remaining_ = 0;
  if (stream.response_paused()) {
    transport_->pause_reading();
  } else {
    transport_->resume_reading();
  }
  stream.attached(*this);
}

void Http1Connection::park() {
  state_ = State::idle;
  was_parked_ = true;
  transport_->resume_reading();
  idle_deadline_.arm(ctx_.config.idle_timeout);
}

void Http1Connection::close(bool graceful) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  idle_deadline_.disarm();
  if (counted_open_) {
    counted_open_ = false;
    ctx_.connection_closed(UpstreamProtocol::http1);
  }
  if (transport_ != nullptr) {
    if (graceful) {
      ctx_.linger(std::move(transport_));
    } else {
      transport_->abort();
      transport_.reset();
    }
  }
  endpoint_.remove(*this);
}

void Http1Connection::send_head(trellis::http::RequestHead&& head, bool end_stream) {
  if (state_ != State::busy || head_sent_) return;
  head_sent_ = true;
  trellis::http::strip_hop_by_hop(head.headers);
  head.version = trellis::http::Version::http11;  // a proxy speaks its own version upstream
  http1::Framing framing = http1::Framing::chunked();
  if (end_stream) {
    framing = method_defines_content(head.method) ? http1::Framing::content_length(0)
                                                  : http1::Framing::no_body();
  } else if (const std::string* length = head.headers.get("content-length")) {
    if (auto n = parse_length(*length)) framing = http1::Framing::content_length(*n);
  }
  out_.clear();
  if (Status s = http1::encode_request_head(head, framing, out_); !s.ok()) {
    // Nothing reached the wire: the connection stays good for the next one.
    Http1Stream* stream = stream_;
    stream_ = nullptr;
    stream->detached();
    stream->fail(UpstreamFailure::reset, make_error(upstream_prefix(endpoint_.target()) +
                                                    "cannot encode the request: " +
                                                    s.error().message));
    endpoint_.release(*this, true);
    return;
  }
  framing_ = framing;
  body_remaining_ = framing.kind == http1::Framing::Kind::content_length ? framing.length : 0;
  request_complete_ = end_stream;
  decoder_.expect_response(head.method);
  write(out_);
}

void Http1Connection::send_data(std::string_view data, bool end_stream) {
  if (state_ != State::busy || !head_sent_ || request_complete_) return;
  switch (framing_.kind) {
    case http1::Framing::Kind::content_length:
      if (data.size() > body_remaining_) {
        fail_request("request body exceeds its Content-Length of " +
                     std::to_string(framing_.length) + " bytes");
        return;
      }
      body_remaining_ -= data.size();
      if (!data.empty() && !write(data)) return;
      if (end_stream) {
        if (body_remaining_ != 0) {
          fail_request("request body ended " + std::to_string(body_remaining_) +
                       " bytes short of its Content-Length of " + std::to_string(framing_.length));
          return;
        }
        request_complete_ = true;
      }
      return;
    case http1::Framing::Kind::chunked:
      out_.clear();
      http1::encode_chunk(data, out_);
      if (end_stream) {
        (void)http1::encode_last_chunk(nullptr, out_);  // no trailers: cannot fail
        request_complete_ = true;
      }
      if (!out_.empty()) write(out_);
      return;
    case http1::Framing::Kind::none:
    case http1::Framing::Kind::close_delimited:
      return;
  }
}

void Http1Connection::send_trailers(trellis::http::HeaderMap&& trailers) {
  if (state_ != State::busy || !head_sent_ || request_complete_) return;
  if (framing_.kind != http1::Framing::Kind::chunked) {
    // HTTP/1 carries trailers only after a chunked body: end the body.
    send_data({}, true);
    return;
  }
  out_.clear();
  if (Status s = http1::encode_last_chunk(&trailers, out_); !s.ok()) {
    fail_request("cannot encode the request trailers: " + s.error().message);
    return;
  }
  request_complete_ = true;
  write(out_);
}

bool Http1Connection::write(std::string_view bytes) {
  if (Status s = transport_->write(bytes); !s.ok()) {
    lost(s.error().message);
    return false;
  }
  wrote_ = true;
  return true;
}

void Http1Connection::pause_reading() {
  if (state_ == State::busy) transport_->pause_reading();
}

void Http1Connection::resume_reading() {
  if (state_ == State::busy) transport_->resume_reading();
}

size_t Http1Connection::queued_bytes() const {
  return transport_ != nullptr ? transport_->queued_bytes() : 0;
}

void Http1Connection::detach(Http1Stream& stream) {
  if (stream_ != &stream) return;
  stream_ = nullptr;
  if (!head_sent_) {
    endpoint_.release(*this, true);  // the request never started: the connection is clean
  } else if (!stream.finished()) {
    close(false);  // cancelled mid-exchange: reset, never reuse
  }
  // Else the response end was delivered from inside the decoder, which
  // completes the message before it returns; on_transport_data finishes up.
}

void Http1Connection::on_transport_data(const char* data, size_t length) {
  if (state_ == State::idle) {
    // The server spoke out of turn (a late 408, garbage): never reuse this.
    close(false);
    return;
  }
  if (state_ != State::busy) return;
  if (!head_sent_) {
    lost("unexpected bytes before the request");
    return;
  }
  response_started_ = true;
  size_t consumed = decoder_.feed(data, length);
  if (state_ != State::busy) return;  // closed (cancelled or failed) while decoding
  if (response_complete_) finish_exchange(consumed < length);
}

void Http1Connection::finish_exchange(bool leftover) {
  bool reusable = keep_alive_ && request_complete_ && !leftover &&
                  decoder_.state() == http1::DecoderState::active;
  ++served_;
  if (Http1Stream* stream = std::exchange(stream_, nullptr)) stream->detached();
  endpoint_.release(*this, reusable);
}

void Http1Connection::on_transport_eof() {
  if (state_ == State::idle) {
    close(true);  // the server closed an idle connection: it simply leaves the pool
    return;
  }
  if (state_ != State::busy) return;
  if (!head_sent_) {
    lost("connection closed by the peer");
    return;
  }
  finishing_ = true;
  decoder_.finish();
  finishing_ = false;
  if (state_ != State::busy) return;  // on_error closed it
  if (response_complete_) {
    finish_exchange(true);  // a body delimited by the close
    return;
  }
  lost("connection closed before the response arrived");
}

void Http1Connection::on_transport_error(const Error& error) {
  if (state_ == State::idle) {
    close(false);
    return;
  }
  if (state_ != State::busy) return;
  lost(error.message);
}

void Http1Connection::on_transport_high_water() {
  if (state_ == State::busy && stream_ != nullptr) stream_->sync_congestion();
}

void Http1Connection::on_transport_drained() {
  if (state_ == State::busy && stream_ != nullptr) stream_->sync_congestion();
}

void Http1Connection::lost(const std::string& why) {
  if (!head_sent_) {
    // Nothing of the request was taken: the stream simply waits for another
    // connection.
    Http1Stream* stream = std::exchange(stream_, nullptr);
    close(false);
    if (stream != nullptr) {
      stream->detached();
      endpoint_.request(*stream);
    }
    return;
  }
  std::string detail = upstream_prefix(endpoint_.target()) + why;
  if (!wrote_) {
    fail_and_close(UpstreamFailure::refused_stream, detail + " (nothing was sent)");
  } else if (reused_ && !response_started_) {
    fail_and_close(UpstreamFailure::refused_stream,
                   detail + " (reused connection, no response byte: not processed)");
  } else {
    fail_and_close(UpstreamFailure::reset, detail);
  }
}

void Http1Connection::fail_request(const std::string& why) {
  fail_and_close(UpstreamFailure::reset, upstream_prefix(endpoint_.target()) + why);
}

void Http1Connection::fail_and_close(UpstreamFailure failure, const std::string& detail) {
  if (Http1Stream* stream = std::exchange(stream_, nullptr)) {
    stream->detached();
    stream->fail(failure, make_error(detail));
  }
  close(false);
}

void Http1Connection::on_interim(trellis::http::ResponseHead&&) {
  // 100 Continue, 103 Early Hints: the exchange hears only the final head.
}

void Http1Connection::on_head(trellis::http::ResponseHead&& head, const http1::MessageInfo& info) {
  if (state_ != State::busy) return;
  if (info.upgrade) {
    fail_and_close(UpstreamFailure::protocol_error,
                   upstream_prefix(endpoint_.target()) + "unexpected " +
                       (head.status == 101 ? std::string("101 Switching Protocols")
                                           : "tunnel (" + std::to_string(head.status) + ")") +
                       ": pooled connections carry no upgrades");
    return;
  }
  keep_alive_ = info.keep_alive;
  response_sized_ = info.body == http1::BodyFraming::content_length;
  response_remaining_ = info.content_length.value_or(0);
  bool end = !info.has_body();
  if (end) response_ended_ = true;
  trellis::http::strip_hop_by_hop(head.headers);
  if (stream_ != nullptr) stream_->deliver_head(std::move(head), end);
}

void Http1Connection::on_body(const char* data, size_t length) {
  if (state_ != State::busy || stream_ == nullptr) return;
  bool end = false;
  if (response_sized_) {
    response_remaining_ -= length;
    end = response_remaining_ == 0;
  }
  if (end) response_ended_ = true;
  stream_->deliver_data(std::string_view(data, length), end);
}

void Http1Connection::on_trailers(trellis::http::HeaderMap&& trailers) {
  if (state_ != State::busy) return;
  response_ended_ = true;
  if (stream_ != nullptr) stream_->deliver_trailers(std::move(trailers));
}

void Http1Connection::on_message_complete() {
  if (state_ != State::busy) return;
  response_complete_ = true;
  if (response_ended_) return;
  response_ended_ = true;
  if (stream_ != nullptr) stream_->deliver_data({}, true);
}

void Http1Connection::on_error(const Error& error) {
  if (state_ != State::busy) return;
  if (response_complete_) {
    keep_alive_ = false;  // bytes after the response: the connection is not reusable
    return;
  }
  if (finishing_) {
    lost(error.message);  // cut short by the peer's close
    return;
  }
  log::warn("malformed upstream response",
            {{"upstream", endpoint_.target().address.to_string()}, {"error", error.message}});
  fail_and_close(UpstreamFailure::protocol_error,
                 upstream_prefix(endpoint_.target()) + "malformed response: " + error.message);
}

// --- Http1Endpoint ----------------------------------------------------------

Http1Endpoint::~Http1Endpoint() {
  for (Http1Stream* s : pending_) s->orphan();
}

std::unique_ptr<http::UpstreamStream> Http1Endpoint::new_stream(http::UpstreamCallbacks& callbacks) {
  auto stream = std::make_unique<Http1Stream>(ctx_, *this, callbacks);
  request(*stream);
  return stream;
}

void Http1Endpoint::request(Http1Stream& stream) {
  stream.set_waiting(nullptr);
  if (!idle_.empty()) {
    Http1Connection* connection = idle_.back();
    idle_.pop_back();
    connection->attach(stream);
    return;
  }
  if (pending_.size() >= ctx_.config.max_pending_per_endpoint) {
    stream.fail(UpstreamFailure::connect_failed,
                make_error(upstream_prefix(target_) + std::to_string(pending_.size()) +
                           " requests already wait for a connection"));
    return;
  }
  stream.set_waiting(this);
  pending_.push_back(&stream);
  ctx_.pending_added();
  connect_more();
}

void Http1Endpoint::cancel(Http1Stream& stream) {
  auto it = std::find(pending_.begin(), pending_.end(), &stream);
  if (it == pending_.end()) return;
  pending_.erase(it);
  ctx_.pending_removed();
  if (empty()) ctx_.sweep_later(*this);
}

void Http1Endpoint::connect_more() {
  while (connecting_ < pending_.size() &&
         connections_.size() < ctx_.config.max_connections_per_endpoint) {
    auto connection = std::make_unique<Http1Connection>(ctx_, *this);
    if (Status s = connection->connect(); !s.ok()) {
      ctx_.connect_failed();
      fail_unserved(s.error());
      return;
    }
    ++connecting_;
    Http1Connection* raw = connection.get();
    connections_.emplace(raw, std::move(connection));
  }
}

void Http1Endpoint::fail_unserved(const Error& error) {
  while (pending_.size() > connecting_) {
    Http1Stream* stream = pending_.front();
    pending_.pop_front();
    ctx_.pending_removed();
    stream->set_waiting(nullptr);
    stream->fail(UpstreamFailure::connect_failed, error);
  }
}

void Http1Endpoint::on_connected(Http1Connection& connection) {
  --connecting_;
  if (!pending_.empty()) {
    Http1Stream* stream = pending_.front();
    pending_.pop_front();
    ctx_.pending_removed();
    connection.attach(*stream);
    return;
  }
  release(connection, true);  // whoever it was dialled for has left: keep it
}

void Http1Endpoint::on_connect_failed(Http1Connection& connection, const Error& error) {
  --connecting_;
  ctx_.connect_failed();
  log::debug("upstream connect failed",
             {{"upstream", target_.address.to_string()}, {"error", error.message}});
  // Fail first, so that removing the attempt does not dial again for them.
  fail_unserved(error);
  remove(connection);
}

void Http1Endpoint::release(Http1Connection& connection, bool reusable) {
  if (!reusable || ctx_.draining) {
    connection.close(true);
    return;
  }
  if (!pending_.empty()) {
    Http1Stream* stream = pending_.front();
    pending_.pop_front();
    ctx_.pending_removed();
    connection.attach(*stream);
    return;
  }
  if (idle_.size() >= ctx_.config.max_idle_per_endpoint) {
    connection.close(true);
    return;
  }
  idle_.push_back(&connection);
  connection.park();
}

void Http1Endpoint::remove(Http1Connection& connection) {
  auto idle = std::find(idle_.begin(), idle_.end(), &connection);
  if (idle != idle_.end()) idle_.erase(idle);
  auto it = connections_.find(&connection);
  if (it == connections_.end()) return;
  std::unique_ptr<Http1Connection> owned = std::move(it->second);
  connections_.erase(it);
  ctx_.retire(std::move(owned));
  connect_more();
  if (empty()) ctx_.sweep_later(*this);
}

void Http1Endpoint::drain() {
  std::vector<Http1Connection*> idle = idle_;
  for (Http1Connection* c : idle) c->close(true);
}

}  // namespace trellis::proxy::pool
