#include "tests/unit/proxy/pool/backends.h"

#include <algorithm>

namespace trellis::proxy::pool::testing {

net::Address loopback(uint16_t port) { return net::Address::from_ip("127.0.0.1", port).value(); }

// --- Http1Backend -----------------------------------------------------------

Http1Backend::Connection::Connection(Http1Backend& backend, size_t index,
                                     std::unique_ptr<net::TcpConnection> tcp)
    : backend_(backend), index_(index), tcp_(std::move(tcp)), decoder_(decoding_) {
  decoding_.self = this;
  if (backend.paused_at_accept) tcp_->pause_reading();
  REQUIRE(tcp_->start(*this).ok());
}

void Http1Backend::Connection::write(std::string_view bytes) {
  if (tcp_ && tcp_->state() == net::TcpConnection::State::open) (void)tcp_->write(bytes);
}

void Http1Backend::Connection::close() {
  if (tcp_) tcp_->close();
}

void Http1Backend::Connection::abort() {
  if (tcp_) tcp_->abort();
  ended_ = true;
}

void Http1Backend::Connection::on_data(const char* data, size_t length) {
  size_t consumed = decoder_.feed(data, length);
  (void)consumed;  // no pipelining in these tests
}

void Http1Backend::Connection::on_eof() {
  ended_ = true;
  tcp_->close();
}

void Http1Backend::Connection::on_error(const Error&) { ended_ = true; }
void Http1Backend::Connection::on_closed() { ended_ = true; }

void Http1Backend::Connection::Decoding::on_head(msg::RequestHead&& head,
                                                 const http1::MessageInfo& info) {
  Connection& c = *self;
  c.current_ = Request{};
  c.current_.head = std::move(head);
  c.current_.info = info;
  c.current_.connection = c.index_;
  if (c.backend_.on_head) c.backend_.on_head(c, c.current_);
}

void Http1Backend::Connection::Decoding::on_body(const char* data, size_t len) {
  self->current_.body.append(data, len);
}

void Http1Backend::Connection::Decoding::on_trailers(msg::HeaderMap&& trailers) {
  self->current_.trailers = std::move(trailers);
}

void Http1Backend::Connection::Decoding::on_message_complete() {
  Connection& c = *self;
  c.backend_.requests.push_back(c.current_);
  if (c.backend_.respond) {
    c.backend_.respond(c, c.backend_.requests.back());
  } else {
    c.write(response(200, "hello"));
  }
}

void Http1Backend::Connection::Decoding::on_error(const Error& error) {
  self->decode_error = error.message;
}

Http1Backend::Http1Backend(event::EventLoop& loop) {
  auto listener = net::Listener::listen(loop, loopback(), [this](std::unique_ptr<net::TcpConnection> c) {
    connections.push_back(std::make_unique<Connection>(*this, connections.size(), std::move(c)));
  });
  REQUIRE(listener.ok());
  listener_ = std::move(listener).value();
}

size_t Http1Backend::ended() const {
  return static_cast<size_t>(std::count_if(connections.begin(), connections.end(),
                                           [](const auto& c) { return c->ended(); }));
}

std::string Http1Backend::response(int status, std::string_view body, std::string_view extra_headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    std::string(msg::reason_phrase(status)) + "\r\n";
  out += extra_headers;
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out += body;
  return out;
}

// --- H2Backend --------------------------------------------------------------

void FrameCounter::feed(const char* data, size_t length) {
  while (length > 0) {
    if (preface_left_ > 0) {
      size_t n = std::min(preface_left_, length);
      preface_left_ -= n;
      data += n;
      length -= n;
    } else if (payload_left_ > 0) {
      size_t n = std::min(payload_left_, length);
      payload_left_ -= n;
      data += n;
      length -= n;
    } else {
      header_[header_length_++] = static_cast<uint8_t>(*data++);
      --length;
      if (header_length_ < 9) continue;
      // Frame header: 24-bit length, type, flags, stream id (RFC 9113 §4.1).
      payload_left_ = (size_t{header_[0]} << 16) | (size_t{header_[1]} << 8) | header_[2];
      ++counts_[header_[3]];
      header_length_ = 0;
    }
  }
}

size_t H2Backend::frames_received(uint8_t type) const {
  size_t n = 0;
  for (const auto& c : connections) n += c->frames.count(type);
  return n;
}

http2::SessionConfig H2Backend::server_config() {
  http2::SessionConfig c;
  c.role = http2::Role::server;
  return c;
}

H2Backend::Connection::Connection(H2Backend& backend, size_t index,
                                  std::unique_ptr<net::TcpConnection> tcp)
    : backend_(backend), index_(index), tcp_(std::move(tcp)) {
  auto session = http2::Session::create(backend.config_, *this);
  REQUIRE(session.ok());
  session_ = std::move(session).value();
  REQUIRE(tcp_->start(*this).ok());
  flush();
}

void H2Backend::Connection::flush() {
  if (!tcp_ || tcp_->state() != net::TcpConnection::State::open) return;
  std::string out;
  (void)session_->produce(out);
  if (!out.empty()) (void)tcp_->write(out);
  if (session_->is_closed()) tcp_->close();
}

void H2Backend::Connection::respond(int32_t id, int status, std::string_view body,
                                    const msg::HeaderMap* trailers, const msg::HeaderMap* headers) {
  msg::ResponseHead head;
  head.status = status;
  head.version = msg::Version::http2;
  if (headers != nullptr) head.headers = *headers;
  bool has_body = !body.empty() || trailers != nullptr;
  REQUIRE(session_->submit_response(id, head, has_body).ok());
  if (has_body) {
    REQUIRE(session_->send_data(id, body, trailers == nullptr).ok());
    if (trailers != nullptr) REQUIRE(session_->submit_trailers(id, *trailers).ok());
  }
  flush();
}

void H2Backend::Connection::reset(int32_t id, uint32_t code) {
  REQUIRE(session_->reset_stream(id, code).ok());
  flush();
}

void H2Backend::Connection::shutdown_gracefully() {
  REQUIRE(session_->shutdown_gracefully().ok());
  flush();
}

void H2Backend::Connection::consume(int32_t id, size_t n) {
  (void)session_->consume(id, n);
  flush();
}

void H2Backend::Connection::close() {
  if (tcp_) tcp_->close();
}

void H2Backend::Connection::on_data(const char* data, size_t length) {
  frames.feed(data, length);
  Status s = session_->receive(data, length);
  flush();
  if (!s.ok()) tcp_->close();
}

void H2Backend::Connection::on_eof() {
  ended_ = true;
  session_->abort(http2::error_code::cancel);
  tcp_->close();
}

void H2Backend::Connection::on_error(const Error&) {
  ended_ = true;
  session_->abort(http2::error_code::cancel);
}

void H2Backend::Connection::on_closed() { ended_ = true; }

H2Backend::Stream& H2Backend::Connection::stream(int32_t id) {
  return *backend_.index_.at({index_, id});
}

void H2Backend::Connection::on_request_head(int32_t id, msg::RequestHead&& head, bool end_stream) {
  backend_.streams.push_back(std::make_unique<Stream>());
  Stream& s = *backend_.streams.back();
  s.id = id;
  s.connection = index_;
  s.head = std::move(head);
  backend_.index_[{index_, id}] = &s;
  ++open_;
  ++backend_.open;
  backend_.peak_open = std::max(backend_.peak_open, backend_.open);
  if (backend_.on_head) backend_.on_head(*this, s);
  if (end_stream) request_complete(id);
}

void H2Backend::Connection::on_data(int32_t id, const char* data, size_t len) {
  stream(id).body.append(data, len);
  if (backend_.auto_consume) (void)session_->consume(id, len);
}

void H2Backend::Connection::on_trailers(int32_t id, msg::HeaderMap&& trailers) {
  stream(id).trailers = std::move(trailers);
  request_complete(id);
}

void H2Backend::Connection::on_end_stream(int32_t id) { request_complete(id); }

void H2Backend::Connection::request_complete(int32_t id) {
  Stream& s = stream(id);
  s.request_ended = true;
  if (backend_.respond) {
    backend_.respond(*this, s);
  } else {
    respond(id, 200, "hello");
  }
}

void H2Backend::Connection::on_stream_close(int32_t id, uint32_t error_code) {
  stream(id).closed = error_code;
  --open_;
  --backend_.open;
}

void H2Backend::Connection::on_goaway(int32_t last_stream_id, uint32_t error_code) {
  goaways.emplace_back(last_stream_id, error_code);
}

H2Backend::H2Backend(event::EventLoop& loop, http2::SessionConfig config) : config_(config) {
  auto listener = net::Listener::listen(loop, loopback(), [this](std::unique_ptr<net::TcpConnection> c) {
    connections.push_back(std::make_unique<Connection>(*this, connections.size(), std::move(c)));
  });
  REQUIRE(listener.ok());
  listener_ = std::move(listener).value();
}

// --- LogCapture -------------------------------------------------------------

LogCapture::LogCapture() {
  log::reset_for_test();
  log::set_sink([this](std::string_view line) { lines.emplace_back(line); });
}

LogCapture::~LogCapture() { log::reset_for_test(); }

size_t LogCapture::count(std::string_view text) const {
  return static_cast<size_t>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.find(text) != std::string::npos;
  }));
}

// --- Recorder ---------------------------------------------------------------

void Recorder::on_response_head(msg::ResponseHead&& h, bool end_stream) {
  if (done()) ++after_done;
  ++heads;
  head = std::move(h);
  head_end = end_stream;
  if (end_stream) ended = true;
  if (after_head) after_head();
}

void Recorder::on_response_data(std::string_view data, bool end_stream) {
  if (done()) ++after_done;
  ++data_calls;
  body.append(data.data(), data.size());
  if (end_stream) ended = true;
  if (after_data) after_data();
}

void Recorder::on_response_trailers(msg::HeaderMap&& t) {
  if (done()) ++after_done;
  trailers = std::move(t);
  ended = true;
  if (after_trailers) after_trailers();
}

void Recorder::on_upstream_failure(UpstreamFailure f, const Error& detail) {
  if (done()) ++after_done;
  if (inside_call) ++failures_inside_call;
  failure = f;
  failure_detail = detail;
  if (after_failure) after_failure();
}

void Recorder::on_request_congested() {
  ++congested;
  if (after_congested) after_congested();
}

void Recorder::on_request_writable() {
  ++writable;
  if (after_writable) after_writable();
}

msg::RequestHead get(std::string_view target_path, std::string_view authority) {
  msg::RequestHead head;
  head.method = "GET";
  head.target = std::string(target_path);
  head.authority = std::string(authority);
  head.version = msg::Version::http11;
  return head;
}

http::UpstreamTarget target(const net::Address& address, http::UpstreamProtocol protocol) {
  http::UpstreamTarget t;
  t.address = address;
  t.protocol = protocol;
  return t;
}

std::unique_ptr<Pool> make_pool(event::EventLoop& loop, const PoolConfig& config) {
  auto pool = Pool::create(loop, config);
  REQUIRE(pool.ok());
  return std::move(pool).value();
}

std::string pattern(size_t length) {
  std::string s(length, '\0');
  for (size_t i = 0; i < length; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace trellis::proxy::pool::testing
