#include "tests/support/echo/server.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "common/event/timer.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/http2/session.h"
#include "common/log/log.h"
#include "tests/support/echo/wire.h"

namespace trellis::support::echo {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// Longer than kMaxDelay, so a delayed answer is never cut off.
constexpr std::chrono::minutes kIdleTimeout{10};

bool is_grpc_content_type(const http::HeaderMap& headers) {
  const std::string* ct = headers.get("content-type");
  return ct != nullptr && ct->compare(0, 16, "application/grpc") == 0 &&
         (ct->size() == 16 || (*ct)[16] == '+' || (*ct)[16] == ';');
}

bool status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

}  // namespace

// The protocol spoken on a connection; it is the connection's handler.
class Protocol : public net::TcpConnection::Handler {
 public:
  // Starts the protocol with bytes read before it was installed.
  virtual void begin(std::string_view already_read) = 0;
};

class EchoServer::Connection {
 public:
  Connection(EchoServer& server, std::unique_ptr<net::TcpConnection> tcp, uint16_t port)
      : server_(server), tcp_(std::move(tcp)), port_(port) {
    auto peer = tcp_->peer_address();
    if (peer.ok()) peer_ip_ = peer->ip();
    // A dual-stack listener (--bind ::) sees IPv4 peers as ::ffff:a.b.c.d; Go reports a.b.c.d.
    constexpr std::string_view kMapped = "::ffff:";
    if (peer_ip_.compare(0, kMapped.size(), kMapped) == 0 && peer_ip_.find('.') != std::string::npos) {
      peer_ip_.erase(0, kMapped.size());
    }
  }

  // Makes `protocol` the handler (the previous one dies on the next turn,
  // as it may be the caller) and hands it the bytes read so far.
  void install(std::unique_ptr<Protocol> protocol, std::string_view already_read) {
    Protocol* raw = protocol.get();
    if (protocol_) server_.loop_.delete_later(std::move(protocol_));
    protocol_ = std::move(protocol);
    if (!started_) {
      started_ = true;
      if (Status s = tcp_->start(*raw); !s.ok()) {
        finish();
        return;
      }
    } else {
      tcp_->set_handler(*raw);
    }
    raw->begin(already_read);
  }

  // The connection is over: nothing reaches its protocol any more.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (tcp_->state() != net::TcpConnection::State::closed) tcp_->abort();
    server_.remove(this);
  }

  bool finished() const { return finished_; }
  net::TcpConnection& tcp() { return *tcp_; }
  event::EventLoop& loop() { return server_.loop_; }
  EchoService& service() { return server_.service_; }
  const std::string& tcp_greeting() const { return server_.tcp_greeting_; }
  uint16_t port() const { return port_; }
  const std::string& peer_ip() const { return peer_ip_; }

 private:
  EchoServer& server_;
  std::unique_ptr<Protocol> protocol_;
  std::unique_ptr<net::TcpConnection> tcp_;  // after protocol_: destroyed first, so no callback reaches a dead protocol
  uint16_t port_;
  std::string peer_ip_;
  bool started_ = false;
  bool finished_ = false;
};

namespace {

using Connection = EchoServer::Connection;

// HTTP/1.1 with keep-alive; requests are served one at a time, in order.
class Http1Protocol final : public Protocol {
 public:
  explicit Http1Protocol(Connection& c)
      : c_(c), events_(*this), decoder_(events_, decoder_options()), delay_(c.loop(), [this] { send(); }) {}

  void begin(std::string_view already_read) override {
    input_.append(already_read);
    pump();
  }

  void on_data(const char* data, size_t length) override {
    input_.append(data, length);
    pump();
  }
  void on_eof() override {
    peer_eof_ = true;
    pump();
  }
  void on_error(const Error&) override { c_.finish(); }
  void on_closed() override { c_.finish(); }
  void on_write_high_water() override { above_high_water_ = true; }
  void on_write_drained() override {
    above_high_water_ = false;
    if (waiting_drain_) {
      waiting_drain_ = false;
      c_.tcp().resume_reading();
      pump();
    }
  }

 private:
  // Decoder events; the decoder must not be fed or destroyed from them, so
  // they only record what happened and pump() acts once feed() returns.
  struct Events final : http1::RequestHandler {
    explicit Events(Http1Protocol& p) : p(p) {}
    void on_head(http::RequestHead&& head, const http1::MessageInfo& info) override {
      p.head_ = std::move(head);
      p.info_ = info;
      p.body_length_ = 0;
      if (info.expect_continue) {
        std::string out;
        http1::encode_continue(out);
        (void)p.c_.tcp().write(out);
      }
    }
    void on_body(const char*, size_t length) override { p.body_length_ += length; }
    void on_trailers(http::HeaderMap&&) override {}
    void on_message_complete() override { p.complete_ = true; }
    void on_error(const Error& error) override { p.error_ = error; }
    Http1Protocol& p;
  };

  static http1::DecoderOptions decoder_options() {
    http1::DecoderOptions o;
    o.pause_after_message = true;  // one request at a time: answer, then resume
    return o;
  }

  void pump() {
    if (closing_ || responding_ || waiting_drain_) return;
    size_t consumed = decoder_.feed(input_.data(), input_.size());
    input_.erase(0, consumed);
    if (!error_ && !complete_ && peer_eof_) decoder_.finish();
    if (error_) {
      reply_error();
    } else if (complete_) {
      respond();
    } else if (peer_eof_) {
      close();
    }
  }

  void respond() {
    complete_ = false;
    std::string_view proto = head_.version == http::Version::http10 ? "HTTP/1.0" : "HTTP/1.1";
    reply_ = c_.service().http(head_, proto, c_.port(), c_.peer_ip(), body_length_);
    if (reply_.delay.count() > 0) {
      responding_ = true;
      c_.tcp().pause_reading();
      delay_.start(reply_.delay);
      return;
    }
    send();
  }

  void send() {
    if (responding_) {
      responding_ = false;
      c_.tcp().resume_reading();
    }
    bool keep_alive = info_.keep_alive && decoder_.state() == http1::DecoderState::paused &&
                      !(peer_eof_ && input_.empty());
    http::ResponseHead head;
    head.status = reply_.status;
    head.headers = std::move(reply_.headers);
    if (!keep_alive) head.headers.add("Connection", "close");
    bool body = status_has_body(head.status);
    out_.clear();
    Status s = http1::encode_response_head(
        head, body ? http1::Framing::content_length(reply_.body.size()) : http1::Framing::no_body(), out_);
    if (!s.ok()) {  // the knobs are validated, so this is our bug: say so rather than send garbage
      log::error("echo: cannot encode response", {{"error", s.error().message}});
      close();
      return;
    }
    if (body && head_.method != "HEAD") out_ += reply_.body;
    (void)c_.tcp().write(out_);
    if (!keep_alive) {
      close();
      return;
    }
    decoder_.resume();
    if (above_high_water_) {  // the peer is not reading: wait before serving more
      waiting_drain_ = true;
      c_.tcp().pause_reading();
      return;
    }
    pump();
  }

  void reply_error() {
    const Error& e = *error_;
    log::warn("echo: malformed HTTP/1 request",
              {{"peer", c_.peer_ip()}, {"status", e.code}, {"error", e.message}});
    http::ResponseHead head;
    head.status = e.code >= 400 && e.code <= 599 ? e.code : 400;
    head.headers.add("Content-Type", "text/plain");
    head.headers.add("Connection", "close");
    std::string body = e.message + "\n";
    out_.clear();
    if (http1::encode_response_head(head, http1::Framing::content_length(body.size()), out_).ok()) {
      out_ += body;
      (void)c_.tcp().write(out_);
    }
    close();
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    delay_.stop();
    c_.tcp().close();  // graceful: flushes the answer; on_closed() ends the connection
  }

  Connection& c_;
  Events events_;
  http1::RequestDecoder decoder_;
  event::Timer delay_;
  std::string input_;  // read and not yet consumed by the decoder
  std::string out_;
  http::RequestHead head_;
  http1::MessageInfo info_;
  uint64_t body_length_ = 0;
  HttpReply reply_;
  std::optional<Error> error_;
  bool complete_ = false;
  bool responding_ = false;  // a delayed answer is pending
  bool waiting_drain_ = false;
  bool above_high_water_ = false;
  bool peer_eof_ = false;
  bool closing_ = false;
};

// h2c: HTTP echo and gRPC on the HTTP ports, gRPC only on the gRPC ports.
class H2Protocol final : public Protocol {
 public:
  H2Protocol(Connection& c, bool grpc_port) : c_(c), grpc_port_(grpc_port), events_(*this) {
    http2::SessionConfig config;
    config.role = http2::Role::server;
    config.max_concurrent_streams = 1000;
    config.initial_stream_window = 1024 * 1024;
    config.connection_window = 8 * 1024 * 1024;
    auto session = http2::Session::create(config, events_);
    if (session.ok()) {
      session_ = std::move(session).value();
    } else {
      log::error("echo: cannot create HTTP/2 session", {{"error", session.error().message}});
    }
  }

  void begin(std::string_view already_read) override {
    if (!session_) {
      close();
      return;
    }
    receive(already_read.data(), already_read.size());
  }

  void on_data(const char* data, size_t length) override { receive(data, length); }
  // HTTP/2 peers do not half-close; a FIN means they are done.
  void on_eof() override { close(); }
  void on_error(const Error&) override { c_.finish(); }
  void on_closed() override { c_.finish(); }
  void on_write_high_water() override { c_.tcp().pause_reading(); }
  void on_write_drained() override { c_.tcp().resume_reading(); }

 private:
  enum class Kind { http, grpc, unsupported_media };

  struct Stream {
    http::RequestHead head;
    Kind kind = Kind::http;
    uint64_t body_length = 0;
    std::string body;  // gRPC only
    bool too_large = false;
    std::unique_ptr<event::Timer> delay;
    HttpReply reply;
  };

  struct Events final : http2::SessionHandler {
    explicit Events(H2Protocol& p) : p(p) {}
    void on_request_head(int32_t id, http::RequestHead&& head, bool end_stream) override {
      auto s = std::make_unique<Stream>();
      bool grpc = is_grpc_content_type(head.headers);
      s->kind = grpc ? Kind::grpc : p.grpc_port_ ? Kind::unsupported_media : Kind::http;
      s->head = std::move(head);
      p.streams_[id] = std::move(s);
      if (end_stream) p.handle(id);
    }
    void on_data(int32_t id, const char* data, size_t length) override {
      (void)p.session_->consume(id, length);
      auto it = p.streams_.find(id);
      if (it == p.streams_.end()) return;
      Stream& s = *it->second;
      s.body_length += length;
      if (s.kind != Kind::grpc || s.too_large) return;
      if (s.body.size() + length > kMaxGrpcMessage + 5) {
        s.too_large = true;
        s.body.clear();
        return;
      }
      s.body.append(data, length);
    }
    void on_trailers(int32_t id, http::HeaderMap&&) override { p.handle(id); }
    void on_end_stream(int32_t id) override { p.handle(id); }
    void on_stream_close(int32_t id, uint32_t) override { p.streams_.erase(id); }
    void on_session_error(const Error& error) override {
      log::warn("echo: HTTP/2 connection error", {{"peer", p.c_.peer_ip()}, {"error", error.message}});
    }
    H2Protocol& p;
  };

  void receive(const char* data, size_t length) {
    if (closing_) return;
    (void)session_->receive(data, length);  // a failure leaves a GOAWAY for flush() and closes
    flush();
  }

  void flush() {
    if (closing_) return;
    out_.clear();
    (void)session_->produce(out_);
    if (!out_.empty()) (void)c_.tcp().write(out_);
    if (session_->is_closed()) close();
  }

  void handle(int32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream& s = *it->second;
    switch (s.kind) {
      case Kind::unsupported_media: {
        http::ResponseHead head;
        head.status = 415;
        head.headers.add("content-type", "text/plain");
        if (!session_->submit_response(id, head, true).ok() ||
            !session_->send_data(id, "gRPC requires content-type application/grpc\n", true).ok()) {
          (void)session_->reset_stream(id, http2::error_code::internal_error);
        }
        return;
      }
      case Kind::grpc: {
        GrpcReply reply =
            s.too_large ? GrpcReply{grpc_status::resource_exhausted,
                                    "grpc: received message larger than max (" + std::to_string(s.body_length) +
                                        " vs. " + std::to_string(kMaxGrpcMessage) + ")",
                                    ""}
                        : c_.service().grpc(s.head, c_.port(), c_.peer_ip(), s.body);
        send_grpc(id, reply);
        return;
      }
      case Kind::http:
        s.reply = c_.service().http(s.head, "HTTP/2.0", c_.port(), c_.peer_ip(), s.body_length);
        if (s.reply.delay.count() > 0) {
          s.delay = std::make_unique<event::Timer>(c_.loop(), [this, id] {
            send_http(id);
            flush();
          });
          s.delay->start(s.reply.delay);
          return;
        }
        send_http(id);
        return;
    }
  }

  void send_http(int32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream& s = *it->second;
    http::ResponseHead head;
    head.status = s.reply.status;
    head.version = http::Version::http2;
    head.headers = std::move(s.reply.headers);
    bool body = status_has_body(head.status) && s.head.method != "HEAD";
    if (status_has_body(head.status)) head.headers.add("content-length", std::to_string(s.reply.body.size()));
    bool ok = session_->submit_response(id, head, body && !s.reply.body.empty()).ok();
    if (ok && body && !s.reply.body.empty()) ok = session_->send_data(id, s.reply.body, true).ok();
    if (!ok) (void)session_->reset_stream(id, http2::error_code::internal_error);
  }

  void send_grpc(int32_t id, const GrpcReply& reply) {
    http::ResponseHead head;
    head.version = http::Version::http2;
    head.headers.add("content-type", "application/grpc");
    bool ok;
    if (reply.status == grpc_status::ok) {
      http::HeaderMap trailers;
      trailers.add("grpc-status", "0");
      ok = session_->submit_response(id, head, true).ok() && session_->send_data(id, reply.frame, false).ok() &&
           session_->submit_trailers(id, trailers).ok();
    } else {
      // Trailers-Only: the status travels in the one header block.
      head.headers.add("grpc-status", std::to_string(reply.status));
      head.headers.add("grpc-message", encode_grpc_message(reply.message));
      ok = session_->submit_response(id, head, false).ok();
    }
    if (!ok) (void)session_->reset_stream(id, http2::error_code::internal_error);
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    streams_.clear();
    c_.tcp().close();
  }

  Connection& c_;
  bool grpc_port_;
  Events events_;
  std::unique_ptr<http2::Session> session_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  std::string out_;
  bool closing_ = false;
};

// Decides between HTTP/1 and h2c from the first bytes: the 24-byte HTTP/2
// preface, or anything that stops matching it.
class SniffProtocol final : public Protocol {
 public:
  explicit SniffProtocol(Connection& c) : c_(c) {}

  void begin(std::string_view) override {}
  void on_data(const char* data, size_t length) override {
    seen_.append(data, length);
    size_t n = std::min(seen_.size(), kH2Preface.size());
    if (std::string_view(seen_).substr(0, n) != kH2Preface.substr(0, n)) {
      c_.install(std::make_unique<Http1Protocol>(c_), seen_);
    } else if (seen_.size() >= kH2Preface.size()) {
      c_.install(std::make_unique<H2Protocol>(c_, false), seen_);
    }
  }
  void on_eof() override {
    if (seen_.empty()) {
      c_.tcp().close();
      return;
    }
    // A request cut short: HTTP/1 answers it (400) and closes.
    auto http1 = std::make_unique<Http1Protocol>(c_);
    Http1Protocol* raw = http1.get();
    c_.install(std::move(http1), seen_);
    if (!c_.finished()) raw->on_eof();
  }
  void on_error(const Error&) override { c_.finish(); }
  void on_closed() override { c_.finish(); }

 private:
  Connection& c_;
  std::string seen_;
};

class TcpEchoProtocol final : public Protocol {
 public:
  explicit TcpEchoProtocol(Connection& c) : c_(c) {}

  void begin(std::string_view already_read) override {
    if (!c_.tcp_greeting().empty()) (void)c_.tcp().write(c_.tcp_greeting());
    if (!already_read.empty()) (void)c_.tcp().write(already_read);
  }
  void on_data(const char* data, size_t length) override {
    (void)c_.tcp().write(std::string_view(data, length));
  }
  void on_eof() override { c_.tcp().close(); }  // flushes the echo, then FIN
  void on_error(const Error&) override { c_.finish(); }
  void on_closed() override { c_.finish(); }
  void on_write_high_water() override { c_.tcp().pause_reading(); }
  void on_write_drained() override { c_.tcp().resume_reading(); }

 private:
  Connection& c_;
};

std::string_view kind_name(EchoServer::PortKind kind) {
  switch (kind) {
    case EchoServer::PortKind::http: return "http";
    case EchoServer::PortKind::grpc: return "grpc";
    case EchoServer::PortKind::tcp: return "tcp";
  }
  return "";
}

}  // namespace

EchoServer::EchoServer(event::EventLoop& loop, const ServerOptions& options)
    : loop_(loop), service_(options.hostname, options.version), tcp_greeting_(options.tcp_greeting) {}

EchoServer::~EchoServer() {
  connections_.clear();
  listeners_.clear();
}

Result<std::unique_ptr<EchoServer>> EchoServer::start(event::EventLoop& loop, const ServerOptions& options) {
  std::unique_ptr<EchoServer> server(new EchoServer(loop, options));
  net::ListenerOptions lo;
  lo.reuse_port = false;  // a second server on the same port is a mistake to report
  lo.ipv6_only = false;   // --bind :: also takes IPv4
  lo.connection.idle_timeout = kIdleTimeout;
  auto open = [&](PortKind kind, const std::vector<uint16_t>& ports) -> Status {
    for (uint16_t port : ports) {
      auto address = net::Address::from_ip(options.bind, port);
      if (!address.ok()) return make_error(std::string(kind_name(kind)) + " listener: " + address.error().message);
      EchoServer* self = server.get();
      auto listener = net::Listener::listen(
          loop, *address,
          [self, kind](std::unique_ptr<net::TcpConnection> tcp) { self->accept(std::move(tcp), kind); },
          lo);
      if (!listener.ok()) {
        return make_error(std::string(kind_name(kind)) + " listener: " + listener.error().message,
                          listener.error().code);
      }
      server->listeners_.emplace_back(kind, std::move(listener).value());
    }
    return ok_status();
  };
  if (Status s = open(PortKind::http, options.http_ports); !s.ok()) return std::move(s).error();
  if (Status s = open(PortKind::grpc, options.grpc_ports); !s.ok()) return std::move(s).error();
  if (Status s = open(PortKind::tcp, options.tcp_ports); !s.ok()) return std::move(s).error();
  return server;
}

std::vector<net::Address> EchoServer::addresses(PortKind kind) const {
  std::vector<net::Address> out;
  for (const auto& [k, listener] : listeners_) {
    if (k == kind) out.push_back(listener->local_address());
  }
  return out;
}

uint64_t EchoServer::accepted_connections(PortKind kind) const {
  uint64_t n = 0;
  for (const auto& [k, listener] : listeners_) {
    if (k == kind) n += listener->accepted();
  }
  return n;
}

std::string EchoServer::listening_line() const {
  std::string line = "listening";
  for (PortKind kind : {PortKind::http, PortKind::grpc, PortKind::tcp}) {
    line.append(" ").append(kind_name(kind)).append("=");
    bool first = true;
    for (const net::Address& a : addresses(kind)) {
      if (!first) line += ",";
      first = false;
      line += a.to_string();
    }
  }
  return line;
}

void EchoServer::accept(std::unique_ptr<net::TcpConnection> tcp, PortKind kind) {
  auto local = tcp->local_address();
  uint16_t port = local.ok() ? local->port() : 0;
  auto owned = std::make_unique<Connection>(*this, std::move(tcp), port);
  Connection* c = owned.get();
  connections_.emplace(c, std::move(owned));
  switch (kind) {
    case PortKind::http:
      c->install(std::make_unique<SniffProtocol>(*c), {});
      break;
    case PortKind::grpc:
      c->install(std::make_unique<H2Protocol>(*c, true), {});
      break;
    case PortKind::tcp:
      c->install(std::make_unique<TcpEchoProtocol>(*c), {});
      break;
  }
}

void EchoServer::remove(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  std::unique_ptr<Connection> doomed = std::move(it->second);
  connections_.erase(it);
  loop_.delete_later(std::move(doomed));
}

}  // namespace trellis::support::echo
