// The echo server: HTTP/1.1 and h2c (prior knowledge, detected from the
// connection preface) on each HTTP port, gRPC over h2c on each gRPC port, a
// byte echo (optionally greeting first) on each TCP port. What it answers is
// in service.h.
//
// Threading: everything runs on the one loop given to start(), and the
// server must be used and destroyed on that loop's thread, before the loop.
// Destroying it closes its listeners and resets every open connection.
// Connections are independent: a malformed request is answered (HTTP/1: the
// decoder's status, 400 for bad syntax, then close; HTTP/2: a stream reset or
// GOAWAY) and never disturbs another connection.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/net/address.h"
#include "common/net/listener.h"
#include "common/net/tcp_connection.h"
#include "tests/support/echo/options.h"
#include "tests/support/echo/service.h"

namespace trellis::support::echo {

class EchoServer {
 public:
  enum class PortKind { http, grpc, tcp };

  // Opens every port of `options` (port 0: the kernel picks one). Errors name
  // the listener: "http listener: bind 0.0.0.0:8080: address already in use".
  static Result<std::unique_ptr<EchoServer>> start(event::EventLoop& loop, const ServerOptions& options);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  // Bound addresses, in the order the ports were given.
  std::vector<net::Address> addresses(PortKind kind) const;
  // "listening http=0.0.0.0:8080,0.0.0.0:8081 grpc=0.0.0.0:7070 tcp=0.0.0.0:9090"
  std::string listening_line() const;
  // Connections accepted so far on every port of `kind`.
  uint64_t accepted_connections(PortKind kind) const;

  class Connection;  // one accepted connection (server.cc)

 private:
  EchoServer(event::EventLoop& loop, const ServerOptions& options);
  void accept(std::unique_ptr<net::TcpConnection> tcp, PortKind kind);
  // Drops `connection` on the next loop turn (it may be on the stack).
  void remove(Connection* connection);

  event::EventLoop& loop_;
  EchoService service_;
  std::string tcp_greeting_;
  std::vector<std::pair<PortKind, std::unique_ptr<net::Listener>>> listeners_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
};

}  // namespace trellis::support::echo
