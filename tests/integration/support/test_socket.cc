#include "tests/integration/support/test_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace trellis::integration {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) { return std::strerror(err); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error (errno).
int wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return "";
}

std::string format_request(const HttpRequest& request, std::string_view authority) {
  std::string out = request.method + " " + request.target + " HTTP/1.1\r\n";
  out += "Host: " + (request.host.empty() ? std::string(authority) : request.host) + "\r\n";
  for (const auto& [name, value] : request.headers) out += name + ": " + value + "\r\n";
  if (!request.body.empty()) out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  if (!request.keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  out += request.body;
  return out;
}

Socket::~Socket() { close(); }

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), buffered_(std::move(other.buffered_)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    buffered_ = std::move(other.buffered_);
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffered_.clear();
}

Status Socket::send(std::string_view data, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return make_error("send: socket is closed", EBADF);
  auto deadline = Clock::now() + timeout;
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int ready = wait_fd(fd_, POLLOUT, deadline);
      if (ready < 0) return make_error("send: poll: " + errno_text(errno), errno);
      if (ready == 0) {
        return make_error("send: timed out after " + std::to_string(timeout.count()) + "ms", ETIMEDOUT);
      }
      continue;
    }
    return make_error("send: " + errno_text(errno), errno);
  }
  return ok_status();
}

Result<size_t> Socket::fill(Clock::time_point deadline) {
  if (fd_ < 0) return make_error("recv: socket is closed", EBADF);
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 0) {
      buffered_.append(buf, static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return make_error("recv: " + errno_text(errno), errno);
    int ready = wait_fd(fd_, POLLIN, deadline);
    if (ready < 0) return make_error("recv: poll: " + errno_text(errno), errno);
    if (ready == 0) {
      return make_error("recv: timed out after " + std::to_string(last_timeout_.count()) + "ms", ETIMEDOUT);
    }
  }
}

Result<std::string> Socket::read_some(std::chrono::milliseconds timeout) {
  last_timeout_ = timeout;
  if (buffered_.empty()) {
    auto got = fill(Clock::now() + timeout);
    if (!got.ok()) return got.error();
  }
  return std::exchange(buffered_, std::string());
}

Result<std::string> Socket::read_to_eof(std::chrono::milliseconds timeout) {
  last_timeout_ = timeout;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto got = fill(deadline);
    if (!got.ok()) return got.error();
    if (*got == 0) return std::exchange(buffered_, std::string());
  }
}

Status Socket::shutdown_write() {
  if (fd_ < 0 || ::shutdown(fd_, SHUT_WR) != 0) return make_error("shutdown: " + errno_text(errno), errno);
  return ok_status();
}

Result<std::string> Socket::take(size_t count, Clock::time_point deadline) {
  while (buffered_.size() < count) {
    auto got = fill(deadline);
    if (!got.ok()) return got.error();
    if (*got == 0) return make_error("response: connection closed inside the body");
  }
  std::string out = buffered_.substr(0, count);
  buffered_.erase(0, count);
  return out;
}

Result<std::string> Socket::take_line(Clock::time_point deadline) {
  size_t searched = 0;
  for (;;) {
    size_t eol = buffered_.find("\r\n", searched);
    if (eol != std::string::npos) {
      std::string line = buffered_.substr(0, eol);
      buffered_.erase(0, eol + 2);
      return line;
    }
    searched = buffered_.empty() ? 0 : buffered_.size() - 1;
    auto got = fill(deadline);
    if (!got.ok()) return got.error();
    if (*got == 0) return make_error("response: connection closed inside the head");
  }
}

Result<HttpResponse> Socket::read_response(std::chrono::milliseconds timeout, bool head_request) {
  last_timeout_ = timeout;
  auto deadline = Clock::now() + timeout;
  HttpResponse response;
  for (;;) {  // skips 1xx interim responses
    if (buffered_.empty()) {
      auto got = fill(deadline);
      if (!got.ok()) return got.error();
      if (*got == 0) return make_error("response: connection closed before the status line");
    }
    auto status_line = take_line(deadline);
    if (!status_line.ok()) return status_line.error();
    std::string_view line = *status_line;
    // "HTTP/1.1 200 OK"
    int status = 0;
    bool well_formed = line.size() >= 12 && line.substr(0, 7) == "HTTP/1." && line[8] == ' ' &&
                       (line.size() == 12 || line[12] == ' ');
    if (well_formed) {
      auto [end, ec] = std::from_chars(line.data() + 9, line.data() + 12, status);
      well_formed = ec == std::errc() && end == line.data() + 12 && status >= 100;
    }
    if (!well_formed) {
      return make_error("response: malformed status line '" + std::string(line) + "'");
    }
    response = HttpResponse{};
    response.status = status;
    response.reason = std::string(trim(line.substr(12)));
    for (;;) {
      auto header_line = take_line(deadline);
      if (!header_line.ok()) return header_line.error();
      if (header_line->empty()) break;
      size_t colon = header_line->find(':');
      if (colon == std::string::npos || colon == 0) {
        return make_error("response: malformed header line '" + *header_line + "'");
      }
      std::string_view h = *header_line;
      response.headers.emplace_back(std::string(h.substr(0, colon)), std::string(trim(h.substr(colon + 1))));
    }
    if (status >= 200 || status == 101) break;
  }
  if (head_request || response.status == 204 || response.status == 304 || response.status == 101) {
    return response;
  }
  std::string transfer_encoding = response.header("Transfer-Encoding");
  if (iequals(transfer_encoding, "chunked")) {
    for (;;) {
      auto size_line = take_line(deadline);
      if (!size_line.ok()) return size_line.error();
      std::string_view digits = size_line->substr(0, size_line->find(';'));
      size_t size = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
        return make_error("response: malformed chunk size '" + *size_line + "'");
      }
      if (size == 0) break;
      auto chunk = take(size + 2, deadline);
      if (!chunk.ok()) return chunk.error();
      response.body.append(*chunk, 0, size);
    }
    for (;;) {  // trailers
      auto trailer = take_line(deadline);
      if (!trailer.ok()) return trailer.error();
      if (trailer->empty()) break;
    }
    return response;
  }
  std::string length_text = response.header("Content-Length");
  if (!length_text.empty()) {
    size_t length = 0;
    auto [end, ec] = std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    if (ec != std::errc() || end != length_text.data() + length_text.size()) {
      return make_error("response: malformed Content-Length '" + length_text + "'");
    }
    auto body = take(length, deadline);
    if (!body.ok()) return body.error();
    response.body = std::move(*body);
    return response;
  }
  // Close-delimited.
  for (;;) {
    auto got = fill(deadline);
    if (!got.ok()) return got.error();
    if (*got == 0) break;
  }
  response.body = std::exchange(buffered_, std::string());
  return response;
}

Result<Socket> connect_tcp(std::string_view ip, uint16_t port, std::chrono::milliseconds timeout) {
  std::string where = "connect " + std::string(ip) + ":" + std::to_string(port);
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string ip_text(ip);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, ip_text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof *v4;
  } else if (inet_pton(AF_INET6, ip_text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof *v6;
  } else {
    return make_error(where + ": not an IP address");
  }
  int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return make_error(where + ": socket: " + errno_text(errno), errno);
  Socket socket(fd);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    if (errno != EINPROGRESS) return make_error(where + ": " + errno_text(errno), errno);
    int ready = wait_fd(fd, POLLOUT, Clock::now() + timeout);
    if (ready < 0) return make_error(where + ": poll: " + errno_text(errno), errno);
    if (ready == 0) {
      return make_error(where + ": timed out after " + std::to_string(timeout.count()) + "ms", ETIMEDOUT);
    }
    int err = 0;
    socklen_t err_length = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_length);
    if (err != 0) return make_error(where + ": " + errno_text(err), err);
  }
  return socket;
}

Result<HttpResponse> http_exchange(Socket& socket, const HttpRequest& request, std::string_view authority,
                                   std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  if (auto sent = socket.send(format_request(request, authority), timeout); !sent.ok()) return sent.error();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() < 1) left = std::chrono::milliseconds(1);
  return socket.read_response(left, request.method == "HEAD");
}

}  // namespace trellis::integration
