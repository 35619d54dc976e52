// One call of trellis-controller's route-table stream over one connection:
// the client side of the protocol, shared by the sidecar (ControllerStream)
// and bench/controller's simulated sidecars (TableStream), which add what
// lies around one call (name resolution, reconnecting, line splitting).
//
// It dials the controller, opens an HTTP/2 session with prior knowledge (h2c
// until mTLS lands) with 8 MiB receive windows, sends
// GET /v1/route-table?namespace=<ns> (accept: application/x-ndjson) and
// reports the 200 head (on_streaming), each piece of the 200 body as it
// arrives (on_body), and exactly once why the call ended (on_over). Reasons:
// the connect failure ("connect to 127.0.0.1:1: connection refused"),
// "the controller closed the connection", "the controller ended the stream"
// (a 200 stream ended), "request refused: 403" (a head that ends the
// stream), "request refused: 403: <body>" (its first 512 bytes, each byte
// outside printable ASCII as a space, trailing spaces dropped),
// "stream reset (<HTTP/2 error code name>)",
// "nothing received for 90000 ms" (idle_timeout), or an HTTP/2 or socket
// error's message.
//
// Ownership: the owner holds the unique_ptr and is the Handler (it must
// outlive the call). on_over is the last callback and comes from inside the
// call's own callbacks, so the owner hands the call to
// EventLoop::delete_later there; outside callbacks it may destroy the call at
// any time, which closes the connection and reports nothing.
//
// Threading: the loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/net/address.h"

namespace trellis::proxy::app {

struct RouteTableCallOptions {
  std::string ns;          // the namespace whose table is asked for
  std::string authority;   // the controller as the caller names it
  std::string user_agent;  // who is asking
  std::chrono::milliseconds connect_timeout{2000};
  // Nothing received or sent for this long ends the call; zero: never.
  std::chrono::milliseconds idle_timeout{0};
};

class RouteTableCall {
 public:
  class Handler {
   public:
    // The 200 head arrived: the body that follows is the stream.
    virtual void on_streaming() = 0;
    // Bytes of the 200 body, valid only during the call.
    virtual void on_body(const char* data, size_t length) = 0;
    // The call is over (see above); nothing follows.
    virtual void on_over(const std::string& why) = 0;

   protected:
    ~Handler() = default;
  };

  // Dials `controller` now. Fails at once only for bad arguments (those of
  // net::TcpConnection::connect); every other failure goes to on_over, never
  // from inside start().
  static Result<std::unique_ptr<RouteTableCall>> start(event::EventLoop& loop,
                                                       const net::Address& controller,
                                                       RouteTableCallOptions options,
                                                       Handler& handler);
  ~RouteTableCall();
  RouteTableCall(const RouteTableCall&) = delete;
  RouteTableCall& operator=(const RouteTableCall&) = delete;

 private:
  class Connection;  // the TCP connection and its HTTP/2 session

  explicit RouteTableCall(std::unique_ptr<Connection> connection);

  std::unique_ptr<Connection> connection_;
};

}  // namespace trellis::proxy::app
