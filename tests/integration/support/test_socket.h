// Blocking TCP and HTTP/1.1 client pieces for integration tests: a socket with
// deadlines, a request writer and a response reader that handles
// Content-Length, chunked and close-delimited bodies. Deliberately independent
// of the code under test (common/http1, common/net), so that a bug there
// cannot hide itself. Pod::connect (pod_network.h) creates these sockets
// inside a pod's network namespace; everything else works on any socket.
//
// Not thread-safe: one thread per Socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace trellis::integration {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";  // the request target as sent: "/path?query"
  std::string host;          // the Host header; empty: the dialled address
  Headers headers;           // sent as given, after Host
  std::string body;          // sent with Content-Length when non-empty
  bool keep_alive = false;   // false: "Connection: close"
};

struct HttpResponse {
  int status = 0;
  std::string reason;
  Headers headers;  // names as received
  std::string body;

  // The first value of `name` (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

// "GET /x HTTP/1.1\r\nHost: ...\r\n...\r\n\r\nbody". `authority` is used when
// request.host is empty.
std::string format_request(const HttpRequest& request, std::string_view authority);

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }

  // Writes everything. Errors: "send: Connection reset by peer" (code errno),
  // "send: timed out after 5000ms".
  Status send(std::string_view data, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Whatever arrives first (bytes already buffered by read_response count);
  // "" at end of stream. Errors: "recv: timed out after 500ms" (code
  // ETIMEDOUT), "recv: Connection reset by peer" (code ECONNRESET).
  Result<std::string> read_some(std::chrono::milliseconds timeout);
  // Everything until the peer closes; the timeout bounds the whole read.
  Result<std::string> read_to_eof(std::chrono::milliseconds timeout);
  // One HTTP/1.x response (1xx interim responses are skipped); bytes after it
  // stay buffered for the next call. `head_request`: the response has no body.
  // Errors name what is wrong: "response: connection closed before the
  // status line", "response: malformed status line 'HTTP/1.1 abc'".
  Result<HttpResponse> read_response(std::chrono::milliseconds timeout, bool head_request = false);
  // Half-closes: the peer reads end of stream.
  Status shutdown_write();
  void close();

 private:
  Result<size_t> fill(std::chrono::steady_clock::time_point deadline);  // appends to buffered_
  Result<std::string> take(size_t count, std::chrono::steady_clock::time_point deadline);
  Result<std::string> take_line(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string buffered_;
  std::chrono::milliseconds last_timeout_{0};  // for error messages
};

// Connects from the calling thread's network namespace. Errors:
// "connect 10.96.0.10:80: Connection refused" (code ECONNREFUSED),
// "connect 10.96.0.10:80: timed out after 5000ms" (code ETIMEDOUT).
Result<Socket> connect_tcp(std::string_view ip, uint16_t port, std::chrono::milliseconds timeout);

// Sends `request` on `socket` and reads its response; the timeout bounds both.
Result<HttpResponse> http_exchange(Socket& socket, const HttpRequest& request, std::string_view authority,
                                   std::chrono::milliseconds timeout);

}  // namespace trellis::integration
