// The Kubernetes client's metrics, registered once per registry and shared
// by the Client and every Informer on it:
//   trellis_kube_requests_total{verb, code}      API requests by outcome
//                                                 (code "0": no answer)
//   trellis_kube_watch_events_total{resource, type}
//   trellis_kube_relists_total{resource}          full lists after the first
//   trellis_kube_errors_total{resource, operation} failed lists and watches
//   trellis_kube_decode_errors_total{resource}    objects skipped as malformed
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <string_view>

#include "common/base/result.h"
#include "common/metrics/metrics.h"

namespace trellis::kube {

// Handles for one resource, resolved when an informer is created (the series
// exist while the informer does).
struct ResourceMetrics {
  metrics::Counter added;
  metrics::Counter modified;
  metrics::Counter deleted;
  metrics::Counter bookmarks;
  metrics::Counter error_events;
  metrics::Counter relists;
  metrics::Counter list_errors;
  metrics::Counter watch_errors;
  metrics::Counter decode_errors;
};

class Metrics {
 public:
  // Fails if a family is already registered (create it once per registry).
  static Result<std::shared_ptr<Metrics>> create(metrics::Registry& registry);

  ResourceMetrics for_resource(const std::string& resource) const;
  // Any thread.
  void count_request(std::string_view verb, int code);

 private:
  metrics::CounterFamily requests_;
  metrics::CounterFamily watch_events_;
  metrics::CounterFamily relists_;
  metrics::CounterFamily errors_;
  metrics::CounterFamily decode_errors_;
  // A series lives as long as a handle on it: keep one per (verb, code).
  std::mutex mutex_;
  std::map<std::pair<std::string, int>, metrics::Counter> request_counters_;
};

}  // namespace trellis::kube
