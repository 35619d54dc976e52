#include "common/admin/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <future>
#include <string>
#include <thread>

using namespace trellis;

namespace {

// Runs a loop with an admin server on a background thread; the test talks to
// it with blocking sockets.
class Fixture {
 public:
  explicit Fixture(admin::ServerOptions options = {}) {
    loop_ = event::EventLoop::create().value();
    server_ = admin::Server::listen(*loop_, net::Address::parse("127.0.0.1:0").value(), options).value();
    server_->route("GET", "/live", [](const admin::Request&) { return admin::Response::text(200, "ok\n"); });
    server_->route("POST", "/drain", [this](const admin::Request& r) {
      last_body_ = r.body;
      return admin::Response::json(202, "{\"draining\":true}");
    });
    port_ = server_->local_address().port();
    thread_ = std::thread([this] { loop_->run(); });
  }
  ~Fixture() {
    std::promise<void> done;
    loop_->post([&] {
      server_.reset();
      done.set_value();
    });
    done.get_future().wait();
    loop_->stop();
    thread_.join();
    loop_.reset();
  }

  int connect_client() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }

  // Sends `raw` and reads until the server closes the connection.
  std::string exchange(const std::string& raw) const {
    int fd = connect_client();
    REQUIRE(::write(fd, raw.data(), raw.size()) == static_cast<ssize_t>(raw.size()));
    std::string out = read_all(fd);
    ::close(fd);
    return out;
  }

  static std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  std::string last_body_;

 private:
  std::unique_ptr<event::EventLoop> loop_;
  std::unique_ptr<admin::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST_CASE("routes answer with content-length and content-type") {
  Fixture f;
  std::string r = f.exchange("GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(starts_with(r, "HTTP/1.1 200 OK\r\n"));
  CHECK(r.find("Content-Type: text/plain; charset=utf-8\r\n") != std::string::npos);
  CHECK(r.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(r.substr(r.size() - 3) == "ok\n");
}

TEST_CASE("POST bodies reach the handler; the query string is ignored for matching") {
  Fixture f;
  std::string r = f.exchange(
      "POST /drain?now=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  CHECK(starts_with(r, "HTTP/1.1 202 Accepted\r\n"));
  CHECK(r.find("Content-Type: application/json\r\n") != std::string::npos);
  CHECK(f.last_body_ == "hello");
}

TEST_CASE("unknown paths get 404, wrong methods 405 with Allow, HEAD answers GET routes without a body") {
  Fixture f;
  CHECK(starts_with(f.exchange("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                    "HTTP/1.1 404 Not Found\r\n"));
  std::string r = f.exchange("DELETE /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(starts_with(r, "HTTP/1.1 405 Method Not Allowed\r\n"));
  CHECK(r.find("Allow: GET\r\n") != std::string::npos);
  std::string h = f.exchange("HEAD /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(starts_with(h, "HTTP/1.1 200 OK\r\n"));
  CHECK(h.substr(h.size() - 4) == "\r\n\r\n");
}

TEST_CASE("keep-alive serves several requests, pipelined ones in order") {
  Fixture f;
  std::string r = f.exchange(
      "GET /live HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  size_t first = r.find("HTTP/1.1 200");
  size_t second = r.find("HTTP/1.1 404");
  size_t third = r.find("HTTP/1.1 200", first + 1);
  CHECK(first == 0);
  CHECK(second != std::string::npos);
  CHECK(third != std::string::npos);
  CHECK(second < third);
}

TEST_CASE("malformed requests get the decoder's status and the connection closes") {
  Fixture f;
  std::string r = f.exchange("GARBAGE\r\n\r\n");
  CHECK(starts_with(r, "HTTP/1.1 400 Bad Request\r\n"));
  CHECK(r.find("Connection: close\r\n") != std::string::npos);

  std::string big(70 * 1024, 'a');
  std::string h = f.exchange("GET /live HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n");
  CHECK(starts_with(h, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));

  std::string body = f.exchange("POST /drain HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  CHECK(starts_with(body, "HTTP/1.1 413 Content Too Large\r\n"));

  // The server still serves a well-behaved client.
  CHECK(starts_with(f.exchange("GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                    "HTTP/1.1 200 OK\r\n"));
}

TEST_CASE("a client that never finishes its head gets 408 after the header timeout") {
  admin::ServerOptions o;
  o.header_timeout = std::chrono::milliseconds(200);
  Fixture f(o);
  std::string r = f.exchange("GET /live HTTP/1.1\r\nHost: x\r\n");
  CHECK(starts_with(r, "HTTP/1.1 408 Request Timeout\r\n"));
}

TEST_CASE("connections beyond the limit are refused, others keep working") {
  admin::ServerOptions o;
  o.max_connections = 2;
  Fixture f(o);
  int a = f.connect_client();
  int b = f.connect_client();
  int c = f.connect_client();
  // The third one is reset without an answer.
  char buf[16];
  CHECK(::read(c, buf, sizeof buf) <= 0);
  ::close(c);
  std::string req = "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(a, req.data(), req.size()) > 0);
  CHECK(starts_with(Fixture::read_all(a), "HTTP/1.1 200 OK\r\n"));
  ::close(a);
  ::close(b);
}
