#include "common/net/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "common/event/uv_error.h"
#include "common/log/log.h"
#include "common/net/tcp_socket.h"

namespace trellis::net {
namespace {

// Owns a raw socket until libuv takes it over.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Error errno_error(const std::string& what) { return event::uv_error(what, -errno); }

Status set_option(int fd, int level, int name, const char* name_text, const Address& address) {
  int one = 1;
  if (setsockopt(fd, level, name, &one, sizeof(one)) != 0) {
    return errno_error(std::string("setsockopt ") + name_text + " on " + address.to_string());
  }
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<Listener>> Listener::listen(event::EventLoop& loop, const Address& address,
                                                   AcceptCallback on_accept,
                                                   const ListenerOptions& options) {
  std::string where = address.to_string();
  if (options.backlog < 0) {
    return make_error("listen " + where + ": backlog must not be negative, got " +
                          std::to_string(options.backlog),
                      EINVAL);
  }
  if (Status s = validate(options.connection); !s.ok()) {
    return make_error("listen " + where + ": " + s.error().message, EINVAL);
  }
  if (!on_accept) return make_error("listen " + where + ": no accept callback", EINVAL);

  FdGuard fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return errno_error("socket for " + where);
  // SO_REUSEADDR: restart without waiting for TIME_WAIT to expire.
  if (Status s = set_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", address); !s.ok()) {
    return std::move(s).error();
  }
  if (options.reuse_port) {
    if (Status s = set_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", address); !s.ok()) {
      return std::move(s).error();
    }
  }
  if (address.is_ipv6() && options.ipv6_only) {
    if (Status s = set_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", address); !s.ok()) {
      return std::move(s).error();
    }
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.sockaddr_length()) != 0) {
    return errno_error("bind " + where);
  }

  std::unique_ptr<Listener> listener(new Listener(loop, std::move(on_accept), options));
  auto socket = event::make_uv_handle<uv_tcp_t>();
  uv_tcp_init(loop.uv(), socket.get());  // AF_UNSPEC: cannot fail
  if (int r = uv_tcp_open(socket.get(), fd.get()); r != 0) return event::uv_error("listen " + where, r);
  fd.release();  // the handle owns it now and closes it with itself
  socket->data = listener.get();
  if (int r = uv_listen(reinterpret_cast<uv_stream_t*>(socket.get()), options.backlog,
                        &Listener::on_connection);
      r != 0) {
    return event::uv_error("listen " + where, r);
  }

  sockaddr_storage bound;
  int length = sizeof(bound);
  if (int r = uv_tcp_getsockname(socket.get(), reinterpret_cast<sockaddr*>(&bound), &length); r != 0) {
    return event::uv_error("listen " + where, r);
  }
  auto local = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&bound),
                                      static_cast<socklen_t>(length));
  if (!local.ok()) return make_error("listen " + where + ": " + local.error().message);
  listener->local_address_ = local.value();
  listener->socket_ = std::move(socket);
  return listener;
}

void Listener::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (self == nullptr) return;
  if (status != 0) {
    // Typically EMFILE; libuv already shed the pending connections.
    log::warn("accept failed", {{"listener", self->local_address_.to_string()},
                                {"error", uv_strerror(status)}});
    return;
  }
  auto socket = event::make_uv_handle<TcpSocket>();
  uv_tcp_init(self->loop_.uv(), &socket->tcp);
  if (int r = uv_accept(server, reinterpret_cast<uv_stream_t*>(&socket->tcp)); r != 0) {
    log::warn("accept failed", {{"listener", self->local_address_.to_string()},
                                {"error", uv_strerror(r)}});
    return;
  }
  ++self->accepted_;
  auto connection = TcpConnection::adopt(self->loop_, std::move(socket), self->options_.connection);
  AcceptCallback on_accept = std::move(self->on_accept_);  // survives the listener's destruction
  event::CallbackScope scope(self->destruction_);
  on_accept(std::move(connection));
  if (!scope.destroyed()) self->on_accept_ = std::move(on_accept);
}

}  // namespace trellis::net
