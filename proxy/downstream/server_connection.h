// ServerConnection: the client-facing side of the HTTP engine. An
// implementation (HTTP/1 or HTTP/2) owns one accepted TcpConnection, turns
// its bytes into DownstreamStreams (proxy/http/stream.h) and creates one
// exchange per request through an ExchangeFactory.
//
// Contract shared by both implementations:
// - The connection owns each exchange it creates and destroys it on a later
//   loop turn (never inside one of the exchange's own calls) once the
//   response has ended, or the stream was reset by either side. After
//   on_downstream_reset() the stream's methods are no-ops; so are they after
//   the exchange ended the response or called reset().
// - Once the exchange has ended the response, it gets no more request
//   events even if the request had not ended: the rest of the request body
//   is discarded by the connection (HTTP/1: read and dropped up to a limit,
//   else the connection is closed; HTTP/2: RST_STREAM NO_ERROR once the
//   response is out, RFC 9113 §8.1).
// - Back-pressure: on_response_congested() may be called from inside the
//   send_response_* call that crossed the high-water mark, and
//   on_response_writable() once the bytes have drained.
// - Loop thread only. The owner may destroy a connection at any moment
//   except from inside a call into the factory or an exchange; open
//   exchanges then see on_downstream_reset() and are destroyed with it.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/http/stream.h"

namespace trellis::proxy::downstream {

class ServerConnection {
 public:
  using ClosedCallback = std::function<void(ServerConnection& connection)>;

  virtual ~ServerConnection() = default;
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;

  // Takes over the socket (fresh, or started by protocol detection) and
  // handles `replay`, the bytes detection already read, as if just
  // received. `peer_eof`: the client half-closed during detection. Once.
  virtual void start(std::string replay, bool peer_eof) = 0;
  // Finish what is in flight, then close: HTTP/1 answers the request in
  // progress with "Connection: close" (or closes at once when idle); HTTP/2
  // sends a graceful GOAWAY and closes when its streams are done.
  virtual void drain() = 0;
  // Requests in progress: the current HTTP/1 request, or open HTTP/2 streams.
  virtual size_t active_requests() const = 0;

  bool closed() const { return closed_; }
  // Called once, when the socket is gone, from inside one of the
  // connection's callbacks: the owner deletes the connection with
  // EventLoop::delete_later.
  void set_closed_callback(ClosedCallback callback) { on_closed_ = std::move(callback); }

 protected:
  ServerConnection() = default;
  // Marks the connection closed and tells the owner; the caller's last action.
  void report_closed() {
    if (closed_) return;
    closed_ = true;
    if (on_closed_) {
      ClosedCallback callback = std::move(on_closed_);
      callback(*this);
    }
  }

 private:
  ClosedCallback on_closed_;
  bool closed_ = false;
};

// The exchange's view of one request on a connection: forwards every call to
// the connection while attached; after detach() (the exchange is done with
// it, or the connection is going away) every call is a no-op. `Stream` is the
// connection's own stream type (CRTP), `Connection` implements send_head,
// send_data, send_trailers, reset_from_exchange, pause_body and resume_body
// taking a Stream&.
template <typename Connection, typename Stream>
class AttachedStream : public http::DownstreamStream {
 public:
  AttachedStream(Connection& connection, http::DownstreamInfo info)
      : connection_(&connection), info_(std::move(info)) {}
  // The exchange goes first, while the stream is whole: it may still call
  // the (by then no-op) methods from its destructor.
  ~AttachedStream() override { exchange.reset(); }

  const http::DownstreamInfo& info() const override { return info_; }
  void send_response_head(trellis::http::ResponseHead&& head, bool end_stream) override {
    if (connection_ != nullptr) connection_->send_head(self(), std::move(head), end_stream);
  }
  void send_response_data(std::string_view data, bool end_stream) override {
    if (connection_ != nullptr) connection_->send_data(self(), data, end_stream);
  }
  void send_response_trailers(trellis::http::HeaderMap&& trailers) override {
    if (connection_ != nullptr) connection_->send_trailers(self(), std::move(trailers));
  }
  void reset() override {
    if (connection_ != nullptr) connection_->reset_from_exchange(self());
  }
  void pause_request_body() override {
    if (connection_ != nullptr) connection_->pause_body(self());
  }
  void resume_request_body() override {
    if (connection_ != nullptr) connection_->resume_body(self());
  }

  void detach() { connection_ = nullptr; }
  bool attached() const { return connection_ != nullptr; }

  std::unique_ptr<http::DownstreamCallbacks> exchange;

 private:
  Stream& self() { return static_cast<Stream&>(*this); }

  Connection* connection_;
  http::DownstreamInfo info_;
};

}  // namespace trellis::proxy::downstream
