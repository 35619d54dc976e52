// Metrics: typed, validated families on prometheus-cpp core, with handles on
// labelled children that are resolved once (when a route table is installed)
// and then used lock-free on the request path.
//
//   metrics::Registry registry;
//   auto requests = registry.counter("trellis_requests_total", "Requests handled.",
//                                    {"direction", "status_code"});
//   metrics::Counter ok = requests->with_labels({"outbound", "200"}).value();  // install time
//   ok.inc();                                                                  // per request
//
// Children are reference-counted: a child is exposed while at least one handle
// on it exists, and removed from the exposition when the last handle goes away.
// That is how a removed route drops its series: destroy the route's handles.
// A new table that keeps a route resolves its handles before the old table is
// released, so the child (and its count) survives the swap.
//
// Threading:
// - Counter::inc, Gauge::set/inc/dec and value() are atomic and lock-free;
//   call them from any worker thread on a shared handle.
// - Histogram::observe takes a mutex per child (prometheus-cpp 1.0.1): fine per
//   request, but give each route its own child rather than one global child.
// - Registry::counter/gauge/histogram/info, Family::with_labels, copying and
//   destroying handles take locks: install-time operations, never per request.
// - Families and handles keep what they use alive: they may outlive the Registry.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace trellis::metrics {

// Name rules of the Prometheus data model, with exact error messages:
// metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*,
// neither may start with the reserved prefix "__".
Status check_metric_name(std::string_view name);
Status check_label_name(std::string_view name);

// Histogram bucket boundaries in seconds.
// Proxy: a request through the mesh, from half a millisecond to 10 s.
std::vector<double> proxy_duration_buckets();
// Controller: reconciles, API calls and route-table computation, 1 ms to 60 s.
std::vector<double> controller_duration_buckets();

namespace detail {

template <typename Metric>
struct FamilyState;

// One reference on a labelled child; the child is removed with its last reference.
template <typename Metric>
class ChildRef {
 public:
  ChildRef() = default;
  // Adopts a reference already counted by FamilyState::acquire.
  ChildRef(std::shared_ptr<FamilyState<Metric>> family, Metric* metric);
  ChildRef(const ChildRef& other);
  ChildRef(ChildRef&& other) noexcept;
  ChildRef& operator=(const ChildRef& other);
  ChildRef& operator=(ChildRef&& other) noexcept;
  ~ChildRef();

  Metric* get() const { return metric_; }

 private:
  void reset();

  std::shared_ptr<FamilyState<Metric>> family_;
  Metric* metric_ = nullptr;
};

struct InfoState;

}  // namespace detail

template <typename Handle>
class Family;

// Handles. A default-constructed (or moved-from) handle is empty and ignores
// every update, so a metrics struct can be declared before it is resolved.
class Counter {
 public:
  using Metric = prometheus::Counter;
  Counter() = default;
  // Negative and NaN increments are ignored: a counter only goes up.
  void inc(double by = 1.0) const {
    if (ref_.get() != nullptr && by >= 0.0) ref_.get()->Increment(by);
  }
  double value() const { return ref_.get() != nullptr ? ref_.get()->Value() : 0.0; }

 private:
  friend class Family<Counter>;
  explicit Counter(detail::ChildRef<Metric> ref) : ref_(std::move(ref)) {}
  detail::ChildRef<Metric> ref_;
};

class Gauge {
 public:
  using Metric = prometheus::Gauge;
  Gauge() = default;
  void set(double v) const {
    if (ref_.get() != nullptr) ref_.get()->Set(v);
  }
  void inc(double by = 1.0) const {
    if (ref_.get() != nullptr) ref_.get()->Increment(by);
  }
  void dec(double by = 1.0) const {
    if (ref_.get() != nullptr) ref_.get()->Decrement(by);
  }
  double value() const { return ref_.get() != nullptr ? ref_.get()->Value() : 0.0; }

 private:
  friend class Family<Gauge>;
  explicit Gauge(detail::ChildRef<Metric> ref) : ref_(std::move(ref)) {}
  detail::ChildRef<Metric> ref_;
};

class Histogram {
 public:
  using Metric = prometheus::Histogram;
  Histogram() = default;
  // NaN is ignored: it would poison the sum forever.
  void observe(double v) const {
    if (ref_.get() != nullptr && !std::isnan(v)) ref_.get()->Observe(v);
  }

 private:
  friend class Family<Histogram>;
  explicit Histogram(detail::ChildRef<Metric> ref) : ref_(std::move(ref)) {}
  detail::ChildRef<Metric> ref_;
};

// A registered family with fixed label names. Cheap to copy (shared state).
template <typename Handle>
class Family {
 public:
  Family() = default;

  // A handle on the child with these label values, in the order of the
  // family's label names; creates the child if needed. Values must be UTF-8.
  Result<Handle> with_labels(const std::vector<std::string>& values) const;
  const std::string& name() const;

 private:
  friend class Registry;
  using State = detail::FamilyState<typename Handle::Metric>;
  explicit Family(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// A gauge whose only series has value 1 and carries facts in its labels, e.g.
// trellis_route_table_version_info{version="..."}. set() swaps the series in
// one step: a scrape sees the old labels or the new ones, never both or none.
class InfoGauge {
 public:
  InfoGauge() = default;
  Status set(const std::vector<std::string>& values) const;
  void clear() const;

 private:
  friend class Registry;
  explicit InfoGauge(std::shared_ptr<detail::InfoState> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::InfoState> state_;
};

// Owns the process's families. Every name is registered once, whatever its
// type; the help text must not be empty.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Result<CounterFamily> counter(const std::string& name, const std::string& help,
                                const std::vector<std::string>& label_names = {});
  Result<GaugeFamily> gauge(const std::string& name, const std::string& help,
                            const std::vector<std::string>& label_names = {});
  // Boundaries: finite, strictly increasing, at least one; +Inf is implicit.
  Result<HistogramFamily> histogram(const std::string& name, const std::string& help,
                                    const std::vector<std::string>& label_names,
                                    const std::vector<double>& buckets);
  Result<InfoGauge> info(const std::string& name, const std::string& help,
                         const std::vector<std::string>& label_names);

  // Every family that has at least one child, in no particular order (see
  // text_exposition for a stable one). Safe from any thread.
  std::vector<prometheus::MetricFamily> collect() const;

 private:
  Status declare(const std::string& name, const std::string& help,
                 const std::vector<std::string>& label_names, const char* type);

  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex mutex_;
  std::map<std::string, const char*> types_;  // name -> "a counter", "a gauge", ...
  std::vector<std::shared_ptr<detail::InfoState>> infos_;
};

}  // namespace trellis::metrics
