#include "common/kube/metrics.h"

namespace trellis::kube {

namespace {

metrics::Counter child(const metrics::CounterFamily& family,
                       const std::vector<std::string>& labels) {
  auto c = family.with_labels(labels);
  // Label values here are ours and valid UTF-8; a failure leaves an inert handle.
  return c.ok() ? *c : metrics::Counter();
}

}  // namespace

Result<std::shared_ptr<Metrics>> Metrics::create(metrics::Registry& registry) {
  auto m = std::shared_ptr<Metrics>(new Metrics());
  auto requests =
      registry.counter("trellis_kube_requests_total",
                       "Kubernetes API requests by verb and HTTP status (0: no answer).",
                       {"verb", "code"});
  if (!requests) return std::move(requests).error();
  auto events = registry.counter("trellis_kube_watch_events_total",
                                 "Kubernetes watch events received, by resource and event type.",
                                 {"resource", "type"});
  if (!events) return std::move(events).error();
  auto relists = registry.counter("trellis_kube_relists_total",
                                  "Full lists of a resource after its first (410 Gone, failures).",
                                  {"resource"});
  if (!relists) return std::move(relists).error();
  auto errors = registry.counter("trellis_kube_errors_total",
                                 "Failed Kubernetes lists and watches, by resource and operation.",
                                 {"resource", "operation"});
  if (!errors) return std::move(errors).error();
  auto decode = registry.counter("trellis_kube_decode_errors_total",
                                 "Kubernetes objects skipped because they could not be decoded.",
                                 {"resource"});
  if (!decode) return std::move(decode).error();
  m->requests_ = std::move(*requests);
  m->watch_events_ = std::move(*events);
  m->relists_ = std::move(*relists);
  m->errors_ = std::move(*errors);
  m->decode_errors_ = std::move(*decode);
  return m;
}

ResourceMetrics Metrics::for_resource(const std::string& resource) const {
  ResourceMetrics r;
  r.added = child(watch_events_, {resource, "ADDED"});
  r.modified = child(watch_events_, {resource, "MODIFIED"});
  r.deleted = child(watch_events_, {resource, "DELETED"});
  r.bookmarks = child(watch_events_, {resource, "BOOKMARK"});
  r.error_events = child(watch_events_, {resource, "ERROR"});
  r.relists = child(relists_, {resource});
  r.list_errors = child(errors_, {resource, "list"});
  r.watch_errors = child(errors_, {resource, "watch"});
  r.decode_errors = child(decode_errors_, {resource});
  return r;
}

void Metrics::count_request(std::string_view verb, int code) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto key = std::make_pair(std::string(verb), code);
  auto it = request_counters_.find(key);
  if (it == request_counters_.end()) {
    it = request_counters_.emplace(key, child(requests_, {key.first, std::to_string(code)})).first;
  }
  it->second.inc();
}

}  // namespace trellis::kube
