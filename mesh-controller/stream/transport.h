// The byte pipe under one connection of the route-table service. Today it is
// plain TCP carrying HTTP/2 with prior knowledge (h2c); the mTLS transport
// slots in behind the same interface and reports the peer's SPIFFE ID, which
// is all the stream server needs to pick the namespace (request.h).
//
// Threading: the loop thread. The owner may destroy a Transport at any time,
// also from inside one of its handler's callbacks; nothing is called after.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/net/tcp_connection.h"

namespace trellis::controller::stream {

class Transport {
 public:
  class Handler {
   public:
    // Bytes from the peer, valid only during the call.
    virtual void on_transport_data(const char* data, size_t length) = 0;
    // Queued output fell to the low-water mark after having exceeded the
    // high-water mark.
    virtual void on_transport_drained() = 0;
    // The connection is over: the peer closed it (OK), it failed, or a
    // close() finished. The last call.
    virtual void on_transport_closed(const Status& why) = 0;

   protected:
    ~Handler() = default;
  };

  virtual ~Transport() = default;
  // Starts reading into `handler`, which must outlive the transport.
  virtual Status start(Handler& handler) = 0;
  virtual Status write(std::string_view bytes) = 0;
  // Output accepted by write() and not yet handed to the kernel (or the TLS layer).
  virtual size_t queued_bytes() const = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Flushes queued output, then closes; on_transport_closed follows.
  virtual void close() = 0;
  // The SPIFFE ID the peer proved (mTLS); nullopt when the transport proves none.
  virtual std::optional<std::string> peer_identity() const = 0;
  // "10.0.0.1:43210", for logs.
  virtual std::string peer_address() const = 0;
};

// h2c over a connection a Listener accepted (not yet started).
std::unique_ptr<Transport> tcp_transport(std::unique_ptr<net::TcpConnection> connection);

}  // namespace trellis::controller::stream
