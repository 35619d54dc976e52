// Splice on real sockets on 127.0.0.1: relaying both ways with bounded
// buffering, half-close in either order, replayed bytes, failures turned
// into resets, idle timeout, and destruction at any moment.
#include "proxy/tcp/splice.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "common/net/listener.h"
#include "tests/unit/common/net/net_test_util.h"

using trellis::Error;
using trellis::Status;
using trellis::event::EventLoop;
using trellis::event::Timer;
using trellis::net::Address;
using trellis::net::ConnectionOptions;
using trellis::net::Listener;
using trellis::net::ListenerOptions;
using trellis::net::TcpConnection;
using trellis::proxy::tcp::Splice;
using trellis::proxy::tcp::SpliceEnd;
using trellis::proxy::tcp::SpliceMetrics;
using trellis::proxy::tcp::SpliceOptions;
using trellis::proxy::tcp::SpliceResult;
using namespace trellis::net::testing;
using namespace std::chrono_literals;

namespace {

constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;
constexpr size_t kReadSize = EventLoop::kReadBufferSize;

ConnectionOptions small_buffers() {
  ConnectionOptions o;
  o.high_water = kHighWater;
  o.low_water = kLowWater;
  return o;
}

// Echoes what it reads, pausing its reading while its own writes back up;
// on EOF it half-closes after the echo has flushed.
struct EchoServer : TcpConnection::Handler {
  std::unique_ptr<TcpConnection> connection;
  bool saw_eof = false;
  std::string error;

  void on_data(const char* data, size_t length) override {
    REQUIRE(connection->write(std::string_view(data, length)).ok());
  }
  void on_eof() override {
    saw_eof = true;
    REQUIRE(connection->shutdown_write().ok());
  }
  void on_error(const Error& e) override { error = e.message; }
  void on_write_high_water() override { connection->pause_reading(); }
  void on_write_drained() override { connection->resume_reading(); }
};

// A client that uploads `total` pattern bytes as fast as back-pressure lets
// it, half-closes, and reads the echo slowly: a pause after every MiB.
struct SlowClient : TcpConnection::Handler {
  explicit SlowClient(EventLoop& loop) : resume_timer(loop, [this] { connection->resume_reading(); }) {}

  std::unique_ptr<TcpConnection> connection;
  Timer resume_timer;
  size_t total = 0;
  size_t sent = 0;
  size_t received = 0;
  bool blocked = false;
  bool pattern_ok = true;
  bool saw_eof = false;
  std::string error;

  void pump() {
    while (!blocked && sent < total) {
      size_t n = std::min<size_t>(256 * 1024, total - sent);
      REQUIRE(connection->write(pattern(sent, n)).ok());
      sent += n;
    }
    if (sent == total && !blocked) REQUIRE(connection->shutdown_write().ok());
  }
  void on_data(const char* data, size_t length) override {
    std::string_view got(data, length);
    for (size_t i = 0; i < got.size() && pattern_ok; ++i) {
      pattern_ok = got[i] == static_cast<char>('a' + (received + i) % 26);
    }
    size_t before = received / (1024 * 1024);
    received += length;
    if (received / (1024 * 1024) != before) {
      connection->pause_reading();
      resume_timer.start(2ms);
    }
  }
  void on_eof() override { saw_eof = true; }
  void on_error(const Error& e) override { error = e.message; }
  void on_write_high_water() override { blocked = true; }
  void on_write_drained() override {
    blocked = false;
    pump();
  }
};

// An accepting socket whose connections the test picks up.
struct Acceptor {
  std::unique_ptr<Listener> listener;
  std::unique_ptr<TcpConnection> accepted;

  Acceptor(EventLoop& loop, const ConnectionOptions& options = {}) {
    ListenerOptions lo;
    lo.connection = options;
    auto l = Listener::listen(
        loop, loopback(), [this](std::unique_ptr<TcpConnection> c) { accepted = std::move(c); },
        lo);
    REQUIRE(l.ok());
    listener = std::move(l).value();
  }
  Address address() const { return listener->local_address(); }
};

std::unique_ptr<TcpConnection> dial(EventLoop& loop, const Address& to, TcpConnection::Handler& h,
                                    const ConnectionOptions& options = {}) {
  bool done = false;
  auto c = TcpConnection::connect(
      loop, to, 10s,
      [&](const Status& s) {
        REQUIRE(s.ok());
        done = true;
      },
      options);
  REQUIRE(c.ok());
  REQUIRE(run_until(loop, [&] { return done; }));
  REQUIRE(c.value()->start(h).ok());
  return std::move(c).value();
}

// client ↔ [accepted | splice | upstream] ↔ upstream server, all on one loop.
struct Rig {
  std::unique_ptr<EventLoop> loop = make_loop();
  Recorder client;
  Recorder server;
  std::unique_ptr<TcpConnection> client_conn;
  std::unique_ptr<TcpConnection> server_conn;
  std::unique_ptr<Splice> splice;
  std::optional<SpliceResult> result;

  // Connects both pairs and splices them with Splice::create.
  void create(std::string replay = "", bool client_eof = false, SpliceOptions options = {},
              const SpliceMetrics* metrics = nullptr) {
    REQUIRE(loop);
    Pair a = connect_pair(*loop, client);
    Recorder upstream_side;  // replaced by the splice
    Pair b = connect_pair(*loop, upstream_side);
    client_conn = std::move(a.client);
    // A client EOF seen by detection is a real FIN on the socket.
    if (client_eof) REQUIRE(client_conn->shutdown_write().ok());
    server_conn = std::move(b.server);
    REQUIRE(server_conn->start(server).ok());
    auto s = Splice::create(std::move(a.server), std::move(b.client), std::move(replay), client_eof,
                            options, [this](const SpliceResult& r) { result = r; }, metrics);
    REQUIRE(s.ok());
    splice = std::move(s).value();
  }
};

}  // namespace

TEST_CASE("32 MiB echo through a splice to a slow reader: bounded queues, half-close both ways") {
  auto loop = make_loop();
  REQUIRE(loop);
  Acceptor upstream(*loop);
  EchoServer echo;
  Acceptor proxy(*loop, small_buffers());

  SlowClient client(*loop);
  client.total = 32 * 1024 * 1024;
  client.connection = dial(*loop, proxy.address(), client);
  REQUIRE(run_until(*loop, [&] { return proxy.accepted != nullptr; }));

  SpliceOptions options;
  options.upstream = small_buffers();
  std::optional<SpliceResult> result;
  auto made = Splice::connect(std::move(proxy.accepted), upstream.address(), "", false, options,
                              [&](const SpliceResult& r) { result = r; });
  REQUIRE(made.ok());
  std::unique_ptr<Splice> splice = std::move(made).value();
  CHECK_FALSE(splice->connected());
  REQUIRE(run_until(*loop, [&] { return upstream.accepted != nullptr; }));
  echo.connection = std::move(upstream.accepted);
  REQUIRE(echo.connection->start(echo).ok());
  REQUIRE(run_until(*loop, [&] { return splice->connected(); }));

  size_t max_to_client = 0;
  size_t max_to_upstream = 0;
  Timer monitor(*loop, [&] {
    max_to_client = std::max(max_to_client, splice->queued_to_client());
    max_to_upstream = std::max(max_to_upstream, splice->queued_to_upstream());
  });
  monitor.start(1ms, 1ms);

  client.pump();
  REQUIRE(run_until(*loop, [&] { return result.has_value() && client.saw_eof; }, 120s));
  monitor.stop();

  CHECK(result->end == SpliceEnd::completed);
  CHECK(result->error.message.empty());
  CHECK(result->client_to_upstream == client.total);
  CHECK(result->upstream_to_client == client.total);
  CHECK(client.received == client.total);
  CHECK(client.pattern_ok);
  CHECK(client.saw_eof);    // the echo's FIN reached the client
  CHECK(echo.saw_eof);      // the client's FIN reached the echo server
  CHECK(client.error.empty());
  CHECK(echo.error.empty());
  // Each queue is bounded by its high water plus one read.
  CHECK(max_to_client <= kHighWater + kReadSize);
  CHECK(max_to_upstream <= kHighWater + kReadSize);
  // The reader was slow enough for back-pressure to matter.
  CHECK(max_to_client > kLowWater);
}

TEST_CASE("the upstream half-closes first and the client keeps talking") {
  Rig rig;
  rig.create();
  REQUIRE(rig.server_conn->write("220 ready\r\n").ok());
  REQUIRE(rig.server_conn->shutdown_write().ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.client.saw("eof"); }));
  CHECK(rig.client.data == "220 ready\r\n");
  CHECK_FALSE(rig.result.has_value());

  REQUIRE(rig.client_conn->write("QUIT\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.server.data == "QUIT\r\n"; }));
  CHECK_FALSE(rig.result.has_value());
  REQUIRE(rig.client_conn->shutdown_write().ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.result.has_value(); }));
  CHECK(rig.server.saw("eof"));
  CHECK(rig.result->end == SpliceEnd::completed);
  CHECK(rig.result->client_to_upstream == 6);
  CHECK(rig.result->upstream_to_client == 11);
}

TEST_CASE("replayed bytes go upstream first, and a client EOF from detection is passed on") {
  Rig rig;
  rig.create("GET", false);
  REQUIRE(rig.client_conn->write(" / HTTP/1.0\r\n\r\n").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.server.data.size() == 18; }));
  CHECK(rig.server.data == "GET / HTTP/1.0\r\n\r\n");
  CHECK(rig.splice->client_to_upstream() == 18);

  Rig eof_rig;
  eof_rig.create("ping", true);
  REQUIRE(run_until(*eof_rig.loop, [&] { return eof_rig.server.saw("eof"); }));
  CHECK(eof_rig.server.data == "ping");
  REQUIRE(eof_rig.server_conn->write("pong").ok());
  REQUIRE(eof_rig.server_conn->shutdown_write().ok());
  REQUIRE(run_until(*eof_rig.loop, [&] { return eof_rig.result.has_value(); }));
  CHECK(eof_rig.result->end == SpliceEnd::completed);
  CHECK(eof_rig.client.data == "pong");
}

TEST_CASE("a connect failure resets the client and reports the connect error") {
  auto loop = make_loop();
  REQUIRE(loop);
  Address closed_port;
  {
    Acceptor gone(*loop);
    closed_port = gone.address();
  }
  Acceptor proxy(*loop);
  Recorder client;
  auto client_conn = dial(*loop, proxy.address(), client);
  REQUIRE(run_until(*loop, [&] { return proxy.accepted != nullptr; }));
  std::optional<SpliceResult> result;
  auto splice = Splice::connect(std::move(proxy.accepted), closed_port, "hello", false, {},
                                [&](const SpliceResult& r) { result = r; });
  REQUIRE(splice.ok());
  REQUIRE(run_until(*loop, [&] { return result.has_value() && client.saw_error(); }));
  CHECK(result->end == SpliceEnd::connect_failed);
  CHECK(result->error.message == "connect to " + closed_port.to_string() + ": connection refused");
  CHECK(result->error.code == ECONNREFUSED);
  CHECK(client.last_error.message == "read: connection reset by peer");
}

TEST_CASE("a reset on either side resets the other") {
  SUBCASE("upstream resets") {
    Rig rig;
    rig.create();
    REQUIRE(rig.client_conn->write("x").ok());
    REQUIRE(run_until(*rig.loop, [&] { return rig.server.data == "x"; }));
    rig.server_conn->abort();
    REQUIRE(run_until(*rig.loop, [&] { return rig.result.has_value() && rig.client.saw_error(); }));
    CHECK(rig.result->end == SpliceEnd::upstream_failed);
    CHECK(rig.result->error.message == "read: connection reset by peer");
    CHECK(rig.client.last_error.message == "read: connection reset by peer");
  }
  SUBCASE("client resets") {
    Rig rig;
    rig.create();
    rig.client_conn->abort();
    REQUIRE(run_until(*rig.loop, [&] { return rig.result.has_value() && rig.server.saw_error(); }));
    CHECK(rig.result->end == SpliceEnd::client_failed);
    CHECK(rig.server.last_error.message == "read: connection reset by peer");
  }
}

TEST_CASE("an idle splice is closed on both sides") {
  Rig rig;
  SpliceOptions options;
  options.idle_timeout = 100ms;
  rig.create("", false, options);
  REQUIRE(rig.client_conn->write("once").ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.server.data == "once"; }));
  REQUIRE(run_until(*rig.loop, [&] { return rig.client.saw("eof") && rig.server.saw("eof"); }));
  CHECK_FALSE(rig.client.saw_error());
  // Both sides answer the FIN: the splice's graceful close completes.
  REQUIRE(rig.client_conn->shutdown_write().ok());
  REQUIRE(rig.server_conn->shutdown_write().ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.result.has_value(); }));
  CHECK(rig.result->end == SpliceEnd::idle_timeout);
}

TEST_CASE("the owner may destroy the splice inside done or in the middle of a transfer") {
  SUBCASE("inside done") {
    auto loop = make_loop();
    REQUIRE(loop);
    Recorder client, server, upstream_side;
    Pair a = connect_pair(*loop, client);
    Pair b = connect_pair(*loop, upstream_side);
    REQUIRE(b.server->start(server).ok());
    bool called = false;
    std::unique_ptr<Splice> doomed;
    auto made = Splice::create(std::move(a.server), std::move(b.client), "", false, {},
                               [&](const SpliceResult&) {
                                 called = true;
                                 doomed.reset();
                               });
    REQUIRE(made.ok());
    doomed = std::move(made).value();
    b.server->abort();
    REQUIRE(run_until(*loop, [&] { return called; }));
    CHECK(doomed == nullptr);
    REQUIRE(run_until(*loop, [&] { return client.saw_error(); }));
  }
  SUBCASE("mid-transfer") {
    Rig rig;
    rig.create();
    REQUIRE(rig.client_conn->write(pattern(0, 4 * 1024 * 1024)).ok());
    REQUIRE(run_until(*rig.loop, [&] { return rig.server.data.size() > 0; }));
    rig.splice.reset();
    REQUIRE(run_until(*rig.loop, [&] { return rig.client.saw_error() || rig.client.saw("eof"); }));
    CHECK_FALSE(rig.result.has_value());
  }
}

TEST_CASE("splice metrics count live bytes and open splices") {
  trellis::metrics::Registry registry;
  auto gauge = registry.gauge("trellis_tcp_connections_open", "open", {"direction"});
  auto bytes = registry.counter("trellis_tcp_received_bytes_total", "bytes", {"direction", "from"});
  REQUIRE(gauge.ok());
  REQUIRE(bytes.ok());
  SpliceMetrics m;
  m.open = gauge->with_labels({"outbound"}).value();
  m.bytes_from_client = bytes->with_labels({"outbound", "client"}).value();
  m.bytes_from_upstream = bytes->with_labels({"outbound", "upstream"}).value();
  {
    Rig rig;
    rig.create("abc", false, {}, &m);
    CHECK(m.open.value() == 1);
    CHECK(m.bytes_from_client.value() == 3);
    REQUIRE(rig.client_conn->write("defg").ok());
    REQUIRE(rig.server_conn->write("hi").ok());
    REQUIRE(run_until(*rig.loop, [&] { return rig.client.data == "hi" && rig.server.data == "abcdefg"; }));
    CHECK(m.bytes_from_client.value() == 7);
    CHECK(m.bytes_from_upstream.value() == 2);
  }
  CHECK(m.open.value() == 0);
}

TEST_CASE("bad options and arguments are refused with exact errors") {
  SpliceOptions o;
  o.idle_timeout = -1ms;
  CHECK(trellis::proxy::tcp::validate(o).error().message == "idle_timeout must not be negative");
  o = {};
  o.connect_timeout = 0ms;
  CHECK(trellis::proxy::tcp::validate(o).error().message == "connect_timeout must be positive, got 0 ms");
  o = {};
  o.upstream.high_water = 5;
  o.upstream.low_water = 10;
  CHECK(trellis::proxy::tcp::validate(o).error().message ==
        "upstream: low_water (10) must not exceed high_water (5)");

  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  Pair a = connect_pair(*loop, client);
  auto no_callback = Splice::connect(std::move(a.server), loopback(1), "", false, {}, nullptr);
  REQUIRE_FALSE(no_callback.ok());
  CHECK(no_callback.error().message == "splice: no done callback");
  Recorder other;
  Pair b = connect_pair(*loop, other);
  b.server->abort();
  auto closed = Splice::connect(std::move(b.server), loopback(1), "", false, {},
                                [](const SpliceResult&) {});
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.error().message == "splice: client: start: connection is closed");
}
