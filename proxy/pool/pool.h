// The upstream side of the HTTP engine: per-worker connection pools behind
// http::UpstreamPool (see proxy/http/stream.h and docs/proxy.md).
//
//   auto pool = Pool::create(loop, config, metrics);      // one per worker loop
//   auto stream = pool.value()->new_stream(target, exchange_callbacks);
//   stream->send_request_head(std::move(head), end_stream); ...
//
// UpstreamProtocol::http1 — a keep-alive pool of HTTP/1.1 connections per
// endpoint. One request per connection at a time (no pipelining); an idle
// connection is reused most-recently-used first, else a new one is dialled
// up to max_connections_per_endpoint, else the stream waits in the endpoint's
// pending queue (max_pending_per_endpoint; beyond it the stream fails with
// connect_failed at once). Idle connections keep reading, so a peer's close
// drops them from the pool before they are picked. A connection is reused
// only when both messages completed, the response allowed keep-alive
// (not "Connection: close", not HTTP/1.0 without keep-alive) and nothing
// followed the response.
//   Interim responses (100 Continue, 103) are consumed here: only the final
// head reaches on_response_head. An "Expect: 100-continue" request header is
// forwarded as is and the body is sent as soon as the exchange supplies it,
// which RFC 9110 §10.1.1 allows.
//
// UpstreamProtocol::h2c and ::mesh — one multiplexed HTTP/2 connection per
// endpoint, shared by every stream to it on this worker. Streams beyond the
// peer's SETTINGS_MAX_CONCURRENT_STREAMS wait in the endpoint's pending queue
// (no second connection: the peer's limit is its wish). Until the peer's
// SETTINGS arrive only one stream is started, so a peer with a low limit
// never has to refuse streams. GOAWAY drains the connection: streams below
// last_stream_id finish there, the peer refuses the others (refused_stream)
// and new streams go to a new connection. ::mesh marks HTTP/1.x requests with
// "trellis-orig-proto: HTTP/1.1" (or HTTP/1.0) so the peer sidecar restores
// them; a client-supplied field of that name is never forwarded.
//
// Failures (on_upstream_failure) are always reported from the loop, at the
// end of the turn (never from inside new_stream or a stream method):
//   connect_failed  connect refused/unreachable/timed out, or the pending
//                   queue is full; nothing was sent.
//   refused_stream  HTTP/2 REFUSED_STREAM or above a GOAWAY's last stream;
//                   HTTP/1: the connection closed before any response byte
//                   arrived AND it was a reused keep-alive connection (the
//                   peer closed it as we wrote), or before any request byte
//                   was written. Safe to retry, as in Envoy and linkerd: a
//                   server closing an idle connection has not processed a
//                   request that raced the close.
//   reset           closed or reset after (part of) the request was sent;
//                   also a request that cannot be encoded (bad field from a
//                   filter) or whose body contradicts its Content-Length.
//   protocol_error  the endpoint sent a malformed response (the HTTP/1
//                   connection is closed; the HTTP/2 stream is reset, or the
//                   whole connection when the framing broke).
//
// Back-pressure. Request: on_request_congested when the bytes queued for the
// stream (before a connection: its buffer; HTTP/1: the socket's queue;
// HTTP/2: the session's per-stream queue) exceed high_water, writable at
// low_water. Response: pause_response_body stops reading the HTTP/1 socket
// (the rest of the current read, at most 64 KiB, is still delivered) or, on
// HTTP/2, stops returning flow-control credit, so the peer can send at most
// one stream window (h2_stream_window) more.
//
// Cancel: destroying an unfinished stream closes its HTTP/1 connection with a
// reset (a stream whose request never reached the wire gives its connection
// back instead) or resets its HTTP/2 stream with CANCEL.
//
// Threading and lifetime: a Pool and its streams belong to one loop thread.
// Destroy streams before their pool if you can; a stream that outlives its
// pool becomes inert (no calls, no callbacks). Do not destroy the pool from
// inside a stream callback. Connections own nothing of the exchange's: the
// callbacks object must outlive its stream only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/http1/decoder.h"
#include "common/metrics/metrics.h"
#include "proxy/http/stream.h"
#include "proxy/pool/transport.h"

namespace trellis::proxy::pool {

struct PoolConfig {
  std::chrono::milliseconds connect_timeout{1000};
  // A pooled connection with no stream for this long is closed (HTTP/2:
  // after a GOAWAY). Keep it below the upstream servers' own keep-alive
  // timeouts to avoid racing their closes.
  std::chrono::milliseconds idle_timeout{60000};
  // HTTP/1: connections per endpoint, connecting and idle ones included.
  size_t max_connections_per_endpoint = 1024;
  // HTTP/1: idle connections kept per endpoint; more are closed when freed.
  size_t max_idle_per_endpoint = 128;
  // Streams waiting for a connection (HTTP/1) or for stream capacity
  // (HTTP/2) per endpoint; beyond it new streams fail with connect_failed.
  size_t max_pending_per_endpoint = 1024;
  // Request-side back-pressure thresholds (bytes queued for one stream).
  size_t high_water = 1024 * 1024;
  size_t low_water = 256 * 1024;
  // HTTP/2 receive windows: a paused stream holds at most one stream window;
  // the connection window should cover many paused streams so that one
  // slow consumer does not stall the others.
  uint32_t h2_stream_window = 256 * 1024;
  uint32_t h2_connection_window = 16 * 1024 * 1024;
  // Response head and body limits for HTTP/1 (a violation is protocol_error).
  http1::Limits http1_limits;
};

// Errors are exact and path-qualified: "pool config: connect_timeout must be
// positive, got 0 ms", "pool config: low_water (10) must not exceed
// high_water (5)", ...
Status validate(const PoolConfig& config);

// Counters of one pool (one worker); read on its loop thread.
struct PoolStats {
  uint64_t connections_opened = 0;   // connection attempts that succeeded
  uint64_t connections_closed = 0;   // of those, the ones that have ended
  uint64_t connect_failures = 0;     // refused, unreachable or timed out
  uint64_t requests_http1 = 0;       // streams created, per protocol
  uint64_t requests_h2c = 0;
  uint64_t requests_mesh = 0;
  uint64_t malformed_responses = 0;  // protocol_error failures (bad input from upstream)
  size_t pending = 0;                // streams waiting for a connection or capacity now
  size_t open_http1 = 0;             // established connections now, per protocol
  size_t open_h2c = 0;
  size_t open_mesh = 0;
};

// Prometheus handles shared by every worker's pool (updates are lock-free):
//   trellis_upstream_connections_open{protocol="http1"|"h2c"|"mesh"}  gauge
//   trellis_upstream_connect_failures_total                          counter
// Register once per registry (main thread), then copy into each worker's
// pool at creation.
struct PoolMetrics {
  metrics::Gauge open_http1;
  metrics::Gauge open_h2c;
  metrics::Gauge open_mesh;
  metrics::Counter connect_failures;

  static Result<PoolMetrics> create(metrics::Registry& registry);
};

struct Context;

class Pool final : public http::UpstreamPool {
 public:
  // Errors: validate()'s.
  static Result<std::unique_ptr<Pool>> create(event::EventLoop& loop, const PoolConfig& config,
                                              PoolMetrics metrics = {},
                                              TransportFactory transports = tcp_transports());
  ~Pool() override;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Returns at once; the stream waits for a connection by itself.
  // `callbacks` must outlive the returned stream.
  std::unique_ptr<http::UpstreamStream> new_stream(const http::UpstreamTarget& target,
                                                   http::UpstreamCallbacks& callbacks) override;

  // Starts draining (idempotent): idle connections close now, HTTP/1
  // connections close when their request ends, HTTP/2 connections send
  // GOAWAY and close once their streams are done. Streams created later
  // still work, on connections that close when idle.
  void drain();
  // No connection is open or being dialled.
  bool idle() const;
  // Endpoints that have connections or waiting streams (emptied ones are
  // forgotten on a later turn).
  size_t endpoints() const;

  const PoolStats& stats() const;
  const PoolConfig& config() const;

 private:
  explicit Pool(std::unique_ptr<Context> context);
  std::unique_ptr<Context> context_;
};

}  // namespace trellis::proxy::pool
