// Protocol detection on a freshly accepted connection: read until the first
// bytes decide what the client speaks, so that the sidecar can route HTTP and
// relay everything else untouched.
//
//   HTTP/2   the client preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (prior knowledge, h2c)
//   HTTP/1   a known method token followed by a space ("GET ", "M-SEARCH ", ...)
//   TLS      a handshake record: 0x16 0x03 (reported for the inbound side's mTLS)
//   opaque   anything else; also when nothing decides within the timeout
//            (server-speaks-first protocols such as MySQL or SMTP send
//            nothing), within the byte cap, or before the client's EOF.
//
// Matching is incremental: bytes that are still a prefix of some candidate
// keep waiting (so "PRI * HTTP/2.0" fed one byte at a time is h2, and "P" may
// still be POST, PUT, PATCH or the preface); the first byte that rules out
// every candidate decides opaque at once.
//
// Every byte read is kept and handed back for replay to whatever handles the
// connection next (Splice, an HTTP server connection).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/event/timer.h"
#include "common/net/tcp_connection.h"

namespace trellis::proxy::detect {

enum class Protocol { http1, http2, tls, opaque };

// "http1", "http2", "tls", "opaque".
std::string_view protocol_name(Protocol protocol);

// The decision for the bytes a client sent first; nullopt while they are
// still consistent with some protocol and a later byte may decide. Empty
// input is undecided. Pure: usable without a socket.
std::optional<Protocol> classify(std::string_view first_bytes);

// The protocol a Service port's appProtocol promises, so that the caller can
// skip detection (and its timeout) when it is known; nullopt means "detect".
// Case-insensitive:
//   http, kubernetes.io/ws                          → http1
//   kubernetes.io/h2c, h2c, http2, grpc             → http2
//   https, tls, kubernetes.io/wss                   → tls
//   tcp, mysql, mongo, redis                        → opaque (server-speaks-first safe)
//   anything else (empty, udp, grpc-web, vendor/x)  → nullopt
std::optional<Protocol> protocol_for_app_protocol(std::string_view app_protocol);

struct DetectOptions {
  // Nothing decided after this long: opaque. Short, because a
  // server-speaks-first client waits for the server all this time.
  std::chrono::milliseconds timeout{500};
  // Undecided after this many bytes: opaque. Every rule decides within 24
  // bytes (the preface); the cap bounds what detection buffers.
  size_t max_bytes = 64;
};

// Errors: "detect: timeout must be positive, got 0 ms", "detect: max_bytes must be positive".
Status validate(const DetectOptions& options);

// How the decision was reached.
enum class Decision {
  matched,   // the bytes decided (opaque included: they matched nothing)
  timed_out, // the timeout passed undecided
  byte_cap,  // max_bytes arrived undecided
  peer_eof,  // the client half-closed undecided
};

std::string_view decision_name(Decision decision);

struct Detection {
  Protocol protocol = Protocol::opaque;
  Decision decision = Decision::matched;
  // Reading is paused and the connection's handler is an inert placeholder
  // that ignores events: install yours with start() (which then reports
  // "already started" with code EALREADY: use set_handler()) and resume
  // reading.
  std::unique_ptr<net::TcpConnection> connection;
  std::string bytes;  // everything read so far: replay it first
  bool eof = false;   // the client half-closed (no more bytes will arrive)
};

class Detector {
 public:
  // Called once, unless the detector is destroyed first; never from inside
  // start(). On a read error (reset) the connection is dropped and the error
  // says why: "protocol detection: read: connection reset by peer".
  using Callback = std::function<void(Result<Detection> result)>;

  // Takes the connection (fresh from the Listener, not started) and starts
  // reading it. Errors (the connection is then closed): option errors,
  // "detect: no callback", "detect: start: connection is closed".
  static Result<std::unique_ptr<Detector>> start(std::unique_ptr<net::TcpConnection> connection,
                                                 const DetectOptions& options, Callback done);
  ~Detector() = default;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

 private:
  class Reader final : public net::TcpConnection::Handler {
   public:
    explicit Reader(Detector& d) : detector_(d) {}
    void on_data(const char* data, size_t length) override { detector_.on_data(data, length); }
    void on_eof() override { detector_.decide(Protocol::opaque, Decision::peer_eof); }
    void on_error(const Error& error) override { detector_.on_error(error); }

   private:
    Detector& detector_;
  };

  Detector(event::EventLoop& loop, const DetectOptions& options, Callback done);
  void on_data(const char* data, size_t length);
  void on_error(const Error& error);
  void on_timeout();
  void decide(Protocol protocol, Decision decision);
  void report(Result<Detection> result);

  DetectOptions options_;
  Callback done_;
  Reader reader_;
  std::unique_ptr<net::TcpConnection> connection_;
  std::string bytes_;
  event::Timer timer_;
};

}  // namespace trellis::proxy::detect
