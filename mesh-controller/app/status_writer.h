// Writes route status (status.parents[] for Service parents, gateway/status.h)
// from the resolver's view of each route, while this replica is the leader and
// the informers have synced.
//
// Each write is a JSON merge patch of the status subresource computed by
// gateway::status_patch against the route as the informer last saw it, and
// carries that object's resourceVersion: if the route changed meanwhile the
// API server answers 409 and nothing is lost; the informer then delivers the
// fresh object, which re-queues the route (a delayed retry is the safety
// net). Nothing is written when the object already carries this status, so a
// status write never causes another.
//
// Routes are coalesced (a route queued twice is written once; one queued
// while its write is in flight is written again after it), and writes are
// rate-limited (a token bucket) with a bounded number in flight.
//
// Metrics: trellis_controller_status_writes_total{result}: ok, conflict,
// not_found (deleted meanwhile), error.
//
// Threading: the client's loop thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "common/base/result.h"
#include "common/event/timer.h"
#include "common/kube/backoff.h"
#include "common/kube/client.h"
#include "common/metrics/metrics.h"
#include "mesh-controller/resolve/resolver.h"

namespace trellis::controller::app {

struct StatusWriterOptions {
  std::string controller_name{gateway::kControllerName};
  size_t max_in_flight = 4;
  double writes_per_second = 20;
  double burst = 50;
  // After 409 Conflict (the informer normally re-queues the route sooner).
  std::chrono::milliseconds conflict_retry{2000};
  // After any other failure; reset by a success.
  kube::BackoffOptions error_backoff{std::chrono::milliseconds(500), std::chrono::milliseconds(30000),
                                     2.0, 0.5};
  // The wall clock that stamps lastTransitionTime.
  std::function<std::chrono::system_clock::time_point()> now = [] {
    return std::chrono::system_clock::now();
  };
};

// "max_in_flight must be positive", "writes_per_second must be positive",
// "burst must be at least 1", "conflict_retry must be positive", or a back-off
// error prefixed with "error_backoff: ".
Status validate(const StatusWriterOptions& options);

class StatusWriter {
 public:
  // `resolver` must outlive the writer; registers its metric in `registry`.
  static Result<std::unique_ptr<StatusWriter>> create(kube::Client& client,
                                                      const resolve::Resolver& resolver,
                                                      metrics::Registry& registry,
                                                      StatusWriterOptions options = {});
  ~StatusWriter();
  StatusWriter(const StatusWriter&) = delete;
  StatusWriter& operator=(const StatusWriter&) = delete;

  // Writes only while active (leading and synced). Deactivating drops what is
  // queued and cancels writes in flight: another replica writes now.
  void set_active(bool active);
  bool active() const { return active_; }
  // Queues a route whose status may differ (ignored while inactive).
  void enqueue(const resolve::RouteKey& key);

  size_t queued() const { return queue_.size() + delayed_.size(); }
  size_t in_flight() const { return in_flight_.size(); }

 private:
  StatusWriter(kube::Client& client, const resolve::Resolver& resolver, StatusWriterOptions options);
  void pump();
  // Starts the write for `key`; false when nothing needs writing.
  bool write(const resolve::RouteKey& key);
  void written(const resolve::RouteKey& key, Result<json::Document> answer);
  void retry_later(const resolve::RouteKey& key, std::chrono::milliseconds delay);
  void release_delayed();
  void count(const char* result);

  kube::Client& client_;
  const resolve::Resolver& resolver_;
  StatusWriterOptions options_;
  metrics::CounterFamily writes_;
  std::map<std::string, metrics::Counter> counters_;
  bool active_ = false;
  std::deque<resolve::RouteKey> queue_;
  std::set<resolve::RouteKey> queued_;
  std::map<resolve::RouteKey, kube::RequestId> in_flight_;
  std::set<resolve::RouteKey> again_;  // queued while in flight
  std::multimap<std::chrono::milliseconds, resolve::RouteKey> delayed_;  // by loop time
  kube::Backoff error_backoff_;
  double tokens_;
  std::chrono::milliseconds refilled_at_{0};
  event::Timer pump_timer_;
  event::Timer delay_timer_;
};

}  // namespace trellis::controller::app
