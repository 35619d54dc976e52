// Protocol detection: the pure classifier on a table of first bytes, the
// appProtocol hints, and the Detector on real sockets (byte-by-byte preface,
// server-speaks-first timeout, byte cap, EOF, reset, hand-over).
#include "proxy/detect/detect.h"

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>

#include "tests/unit/common/net/net_test_util.h"

using trellis::Result;
using trellis::net::TcpConnection;
using trellis::proxy::detect::classify;
using trellis::proxy::detect::Decision;
using trellis::proxy::detect::DetectOptions;
using trellis::proxy::detect::Detection;
using trellis::proxy::detect::Detector;
using trellis::proxy::detect::Protocol;
using trellis::proxy::detect::protocol_for_app_protocol;
using namespace trellis::net::testing;
using namespace std::chrono_literals;

namespace {

const std::string kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);

std::string show(std::optional<Protocol> p) {
  return p ? std::string(trellis::proxy::detect::protocol_name(*p)) : "undecided";
}

// A client connected to an accepted socket under detection.
struct Rig {
  std::unique_ptr<trellis::event::EventLoop> loop = make_loop();
  Recorder client;
  std::unique_ptr<TcpConnection> client_conn;
  std::unique_ptr<Detector> detector;
  std::optional<Result<Detection>> result;

  explicit Rig(DetectOptions options = {}) {
    REQUIRE(loop);
    Pair pair = connect_pair(*loop, client);
    client_conn = std::move(pair.client);
    auto d = Detector::start(std::move(pair.server), options,
                             [this](Result<Detection> r) { result = std::move(r); });
    REQUIRE(d.ok());
    detector = std::move(d).value();
  }
  Detection& detection() {
    REQUIRE(result.has_value());
    REQUIRE(result->ok());
    return result->value();
  }
  bool done() const { return result.has_value(); }
};

}  // namespace

TEST_CASE("the first bytes decide the protocol, incrementally") {
  struct Case {
    std::string bytes;
    std::string expected;
  };
  const Case cases[] = {
      {"", "undecided"},
      {"G", "undecided"},
      {"GET", "undecided"},
      {"GET ", "http1"},
      {"GET / HTTP/1.1\r\n", "http1"},
      {"GETX", "opaque"},
      {"get ", "opaque"},  // methods are case-sensitive
      {"GET\t", "opaque"},
      {"P", "undecided"},  // POST, PUT, PATCH, PROPFIND... or the preface
      {"PO", "undecided"},
      {"PX", "opaque"},
      {"POST /upload HTTP/1.1", "http1"},
      {"M-SEARCH * HTTP/1.1", "http1"},
      {"OPTIONS * HTTP/1.1", "http1"},
      {"CONNECT example.com:443 HTTP/1.1", "http1"},
      {"UNSUBSCRIBE ", "http1"},
      {"PRI ", "undecided"},  // only ever the preface
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r", "undecided"},
      {kPreface, "http2"},
      {kPreface + std::string("\x00\x00\x12\x04", 4), "http2"},
      {"PRI * HTTP/1.1\r\n", "opaque"},
      {"PRI / HTTP/2.0", "opaque"},
      {std::string("\x16", 1), "undecided"},
      {std::string("\x16\x03", 2), "tls"},
      {std::string("\x16\x03\x01\x02\x00\x01", 6), "tls"},
      {std::string("\x16\x02", 2), "opaque"},
      {std::string("\x15\x03\x01", 3), "opaque"},  // a TLS alert is no ClientHello
      {"SSH-2.0-OpenSSH_9.2\r\n", "opaque"},
      {std::string("\x00", 1), "opaque"},
      {"*1\r\n$4\r\nPING\r\n", "opaque"},  // Redis
      {"HELO mail.example.com", "opaque"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.bytes);
    CHECK(show(classify(c.bytes)) == c.expected);
  }
  // Every proper prefix of the preface waits; the whole decides.
  for (size_t n = 1; n < kPreface.size(); ++n) {
    CAPTURE(n);
    CHECK(show(classify(kPreface.substr(0, n))) == "undecided");
  }
}

TEST_CASE("any 24 bytes decide") {
  const std::string samples[] = {"GET /a/b/c HTTP/1.1\r\nHost", kPreface, "UNSUBSCRIBEUNSUBSCRIBE!!",
                                 std::string(24, '\xff'), "MKACTIVITYMKACTIVITY1234"};
  for (const std::string& s : samples) {
    CAPTURE(s);
    CHECK(classify(s.substr(0, 24)).has_value());
  }
}

TEST_CASE("appProtocol hints map to the protocol clients of the port speak") {
  struct Case {
    std::string app_protocol;
    std::string expected;
  };
  const Case cases[] = {
      {"http", "http1"},          {"HTTP", "http1"},
      {"kubernetes.io/ws", "http1"}, {"kubernetes.io/h2c", "http2"},
      {"h2c", "http2"},           {"http2", "http2"},
      {"grpc", "http2"},          {"https", "tls"},
      {"tls", "tls"},             {"kubernetes.io/wss", "tls"},
      {"tcp", "opaque"},          {"mysql", "opaque"},
      {"mongo", "opaque"},        {"redis", "opaque"},
      {"", "undecided"},          {"grpc-web", "undecided"},
      {"udp", "undecided"},       {"example.com/custom", "undecided"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.app_protocol);
    CHECK(show(protocol_for_app_protocol(c.app_protocol)) == c.expected);
  }
}

TEST_CASE("detection options are validated") {
  DetectOptions o;
  o.timeout = 0ms;
  CHECK(trellis::proxy::detect::validate(o).error().message ==
        "detect: timeout must be positive, got 0 ms");
  o = {};
  o.max_bytes = 0;
  CHECK(trellis::proxy::detect::validate(o).error().message == "detect: max_bytes must be positive");

  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  Pair pair = connect_pair(*loop, client);
  auto no_callback = Detector::start(std::move(pair.server), {}, nullptr);
  REQUIRE_FALSE(no_callback.ok());
  CHECK(no_callback.error().message == "detect: no callback");
}

TEST_CASE("an HTTP/1 request is detected and every byte is kept for replay") {
  Rig rig;
  REQUIRE(rig.client_conn->write("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  Detection& d = rig.detection();
  CHECK(d.protocol == Protocol::http1);
  CHECK(d.decision == Decision::matched);
  CHECK(d.bytes == "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK_FALSE(d.eof);
  REQUIRE(d.connection != nullptr);
}

TEST_CASE("the HTTP/2 preface fed one byte at a time waits until it is complete") {
  Rig rig;
  for (size_t i = 0; i + 1 < kPreface.size(); ++i) {
    REQUIRE(rig.client_conn->write(kPreface.substr(i, 1)).ok());
    run_for(*rig.loop, 2ms);
    REQUIRE_FALSE(rig.done());
  }
  REQUIRE(rig.client_conn->write(kPreface.substr(kPreface.size() - 1)).ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  Detection& d = rig.detection();
  CHECK(d.protocol == Protocol::http2);
  CHECK(d.bytes == kPreface);
}

TEST_CASE("a TLS ClientHello is reported as tls") {
  Rig rig;
  REQUIRE(rig.client_conn->write(std::string("\x16\x03\x01\x00\xa5\x01", 6)).ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  CHECK(rig.detection().protocol == Protocol::tls);
  CHECK(rig.detection().bytes.size() == 6);
}

TEST_CASE("bytes that match nothing are opaque at once") {
  DetectOptions options;
  options.timeout = 10s;  // the decision must not wait for it
  Rig rig(options);
  REQUIRE(rig.client_conn->write("SSH-2.0-OpenSSH\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }, 5s));
  CHECK(rig.detection().protocol == Protocol::opaque);
  CHECK(rig.detection().decision == Decision::matched);
  CHECK(rig.detection().bytes == "SSH-2.0-OpenSSH\r\n");
}

TEST_CASE("a server-speaks-first client sends nothing: opaque after the timeout") {
  DetectOptions options;
  options.timeout = 50ms;
  Rig rig(options);
  run_for(*rig.loop, 10ms);
  CHECK_FALSE(rig.done());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  Detection& d = rig.detection();
  CHECK(d.protocol == Protocol::opaque);
  CHECK(d.decision == Decision::timed_out);
  CHECK(d.bytes.empty());
  CHECK_FALSE(d.eof);

  // The next owner takes over; the server speaks first and the client answers.
  Recorder next;
  REQUIRE(d.connection->start(next).error().code == EALREADY);
  d.connection->set_handler(next);
  d.connection->resume_reading();
  REQUIRE(d.connection->write("220 smtp ready\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.client.data == "220 smtp ready\r\n"; }));
  REQUIRE(rig.client_conn->write("EHLO x\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return next.data == "EHLO x\r\n"; }));
}

TEST_CASE("undecided at the byte cap or at EOF: opaque, with the bytes") {
  SUBCASE("byte cap") {
    DetectOptions options;
    options.max_bytes = 3;
    Rig rig(options);
    REQUIRE(rig.client_conn->write("GET").ok());
    REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
    CHECK(rig.detection().protocol == Protocol::opaque);
    CHECK(rig.detection().decision == Decision::byte_cap);
    CHECK(rig.detection().bytes == "GET");
  }
  SUBCASE("eof") {
    Rig rig;
    REQUIRE(rig.client_conn->write("GE").ok());
    REQUIRE(rig.client_conn->shutdown_write().ok());
    REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
    CHECK(rig.detection().protocol == Protocol::opaque);
    CHECK(rig.detection().decision == Decision::peer_eof);
    CHECK(rig.detection().bytes == "GE");
    CHECK(rig.detection().eof);
  }
}

TEST_CASE("a reset during detection is an error and the connection is dropped") {
  Rig rig;
  rig.client_conn->abort();
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  REQUIRE_FALSE(rig.result->ok());
  CHECK(rig.result->error().message == "protocol detection: read: connection reset by peer");
  CHECK(rig.result->error().code == ECONNRESET);
}

TEST_CASE("bytes after the decision wait in the socket for the next owner") {
  Rig rig;
  REQUIRE(rig.client_conn->write("POST ").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.done(); }));
  Detection& d = rig.detection();
  CHECK(d.bytes == "POST ");
  REQUIRE(rig.client_conn->write("/upload HTTP/1.1\r\n").ok());
  run_for(*rig.loop, 20ms);  // paused: the inert handler reads nothing
  Recorder next;
  d.connection->set_handler(next);
  d.connection->resume_reading();
  REQUIRE(run_until(*rig.loop, [&] { return next.data == "/upload HTTP/1.1\r\n"; }));
}

TEST_CASE("the owner may destroy the detector inside its callback or before it decides") {
  SUBCASE("inside") {
    auto loop = make_loop();
    REQUIRE(loop);
    Recorder client;
    Pair pair = connect_pair(*loop, client);
    std::unique_ptr<TcpConnection> kept;
    std::unique_ptr<Detector> doomed;
    auto d = Detector::start(std::move(pair.server), {}, [&](Result<Detection> r) {
      REQUIRE(r.ok());
      kept = std::move(r.value().connection);
      doomed.reset();
    });
    REQUIRE(d.ok());
    doomed = std::move(d).value();
    REQUIRE(pair.client->write("GET / HTTP/1.1\r\n").ok());
    REQUIRE(run_until(*loop, [&] { return doomed == nullptr; }));
    CHECK(kept != nullptr);
  }
  SUBCASE("before") {
    Rig rig;
    rig.detector.reset();
    REQUIRE(run_until(*rig.loop, [&] { return rig.client.saw("eof") || rig.client.saw_error(); }));
    CHECK_FALSE(rig.done());
  }
}
