// Splice: relays bytes both ways between a client connection and an
// upstream connection (opaque TCP: unknown destinations, non-HTTP Service
// ports, the inbound side's plaintext pass-through).
//
//   client ──► [read] ──► upstream.write     upstream ──► [read] ──► client.write
//
// - Back-pressure, both ways: while one side's write queue is above its high
//   water the other side is not read; reading resumes when it drains. Memory
//   per splice stays within the two high-water marks plus one read.
// - Half-close: EOF from one side shuts down the other side's write half once
//   its queue has flushed; the other direction carries on. When both
//   directions have ended, both connections are closed gracefully and the
//   splice reports `completed`.
// - Failure: a reset or error on one side aborts (RST) the other, so that a
//   failure is never turned into a clean EOF.
// - Idle timeout: no byte moved either way for `idle_timeout` closes both
//   sides (reported between one and 1.25 times the timeout after the last byte).
//
// Replay: bytes already read from the client (what protocol detection
// peeked) are written to the upstream before anything else, and a client
// that already half-closed during detection is passed on as such.
//
// Lifetime: the owner holds the unique_ptr and may destroy the splice at any
// moment on the loop thread, also inside `done`; destroying it closes both
// connections at once. `done` is called at most once, as the splice's last
// action. Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/metrics/metrics.h"
#include "common/net/address.h"
#include "common/net/tcp_connection.h"

namespace trellis::proxy::tcp {

struct SpliceOptions {
  // No byte moved either way for this long ends the splice; zero disables it.
  std::chrono::milliseconds idle_timeout{0};
  // Splice::connect only: how long the upstream connect may take.
  std::chrono::milliseconds connect_timeout{5000};
  // Splice::connect only: options of the upstream connection it opens.
  net::ConnectionOptions upstream;
};

// Errors: "idle_timeout must not be negative", "connect_timeout must be
// positive, got 0 ms", "upstream: low_water (10) must not exceed high_water (5)".
Status validate(const SpliceOptions& options);

enum class SpliceEnd {
  completed,        // both directions ended with EOF and were flushed
  connect_failed,   // the upstream could not be reached; the client was reset
  client_failed,    // the client reset or failed; the upstream was reset
  upstream_failed,  // the upstream reset or failed; the client was reset
  idle_timeout,     // nothing moved for idle_timeout; both sides were closed
};

// "completed", "connect_failed", ...: for logs and metric labels.
std::string_view splice_end_name(SpliceEnd end);

struct SpliceResult {
  SpliceEnd end = SpliceEnd::completed;
  Error error;  // what failed (message and errno); empty for completed and idle_timeout
  uint64_t client_to_upstream = 0;  // bytes read from the client, replay included
  uint64_t upstream_to_client = 0;  // bytes read from the upstream
};

// Optional metric handles (an empty handle ignores updates). The integrator
// resolves them once per worker, e.g. from trellis_tcp_connections_open
// {direction} and trellis_tcp_{received,sent}_bytes_total{direction}; they
// must outlive every splice that uses them.
struct SpliceMetrics {
  metrics::Gauge open;                   // splices alive
  metrics::Counter bytes_from_client;    // grows as bytes are read, not at the end
  metrics::Counter bytes_from_upstream;
};

class Splice {
 public:
  using DoneCallback = std::function<void(const SpliceResult& result)>;

  // Relays between an accepted `client` and an established `upstream`.
  // Either may be fresh (not started) or already started by a previous
  // handler (protocol detection): the splice takes over as their handler and
  // resumes reading. `replay` goes to the upstream first; `client_eof` says
  // the client half-closed before the splice took over.
  // Errors (both connections are then closed): "splice: no done callback",
  // "splice: client: start: connection is closed", option errors.
  static Result<std::unique_ptr<Splice>> create(std::unique_ptr<net::TcpConnection> client,
                                                std::unique_ptr<net::TcpConnection> upstream,
                                                std::string replay, bool client_eof,
                                                const SpliceOptions& options, DoneCallback done,
                                                const SpliceMetrics* metrics = nullptr);

  // Connects to `upstream` itself (within options.connect_timeout). The
  // client is not read until the connection is up; if it fails the client is
  // reset and `done` reports connect_failed with the connect error.
  static Result<std::unique_ptr<Splice>> connect(std::unique_ptr<net::TcpConnection> client,
                                                 const net::Address& upstream, std::string replay,
                                                 bool client_eof, const SpliceOptions& options,
                                                 DoneCallback done,
                                                 const SpliceMetrics* metrics = nullptr);

  ~Splice();
  Splice(const Splice&) = delete;
  Splice& operator=(const Splice&) = delete;

  bool connected() const { return upstream_.connection != nullptr && !connecting_; }
  uint64_t client_to_upstream() const { return client_.bytes_read; }
  uint64_t upstream_to_client() const { return upstream_.bytes_read; }
  // Bytes waiting in each side's write queue (what back-pressure bounds).
  size_t queued_to_client() const;
  size_t queued_to_upstream() const;

 private:
  // One connection and its direction's state; the handler of that connection.
  struct Side final : net::TcpConnection::Handler {
    Side(Splice& s, bool is_client) : splice(s), client(is_client) {}
    void on_data(const char* data, size_t length) override { splice.on_data(*this, data, length); }
    void on_eof() override { splice.on_eof(*this); }
    void on_error(const Error& error) override { splice.on_error(*this, error); }
    void on_write_high_water() override { splice.on_high_water(*this); }
    void on_write_drained() override { splice.on_drained(*this); }
    void on_idle_timeout() override { splice.on_connection_idle(); }
    void on_closed() override { splice.on_closed(*this); }

    Splice& splice;
    const bool client;
    std::unique_ptr<net::TcpConnection> connection;
    bool eof = false;     // this side sent FIN: nothing more to read from it
    bool closed = false;  // its graceful close finished
    bool blocked = false; // not read while the other side's queue is above high water
    uint64_t bytes_read = 0;
  };

  Splice(event::EventLoop& loop, const SpliceOptions& options, DoneCallback done,
         const SpliceMetrics* metrics);
  Status take_client(std::unique_ptr<net::TcpConnection> client, std::string replay,
                     bool client_eof);
  Status begin_relay(std::unique_ptr<net::TcpConnection> upstream);
  void on_connected(const Status& status);

  Side& other(Side& side) { return side.client ? upstream_ : client_; }
  void on_data(Side& from, const char* data, size_t length);
  void on_eof(Side& from);
  void on_error(Side& side, const Error& error);
  void on_high_water(Side& side);
  void on_drained(Side& side);
  void on_connection_idle();
  void on_closed(Side& side);
  void on_idle_tick();

  void forward(Side& from, std::string_view bytes);
  void update_reading(Side& side);
  // Both sides finished (EOF each way) or idle: close both gracefully.
  void close_both(SpliceEnd end);
  // `failed` broke: reset the other side and report.
  void fail(Side& failed, SpliceEnd end, Error error);
  void finish(SpliceEnd end, Error error);

  event::EventLoop& loop_;
  SpliceOptions options_;
  DoneCallback done_;
  const SpliceMetrics* metrics_;
  Side client_;
  Side upstream_;
  std::string replay_;        // held while the upstream connects
  bool client_eof_at_start_ = false;
  bool connecting_ = false;
  bool closing_ = false;      // close_both() called: waiting for both on_closed
  bool finished_ = false;
  SpliceEnd closing_end_ = SpliceEnd::completed;
  event::Timer idle_timer_;
  uint64_t progress_mark_ = 0;  // bytes moved as of the last idle tick
  std::chrono::milliseconds last_progress_{0};
};

}  // namespace trellis::proxy::tcp
