// The route-table stream service: HTTP/2 (h2c with prior knowledge for now,
// see transport.h) on which each sidecar opens one long-lived
// GET /v1/route-table and receives its namespace's route table as
// newline-delimited JSON: the current version at once, then every new one.
//
//   200, content-type: application/x-ndjson
//   {"version":"...","namespace":"shop",...}\n      <- the table when the stream opens
//   {"version":"...","namespace":"shop",...}\n      <- each new version
//   \n                                              <- heartbeat while nothing changes
//
// A line is one complete table (docs/route-table.md); an empty line is a
// heartbeat, sent on a stream idle for heartbeat_interval so that either end
// can tell a dead peer from a quiet one. The body never ends while the
// controller runs; on shutdown every stream ends (END_STREAM) and the
// connection gets GOAWAY, and the sidecar reconnects (to another replica).
//
// Memory: every stream of a namespace shares one immutable resolve::Table.
// A stream feeds the table's pieces into its HTTP/2 queue feed_bytes at a
// time as the peer's flow-control window and the socket take them, so a slow
// sidecar holds at most feed_bytes of copies, the table being written, and
// the latest version waiting behind it: intermediate versions are skipped,
// and a version equal to the one the stream already has is never sent again.
//
// The namespace comes from the request (request.h); refused requests are
// answered with their status and a one-line text/plain explanation.
//
// Metrics: trellis_controller_streams (open streams),
// trellis_controller_namespace_streams{namespace} (per client namespace with
// streams), trellis_controller_stream_connections,
// trellis_controller_stream_requests_total{code},
// trellis_controller_stream_protocol_errors_total,
// trellis_controller_tables_sent_total (tables completely handed to the
// socket), trellis_controller_push_latency_seconds (from the change that
// produced a table to its last byte handed to the socket).
//
// Threading: the loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/http2/session.h"
#include "common/metrics/metrics.h"
#include "common/net/address.h"
#include "common/net/listener.h"
#include "mesh-controller/resolve/table.h"
#include "mesh-controller/stream/request.h"
#include "mesh-controller/stream/transport.h"

namespace trellis::controller::stream {

using Clock = std::chrono::steady_clock;

struct ServerOptions {
  RequestPolicy policy;
  // How much of a table a stream hands to its HTTP/2 queue at a time.
  size_t feed_bytes = 64 * 1024;
  // Transport output above this stops feeding and reading until it drains.
  // Each connection may hold this much beyond the kernel's socket buffer: at
  // 1 MiB, 200 streams reading slower than the controller writes raised its
  // peak RSS by 190 MiB, and the allocator kept 120 MiB of it
  // (bench/README.md, "Mesh controller at scale").
  size_t high_water = 256 * 1024;
  std::chrono::milliseconds heartbeat_interval{30000};
  // shutdown() waits this long for connections to close after GOAWAY, then
  // closes what is left.
  std::chrono::milliseconds shutdown_timeout{5000};
  // Our SETTINGS (role is always server). Sidecars send no request bodies,
  // so the receive windows stay small.
  http2::SessionConfig session;
};

// "feed_bytes must be positive", "high_water must be positive",
// "heartbeat_interval must be positive", "shutdown_timeout must be positive",
// or http2::validate's error.
Status validate(const ServerOptions& options);

class Server {
 public:
  // Told which client namespaces have streams: their tables are wanted.
  class Observer {
   public:
    // The first stream for `ns` opened: publish() its table now or as soon as
    // it can be computed. publish() may be called from inside this call.
    virtual void on_namespace_watched(const std::string& ns) = 0;
    // The last stream for `ns` closed; the server dropped its table.
    virtual void on_namespace_unwatched(const std::string& ns) = 0;

   protected:
    ~Observer() = default;
  };

  // Registers the metrics in `registry` (once per registry). The observer
  // must outlive the server.
  static Result<std::unique_ptr<Server>> create(event::EventLoop& loop, ServerOptions options,
                                                metrics::Registry& registry, Observer& observer);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Accepts h2c connections on `address` (port 0: the kernel picks; see
  // local_address()). Errors: the listener's ("bind 0.0.0.0:15010: address
  // already in use").
  Status listen(const net::Address& address, const net::ListenerOptions& options = {});
  std::optional<net::Address> local_address() const;
  // Serves one connection over any transport (the listener's, a test's).
  void adopt(std::unique_ptr<Transport> transport);

  // The table for clients in `ns`; every stream of `ns` gets it unless it
  // already has (or is about to have) this version. Ignored for a namespace
  // without streams. `changed_at`: when the change that produced this table
  // was observed, for push latency; nullopt for a table not caused by a change.
  void publish(const std::string& ns, std::shared_ptr<const resolve::Table> table,
               std::optional<Clock::time_point> changed_at);

  // The client namespaces with at least one stream, sorted.
  std::vector<std::string> watched_namespaces() const;
  bool watched(std::string_view ns) const;
  size_t streams() const { return stream_count_; }
  size_t connections() const { return connections_.size(); }

  // Graceful shutdown: stops accepting, ends every stream, sends GOAWAY;
  // `done` runs (on a later loop turn) once every connection has closed or
  // shutdown_timeout has passed.
  void shutdown(std::function<void()> done);

 private:
  class Connection;
  struct Published;
  struct Subscriber;
  struct Metrics {
    metrics::Gauge streams;
    metrics::GaugeFamily namespace_streams;
    metrics::Gauge connections;
    metrics::CounterFamily requests;
    metrics::Counter protocol_errors;
    metrics::Counter tables_sent;
    metrics::Histogram push_latency;
  };
  struct Watched {
    std::shared_ptr<const Published> table;
    std::optional<Clock::time_point> changed_at;
    std::set<Subscriber*> subscribers;
    metrics::Gauge streams;
  };

  Server(event::EventLoop& loop, ServerOptions options, Observer& observer);
  void accept(std::unique_ptr<net::TcpConnection> connection);
  void subscribe(Subscriber& subscriber);
  void unsubscribe(Subscriber& subscriber);
  void count_request(int status);
  void remove(Connection* connection);
  void heartbeat();
  void finish_shutdown();

  event::EventLoop& loop_;
  ServerOptions options_;
  Observer& observer_;
  Metrics metrics_;
  std::unique_ptr<net::Listener> listener_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::map<std::string, Watched, std::less<>> watched_;
  std::map<int, metrics::Counter> request_counters_;
  size_t stream_count_ = 0;
  event::Timer heartbeat_timer_;
  event::Timer shutdown_timer_;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
};

}  // namespace trellis::controller::stream
