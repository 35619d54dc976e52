#include "common/net/tcp_connection.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <utility>

#include "common/event/uv_error.h"
#include "common/net/tcp_socket.h"

// From <linux/netfilter_ipv6/ip6_tables.h>, which does not build as C++.
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace trellis::net {
namespace {

// Queue buffers above this size are released once drained, so that a burst
// does not pin memory on a connection that then idles.
constexpr size_t kRetainedBufferCapacity = 64 * 1024;

void release_if_large(std::string& buffer) {
  if (buffer.capacity() > kRetainedBufferCapacity) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// What the kernel takes at once of `bufs`, or 0; errors show in the queued
// write that follows. send()/sendmsg() rather than libuv's write()/writev():
// the socket calls skip the VFS layer (file position, permission and
// fsnotify hooks), measurably cheaper per request (bench/README.md).
size_t send_now(uv_stream_t* stream, const uv_buf_t* bufs, unsigned int count) {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(stream), &fd) != 0) return 0;
  ssize_t n;
  if (count == 1) {
    n = ::send(fd, bufs[0].base, bufs[0].len, MSG_NOSIGNAL | MSG_DONTWAIT);
  } else {
    iovec iov[2];
    for (unsigned int i = 0; i < count; ++i) iov[i] = {bufs[i].base, bufs[i].len};
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  return n > 0 ? static_cast<size_t>(n) : 0;
}

}  // namespace

Status validate(const ConnectionOptions& o) {
  if (o.high_water == 0) return make_error("high_water must be positive", EINVAL);
  if (o.low_water > o.high_water) {
    return make_error("low_water (" + std::to_string(o.low_water) + ") must not exceed high_water (" +
                          std::to_string(o.high_water) + ")",
                      EINVAL);
  }
  if (o.idle_timeout.count() < 0) return make_error("idle_timeout must not be negative", EINVAL);
  if (o.close_timeout.count() <= 0) return make_error("close_timeout must be positive", EINVAL);
  return ok_status();
}

TcpConnection::TcpConnection(event::EventLoop& loop, SocketHandle socket,
                             const ConnectionOptions& options, State state)
    : loop_(loop), socket_(std::move(socket)), options_(options), state_(state) {
  socket_->tcp.data = this;
  last_progress_ = loop_.now();
}

TcpConnection::~TcpConnection() {
  flush_corked();
  // socket_ closes the handle, flush_task_ its own; destruction_ ends scopes.
}

void TcpConnection::flush_corked() {
  // Bytes written before the owner let go (or aborted) leave if the kernel
  // takes them now, as they would have had they been written through.
  if (!socket_ || write_in_flight_ || pending_.empty()) return;
  if (state_ != State::open && state_ != State::closing) return;
  uv_buf_t buf = uv_buf_init(pending_.data(), static_cast<unsigned int>(pending_.size()));
  (void)send_now(stream(), &buf, 1);
}

std::unique_ptr<TcpConnection> TcpConnection::adopt(event::EventLoop& loop, SocketHandle socket,
                                                    const ConnectionOptions& options) {
  // A failure to set TCP_NODELAY costs latency, not correctness: ignore it.
  if (options.no_delay) (void)uv_tcp_nodelay(&socket->tcp, 1);
  return std::unique_ptr<TcpConnection>(
      new TcpConnection(loop, std::move(socket), options, State::open));
}

Result<std::unique_ptr<TcpConnection>> TcpConnection::connect(event::EventLoop& loop,
                                                              const Address& to,
                                                              std::chrono::milliseconds timeout,
                                                              ConnectCallback done,
                                                              const ConnectionOptions& options) {
  std::string what = "connect to " + to.to_string();
  if (Status s = validate(options); !s.ok()) {
    return make_error(what + ": " + s.error().message, EINVAL);
  }
  if (timeout.count() <= 0) {
    return make_error(what + ": timeout must be positive, got " + ms_text(timeout), EINVAL);
  }
  if (!done) return make_error(what + ": no completion callback", EINVAL);

  auto socket = event::make_uv_handle<TcpSocket>();
  uv_tcp_init(loop.uv(), &socket->tcp);  // AF_UNSPEC: creates no socket yet, cannot fail
  if (options.no_delay) (void)uv_tcp_nodelay(&socket->tcp, 1);  // applied once the socket exists
  TcpSocket* raw = socket.get();
  std::unique_ptr<TcpConnection> conn(
      new TcpConnection(loop, std::move(socket), options, State::connecting));
  conn->connect_done_ = std::move(done);
  conn->connect_to_ = to;
  conn->connect_timeout_ = timeout;
  int r = uv_tcp_connect(&raw->connect, &raw->tcp, to.sockaddr_ptr(), &TcpConnection::on_connect);
  if (r != 0) {
    conn->connect_error_ = r;
    conn->timer().start(std::chrono::milliseconds::zero());
  } else {
    conn->timer().start(timeout);
  }
  return conn;
}

uv_stream_t* TcpConnection::stream() const {
  return reinterpret_cast<uv_stream_t*>(&socket_->tcp);
}

event::Timer& TcpConnection::timer() {
  if (!timer_) timer_ = std::make_unique<event::Timer>(loop_, [this] { on_timer(); });
  return *timer_;
}

template <typename F>
bool TcpConnection::notify(F&& f) {
  event::CallbackScope scope(destruction_);
  f();
  return !scope.destroyed();
}

void TcpConnection::report_connect(const Status& status) {
  // Moved out: the callback outlives this connection if it destroys it, and
  // nothing here touches `this` afterwards.
  ConnectCallback done = std::move(connect_done_);
  done(status);
}

void TcpConnection::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<TcpConnection*>(req->handle->data);
  if (self == nullptr) return;  // destroyed or timed out: the request was cancelled
  self->timer_->stop();
  if (status != 0) {
    self->close_socket(false);
    self->report_connect(event::uv_error("connect to " + self->connect_to_.to_string(), status));
    return;
  }
  self->state_ = State::open;
  self->touch();
  self->report_connect(ok_status());
}

Status TcpConnection::start(Handler& handler) {
  switch (state_) {
    case State::connecting:
      return make_error("start: connection not established", ENOTCONN);
    case State::closing:
    case State::closed:
      return make_error("start: connection is closed", ENOTCONN);
    case State::open:
      break;
  }
  if (started_) return make_error("start: already started", EALREADY);
  started_ = true;
  handler_ = &handler;
  touch();
  if (options_.idle_timeout.count() > 0) timer().start(options_.idle_timeout);
  if (!read_paused_) start_reading();
  return ok_status();
}

void TcpConnection::start_reading() {
  if (reading_ || peer_eof_ || !socket_) return;
  if (uv_read_start(stream(), &TcpConnection::on_alloc, &TcpConnection::on_read) == 0) {
    reading_ = true;
  }
}

void TcpConnection::stop_reading() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void TcpConnection::pause_reading() {
  read_paused_ = true;
  if (state_ == State::open) stop_reading();
}

void TcpConnection::resume_reading() {
  read_paused_ = false;
  if (state_ == State::open && started_) start_reading();
}

void TcpConnection::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  *buf = static_cast<TcpConnection*>(handle->data)->loop_.read_buffer();
}

void TcpConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpConnection*>(stream->data);
  if (self == nullptr || nread == 0) return;
  if (nread > 0) {
    self->bytes_read_ += static_cast<uint64_t>(nread);
    if (self->state_ != State::open) return;  // closing: read only to notice the peer's FIN
    self->touch();
    self->notify([&] { self->handler_->on_data(buf->base, static_cast<size_t>(nread)); });
    return;
  }
  if (nread == UV_EOF) {
    // libuv turns POLLHUP after a short read into EOF without reading the
    // socket's error: ask for it, so that a reset is not mistaken for a FIN.
    if (int pending = self->socket_error(); pending != 0) {
      self->fail("read", -pending);
      return;
    }
    self->peer_eof_ = true;
    self->reading_ = false;  // libuv stops reading at EOF
    if (self->state_ == State::closing) {
      self->check_close_done();
    } else {
      self->notify([&] { self->handler_->on_eof(); });
    }
    return;
  }
  self->fail("read", static_cast<int>(nread));
}

Status TcpConnection::write(std::string_view bytes) {
  switch (state_) {
    case State::connecting:
      return make_error("write: connection not established", ENOTCONN);
    case State::closing:
      return make_error("write: connection is closing", EPIPE);
    case State::closed:
      return make_error("write: connection is closed", EPIPE);
    case State::open:
      break;
  }
  if (shutdown_requested_) return make_error("write: write side is shut down", EPIPE);
  if (bytes.empty()) return ok_status();

  if (write_in_flight_) {
    pending_.append(bytes.data(), bytes.size());  // after_write() sends it
  } else if (pending_.size() + bytes.size() >= kCorkLimit) {
    // Enough to fill segments: no reason to wait, nor to copy what the
    // kernel takes now.
    if (int r = flush_now(bytes); r != 0) {
      close_socket(false);
      return event::uv_error("write", r);
    }
  } else {
    pending_.append(bytes.data(), bytes.size());
    schedule_flush();
  }
  if (!above_high_water_ && queued_bytes() > options_.high_water) {
    above_high_water_ = true;
    if (handler_ != nullptr) notify([&] { handler_->on_write_high_water(); });
  }
  return ok_status();
}

int TcpConnection::start_write() {
  in_flight_.swap(pending_);  // pending_ takes the drained buffer and its capacity
  uv_buf_t buf;
  buf.base = in_flight_.data();
  buf.len = in_flight_.size();
  int r = uv_write(&socket_->write, stream(), &buf, 1, &TcpConnection::on_write);
  if (r == 0) write_in_flight_ = true;
  return r;
}

int TcpConnection::flush_now(std::string_view more) {
  uv_buf_t bufs[2];
  unsigned int count = 0;
  if (!pending_.empty()) {
    bufs[count++] = uv_buf_init(pending_.data(), static_cast<unsigned int>(pending_.size()));
  }
  if (!more.empty()) {
    // libuv only reads it.
    bufs[count++] =
        uv_buf_init(const_cast<char*>(more.data()), static_cast<unsigned int>(more.size()));
  }
  if (count == 0) return 0;
  // libuv has nothing queued (no write in flight): the kernel may take it now.
  size_t taken = send_now(stream(), bufs, count);
  if (taken > 0) {
    bytes_written_ += taken;
    touch();
  }
  if (taken >= pending_.size()) {
    more.remove_prefix(taken - pending_.size());
    release_if_large(pending_);
  } else {
    pending_.erase(0, taken);
  }
  pending_.append(more.data(), more.size());
  return pending_.empty() ? 0 : start_write();
}

void TcpConnection::schedule_flush() {
  if (!flush_task_) flush_task_ = std::make_unique<event::TurnTask>(loop_, [this] { flush_turn(); });
  flush_task_->schedule();
}

void TcpConnection::flush_turn() {
  if (!socket_ || write_in_flight_) return;  // closed, or after_write() goes on
  if (int r = flush_now(); r != 0) {
    fail("write", r);
    return;
  }
  if (above_high_water_ && queued_bytes() <= options_.low_water) {
    above_high_water_ = false;
    if (state_ == State::open && handler_ != nullptr) {
      notify([&] { handler_->on_write_drained(); });
    }
  }
}

void TcpConnection::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<TcpConnection*>(req->handle->data);
  if (self == nullptr) return;  // closed: the write was cancelled
  self->after_write(status);
}

void TcpConnection::after_write(int status) {
  write_in_flight_ = false;
  if (status != 0) {
    fail("write", status);
    return;
  }
  bytes_written_ += in_flight_.size();
  release_if_large(in_flight_);
  touch();
  int r = pending_.empty() ? maybe_shutdown() : start_write();
  if (r != 0) {
    fail("write", r);
    return;
  }
  if (pending_.empty() && !write_in_flight_) release_if_large(pending_);
  if (above_high_water_ && queued_bytes() <= options_.low_water) {
    above_high_water_ = false;
    if (state_ == State::open && handler_ != nullptr) {
      notify([&] { handler_->on_write_drained(); });
    }
  }
}

size_t TcpConnection::queued_bytes() const {
  size_t in_libuv = socket_ ? uv_stream_get_write_queue_size(stream()) : 0;
  return pending_.size() + in_libuv;
}

Status TcpConnection::shutdown_write() {
  switch (state_) {
    case State::connecting:
      return make_error("shutdown: connection not established", ENOTCONN);
    case State::closed:
      return make_error("shutdown: connection is closed", ENOTCONN);
    case State::closing:  // close() shuts down already
    case State::open:
      break;
  }
  if (shutdown_requested_) return ok_status();
  shutdown_requested_ = true;
  int r = write_in_flight_ ? 0 : flush_now();
  if (r == 0) r = maybe_shutdown();
  if (r != 0) {
    close_socket(false);
    return event::uv_error("shutdown", r);
  }
  return ok_status();
}

int TcpConnection::maybe_shutdown() {
  if (!shutdown_requested_ || shutdown_sent_ || write_in_flight_ || !pending_.empty()) return 0;
  int r = uv_shutdown(&socket_->shutdown, stream(), &TcpConnection::on_shutdown);
  if (r == 0) shutdown_sent_ = true;
  return r;
}

void TcpConnection::on_shutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<TcpConnection*>(req->handle->data);
  if (self == nullptr) return;
  if (status != 0) {
    self->fail("shutdown", status);
    return;
  }
  self->write_shut_ = true;
  if (self->state_ == State::closing) self->check_close_done();
}

void TcpConnection::close() {
  if (state_ == State::closing || state_ == State::closed) return;
  if (state_ == State::connecting) {
    close_socket(false);  // the connect callback is not called
    connect_done_ = nullptr;
    return;
  }
  state_ = State::closing;
  touch();
  shutdown_requested_ = true;
  start_reading();  // discard input until the peer's FIN, even if paused
  // libuv refuses a write or a shutdown only when the write side is already
  // unusable: then there is nothing left to flush and only the peer's FIN to
  // wait for.
  if ((!write_in_flight_ && flush_now() != 0) || maybe_shutdown() != 0) {
    pending_.clear();
    write_shut_ = true;
  }
  // Completion is reported from the timer, never from inside close().
  timer().start(write_shut_ && peer_eof_ ? std::chrono::milliseconds::zero()
                                         : options_.close_timeout);
}

void TcpConnection::check_close_done() {
  if (write_shut_ && peer_eof_) finish_close(false);
}

void TcpConnection::finish_close(bool reset) {
  close_socket(reset);
  if (handler_ != nullptr) notify([&] { handler_->on_closed(); });
}

void TcpConnection::abort() {
  if (state_ == State::closed) return;
  flush_corked();
  close_socket(true);
  connect_done_ = nullptr;
}

void TcpConnection::close_socket(bool reset) {
  if (reset && socket_) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&socket_->tcp), &fd) == 0) {
      linger hard{1, 0};  // close() then sends RST instead of FIN
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    }
  }
  socket_.reset();  // uv_close: cancels pending requests, whose callbacks find no owner
  if (flush_task_) flush_task_->cancel();
  reading_ = false;
  if (timer_) timer_->stop();
  state_ = State::closed;
}

void TcpConnection::fail(const char* operation, int uv_code) {
  bool was_closing = state_ == State::closing;
  close_socket(false);
  if (handler_ == nullptr) return;
  if (was_closing) {
    notify([&] { handler_->on_closed(); });  // a failing close still ends in on_closed
  } else {
    Error error = event::uv_error(operation, uv_code);
    notify([&] { handler_->on_error(error); });
  }
}

void TcpConnection::on_timer() {
  std::chrono::milliseconds now = loop_.now();
  switch (state_) {
    case State::connecting: {
      Error error = connect_error_ != 0
                        ? event::uv_error("connect to " + connect_to_.to_string(), connect_error_)
                        : make_error("connect to " + connect_to_.to_string() + ": timed out after " +
                                         ms_text(connect_timeout_),
                                     ETIMEDOUT);
      close_socket(false);
      report_connect(error);
      return;
    }
    case State::open: {
      if (options_.idle_timeout.count() == 0) return;
      std::chrono::milliseconds idle = now - last_progress_;
      if (idle < options_.idle_timeout) {
        timer_->start(options_.idle_timeout - idle);
        return;
      }
      last_progress_ = now;
      timer_->start(options_.idle_timeout);
      if (!notify([&] { handler_->on_idle_timeout(); })) return;
      close();
      return;
    }
    case State::closing: {
      if (write_shut_ && peer_eof_) {
        finish_close(false);
        return;
      }
      std::chrono::milliseconds idle = now - last_progress_;
      if (idle < options_.close_timeout) {
        timer_->start(options_.close_timeout - idle);
        return;
      }
      finish_close(true);
      return;
    }
    case State::closed:
      return;
  }
}

int TcpConnection::socket_error() const {
  uv_os_fd_t fd;
  int error = 0;
  socklen_t length = sizeof(error);
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&socket_->tcp), &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
    return 0;
  }
  return error;
}

Result<Address> TcpConnection::local_address() const {
  if (!socket_) return make_error("local address: connection is closed", ENOTCONN);
  sockaddr_storage ss;
  int length = sizeof(ss);
  if (int r = uv_tcp_getsockname(&socket_->tcp, reinterpret_cast<sockaddr*>(&ss), &length); r != 0) {
    return event::uv_error("local address", r);
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(length));
}

Result<Address> TcpConnection::peer_address() const {
  if (!socket_) return make_error("peer address: connection is closed", ENOTCONN);
  sockaddr_storage ss;
  int length = sizeof(ss);
  if (int r = uv_tcp_getpeername(&socket_->tcp, reinterpret_cast<sockaddr*>(&ss), &length); r != 0) {
    return event::uv_error("peer address", r);
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), static_cast<socklen_t>(length));
}

Result<Address> TcpConnection::original_destination() const {
  if (!socket_) return make_error("original destination: connection is closed", ENOTCONN);
  auto local = local_address();
  if (!local.ok()) return make_error("original destination: " + local.error().message, local.error().code);
  uv_os_fd_t fd;
  if (int r = uv_fileno(reinterpret_cast<const uv_handle_t*>(&socket_->tcp), &fd); r != 0) {
    return event::uv_error("original destination", r);
  }
  // An IPv4 client on a dual-stack socket is tracked by IPv4 conntrack.
  const auto* local6 = reinterpret_cast<const sockaddr_in6*>(local->sockaddr_ptr());
  bool ipv6 = local->is_ipv6() && !IN6_IS_ADDR_V4MAPPED(&local6->sin6_addr);
  sockaddr_storage ss{};
  socklen_t length = sizeof(ss);
  int rc = ipv6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &length)
                : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &length);
  if (rc != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOPROTOOPT) {
      return make_error("no original destination: the connection was not redirected", err);
    }
    return event::uv_error("original destination", -err);
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), length);
}

}  // namespace trellis::net
