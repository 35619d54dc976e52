// Back-pressure: a writer is told when its queue passes the high-water mark
// and when it drains, and a relay built on those two signals moves any
// amount of data with bounded buffering.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "common/net/listener.h"
#include "common/net/tcp_connection.h"
#include "tests/unit/common/net/net_test_util.h"

using trellis::Error;
using trellis::Status;
using trellis::net::ConnectionOptions;
using trellis::net::Listener;
using trellis::net::TcpConnection;
using namespace trellis::net::testing;
using namespace std::chrono_literals;

TEST_CASE("a writer to a peer that does not read is told at high water, then when drained") {
  auto loop = make_loop();
  REQUIRE(loop);
  ConnectionOptions options;
  options.high_water = 512 * 1024;
  options.low_water = 128 * 1024;
  Recorder client;
  auto pair = connect_pair(*loop, client, options);
  Recorder server;
  pair.server->pause_reading();
  REQUIRE(pair.server->start(server).ok());

  size_t queued_when_high = 0;
  size_t queued_when_drained = SIZE_MAX;
  client.after_high = [&] { queued_when_high = pair.client->queued_bytes(); };
  client.after_drained = [&] { queued_when_drained = pair.client->queued_bytes(); };

  constexpr size_t kChunk = 64 * 1024;
  size_t written = 0;
  // Without running the loop nothing drains: the queue must pass high water.
  while (!client.saw("high") && written < 256 * 1024 * 1024) {
    REQUIRE(pair.client->write(pattern(written, kChunk)).ok());
    written += kChunk;
  }
  REQUIRE(client.saw("high"));
  CHECK(queued_when_high > options.high_water);
  CHECK(client.events == std::vector<std::string>{"high"});

  // Still not reading: the queue stays above low water, nothing is reported.
  run_for(*loop, 50ms);
  CHECK(client.events == std::vector<std::string>{"high"});

  pair.server->resume_reading();
  REQUIRE(run_until(*loop, [&] { return client.saw("drained"); }));
  CHECK(queued_when_drained <= options.low_water);
  REQUIRE(run_until(*loop, [&] { return server.data.size() == written; }));
  CHECK(matches_pattern(server.data));
  CHECK(client.events == std::vector<std::string>{"high", "drained"});
  CHECK(pair.client->queued_bytes() == 0);
  CHECK(pair.client->bytes_written() == written);
}

namespace {

// The relay pattern: bytes read from `in` are written to `out`; while
// `out` is above high water, `in` is paused. Buffering stays bounded by
// out's high water plus one read.
struct Relay {
  std::unique_ptr<TcpConnection> in;
  std::unique_ptr<TcpConnection> out;
  size_t max_out_queued = 0;
  int pauses = 0;
  int resumes = 0;
  bool in_eof = false;

  struct InSide : TcpConnection::Handler {
    Relay* relay;
    void on_data(const char* data, size_t length) override {
      REQUIRE(relay->out->write(std::string_view(data, length)).ok());
      relay->max_out_queued = std::max(relay->max_out_queued, relay->out->queued_bytes());
    }
    void on_eof() override {
      relay->in_eof = true;
      REQUIRE(relay->out->shutdown_write().ok());
    }
    void on_error(const Error& e) override { FAIL("relay in: " << e.message); }
  } in_side;

  struct OutSide : TcpConnection::Handler {
    Relay* relay;
    void on_data(const char*, size_t) override {}
    void on_eof() override {}
    void on_error(const Error& e) override { FAIL("relay out: " << e.message); }
    void on_write_high_water() override {
      ++relay->pauses;
      relay->in->pause_reading();
    }
    void on_write_drained() override {
      ++relay->resumes;
      relay->in->resume_reading();
    }
  } out_side;

  Relay() {
    in_side.relay = this;
    out_side.relay = this;
  }
};

// Writes `total` pattern bytes as fast as its own back-pressure allows.
struct Source : TcpConnection::Handler {
  TcpConnection* connection = nullptr;
  size_t total = 0;
  size_t sent = 0;
  bool blocked = false;
  static constexpr size_t kChunk = 256 * 1024;

  void pump() {
    while (!blocked && sent < total) {
      size_t n = std::min(kChunk, total - sent);
      REQUIRE(connection->write(pattern(sent, n)).ok());
      sent += n;
    }
    if (sent == total) REQUIRE(connection->shutdown_write().ok());
  }
  void on_data(const char*, size_t) override {}
  void on_eof() override {}
  void on_error(const Error& e) override { FAIL("source: " << e.message); }
  void on_write_high_water() override { blocked = true; }
  void on_write_drained() override {
    blocked = false;
    pump();
  }
};

// Checks every byte as it arrives instead of keeping them.
struct Sink : TcpConnection::Handler {
  uint64_t received = 0;
  bool intact = true;
  bool eof = false;
  void on_data(const char* data, size_t length) override {
    if (!matches_pattern(std::string(data, length), received)) intact = false;
    received += length;
  }
  void on_eof() override { eof = true; }
  void on_error(const Error& e) override { FAIL("sink: " << e.message); }
};

}  // namespace

TEST_CASE("a relay pauses its source at high water and moves everything with bounded buffers") {
  auto loop = make_loop();
  REQUIRE(loop);
  ConnectionOptions relay_out_options;
  relay_out_options.high_water = 256 * 1024;
  relay_out_options.low_water = 64 * 1024;

  // sink ← relay.out    relay.in ← source
  std::unique_ptr<TcpConnection> sink_connection;
  auto sink_listener = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    sink_connection = std::move(c);
  });
  REQUIRE(sink_listener.ok());
  Relay relay;
  auto relay_listener = Listener::listen(*loop, loopback(), [&](std::unique_ptr<TcpConnection> c) {
    relay.in = std::move(c);
  });
  REQUIRE(relay_listener.ok());

  Status out_status;
  bool out_done = false;
  auto out = TcpConnection::connect(
      *loop, sink_listener.value()->local_address(), 10s,
      [&](const Status& s) {
        out_status = s;
        out_done = true;
      },
      relay_out_options);
  REQUIRE(out.ok());
  relay.out = std::move(out).value();
  Source source;
  source.total = 64 * 1024 * 1024;
  bool source_done = false;
  Status source_status;
  auto source_connection = TcpConnection::connect(
      *loop, relay_listener.value()->local_address(), 10s, [&](const Status& s) {
        source_status = s;
        source_done = true;
      });
  REQUIRE(source_connection.ok());
  source.connection = source_connection.value().get();
  REQUIRE(run_until(*loop, [&] {
    return out_done && source_done && relay.in != nullptr && sink_connection != nullptr;
  }));
  REQUIRE(out_status.ok());
  REQUIRE(source_status.ok());

  Sink sink;
  sink_connection->pause_reading();  // the sink does not read yet
  REQUIRE(sink_connection->start(sink).ok());
  REQUIRE(relay.out->start(relay.out_side).ok());
  REQUIRE(relay.in->start(relay.in_side).ok());
  REQUIRE(source.connection->start(source).ok());
  source.pump();

  // Back-pressure propagates end to end: the relay pauses, then the source
  // is blocked by its own high water.
  REQUIRE(run_until(*loop, [&] { return relay.pauses > 0 && source.blocked; }));
  run_for(*loop, 50ms);
  CHECK(sink.received == 0);
  CHECK(source.sent < source.total);
  const size_t bound = relay_out_options.high_water + trellis::event::EventLoop::kReadBufferSize;
  CHECK(relay.max_out_queued <= bound);

  sink_connection->resume_reading();
  REQUIRE(run_until(*loop, [&] { return sink.eof; }));
  CHECK(sink.received == source.total);
  CHECK(sink.intact);
  CHECK(relay.in_eof);
  CHECK(relay.max_out_queued <= bound);
  CHECK(relay.resumes > 0);
  CHECK(relay.out->bytes_written() == source.total);
  CHECK(relay.in->bytes_read() == source.total);
}
