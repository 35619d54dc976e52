// The --controller table source: one long-lived GET /v1/route-table
// ?namespace=<ns> to trellis-controller over HTTP/2 (h2c with prior
// knowledge until mTLS lands; one RouteTableCall per connection, see
// route_table_call.h), whose body is newline-delimited JSON: each line
// a complete route table, an empty line a heartbeat. Each new table is parsed
// and compiled on the caller's loop (off the workers' path) exactly as a
// routes file is (LoadedTable), then handed to `on_table`.
//
// A table that does not parse (or is for another namespace, or whose line
// exceeds routes::Limits::max_bytes) is logged, counted in
// trellis_route_table_errors_total{reason="invalid"} and skipped; a table with
// the version already installed is skipped silently. When the stream breaks
// (the controller restarts or sends GOAWAY, the connection dies or is silent
// for idle_timeout, a request is refused) the current table stays installed
// and the stream reconnects after a jittered exponential back-off
// (initial_backoff doubling up to max_backoff, each delay scaled by a random
// factor in [0.5, 1]); a table received resets the back-off.
//
// Metrics: trellis_route_table_stream_connected (1 while a 200 stream is
// open), trellis_route_table_stream_connects_total{result="ok"|"error"},
// trellis_route_table_received_total (tables installed from the stream),
// trellis_route_table_errors_total{reason="invalid"}.
//
// Threading: the loop thread only.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/metrics/metrics.h"
#include "common/net/address.h"
#include "common/routes/route_table.h"
#include "proxy/app/route_table_call.h"
#include "proxy/app/routes_file.h"
#include "proxy/config/proxy_config.h"

namespace trellis::proxy::app {

struct ControllerStreamOptions {
  HostPort controller;
  std::string ns;  // the client namespace whose table is streamed
  routes::Limits limits;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{10000};
  // The controller sends a heartbeat every 30 s on a quiet stream; nothing
  // at all for this long means the connection is dead.
  std::chrono::milliseconds idle_timeout{90000};
  // Uniform in [0, 1) for the jitter; unset: a seeded generator.
  std::function<double()> random;
};

// "controller: port must be set", "namespace must not be empty",
// "connect_timeout must be positive", "initial_backoff must be positive",
// "max_backoff must not be less than initial_backoff", "idle_timeout must be positive".
Status validate(const ControllerStreamOptions& options);

// The wait before reconnect attempt `failures` (1 for the first failure):
// min(max, initial * 2^(failures-1)) scaled by (0.5 + r / 2), r in [0, 1).
std::chrono::milliseconds reconnect_delay(const ControllerStreamOptions& options, int failures,
                                          double r);

class ControllerStream final : private RouteTableCall::Handler {
 public:
  using OnTable = std::function<void(LoadedTable table)>;

  // Connects at once (from the loop); `registry` receives the metrics.
  static Result<std::unique_ptr<ControllerStream>> start(event::EventLoop& loop,
                                                         ControllerStreamOptions options,
                                                         metrics::Registry& registry,
                                                         OnTable on_table);
  ~ControllerStream();
  ControllerStream(const ControllerStream&) = delete;
  ControllerStream& operator=(const ControllerStream&) = delete;

  // A 200 stream is open.
  bool connected() const { return connected_; }
  // The version of the last table handed to on_table ("" before the first).
  const std::string& version() const { return version_; }
  // Failed attempts since the last table arrived.
  int failures() const { return failures_; }

 private:
  struct Lookup;

  ControllerStream(event::EventLoop& loop, ControllerStreamOptions options, OnTable on_table);
  void connect();
  void resolved(int status, const struct addrinfo* result);
  void dial(const net::Address& address);
  // RouteTableCall::Handler, for the current attempt.
  void on_streaming() override;
  void on_body(const char* data, size_t length) override;
  void on_over(const std::string& why) override;
  void on_line(std::string_view line);
  void on_line_too_long();
  // The attempt (or the name resolution before it) failed: back off, retry.
  void on_attempt_over(const std::string& why);
  void reject(const std::string& why);

  event::EventLoop& loop_;
  ControllerStreamOptions options_;
  OnTable on_table_;
  std::unique_ptr<RouteTableCall> attempt_;
  std::string attempt_address_;  // the address dialled, when not the one configured
  std::string line_;             // the current attempt's line so far
  bool skipping_ = false;        // inside a line longer than limits.max_bytes
  Lookup* lookup_ = nullptr;  // a name resolution in flight; it frees itself
  event::Timer retry_timer_;
  std::string version_;
  std::string last_error_;
  bool connected_ = false;
  int failures_ = 0;
  metrics::Gauge connected_gauge_;
  metrics::Counter connects_ok_;
  metrics::Counter connects_failed_;
  metrics::Counter received_;
  metrics::Counter invalid_;
};

}  // namespace trellis::proxy::app
