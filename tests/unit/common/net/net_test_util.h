// Helpers for the net tests: a handler that records what happens to a
// connection (with optional hooks), and a connected client/server pair on
// 127.0.0.1 with a kernel-chosen port.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/net/listener.h"
#include "common/net/tcp_connection.h"
#include "tests/unit/common/event/loop_test_util.h"

namespace trellis::net::testing {

using event::testing::make_loop;
using event::testing::run_for;
using event::testing::run_until;

struct Recorder : TcpConnection::Handler {
  std::string data;
  std::vector<std::string> events;  // "eof", "error: ...", "high", "drained", "idle", "closed"
  Error last_error;
  size_t data_calls = 0;
  std::function<void()> after_data, after_eof, after_error, after_high, after_drained,
      after_idle, after_closed;

  void on_data(const char* bytes, size_t length) override {
    ++data_calls;
    data.append(bytes, length);
    if (after_data) after_data();
  }
  void on_eof() override { record("eof", after_eof); }
  void on_error(const Error& error) override {
    last_error = error;
    record("error: " + error.message, after_error);
  }
  void on_write_high_water() override { record("high", after_high); }
  void on_write_drained() override { record("drained", after_drained); }
  void on_idle_timeout() override { record("idle", after_idle); }
  void on_closed() override { record("closed", after_closed); }

  bool saw(const std::string& event) const {
    for (const auto& e : events) {
      if (e == event) return true;
    }
    return false;
  }
  bool saw_error() const {
    for (const auto& e : events) {
      if (e.rfind("error: ", 0) == 0) return true;
    }
    return false;
  }

 private:
  void record(std::string event, const std::function<void()>& hook) {
    events.push_back(std::move(event));
    if (hook) hook();  // last: the hook may destroy the connection and this recorder
  }
};

inline Address loopback(uint16_t port = 0) { return Address::from_ip("127.0.0.1", port).value(); }

struct Pair {
  std::unique_ptr<TcpConnection> client;
  std::unique_ptr<TcpConnection> server;  // accepted, not started
};

// A connected pair. The client is started with `client_handler`; the
// server side is left to the test to start.
inline Pair connect_pair(event::EventLoop& loop, Recorder& client_handler,
                         const ConnectionOptions& client_options = {},
                         const ConnectionOptions& server_options = {}) {
  Pair pair;
  ListenerOptions listener_options;
  listener_options.connection = server_options;
  auto listener = Listener::listen(
      loop, loopback(),
      [&pair](std::unique_ptr<TcpConnection> c) { pair.server = std::move(c); }, listener_options);
  REQUIRE(listener.ok());
  bool connected = false;
  auto client = TcpConnection::connect(
      loop, listener.value()->local_address(), std::chrono::seconds(10),
      [&](const Status& s) {
        REQUIRE(s.ok());
        connected = true;
      },
      client_options);
  REQUIRE(client.ok());
  pair.client = std::move(client).value();
  REQUIRE(run_until(loop, [&] { return connected && pair.server != nullptr; }));
  listener.value().reset();  // its callback refers to this frame
  REQUIRE(pair.client->start(client_handler).ok());
  return pair;
}

// Deterministic content so that a receiver can verify every byte.
inline std::string pattern(uint64_t offset, size_t length) {
  std::string s(length, '\0');
  for (size_t i = 0; i < length; ++i) s[i] = static_cast<char>('a' + (offset + i) % 26);
  return s;
}

inline bool matches_pattern(const std::string& data, uint64_t offset = 0) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] != static_cast<char>('a' + (offset + i) % 26)) return false;
  }
  return true;
}

}  // namespace trellis::net::testing
