// Test helpers: an echo server on its own thread (ephemeral ports), raw
// blocking sockets for malformed input, and a one-call h2c client on the
// sans-IO http2::Session for checking what the echo client does not print
// (trailers, Trailers-Only answers).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <future>
#include <memory>
#include <string>

#include "common/event/workers.h"
#include "common/http2/session.h"
#include "tests/support/echo/server.h"

namespace trellis::support::echo::testing {

inline ServerOptions test_server_options() {
  ServerOptions o;
  o.http_ports = {0};
  o.grpc_ports = {0};
  o.tcp_ports = {0};
  o.bind = "127.0.0.1";
  o.hostname = "echo-v1-5d8f9-abcde";
  o.version = "v1";
  return o;
}

// An EchoServer on a worker thread; the test thread only talks to it over
// sockets (or through post()).
class TestServer {
 public:
  explicit TestServer(ServerOptions options = test_server_options()) {
    auto workers = event::Workers::start(1, [&](event::EventLoop& loop, size_t)
                                                -> Result<std::unique_ptr<event::WorkerState>> {
      auto server = EchoServer::start(loop, options);
      if (!server.ok()) return std::move(server).error();
      auto ports = [&](EchoServer::PortKind kind) {
        auto a = (*server)->addresses(kind);
        return a.empty() ? uint16_t{0} : a.front().port();
      };
      http_port = ports(EchoServer::PortKind::http);
      grpc_port = ports(EchoServer::PortKind::grpc);
      tcp_port = ports(EchoServer::PortKind::tcp);
      auto state = std::make_unique<State>();
      state->server = std::move(server).value();
      return std::unique_ptr<event::WorkerState>(std::move(state));
    });
    REQUIRE_MESSAGE(workers.ok(), (workers.ok() ? "" : workers.error().message));
    workers_ = std::move(workers).value();
  }

  // Runs `f` on the server's thread and returns its result.
  template <typename F>
  auto on_server(F f) {
    using R = decltype(f(std::declval<EchoServer&>()));
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    REQUIRE(workers_->post(0, [promise, f](event::EventLoop&, event::WorkerState* s) {
      promise->set_value(f(*static_cast<State*>(s)->server));
    }));
    return future.get();
  }

  uint64_t accepted(EchoServer::PortKind kind) {
    return on_server([kind](EchoServer& s) { return s.accepted_connections(kind); });
  }

  std::string http_url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(http_port) + path;
  }

  uint16_t http_port = 0;
  uint16_t grpc_port = 0;
  uint16_t tcp_port = 0;

 private:
  struct State : event::WorkerState {
    std::unique_ptr<EchoServer> server;
  };
  std::unique_ptr<event::Workers> workers_;
};

// A blocking loopback socket with 5 s send/receive timeouts.
class RawSocket {
 public:
  explicit RawSocket(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    REQUIRE(fd_ >= 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawSocket() { ::close(fd_); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      REQUIRE(n > 0);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Whatever arrives until the peer's FIN (or a timeout, which fails the test).
  std::string read_to_eof() {
    std::string out;
    char buf[65536];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      REQUIRE_MESSAGE(n >= 0, "recv timed out or failed");
      if (n == 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // Reads until `out` holds at least `size` bytes (or EOF).
  std::string read_at_least(size_t size) {
    std::string out;
    char buf[65536];
    while (out.size() < size) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      REQUIRE_MESSAGE(n >= 0, "recv timed out or failed");
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

// One request over h2c prior knowledge, driven synchronously.
struct H2Outcome {
  bool have_head = false;
  http::ResponseHead head;
  std::string body;
  bool have_trailers = false;
  http::HeaderMap trailers;
  bool closed = false;
  uint32_t close_code = 0;
};

inline H2Outcome h2_call(uint16_t port, const http::RequestHead& head, const std::string& body = "") {
  struct Handler : http2::SessionHandler {
    H2Outcome out;
    http2::Session* session = nullptr;
    void on_response_head(int32_t, http::ResponseHead&& h, bool) override {
      if (h.status < 200) return;
      out.have_head = true;
      out.head = std::move(h);
    }
    void on_data(int32_t id, const char* data, size_t length) override {
      out.body.append(data, length);
      (void)session->consume(id, length);
    }
    void on_trailers(int32_t, http::HeaderMap&& t) override {
      out.have_trailers = true;
      out.trailers = std::move(t);
    }
    void on_end_stream(int32_t) override {}
    void on_stream_close(int32_t, uint32_t code) override {
      out.closed = true;
      out.close_code = code;
    }
  } handler;
  http2::SessionConfig config;
  config.role = http2::Role::client;
  auto session = http2::Session::create(config, handler);
  REQUIRE(session.ok());
  handler.session = session->get();
  auto id = (*session)->submit_request(head, !body.empty());
  REQUIRE(id.ok());
  if (!body.empty()) REQUIRE((*session)->send_data(*id, body, true).ok());
  RawSocket socket(port);
  char buf[65536];
  while (!handler.out.closed) {
    std::string out;
    REQUIRE((*session)->produce(out).ok());
    if (!out.empty()) socket.send(out);
    ssize_t n = ::recv(socket.fd(), buf, sizeof buf, 0);
    REQUIRE_MESSAGE(n > 0, "h2c connection ended or timed out before the stream closed");
    REQUIRE((*session)->receive(buf, static_cast<size_t>(n)).ok());
  }
  return handler.out;
}

inline http::RequestHead grpc_head(std::string path, uint16_t port) {
  http::RequestHead head;
  head.method = "POST";
  head.scheme = "http";
  head.target = std::move(path);
  head.authority = "127.0.0.1:" + std::to_string(port);
  head.version = http::Version::http2;
  head.headers.add("content-type", "application/grpc");
  head.headers.add("te", "trailers");
  return head;
}

}  // namespace trellis::support::echo::testing
