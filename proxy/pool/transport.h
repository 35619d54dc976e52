// The byte stream under an upstream connection. Plaintext TCP today; the
// mesh's mTLS wrapper implements the same interface later, so the HTTP/1 and
// HTTP/2 connection code never learns which one it runs on.
//
// Same rules as net::TcpConnection (one loop thread; the owner may destroy a
// transport at any moment, also inside one of its callbacks, and nothing is
// reported after that).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "proxy/http/stream.h"

namespace trellis::proxy::pool {

class Transport {
 public:
  class Handler {
   public:
    // Bytes read; valid only during the call.
    virtual void on_transport_data(const char* data, size_t length) = 0;
    // The peer finished sending (FIN, or TLS close_notify).
    virtual void on_transport_eof() = 0;
    // The transport failed and is closed; the last callback.
    virtual void on_transport_error(const Error& error) = 0;
    // Queued bytes rose above high_water / fell to low_water.
    virtual void on_transport_high_water() = 0;
    virtual void on_transport_drained() = 0;
    // A close() finished; the last callback.
    virtual void on_transport_closed() = 0;

   protected:
    ~Handler() = default;
  };

  // Called once with the outcome of the connection attempt unless the
  // transport is destroyed first; never from inside the factory.
  using ConnectCallback = std::function<void(const Status& status)>;

  virtual ~Transport() = default;

  // Once connected: sets the handler and starts reading.
  virtual Status start(Handler& handler) = 0;
  virtual void set_handler(Handler& handler) = 0;
  virtual Status write(std::string_view bytes) = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Graceful: flush, end the stream, wait for the peer's end, then
  // on_transport_closed (bounded by a close timeout).
  virtual void close() = 0;
  // Reset at once; reports nothing.
  virtual void abort() = 0;
  virtual size_t queued_bytes() const = 0;
};

struct TransportOptions {
  std::chrono::milliseconds connect_timeout{1000};
  size_t high_water = 1024 * 1024;
  size_t low_water = 256 * 1024;
};

// Starts a connection attempt to `target`. Fails at once only for bad
// arguments; every network failure goes to `done`.
using TransportFactory = std::function<Result<std::unique_ptr<Transport>>(
    event::EventLoop& loop, const http::UpstreamTarget& target, const TransportOptions& options,
    Transport::ConnectCallback done)>;

// Plain TCP to target.address (net::TcpConnection).
TransportFactory tcp_transports();

}  // namespace trellis::proxy::pool
