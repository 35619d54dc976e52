// Test helpers for the pool: real HTTP/1 and h2c servers on 127.0.0.1 with a
// kernel-chosen port (common/net + the codecs), and an UpstreamCallbacks
// double that records what the exchange would see.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/http/message.h"
#include "common/http1/decoder.h"
#include "common/http2/session.h"
#include "common/log/log.h"
#include "common/net/listener.h"
#include "common/net/tcp_connection.h"
#include "proxy/http/stream.h"
#include "proxy/pool/pool.h"
#include "tests/unit/common/event/loop_test_util.h"

namespace trellis::proxy::pool::testing {

namespace msg = trellis::http;
using event::testing::make_loop;
using event::testing::run_for;
using event::testing::run_until;
using http::UpstreamFailure;

net::Address loopback(uint16_t port = 0);

// --- HTTP/1 backend ---------------------------------------------------------

class Http1Backend {
 public:
  struct Request {
    msg::RequestHead head;
    http1::MessageInfo info;
    std::string body;
    msg::HeaderMap trailers;
    size_t connection = 0;  // index into connections
  };

  class Connection : private net::TcpConnection::Handler {
   public:
    Connection(Http1Backend& backend, size_t index, std::unique_ptr<net::TcpConnection> tcp);
    void write(std::string_view bytes);
    void close();  // graceful FIN
    void abort();  // RST
    void pause_reading() { tcp_->pause_reading(); }
    void resume_reading() { tcp_->resume_reading(); }
    bool ended() const { return ended_; }  // EOF, error or closed
    size_t queued_bytes() const { return tcp_ ? tcp_->queued_bytes() : 0; }
    uint64_t bytes_read() const { return tcp_ ? tcp_->bytes_read() : 0; }
    size_t index() const { return index_; }
    std::string decode_error;  // what the request decoder rejected, if anything

   private:
    // The decoder's events (its on_error would clash with the socket's).
    struct Decoding : http1::RequestHandler {
      Connection* self = nullptr;
      void on_head(msg::RequestHead&& head, const http1::MessageInfo& info) override;
      void on_body(const char* data, size_t len) override;
      void on_trailers(msg::HeaderMap&& trailers) override;
      void on_message_complete() override;
      void on_error(const Error& error) override;
    };

    void on_data(const char* data, size_t length) override;
    void on_eof() override;
    void on_error(const Error& error) override;
    void on_closed() override;

    Http1Backend& backend_;
    size_t index_;
    std::unique_ptr<net::TcpConnection> tcp_;
    Decoding decoding_;
    http1::RequestDecoder decoder_;
    Request current_;
    bool ended_ = false;
  };

  explicit Http1Backend(event::EventLoop& loop);
  net::Address address() const { return listener_->local_address(); }
  size_t accepted() const { return connections.size(); }
  size_t ended() const;

  // Called when a request has arrived whole; the default answers
  // "200 OK" with body "hello" (keep-alive).
  std::function<void(Connection&, const Request&)> respond;
  // Called when a request head arrives (before its body).
  std::function<void(Connection&, const Request&)> on_head;
  // New connections start with reading paused.
  bool paused_at_accept = false;

  std::vector<std::unique_ptr<Connection>> connections;
  std::vector<Request> requests;

  static std::string response(int status, std::string_view body,
                              std::string_view extra_headers = "");

 private:
  std::unique_ptr<net::Listener> listener_;
};

// --- h2c backend ------------------------------------------------------------

// Counts the frames a client sends, by type, from the raw bytes: the Session
// does not report every frame (an RST_STREAM for a stream it has already
// closed is dropped silently).
class FrameCounter {
 public:
  static constexpr uint8_t kRstStream = 0x3;
  void feed(const char* data, size_t length);
  size_t count(uint8_t type) const { return counts_[type]; }

 private:
  size_t preface_left_ = 24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
  uint8_t header_[9] = {};
  size_t header_length_ = 0;
  size_t payload_left_ = 0;
  size_t counts_[256] = {};
};

class H2Backend {
 public:
  struct Stream {
    int32_t id = 0;
    size_t connection = 0;
    msg::RequestHead head;
    std::string body;
    std::optional<msg::HeaderMap> trailers;
    bool request_ended = false;
    std::optional<uint32_t> closed;  // error code
  };

  class Connection : private net::TcpConnection::Handler, private http2::SessionHandler {
   public:
    Connection(H2Backend& backend, size_t index, std::unique_ptr<net::TcpConnection> tcp);
    // Answers: head, body (may be empty), optional trailers.
    void respond(int32_t id, int status, std::string_view body,
                 const msg::HeaderMap* trailers = nullptr, const msg::HeaderMap* headers = nullptr);
    void reset(int32_t id, uint32_t code);
    void shutdown_gracefully();
    void consume(int32_t id, size_t n);
    void flush();
    void close();
    http2::Session& session() { return *session_; }
    bool ended() const { return ended_; }
    size_t open() const { return open_; }
    std::vector<std::pair<int32_t, uint32_t>> goaways;  // GOAWAYs received from the client
    FrameCounter frames;                                 // every frame received from the client

   private:
    void on_data(const char* data, size_t length) override;
    void on_eof() override;
    void on_error(const Error& error) override;
    void on_closed() override;
    void on_request_head(int32_t id, msg::RequestHead&& head, bool end_stream) override;
    void on_data(int32_t id, const char* data, size_t len) override;
    void on_trailers(int32_t id, msg::HeaderMap&& trailers) override;
    void on_end_stream(int32_t id) override;
    void on_stream_close(int32_t id, uint32_t error_code) override;
    void on_goaway(int32_t last_stream_id, uint32_t error_code) override;
    Stream& stream(int32_t id);
    void request_complete(int32_t id);

    H2Backend& backend_;
    size_t index_;
    std::unique_ptr<net::TcpConnection> tcp_;
    std::unique_ptr<http2::Session> session_;
    bool ended_ = false;
    size_t open_ = 0;
  };

  explicit H2Backend(event::EventLoop& loop, http2::SessionConfig config = server_config());
  static http2::SessionConfig server_config();

  net::Address address() const { return listener_->local_address(); }
  size_t accepted() const { return connections.size(); }
  // Frames of `type` received from clients, on every connection.
  size_t frames_received(uint8_t type) const;
  // Streams seen, in arrival order (connection, id) → Stream.
  Stream& at(size_t i) { return *streams[i]; }
  size_t peak_open = 0;
  size_t open = 0;
  bool auto_consume = true;

  // Called when a request has arrived whole; the default answers 200 "hello".
  std::function<void(Connection&, Stream&)> respond;
  // Called when a request head arrives.
  std::function<void(Connection&, Stream&)> on_head;

  std::vector<std::unique_ptr<Connection>> connections;
  std::vector<std::unique_ptr<Stream>> streams;

 private:
  http2::SessionConfig config_;
  std::unique_ptr<net::Listener> listener_;
  std::map<std::pair<size_t, int32_t>, Stream*> index_;
};

// Collects log lines for the life of the object (and keeps them off stderr).
struct LogCapture {
  LogCapture();
  ~LogCapture();
  // How many lines contain `text`.
  size_t count(std::string_view text) const;
  std::vector<std::string> lines;
};

// --- the exchange's side ----------------------------------------------------

struct Recorder : http::UpstreamCallbacks {
  std::optional<msg::ResponseHead> head;
  int heads = 0;
  bool head_end = false;
  std::string body;
  size_t data_calls = 0;
  bool ended = false;
  std::optional<msg::HeaderMap> trailers;
  std::optional<UpstreamFailure> failure;
  Error failure_detail;
  int congested = 0;
  int writable = 0;
  int after_done = 0;        // callbacks after the end or a failure: must stay 0
  bool inside_call = false;  // set by a test around its calls into the stream
  int failures_inside_call = 0;
  std::function<void()> after_head, after_data, after_trailers, after_failure, after_congested,
      after_writable;

  bool done() const { return ended || failure.has_value(); }

  void on_response_head(msg::ResponseHead&& h, bool end_stream) override;
  void on_response_data(std::string_view data, bool end_stream) override;
  void on_response_trailers(msg::HeaderMap&& t) override;
  void on_upstream_failure(UpstreamFailure f, const Error& detail) override;
  void on_request_congested() override;
  void on_request_writable() override;
};

msg::RequestHead get(std::string_view target, std::string_view authority = "backend.test");

http::UpstreamTarget target(const net::Address& address,
                            http::UpstreamProtocol protocol = http::UpstreamProtocol::http1);

std::unique_ptr<Pool> make_pool(event::EventLoop& loop, const PoolConfig& config = {});

// Deterministic content so that a receiver can verify every byte.
std::string pattern(size_t length);

}  // namespace trellis::proxy::pool::testing
