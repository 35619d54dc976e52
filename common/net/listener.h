// Listener: a listening TCP socket on one loop. The proxy opens one per
// worker per port with SO_REUSEPORT, so the kernel spreads connections over
// the workers and no connection ever changes thread. (libuv 1.44 has no
// UV_TCP_REUSEPORT: the socket is created and bound by hand, then handed to
// libuv with uv_tcp_open.)
//
// Each accepted socket is handed to the owner as a TcpConnection that is not
// yet reading: the owner calls start(handler) (or drops it to close it).
// Loop thread only. Destroying the Listener (also inside its accept
// callback) stops accepting; connections already handed out are unaffected.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/event/uv_handle.h"
#include "common/net/address.h"
#include "common/net/tcp_connection.h"

namespace trellis::net {

struct ListenerOptions {
  bool reuse_port = true;  // SO_REUSEPORT: several listeners (workers) share the port
  bool ipv6_only = true;   // an IPv6 listener does not also take IPv4 (IPV6_V6ONLY)
  int backlog = SOMAXCONN;
  ConnectionOptions connection;  // for every accepted connection
};

class Listener {
 public:
  using AcceptCallback = std::function<void(std::unique_ptr<TcpConnection> connection)>;

  // Errors carry the errno: "bind 127.0.0.1:80: address already in use",
  // "bind 10.1.2.3:80: address not available", "listen 127.0.0.1:80:
  // backlog must not be negative, got -1", "listen 127.0.0.1:80:
  // low_water (10) must not exceed high_water (5)", ...
  static Result<std::unique_ptr<Listener>> listen(event::EventLoop& loop, const Address& address,
                                                  AcceptCallback on_accept,
                                                  const ListenerOptions& options = {});
  ~Listener() = default;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound address: with port 0 in the request, the port the kernel chose.
  const Address& local_address() const { return local_address_; }
  // Stops accepting and closes the listening socket (for drain); connections
  // queued in its backlog but not yet accepted are reset by the kernel.
  void stop() { socket_.reset(); }
  bool listening() const { return socket_ != nullptr; }
  uint64_t accepted() const { return accepted_; }

 private:
  Listener(event::EventLoop& loop, AcceptCallback on_accept, const ListenerOptions& options)
      : loop_(loop), on_accept_(std::move(on_accept)), options_(options) {}
  static void on_connection(uv_stream_t* server, int status);

  event::EventLoop& loop_;
  AcceptCallback on_accept_;
  ListenerOptions options_;
  Address local_address_;
  uint64_t accepted_ = 0;
  event::UvHandle<uv_tcp_t> socket_;
  event::DestructionFlag destruction_;
};

}  // namespace trellis::net
