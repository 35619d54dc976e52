// TcpConnection: one TCP connection on one loop thread (a connection never
// leaves its worker). Everything here is single-threaded: call it only on
// its loop's thread.
//
// Lifetime rule (the one rule): the owner holds a unique_ptr<TcpConnection>
// and may destroy it at any moment on the loop thread, including from inside
// one of this connection's own Handler callbacks. Destroying it closes the
// socket at once (queued bytes the kernel does not take right away are
// dropped) and no callback fires after the destructor has begun. If the
// *owner* (say, a proxy session holding two connections) must die inside a
// callback, it deletes itself with EventLoop::delete_later, as every object
// that dies inside its own callback.
// The Handler is a non-owning back-reference: it must outlive the connection
// or be its owner.
//
// Reading: bytes arrive in Handler::on_data from a per-loop buffer (no
// allocation per read) and are valid only during the call.
// Writing: write() copies into the connection's queue, and the queue goes to
// the kernel once per loop turn (a TurnTask: after the turn's I/O callbacks,
// or before the loop waits again for writes made elsewhere). So the pieces a
// turn produces (a response head and its body, a batch of HTTP/2 frames)
// leave in one write() and, with TCP_NODELAY, one segment. A write that
// brings the queue to kCorkLimit goes to the kernel at once (one writev with
// what is queued), so bulk transfers are neither held back nor copied. What
// the kernel does not take waits in the queue; at most one libuv write is in
// flight, and the two queue buffers keep up to 64 KiB of capacity between
// writes, so steady traffic allocates nothing. Bytes leave in the order
// written. Back-pressure:
// when queued bytes rise above `high_water` the handler gets
// on_write_high_water() (from inside the write() that crossed it); when they
// fall to `low_water` or below, on_write_drained(). The owner of a relay
// pauses reading the other side in between.
//
// Ending: shutdown_write() and close() hand the queue to the kernel at once;
// abort() and destroying the connection try to as well (what the kernel
// takes at once is sent, as if it had been written through).
// shutdown_write() half-closes after queued writes flush. close() is
// graceful: stop delivering data, flush, send FIN, wait for the peer's FIN
// (reading and discarding meanwhile, so unread input does not turn our FIN
// into a reset), then on_closed(); bounded by `close_timeout` without write
// progress, after which the socket is reset. abort() resets (RST, SO_LINGER
// 0) at once and reports nothing.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/event/turn_task.h"
#include "common/event/uv_handle.h"
#include "common/net/address.h"

namespace trellis::net {

struct TcpSocket;  // the libuv handle and its requests; see tcp_socket.h

struct ConnectionOptions {
  size_t high_water = 1024 * 1024;
  size_t low_water = 256 * 1024;
  // No read or write progress for this long: Handler::on_idle_timeout().
  // Zero disables it.
  std::chrono::milliseconds idle_timeout{0};
  // A graceful close() that makes no write progress for this long resets
  // the connection instead.
  std::chrono::milliseconds close_timeout{5000};
  bool no_delay = true;  // TCP_NODELAY
};

// Errors: "high_water must be positive", "low_water (10) must not exceed
// high_water (5)", "idle_timeout must not be negative",
// "close_timeout must be positive".
Status validate(const ConnectionOptions& options);

class TcpConnection {
 public:
  // Queued bytes at which a write goes to the kernel without waiting for the
  // end of the loop turn.
  static constexpr size_t kCorkLimit = 16 * 1024;

  class Handler {
   public:
    virtual ~Handler() = default;
    // Bytes read; valid only during the call.
    virtual void on_data(const char* data, size_t length) = 0;
    // The peer half-closed (FIN): no more on_data. Writing may go on; call
    // shutdown_write() or close() when done.
    virtual void on_eof() = 0;
    // The connection failed (reset, write error, ...). The socket is already
    // closed; this is the last callback. Error::code is the errno.
    virtual void on_error(const Error& error) = 0;
    virtual void on_write_high_water() {}
    virtual void on_write_drained() {}
    // No read or write progress for idle_timeout. When it returns, the
    // connection is closed gracefully unless the handler closed, aborted or
    // destroyed it (write a goodbye here if the protocol has one).
    virtual void on_idle_timeout() {}
    // A close() finished (cleanly or not); the last callback.
    virtual void on_closed() {}
  };

  enum class State { connecting, open, closing, closed };

  // Called once with the outcome unless the connection is destroyed first;
  // never from inside connect(). Failures: "connect to 10.0.0.1:80:
  // connection refused" (code ECONNREFUSED), "connect to 10.0.0.1:80: timed
  // out after 100 ms" (ETIMEDOUT), ... On success call start().
  using ConnectCallback = std::function<void(const Status& status)>;

  // Fails at once only for bad arguments: invalid options, a non-positive
  // timeout ("connect to X: timeout must be positive, got 0 ms"), an empty
  // callback; every network failure goes to `done`.
  static Result<std::unique_ptr<TcpConnection>> connect(event::EventLoop& loop, const Address& to,
                                                        std::chrono::milliseconds timeout,
                                                        ConnectCallback done,
                                                        const ConnectionOptions& options = {});
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  // Sets the handler and starts reading (unless paused) and the idle timer.
  // Callbacks go to this handler; before start() a failure shows only as
  // state() == closed.
  // Errors: "start: already started", "start: connection not established",
  // "start: connection is closed".
  Status start(Handler& handler);
  // Replaces the handler (e.g. after protocol detection).
  void set_handler(Handler& handler) { handler_ = &handler; }

  // Queues bytes (empty writes are no-ops); they go to the kernel at the end
  // of this loop turn, or at once when the queue reaches kCorkLimit. Errors
  // (nothing queued):
  // "write: connection not established", "write: connection is closing",
  // "write: connection is closed", "write: write side is shut down". May call
  // on_write_high_water() before returning.
  Status write(std::string_view bytes);
  // FIN after queued bytes flush; idempotent.
  // Errors: "shutdown: connection not established", "shutdown: connection is closed".
  Status shutdown_write();
  void close();
  void abort();

  void pause_reading();
  void resume_reading();

  State state() const { return state_; }
  size_t queued_bytes() const;
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }  // handed to the kernel
  event::EventLoop& loop() const { return loop_; }

  Result<Address> local_address() const;
  Result<Address> peer_address() const;
  // Where the client meant to connect before an iptables REDIRECT
  // (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). On a socket that was not
  // redirected the kernel has no answer: "no original destination: the
  // connection was not redirected" (code ENOENT, or ENOPROTOOPT without
  // conntrack); callers then use local_address(). (When conntrack tracks an
  // un-NATed connection the kernel returns the local address itself.)
  Result<Address> original_destination() const;

 private:
  friend class Listener;
  using SocketHandle = event::UvHandle<TcpSocket>;

  TcpConnection(event::EventLoop& loop, SocketHandle socket, const ConnectionOptions& options,
                State state);
  // Wraps a socket the Listener accepted.
  static std::unique_ptr<TcpConnection> adopt(event::EventLoop& loop, SocketHandle socket,
                                              const ConnectionOptions& options);

  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  void on_timer();

  uv_stream_t* stream() const;
  event::Timer& timer();
  void touch() { last_progress_ = loop_.now(); }
  void start_reading();
  void stop_reading();
  int start_write();
  // Arms the end-of-turn flush.
  void schedule_flush();
  // The end of the loop turn: the queue goes to the kernel.
  void flush_turn();
  // Hands the queue, then `more`, to the kernel in one writev; libuv writes
  // what it does not take. Returns a libuv error code (the socket is then
  // unusable).
  int flush_now(std::string_view more = {});
  // Before the socket goes: a last try, without waiting, for corked bytes.
  void flush_corked();
  int maybe_shutdown();
  void after_write(int status);
  void check_close_done();
  void finish_close(bool reset);
  void close_socket(bool reset);
  void fail(const char* operation, int uv_code);
  void report_connect(const Status& status);
  int socket_error() const;  // SO_ERROR: a pending errno, or 0
  // Calls `f` (a handler call-out); false if this connection died meanwhile.
  template <typename F>
  bool notify(F&& f);

  event::EventLoop& loop_;
  SocketHandle socket_;
  ConnectionOptions options_;
  State state_;
  Handler* handler_ = nullptr;
  ConnectCallback connect_done_;
  Address connect_to_;
  std::chrono::milliseconds connect_timeout_{0};
  int connect_error_ = 0;  // a synchronous uv_tcp_connect failure, reported on the next turn

  bool started_ = false;
  bool read_paused_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool shutdown_requested_ = false;
  bool shutdown_sent_ = false;
  bool write_shut_ = false;
  bool write_in_flight_ = false;
  bool above_high_water_ = false;

  std::string in_flight_;  // owned by the one uv_write in progress
  std::string pending_;    // queued behind it, or waiting for the end of the turn
  std::unique_ptr<event::TurnTask> flush_task_;  // created on the first corked write
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  std::chrono::milliseconds last_progress_{0};
  // Connect timeout, then idle timeout, then close timeout; created on first use.
  std::unique_ptr<event::Timer> timer_;
  event::DestructionFlag destruction_;
};

}  // namespace trellis::net
