// Per-worker endpoint selection: power of two choices over a peak-EWMA cost,
// with failure accrual and ejection. Pure logic: time and randomness are
// injected, nothing touches a socket. One Balancer per worker thread; nothing
// here is thread-safe.
//
//   auto sets = balancer.install({{a1, a2}, {a3}});  // when the worker adopts a route table
//   Choice choice = balancer.pick((*sets)[0]);      // per attempt; no choice: answer 503
//   Attempt attempt = balancer.start(*choice.endpoint);
//   ...  // the response head arrived, or the attempt failed:
//   balancer.finish(std::move(attempt), latency, Outcome::success);
//
// Endpoint state is keyed by address (IP:port) and survives route-table swaps:
// install() keeps the state of addresses still present and drops the rest (an
// address that comes back starts fresh). The worker keeps the returned
// EndpointSets next to the table it was built from; an exchange holds both until
// it ends, so its retries pick from the sets it started with.
//
// Cost (linkerd2-proxy's PeakEwma, via tower): each endpoint has an RTT estimate
// v stamped at time t, default_rtt at first. A latency sample s at time now:
//   s > v:      v = s                      (peaks count at once)
//   otherwise:  w = exp(-(now - t) / decay);  v = v * w + s * (1 - w)
// and t = now. Reading the cost decays v toward zero the same way (a sample of
// 0), so an endpoint that got slow and then no traffic wins traffic back:
//   cost = v * (outstanding + 1)
// The sample is the time to the response head (or to the failure). A failure's
// sample is max(latency, v): an endpoint that fails fast must never look fast.
//
// Picking: two distinct candidates drawn uniformly among the non-ejected ones,
// the lower cost wins (ties: the first draw). All ejected: panic mode, the same
// draw among all of them (counted in panics()), because a possibly-bad endpoint
// beats a certain 503; a single candidate is the choice, ejected or not (then
// also a panic). No candidate: no choice. Each Candidates list keeps its
// non-ejected entries in front: a draw that lands on an ejected endpoint moves
// it behind them once, and the entries behind are re-examined (one pass over
// them) only when the earliest of their ejections has ended, and at most every
// 10 ms (a readmission may be that late). So a pick costs O(1) plus that
// bookkeeping, whatever the set's size, and never allocates.
//
// Failure accrual: the caller decides what a failure is (connect errors,
// refused streams, resets, malformed responses and 5xx answered by the endpoint
// itself; not a 4xx, not a timeout the client imposed). failure_threshold
// consecutive failures eject the endpoint for
//   b = min(ejection_base * 2^(k-1), ejection_max)   (k-th ejection in a row)
//   duration = min(ejection_max, b * (1 + ejection_jitter * (2u - 1))),  u uniform in [0, 1)
// Once readmitted the endpoint is on probation: one failure ejects it again
// (k + 1); one success ends probation and resets k and the failure count.
// Outcomes of attempts started before the latest ejection, and outcomes that
// arrive while the endpoint is ejected (panic mode), update the estimate but not
// the accrual: they would count the failures behind the ejection twice, or judge
// the endpoint before its probation began.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/net/address.h"

namespace trellis::proxy::balancer {

using TimePoint = std::chrono::steady_clock::time_point;
// The worker's clock (its loop time in production).
using Clock = std::function<TimePoint()>;
// Uniform over all uint64_t values.
using Random = std::function<uint64_t()>;

struct Config {
  std::chrono::milliseconds default_rtt{30};  // the estimate before any sample
  std::chrono::milliseconds decay{10000};     // EWMA time constant (tau)
  uint32_t failure_threshold = 5;             // consecutive failures that eject
  std::chrono::milliseconds ejection_base{1000};
  std::chrono::milliseconds ejection_max{60000};
  double ejection_jitter = 0.1;  // ± this fraction of the ejection time
};

// Errors name the field: "balancer.failure_threshold: must be at least 1".
Status validate(const Config& config);

enum class Outcome { success, failure };

class Balancer;
class Attempt;

// The state of one endpoint address. Owned jointly (shared_ptr) by the balancer's
// current install, the EndpointSets that list it and its in-flight attempts.
class Endpoint : public std::enable_shared_from_this<Endpoint> {
 public:
  const net::Address& address() const { return address_; }
  uint32_t outstanding() const { return outstanding_; }
  // As of the last update; Balancer::cost() decays it to the present.
  double rtt_estimate_ns() const { return rtt_ns_; }
  uint32_t consecutive_failures() const { return consecutive_failures_; }
  // Ejections in a row without a success; above 0 once readmitted = on probation.
  uint32_t consecutive_ejections() const { return consecutive_ejections_; }
  TimePoint ejected_until() const { return ejected_until_; }
  bool ejected(TimePoint now) const { return now < ejected_until_; }

 private:
  friend class Balancer;
  friend class Attempt;
  Endpoint(const net::Address& address, double rtt_ns, TimePoint now)
      : address_(address), rtt_ns_(rtt_ns), updated_(now) {}

  net::Address address_;
  uint32_t outstanding_ = 0;
  double rtt_ns_;
  TimePoint updated_;
  uint32_t consecutive_failures_ = 0;
  uint32_t consecutive_ejections_ = 0;
  uint64_t ejection_epoch_ = 0;  // ejections ever: tells stale outcomes apart
  TimePoint ejected_until_{};
  // Drops duplicates within one set during install().
  uint64_t seen_install_ = 0;
  size_t seen_set_ = 0;
};

// The endpoints of one backend (one install() set).
class Candidates {
 public:
  size_t size() const { return entries_.size(); }
  // The i-th entry in the current order (picks reorder entries), with its
  // position in the install() set. For admin pages and tests.
  const Endpoint& endpoint(size_t i) const { return *entries_[i].endpoint; }
  size_t index(size_t i) const { return entries_[i].index; }

 private:
  friend class Balancer;
  struct Entry {
    Endpoint* endpoint;
    size_t index;
  };
  std::vector<Entry> entries_;
  size_t available_ = 0;  // entries_[0, available_) were not ejected when last seen
  TimePoint next_readmission_ = TimePoint::max();  // <= every ejection end behind available_
  TimePoint last_readmission_pass_{};
};

// What install() built: one Candidates per set. Keeps its endpoints alive.
class EndpointSets {
 public:
  size_t size() const { return sets_.size(); }
  Candidates& operator[](size_t set) { return sets_[set]; }
  const Candidates& operator[](size_t set) const { return sets_[set]; }
  // Linear; for admin pages and tests. nullptr when the address is not listed.
  const Endpoint* find(const net::Address& address) const;

 private:
  friend class Balancer;
  EndpointSets() = default;
  std::vector<Candidates> sets_;
  std::vector<std::shared_ptr<Endpoint>> endpoints_;  // each distinct endpoint once
};

struct Choice {
  Endpoint* endpoint = nullptr;
  // The endpoint's position in its install() set: the caller's key for its own
  // per-address data (identity, protocol).
  size_t index = 0;
  explicit operator bool() const { return endpoint != nullptr; }
};

// One request in flight to one endpoint, counted in its outstanding requests.
// Move-only. Dropping an unfinished Attempt abandons it (the client went away):
// it stops counting as outstanding and records nothing else.
class Attempt {
 public:
  Attempt() = default;
  Attempt(Attempt&&) noexcept = default;
  Attempt& operator=(Attempt&& other) noexcept;
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;
  ~Attempt() { abandon(); }

  explicit operator bool() const { return endpoint_ != nullptr; }
  Endpoint* endpoint() const { return endpoint_.get(); }

 private:
  friend class Balancer;
  void abandon();

  std::shared_ptr<Endpoint> endpoint_;
  uint64_t ejection_epoch_ = 0;
};

class Balancer {
 public:
  // Errors: validate()'s, or "balancer: clock and random source are required".
  static Result<std::unique_ptr<Balancer>> create(const Config& config, Clock clock, Random random);

  // Adopts a route table's endpoint sets, one per backend. Duplicate addresses
  // within a set count once. Allocates; never call it per request.
  std::shared_ptr<EndpointSets> install(const std::vector<std::vector<net::Address>>& sets);

  // See the header comment. Never allocates.
  Choice pick(Candidates& candidates);
  Attempt start(Endpoint& endpoint);
  // latency: from start to the response head or the failure.
  void finish(Attempt attempt, std::chrono::nanoseconds latency, Outcome outcome);

  // The endpoint's cost now (decays its estimate, as a pick does).
  double cost(Endpoint& endpoint);

  uint64_t panics() const { return panics_; }         // picks made in panic mode
  uint64_t ejections() const { return ejections_; }   // ejections so far
  size_t endpoint_count() const { return endpoints_.size(); }  // addresses installed

 private:
  struct AddressHash {
    size_t operator()(const net::Address& address) const;
  };

  Balancer(const Config& config, Clock clock, Random random);
  size_t uniform(size_t n);  // in [0, n), n > 0
  Choice cheaper(const Candidates::Entry& a, const Candidates::Entry& b, TimePoint now);
  double cost_at(Endpoint& endpoint, TimePoint now);
  void observe(Endpoint& endpoint, TimePoint now, double sample_ns);
  void eject(Endpoint& endpoint, TimePoint now);
  static void demote(Candidates& candidates, size_t i);
  static void readmit(Candidates& candidates, TimePoint now);

  Config config_;
  double decay_ns_;
  Clock clock_;
  Random random_;
  std::unordered_map<net::Address, std::shared_ptr<Endpoint>, AddressHash> endpoints_;
  uint64_t installs_ = 0;
  uint64_t panics_ = 0;
  uint64_t ejections_ = 0;
};

}  // namespace trellis::proxy::balancer
