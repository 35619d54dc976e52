#include "common/net/listener.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/common/net/net_test_util.h"

using trellis::Status;
using trellis::net::Address;
using trellis::net::ConnectionOptions;
using trellis::net::Listener;
using trellis::net::ListenerOptions;
using trellis::net::TcpConnection;
using namespace trellis::net::testing;
using namespace std::chrono_literals;

namespace {

struct Dialer {
  std::vector<std::unique_ptr<TcpConnection>> connections;
  int succeeded = 0;
  int failed = 0;
  Status last_failure;

  void dial(trellis::event::EventLoop& loop, const Address& to) {
    auto c = TcpConnection::connect(loop, to, 10s, [this](const Status& s) {
      if (s.ok()) {
        ++succeeded;
      } else {
        ++failed;
        last_failure = s;
      }
    });
    REQUIRE(c.ok());
    connections.push_back(std::move(c).value());
  }
};

}  // namespace

TEST_CASE("two SO_REUSEPORT listeners share a port and both accept") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<std::unique_ptr<TcpConnection>> first_accepted;
  std::vector<std::unique_ptr<TcpConnection>> second_accepted;
  auto first = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    first_accepted.push_back(std::move(c));
  });
  REQUIRE(first.ok());
  Address shared = first.value()->local_address();
  CHECK(shared.port() != 0);
  auto second = Listener::listen(*loop, shared, [&](std::unique_ptr<TcpConnection> c) {
    second_accepted.push_back(std::move(c));
  });
  REQUIRE(second.ok());
  CHECK(second.value()->local_address() == shared);

  // The kernel hashes each connection to one of the two: with 64 of them,
  // each listener gets some (all on one side has probability 2^-63).
  Dialer dialer;
  for (int i = 0; i < 64; ++i) dialer.dial(*loop, shared);
  REQUIRE(run_until(*loop, [&] {
    return dialer.succeeded == 64 && first_accepted.size() + second_accepted.size() == 64;
  }));
  CHECK(first_accepted.size() > 0);
  CHECK(second_accepted.size() > 0);
  CHECK(first.value()->accepted() + second.value()->accepted() == 64);
}

TEST_CASE("binding a port in use without SO_REUSEPORT fails with the errno text") {
  auto loop = make_loop();
  REQUIRE(loop);
  ListenerOptions exclusive;
  exclusive.reuse_port = false;
  auto first = Listener::listen(*loop, loopback(), [](std::unique_ptr<TcpConnection>) {}, exclusive);
  REQUIRE(first.ok());
  Address taken = first.value()->local_address();
  std::string expected = "bind " + taken.to_string() + ": address already in use";

  auto second = Listener::listen(*loop, taken, [](std::unique_ptr<TcpConnection>) {}, exclusive);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message == expected);
  CHECK(second.error().code == EADDRINUSE);

  // SO_REUSEPORT on the newcomer alone is not enough: both must opt in.
  auto sharing = Listener::listen(*loop, taken, [](std::unique_ptr<TcpConnection>) {});
  REQUIRE_FALSE(sharing.ok());
  CHECK(sharing.error().message == expected);
}

TEST_CASE("binding an address this host does not have fails with the errno text") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto foreign = Address::parse("192.0.2.1:0").value();  // TEST-NET-1: never local
  auto r = Listener::listen(*loop, foreign, [](std::unique_ptr<TcpConnection>) {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "bind 192.0.2.1:0: address not available");
  CHECK(r.error().code == EADDRNOTAVAIL);
}

TEST_CASE("bad listener arguments fail with exact errors") {
  auto loop = make_loop();
  REQUIRE(loop);
  ListenerOptions negative;
  negative.backlog = -1;
  auto r1 = Listener::listen(*loop, loopback(), [](std::unique_ptr<TcpConnection>) {}, negative);
  REQUIRE_FALSE(r1.ok());
  CHECK(r1.error().message == "listen 127.0.0.1:0: backlog must not be negative, got -1");

  ListenerOptions inverted;
  inverted.connection.high_water = 5;
  inverted.connection.low_water = 10;
  auto r2 = Listener::listen(*loop, loopback(), [](std::unique_ptr<TcpConnection>) {}, inverted);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().message == "listen 127.0.0.1:0: low_water (10) must not exceed high_water (5)");

  auto r3 = Listener::listen(*loop, loopback(), nullptr);
  REQUIRE_FALSE(r3.ok());
  CHECK(r3.error().message == "listen 127.0.0.1:0: no accept callback");
}

TEST_CASE("stop() refuses new connections but keeps the accepted ones working") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::unique_ptr<TcpConnection> accepted;
  auto listener = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    accepted = std::move(c);
  });
  REQUIRE(listener.ok());
  Address address = listener.value()->local_address();
  Dialer dialer;
  dialer.dial(*loop, address);
  REQUIRE(run_until(*loop, [&] { return dialer.succeeded == 1 && accepted; }));

  listener.value()->stop();
  CHECK_FALSE(listener.value()->listening());
  Dialer late;
  late.dial(*loop, address);
  REQUIRE(run_until(*loop, [&] { return late.failed == 1; }));
  CHECK(late.last_failure.error().code == ECONNREFUSED);

  Recorder server;
  Recorder client;
  REQUIRE(accepted->start(server).ok());
  REQUIRE(dialer.connections[0]->start(client).ok());
  REQUIRE(dialer.connections[0]->write("after stop").ok());
  REQUIRE(run_until(*loop, [&] { return server.data == "after stop"; }));
}

TEST_CASE("a listener destroyed inside its accept callback still hands over that connection") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<std::unique_ptr<TcpConnection>> accepted;
  std::unique_ptr<Listener> listener;
  auto created = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    accepted.push_back(std::move(c));
    listener.reset();
  });
  REQUIRE(created.ok());
  listener = std::move(created).value();
  Address address = listener->local_address();
  Dialer dialer;
  for (int i = 0; i < 4; ++i) dialer.dial(*loop, address);
  REQUIRE(run_until(*loop, [&] { return dialer.succeeded + dialer.failed == 4; }));
  CHECK(accepted.size() == 1);
  CHECK(listener == nullptr);
  // The others were queued on the closed socket or refused: none succeeded
  // in being accepted, and nothing crashed.
  run_for(*loop, 20ms);
  CHECK(accepted.size() == 1);
}

TEST_CASE("accepted connections get the listener's connection options") {
  auto loop = make_loop();
  REQUIRE(loop);
  ListenerOptions options;
  options.connection.idle_timeout = 20ms;
  std::unique_ptr<TcpConnection> accepted;
  auto listener = Listener::listen(
      *loop, loopback(), [&](std::unique_ptr<TcpConnection> c) { accepted = std::move(c); },
      options);
  REQUIRE(listener.ok());
  Dialer dialer;
  dialer.dial(*loop, listener.value()->local_address());
  REQUIRE(run_until(*loop, [&] { return accepted != nullptr; }));
  Recorder server;
  REQUIRE(accepted->start(server).ok());
  REQUIRE(run_until(*loop, [&] { return server.saw("idle"); }));
}
