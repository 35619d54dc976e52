#include "common/net/tcp_connection.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/event/timer.h"
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
using namespace trellis::net::testing;
using namespace std::chrono_literals;

namespace {

// Echoes everything back; half-closes when the peer does.
struct Echo : TcpConnection::Handler {
  TcpConnection* connection = nullptr;
  void on_data(const char* data, size_t length) override {
    REQUIRE(connection->write(std::string_view(data, length)).ok());
  }
  void on_eof() override { REQUIRE(connection->shutdown_write().ok()); }
  void on_error(const Error&) override {}
};

// An echo server: accepts, echoes, and keeps each connection until it ends.
struct EchoServer : TcpConnection::Handler {
  struct Session : TcpConnection::Handler {
    EchoServer* server;
    std::unique_ptr<TcpConnection> connection;
    void on_data(const char* data, size_t length) override {
      REQUIRE(connection->write(std::string_view(data, length)).ok());
    }
    void on_eof() override { connection->close(); }
    void on_error(const Error&) override { end(); }
    void on_closed() override { end(); }
    void end() {
      ++server->finished;
      connection.reset();  // inside this connection's own callback
    }
  };
  void on_data(const char*, size_t) override {}
  void on_eof() override {}
  void on_error(const Error&) override {}

  explicit EchoServer(EventLoop& loop) {
    auto l = Listener::listen(loop, loopback(), [this](std::unique_ptr<TcpConnection> c) {
      sessions.push_back(std::make_unique<Session>());
      Session& s = *sessions.back();
      s.server = this;
      s.connection = std::move(c);
      REQUIRE(s.connection->start(s).ok());
    });
    REQUIRE(l.ok());
    listener = std::move(l).value();
  }
  std::unique_ptr<Listener> listener;
  std::vector<std::unique_ptr<Session>> sessions;
  int finished = 0;
};

std::unique_ptr<TcpConnection> must_connect(EventLoop& loop, const Address& to, Status* outcome,
                                            bool* done,
                                            std::chrono::milliseconds timeout = 10s,
                                            const ConnectionOptions& options = {}) {
  auto c = TcpConnection::connect(
      loop, to, timeout,
      [outcome, done](const Status& s) {
        *outcome = s;
        *done = true;
      },
      options);
  REQUIRE(c.ok());
  return std::move(c).value();
}

}  // namespace

TEST_CASE("echo round-trip with byte counters and matching addresses") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Echo echo;
  echo.connection = pair.server.get();
  REQUIRE(pair.server->start(echo).ok());

  REQUIRE(pair.client->write("hello, ").ok());
  REQUIRE(pair.client->write("trellis").ok());
  REQUIRE(run_until(*loop, [&] { return client.data.size() == 14; }));
  CHECK(client.data == "hello, trellis");
  CHECK(pair.client->bytes_written() == 14);
  CHECK(pair.server->bytes_read() == 14);
  CHECK(pair.server->bytes_written() == 14);
  CHECK(pair.client->bytes_read() == 14);
  CHECK(pair.client->queued_bytes() == 0);

  auto client_local = pair.client->local_address();
  auto server_peer = pair.server->peer_address();
  REQUIRE(client_local.ok());
  REQUIRE(server_peer.ok());
  CHECK(client_local.value() == server_peer.value());
  CHECK(pair.client->peer_address().value() == pair.server->local_address().value());
  CHECK(pair.client->state() == TcpConnection::State::open);
}

TEST_CASE("writes of one loop turn leave together, in one write, at the end of the turn") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());

  REQUIRE(pair.client->write("HTTP/1.1 200 OK\r\n\r\n").ok());
  REQUIRE(pair.client->write("body").ok());
  CHECK(pair.client->bytes_written() == 0);  // corked until the turn ends
  CHECK(pair.client->queued_bytes() == 23);
  REQUIRE(run_until(*loop, [&] { return server.data.size() == 23; }));
  CHECK(server.data == "HTTP/1.1 200 OK\r\n\r\nbody");
  CHECK(server.data_calls == 1);  // one write, one segment, one read
  CHECK(pair.client->bytes_written() == 23);
  CHECK(pair.client->queued_bytes() == 0);

  // Writes from inside an I/O callback (the usual case) are corked too.
  server.after_data = [&] {
    REQUIRE(pair.server->write("a").ok());
    REQUIRE(pair.server->write("b").ok());
    CHECK(pair.server->bytes_written() == 0);
  };
  REQUIRE(pair.client->write("ping").ok());
  REQUIRE(run_until(*loop, [&] { return client.data == "ab"; }));
  CHECK(client.data_calls == 1);
}

TEST_CASE("a write that reaches kCorkLimit goes at once, after what was queued, in order") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());

  std::string head = pattern(0, 100);
  std::string body = pattern(100, TcpConnection::kCorkLimit);
  REQUIRE(pair.client->write(head).ok());
  CHECK(pair.client->bytes_written() == 0);
  REQUIRE(pair.client->write(body).ok());
  CHECK(pair.client->bytes_written() == head.size() + body.size());  // one writev, not corked
  REQUIRE(pair.client->write(pattern(100 + body.size(), 10)).ok());
  REQUIRE(run_until(*loop, [&] { return server.data.size() == 110 + body.size(); }));
  CHECK(matches_pattern(server.data));
}

TEST_CASE("writes made outside I/O callbacks are flushed without waiting for other I/O") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());

  // From a timer: nothing else happens on the loop, so bytes left waiting
  // would sit there until the deadline.
  Timer timer(*loop, [&] { REQUIRE(pair.client->write("from a timer").ok()); });
  timer.start(1ms);
  REQUIRE(run_until(*loop, [&] { return server.data == "from a timer"; }, 2s));

  // From a deferred task (the loop's idle phase).
  loop->defer([&] { REQUIRE(pair.client->write(", deferred").ok()); });
  REQUIRE(run_until(*loop, [&] { return server.data == "from a timer, deferred"; }, 2s));

  // Between two runs of the loop.
  REQUIRE(pair.client->write(", between").ok());
  REQUIRE(run_until(*loop, [&] { return server.data == "from a timer, deferred, between"; }, 2s));
}

TEST_CASE("bytes still corked go out on shutdown_write, close and destruction") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());
  REQUIRE(pair.client->write("before FIN").ok());
  REQUIRE(pair.client->shutdown_write().ok());
  CHECK(pair.client->bytes_written() == 10);
  REQUIRE(run_until(*loop, [&] { return server.saw("eof"); }));
  CHECK(server.data == "before FIN");

  Recorder client2;
  auto pair2 = connect_pair(*loop, client2);
  Recorder server2;
  REQUIRE(pair2.server->start(server2).ok());
  REQUIRE(pair2.client->write("last words").ok());
  pair2.client.reset();  // the owner lets go with the bytes corked
  REQUIRE(run_until(*loop, [&] { return server2.saw("eof") || server2.saw_error(); }));
  CHECK(server2.data == "last words");

  Recorder client3;
  auto pair3 = connect_pair(*loop, client3);
  Recorder server3;
  REQUIRE(pair3.server->start(server3).ok());
  server3.after_eof = [&] { pair3.server->close(); };
  REQUIRE(pair3.client->write("goodbye").ok());
  pair3.client->close();
  CHECK(pair3.client->bytes_written() == 7);
  REQUIRE(run_until(*loop, [&] { return client3.saw("closed"); }));
  CHECK(server3.data == "goodbye");
}

TEST_CASE("many concurrent connections each get their own bytes back") {
  auto loop = make_loop();
  REQUIRE(loop);
  EchoServer server(*loop);
  constexpr int kClients = 40;
  constexpr size_t kPayload = 48 * 1024;
  struct Client {
    Recorder recorder;
    std::unique_ptr<TcpConnection> connection;
    Status outcome;
    bool connected = false;
  };
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<Client>();
    Client* raw = c.get();
    c->connection = must_connect(*loop, server.listener->local_address(), &c->outcome, &c->connected);
    c->recorder.after_eof = [raw] { raw->connection->close(); };
    clients.push_back(std::move(c));
  }
  REQUIRE(run_until(*loop, [&] {
    return std::all_of(clients.begin(), clients.end(), [](auto& c) { return c->connected; });
  }));
  for (int i = 0; i < kClients; ++i) {
    Client& c = *clients[i];
    REQUIRE(c.outcome.ok());
    REQUIRE(c.connection->start(c.recorder).ok());
    REQUIRE(c.connection->write(pattern(static_cast<uint64_t>(i), kPayload)).ok());
    REQUIRE(c.connection->shutdown_write().ok());
  }
  REQUIRE(run_until(*loop, [&] {
    return server.finished == kClients &&
           std::all_of(clients.begin(), clients.end(),
                       [](auto& c) { return c->recorder.saw("closed"); });
  }));
  for (int i = 0; i < kClients; ++i) {
    CAPTURE(i);
    CHECK(clients[i]->recorder.data.size() == kPayload);
    CHECK(matches_pattern(clients[i]->recorder.data, static_cast<uint64_t>(i)));
  }
  CHECK(server.listener->accepted() == kClients);
}

TEST_CASE("connecting to a closed port fails with ECONNREFUSED, on a later turn") {
  auto loop = make_loop();
  REQUIRE(loop);
  uint16_t port;
  {
    auto l = Listener::listen(*loop, loopback(), [](std::unique_ptr<TcpConnection>) {});
    REQUIRE(l.ok());
    port = l.value()->local_address().port();
  }  // closed again: nothing listens on `port`
  Status outcome;
  bool done = false;
  auto c = must_connect(*loop, loopback(port), &outcome, &done);
  CHECK_FALSE(done);  // never from inside connect()
  REQUIRE(run_until(*loop, [&] { return done; }));
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().message ==
        "connect to 127.0.0.1:" + std::to_string(port) + ": connection refused");
  CHECK(outcome.error().code == ECONNREFUSED);
  CHECK(c->state() == TcpConnection::State::closed);
  CHECK(c->write("x").error().message == "write: connection is closed");
}

TEST_CASE("a connect the kernel refuses synchronously is still reported through the callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  Status outcome;
  bool done = false;
  // TCP to a multicast address: Linux fails connect() itself with ENETUNREACH.
  auto c = must_connect(*loop, Address::parse("224.0.0.1:80").value(), &outcome, &done);
  CHECK_FALSE(done);
  REQUIRE(run_until(*loop, [&] { return done; }));
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().message == "connect to 224.0.0.1:80: network is unreachable");
  CHECK(outcome.error().code == ENETUNREACH);
  CHECK(c->state() == TcpConnection::State::closed);
}

TEST_CASE("connect times out against a listener whose accept queue is full") {
  auto loop = make_loop();
  REQUIRE(loop);
  // A raw listener with backlog 0 that never accepts: once its queue holds a
  // connection, the kernel drops further SYNs and those connects hang.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  Address any = loopback();
  REQUIRE(bind(fd, any.sockaddr_ptr(), any.sockaddr_length()) == 0);
  REQUIRE(listen(fd, 0) == 0);
  sockaddr_storage bound;
  socklen_t length = sizeof(bound);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0);
  Address target = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&bound), length).value();

  std::vector<std::unique_ptr<TcpConnection>> fillers;
  Status outcome;
  bool timed_out = false;
  for (int attempt = 0; attempt < 16 && !timed_out; ++attempt) {
    bool done = false;
    auto c = must_connect(*loop, target, &outcome, &done, 300ms);
    REQUIRE(run_until(*loop, [&] { return done; }));
    if (outcome.ok()) {
      fillers.push_back(std::move(c));  // filled one more slot of the queue
    } else {
      timed_out = true;
      CHECK(c->state() == TcpConnection::State::closed);
    }
  }
  REQUIRE(timed_out);
  CHECK(outcome.error().message == "connect to " + target.to_string() + ": timed out after 300 ms");
  CHECK(outcome.error().code == ETIMEDOUT);
  fillers.clear();
  close(fd);
}

TEST_CASE("bad connect arguments fail at once with exact errors") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto noop = [](const Status&) {};
  auto zero = TcpConnection::connect(*loop, loopback(1), 0ms, noop);
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.error().message == "connect to 127.0.0.1:1: timeout must be positive, got 0 ms");
  auto negative = TcpConnection::connect(*loop, loopback(1), -5ms, noop);
  REQUIRE_FALSE(negative.ok());
  CHECK(negative.error().message == "connect to 127.0.0.1:1: timeout must be positive, got -5 ms");
  auto no_callback = TcpConnection::connect(*loop, loopback(1), 1s, nullptr);
  REQUIRE_FALSE(no_callback.ok());
  CHECK(no_callback.error().message == "connect to 127.0.0.1:1: no completion callback");
  ConnectionOptions inverted;
  inverted.high_water = 5;
  inverted.low_water = 10;
  auto bad_options = TcpConnection::connect(*loop, loopback(1), 1s, noop, inverted);
  REQUIRE_FALSE(bad_options.ok());
  CHECK(bad_options.error().message ==
        "connect to 127.0.0.1:1: low_water (10) must not exceed high_water (5)");
}

TEST_CASE("connection options are validated with exact errors") {
  ConnectionOptions o;
  CHECK(trellis::net::validate(o).ok());
  o.high_water = 0;
  o.low_water = 0;
  CHECK(trellis::net::validate(o).error().message == "high_water must be positive");
  o = {};
  o.idle_timeout = -1ms;
  CHECK(trellis::net::validate(o).error().message == "idle_timeout must not be negative");
  o = {};
  o.close_timeout = 0ms;
  CHECK(trellis::net::validate(o).error().message == "close_timeout must be positive");
  o = {};
  o.low_water = o.high_water;  // equal is allowed
  CHECK(trellis::net::validate(o).ok());
}

TEST_CASE("misuse of a connection's state is reported, not undefined") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());
  CHECK(pair.server->start(server).error().message == "start: already started");
  CHECK(pair.client->write("").ok());
  REQUIRE(pair.client->shutdown_write().ok());
  CHECK(pair.client->shutdown_write().ok());  // idempotent
  auto after = pair.client->write("x");
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().message == "write: write side is shut down");
  CHECK(after.error().code == EPIPE);
  pair.client->close();
  CHECK(pair.client->write("x").error().message == "write: connection is closing");
  pair.server->abort();
  CHECK(pair.server->write("x").error().message == "write: connection is closed");
  CHECK(pair.server->shutdown_write().error().message == "shutdown: connection is closed");
  CHECK(pair.server->local_address().error().message == "local address: connection is closed");
  CHECK(pair.server->original_destination().error().message ==
        "original destination: connection is closed");

  Status outcome;
  bool done = false;
  auto connecting = must_connect(*loop, loopback(1), &outcome, &done);
  CHECK(connecting->state() == TcpConnection::State::connecting);
  CHECK(connecting->write("x").error().message == "write: connection not established");
  CHECK(connecting->start(server).error().message == "start: connection not established");
  CHECK(connecting->shutdown_write().error().message == "shutdown: connection not established");
  connecting->close();  // closes at once; the connect callback is dropped
  CHECK(connecting->state() == TcpConnection::State::closed);
  run_for(*loop, 20ms);
  CHECK_FALSE(done);
}

TEST_CASE("pause_reading holds data back until resume_reading") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  pair.server->pause_reading();  // before start: start() does not read
  REQUIRE(pair.server->start(server).ok());
  REQUIRE(pair.client->write("held").ok());
  run_for(*loop, 50ms);
  CHECK(server.data.empty());
  pair.server->resume_reading();
  REQUIRE(run_until(*loop, [&] { return server.data == "held"; }));
  pair.server->pause_reading();
  REQUIRE(pair.client->write(" back").ok());
  run_for(*loop, 50ms);
  CHECK(server.data == "held");
  pair.server->resume_reading();
  REQUIRE(run_until(*loop, [&] { return server.data == "held back"; }));
}

TEST_CASE("half-close: client finishes first, server keeps writing, then the reverse") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());

  // Client → server FIN; the server can still talk.
  REQUIRE(pair.client->write("request").ok());
  REQUIRE(pair.client->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return server.saw("eof"); }));
  CHECK(server.data == "request");
  REQUIRE(pair.server->write("response").ok());
  REQUIRE(pair.server->write(" continues").ok());
  REQUIRE(run_until(*loop, [&] { return client.data == "response continues"; }));
  CHECK_FALSE(client.saw("eof"));
  REQUIRE(pair.server->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return client.saw("eof"); }));
  CHECK(client.events == std::vector<std::string>{"eof"});
  CHECK(server.events == std::vector<std::string>{"eof"});

  // The reverse direction on a fresh pair: server finishes first.
  Recorder client2;
  auto pair2 = connect_pair(*loop, client2);
  Recorder server2;
  REQUIRE(pair2.server->start(server2).ok());
  REQUIRE(pair2.server->write("banner").ok());
  REQUIRE(pair2.server->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return client2.saw("eof"); }));
  CHECK(client2.data == "banner");
  REQUIRE(pair2.client->write("still talking").ok());
  REQUIRE(run_until(*loop, [&] { return server2.data == "still talking"; }));
  CHECK(server2.events.empty());
}

TEST_CASE("graceful close flushes everything queued, then both sides finish cleanly") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());
  constexpr size_t kTotal = 8 * 1024 * 1024;
  pair.client->pause_reading();  // make the server queue in user space
  for (size_t off = 0; off < kTotal; off += 256 * 1024) {
    REQUIRE(pair.server->write(pattern(off, 256 * 1024)).ok());
  }
  CHECK(pair.server->queued_bytes() > 0);
  REQUIRE(server.events == std::vector<std::string>{"high"});
  pair.server->close();
  CHECK(pair.server->state() == TcpConnection::State::closing);
  CHECK(server.events.size() == 1);  // on_closed never fires inside close()
  client.after_eof = [&] { pair.client->close(); };
  pair.client->resume_reading();
  REQUIRE(run_until(*loop, [&] { return server.saw("closed") && client.saw("closed"); }));
  CHECK(client.data.size() == kTotal);
  CHECK(matches_pattern(client.data));
  CHECK(server.events == std::vector<std::string>{"high", "closed"});  // no drained while closing
  CHECK(pair.server->bytes_written() == kTotal);
  CHECK(pair.server->state() == TcpConnection::State::closed);
}

TEST_CASE("a graceful close that makes no progress is reset after close_timeout") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  ConnectionOptions server_options;
  server_options.close_timeout = 200ms;
  auto pair = connect_pair(*loop, client, {}, server_options);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());
  pair.client->pause_reading();
  // Enough to fill both kernel buffers, so the close cannot finish.
  for (int i = 0; i < 256 && pair.server->queued_bytes() < 4 * 1024 * 1024; ++i) {
    REQUIRE(pair.server->write(pattern(0, 256 * 1024)).ok());
    run_for(*loop, 1ms);
  }
  REQUIRE(pair.server->queued_bytes() >= 4 * 1024 * 1024);
  pair.server->close();
  REQUIRE(run_until(*loop, [&] { return server.saw("closed"); }));
  CHECK(pair.server->state() == TcpConnection::State::closed);
  pair.client->resume_reading();
  REQUIRE(run_until(*loop, [&] { return client.saw_error(); }));
  CHECK_FALSE(client.saw("eof"));
  CHECK(client.last_error.message == "read: connection reset by peer");
  CHECK(client.last_error.code == ECONNRESET);
}

TEST_CASE("abort resets the connection: the peer sees ECONNRESET") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  REQUIRE(pair.server->start(server).ok());
  pair.server->abort();
  CHECK(pair.server->state() == TcpConnection::State::closed);
  REQUIRE(run_until(*loop, [&] { return client.saw_error(); }));
  CHECK(client.events == std::vector<std::string>{"error: read: connection reset by peer"});
  CHECK(client.last_error.code == ECONNRESET);
  CHECK(client.events.size() == 1);
  CHECK(pair.client->state() == TcpConnection::State::closed);
  run_for(*loop, 20ms);
  CHECK(server.events.empty());  // abort reports nothing
}

TEST_CASE("idle timeout: told after idle_timeout without progress, then closed gracefully") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  ConnectionOptions server_options;
  server_options.idle_timeout = 400ms;
  auto pair = connect_pair(*loop, client, {}, server_options);
  Recorder server;
  std::chrono::milliseconds last_read{0};
  std::chrono::milliseconds idle_at{0};
  // A few small writes, each 20 ms after the previous one arrived.
  int sent = 1;
  Timer next_tick(*loop, [&] {
    if (pair.client->state() != TcpConnection::State::open || server.saw("idle")) return;
    ++sent;
    REQUIRE(pair.client->write("tick").ok());
  });
  server.after_data = [&] {
    last_read = loop->now();
    if (sent < 5) next_tick.start(20ms);
  };
  server.after_idle = [&] {
    idle_at = loop->now();
    REQUIRE(pair.server->write("bye").ok());  // flushed by the close that follows
  };
  REQUIRE(pair.server->start(server).ok());
  REQUIRE(pair.client->write("tick").ok());
  client.after_eof = [&] { pair.client->close(); };
  REQUIRE(run_until(*loop, [&] { return server.saw("closed") && client.saw("closed"); }));
  // The timeout counts from the last progress, not from start(): had it
  // counted from start(), the later ticks would have come less than 400 ms
  // before it. (Timers never fire early, so this holds on any machine.)
  CHECK(idle_at - last_read >= 400ms);
  CHECK(server.data.size() >= 4);
  CHECK(server.data.size() % 4 == 0);
  CHECK(server.events == std::vector<std::string>{"idle", "closed"});
  CHECK(client.data == "bye");
  CHECK(client.events == std::vector<std::string>{"eof", "closed"});
}

TEST_CASE("original_destination on a socket that was not redirected") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  auto dst = pair.server->original_destination();
  if (dst.ok()) {
    // Conntrack tracks this flow without NAT: the kernel answers with the
    // local address itself, which is what callers fall back to anyway.
    CHECK(dst.value() == pair.server->local_address().value());
  } else {
    CHECK(dst.error().message == "no original destination: the connection was not redirected");
    CHECK((dst.error().code == ENOENT || dst.error().code == ENOPROTOOPT));
  }
}

TEST_CASE("IPv6 loopback connections work when the host has ::1") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::unique_ptr<TcpConnection> accepted;
  auto listener = Listener::listen(*loop, Address::parse("[::1]:0").value(),
                                   [&](std::unique_ptr<TcpConnection> c) { accepted = std::move(c); });
  REQUIRE(listener.ok());
  Status outcome;
  bool done = false;
  auto c = must_connect(*loop, listener.value()->local_address(), &outcome, &done);
  REQUIRE(run_until(*loop, [&] { return done && accepted; }));
  REQUIRE(outcome.ok());
  CHECK(accepted->peer_address().value() == c->local_address().value());
  CHECK(accepted->local_address()->ip() == "::1");
  auto dst = accepted->original_destination();
  if (!dst.ok()) {
    CHECK(dst.error().message == "no original destination: the connection was not redirected");
  }
}
