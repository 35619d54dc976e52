// The lifetime rule: the owner may destroy a TcpConnection at any moment on
// its loop thread, including from inside any of its callbacks, and nothing
// fires afterwards. ASan turns any violation into a failure.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "common/net/listener.h"
#include "common/net/tcp_connection.h"
#include "tests/unit/common/net/net_test_util.h"

using trellis::Error;
using trellis::Status;
using trellis::event::EventLoop;
using trellis::net::ConnectionOptions;
using trellis::net::Listener;
using trellis::net::TcpConnection;
using namespace trellis::net::testing;
using namespace std::chrono_literals;

TEST_CASE("destroying a connection inside on_data stops further reads at once") {
  auto loop = make_loop();
  REQUIRE(loop);
  Recorder client;
  auto pair = connect_pair(*loop, client);
  Recorder server;
  server.after_data = [&] { pair.server.reset(); };
  // 1 MiB arrives as many reads; the first callback destroys the connection.
  REQUIRE(pair.client->write(pattern(0, 1024 * 1024)).ok());
  run_for(*loop, 20ms);  // let it all land in the server's receive buffer
  REQUIRE(pair.server->start(server).ok());
  REQUIRE(run_until(*loop, [&] { return pair.server == nullptr; }));
  run_for(*loop, 30ms);
  CHECK(server.data_calls == 1);
  CHECK(server.events.empty());
  // Closed with unread input, the server's socket resets the client.
  REQUIRE(run_until(*loop, [&] { return client.saw_error() || client.saw("eof"); }));
}

TEST_CASE("destroying a connection inside on_write_high_water, called from write()") {
  auto loop = make_loop();
  REQUIRE(loop);
  ConnectionOptions options;
  options.high_water = 64 * 1024;
  options.low_water = 0;
  Recorder client;
  auto pair = connect_pair(*loop, client, options);
  Recorder server;
  pair.server->pause_reading();
  REQUIRE(pair.server->start(server).ok());
  client.after_high = [&] { pair.client.reset(); };
  size_t writes = 0;
  while (pair.client != nullptr && writes < 4096) {
    Status s = pair.client->write(pattern(0, 64 * 1024));  // may destroy the connection
    CHECK(s.ok());
    ++writes;
  }
  CHECK(pair.client == nullptr);
  CHECK(client.events == std::vector<std::string>{"high"});
  run_for(*loop, 20ms);
  CHECK(client.events.size() == 1);
}

TEST_CASE("destroying a connection inside on_eof, on_error and on_closed") {
  auto loop = make_loop();
  REQUIRE(loop);

  Recorder eof_client;
  auto eof_pair = connect_pair(*loop, eof_client);
  eof_client.after_eof = [&] { eof_pair.client.reset(); };
  REQUIRE(eof_pair.server->shutdown_write().ok());

  Recorder error_client;
  auto error_pair = connect_pair(*loop, error_client);
  error_client.after_error = [&] { error_pair.client.reset(); };
  error_pair.server->abort();

  Recorder closed_client;
  auto closed_pair = connect_pair(*loop, closed_client);
  closed_client.after_closed = [&] { closed_pair.client.reset(); };
  closed_pair.client->close();
  REQUIRE(closed_pair.server->shutdown_write().ok());  // lets the close complete

  REQUIRE(run_until(*loop, [&] {
    return !eof_pair.client && !error_pair.client && !closed_pair.client;
  }));
  run_for(*loop, 20ms);
  CHECK(eof_client.events == std::vector<std::string>{"eof"});
  CHECK(error_client.events == std::vector<std::string>{"error: read: connection reset by peer"});
  CHECK(closed_client.events == std::vector<std::string>{"closed"});
}

TEST_CASE("destroying a connection inside on_write_drained and on_idle_timeout") {
  auto loop = make_loop();
  REQUIRE(loop);
  ConnectionOptions options;
  options.high_water = 64 * 1024;
  options.low_water = 16 * 1024;
  Recorder client;
  auto pair = connect_pair(*loop, client, options);
  Recorder server;
  pair.server->pause_reading();
  REQUIRE(pair.server->start(server).ok());
  while (!client.saw("high")) REQUIRE(pair.client->write(pattern(0, 64 * 1024)).ok());
  client.after_drained = [&] { pair.client.reset(); };
  pair.server->resume_reading();
  REQUIRE(run_until(*loop, [&] { return pair.client == nullptr; }));
  CHECK(client.events == std::vector<std::string>{"high", "drained"});

  ConnectionOptions idle_options;
  idle_options.idle_timeout = 30ms;
  Recorder idle_client;
  auto idle_pair = connect_pair(*loop, idle_client, idle_options);
  idle_client.after_idle = [&] { idle_pair.client.reset(); };  // no close() follows
  REQUIRE(run_until(*loop, [&] { return idle_pair.client == nullptr; }));
  run_for(*loop, 60ms);
  CHECK(idle_client.events == std::vector<std::string>{"idle"});
}

TEST_CASE("destroying a connection inside its connect callback, on success and on failure") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::unique_ptr<TcpConnection> accepted;
  auto listener = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    accepted = std::move(c);
  });
  REQUIRE(listener.ok());
  std::unique_ptr<TcpConnection> ok_connection;
  int ok_calls = 0;
  auto c1 = TcpConnection::connect(*loop, listener.value()->local_address(), 10s,
                                   [&](const Status& s) {
                                     CHECK(s.ok());
                                     ok_connection.reset();
                                     ++ok_calls;  // the callback object outlives the connection
                                   });
  REQUIRE(c1.ok());
  ok_connection = std::move(c1).value();
  REQUIRE(run_until(*loop, [&] { return ok_calls == 1; }));

  uint16_t closed_port = listener.value()->local_address().port();
  listener.value().reset();
  std::unique_ptr<TcpConnection> refused_connection;
  int refused_calls = 0;
  auto c2 = TcpConnection::connect(*loop, loopback(closed_port), 10s, [&](const Status& s) {
    CHECK_FALSE(s.ok());
    refused_connection.reset();
    ++refused_calls;
  });
  REQUIRE(c2.ok());
  refused_connection = std::move(c2).value();
  REQUIRE(run_until(*loop, [&] { return ok_calls == 1 && refused_calls == 1; }));
  run_for(*loop, 20ms);
  CHECK(ok_calls == 1);
  CHECK(refused_calls == 1);
}

TEST_CASE("destroying connections with a connect or writes in flight cancels them safely") {
  auto loop = make_loop();
  REQUIRE(loop);
  bool called = false;
  auto connecting = TcpConnection::connect(*loop, loopback(1), 10s,
                                           [&](const Status&) { called = true; });
  REQUIRE(connecting.ok());
  connecting.value().reset();  // uv_connect_t still pending: its cancellation finds no owner

  Recorder client;
  auto pair = connect_pair(*loop, client);
  pair.server->pause_reading();
  for (int i = 0; i < 64; ++i) REQUIRE(pair.client->write(pattern(0, 256 * 1024)).ok());
  REQUIRE(pair.client->queued_bytes() > 0);  // a uv_write_t is in flight
  REQUIRE(pair.client->shutdown_write().ok());  // and a shutdown waits behind it
  auto events_before = client.events;
  pair.client.reset();
  run_for(*loop, 30ms);
  CHECK_FALSE(called);
  CHECK(client.events == events_before);
}

TEST_CASE("an owner that dies inside a callback deletes itself on the next loop turn") {
  auto loop = make_loop();
  REQUIRE(loop);
  // A session owning its connection ends itself when the peer is done, the
  // way proxy sessions do: its own method is on the stack, so it uses
  // delete_later rather than destroying itself at once.
  struct Session : TcpConnection::Handler {
    EventLoop* loop;
    std::unique_ptr<Session>* owner;
    std::unique_ptr<TcpConnection> connection;
    bool* destroyed;
    bool ended = false;
    void on_data(const char*, size_t) override {}
    void on_eof() override {
      ended = true;
      connection.reset();  // no callback from it after this
      loop->delete_later(std::move(*owner));
      CHECK(ended);  // still alive until this method returns
    }
    void on_error(const Error&) override { FAIL("unexpected error"); }
    ~Session() override { *destroyed = true; }
  };
  Recorder client;
  auto pair = connect_pair(*loop, client);
  bool destroyed = false;
  std::unique_ptr<Session> session = std::make_unique<Session>();
  session->loop = loop.get();
  session->owner = &session;
  session->connection = std::move(pair.server);
  session->destroyed = &destroyed;
  REQUIRE(session->connection->start(*session).ok());
  REQUIRE(pair.client->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return destroyed; }));
  CHECK(session == nullptr);
  REQUIRE(run_until(*loop, [&] { return client.saw("eof") || client.saw_error(); }));
}
