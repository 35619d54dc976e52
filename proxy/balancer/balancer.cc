#include "proxy/balancer/balancer.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace trellis::proxy::balancer {

namespace {

// Bounds the passes over ejected entries when many ejections end close together.
constexpr std::chrono::milliseconds kReadmissionGranularity{10};

double to_ns(std::chrono::nanoseconds d) { return static_cast<double>(d.count()); }

// FNV-1a: the fields operator== compares, nothing else.
void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
}

}  // namespace

Status validate(const Config& config) {
  if (config.default_rtt.count() <= 0) return make_error("balancer.default_rtt: must be positive");
  if (config.decay.count() <= 0) return make_error("balancer.decay: must be positive");
  if (config.failure_threshold < 1) {
    return make_error("balancer.failure_threshold: must be at least 1");
  }
  if (config.ejection_base.count() <= 0) {
    return make_error("balancer.ejection_base: must be positive");
  }
  if (config.ejection_max < config.ejection_base) {
    return make_error("balancer.ejection_max: must not be below ejection_base");
  }
  // Also rejects NaN.
  if (!(config.ejection_jitter >= 0 && config.ejection_jitter < 1)) {
    return make_error("balancer.ejection_jitter: must be in [0, 1)");
  }
  return ok_status();
}

const Endpoint* EndpointSets::find(const net::Address& address) const {
  for (const auto& endpoint : endpoints_) {
    if (endpoint->address() == address) return endpoint.get();
  }
  return nullptr;
}

Attempt& Attempt::operator=(Attempt&& other) noexcept {
  if (this != &other) {
    abandon();
    endpoint_ = std::move(other.endpoint_);
    ejection_epoch_ = other.ejection_epoch_;
  }
  return *this;
}

void Attempt::abandon() {
  if (endpoint_) {
    --endpoint_->outstanding_;
    endpoint_.reset();
  }
}

size_t Balancer::AddressHash::operator()(const net::Address& address) const {
  uint64_t h = 14695981039346656037ull;
  const sockaddr* sa = address.sockaddr_ptr();
  if (address.is_ipv6()) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    mix(h, &v6->sin6_addr, sizeof(v6->sin6_addr));
    mix(h, &v6->sin6_port, sizeof(v6->sin6_port));
    mix(h, &v6->sin6_scope_id, sizeof(v6->sin6_scope_id));
  } else {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    mix(h, &v4->sin_addr, sizeof(v4->sin_addr));
    mix(h, &v4->sin_port, sizeof(v4->sin_port));
  }
  return static_cast<size_t>(h);
}

Result<std::unique_ptr<Balancer>> Balancer::create(const Config& config, Clock clock,
                                                   Random random) {
  if (Status s = validate(config); !s.ok()) return std::move(s).error();
  if (!clock || !random) return make_error("balancer: clock and random source are required");
  return std::unique_ptr<Balancer>(new Balancer(config, std::move(clock), std::move(random)));
}

Balancer::Balancer(const Config& config, Clock clock, Random random)
    : config_(config),
      decay_ns_(to_ns(config.decay)),
      clock_(std::move(clock)),
      random_(std::move(random)) {}

std::shared_ptr<EndpointSets> Balancer::install(
    const std::vector<std::vector<net::Address>>& sets) {
  ++installs_;
  const TimePoint now = clock_();
  std::shared_ptr<EndpointSets> out(new EndpointSets());
  size_t total = 0;
  for (const auto& set : sets) total += set.size();
  std::unordered_map<net::Address, std::shared_ptr<Endpoint>, AddressHash> next;
  next.reserve(total);
  out->sets_.resize(sets.size());
  for (size_t s = 0; s < sets.size(); ++s) {
    Candidates& candidates = out->sets_[s];
    candidates.entries_.reserve(sets[s].size());
    for (size_t i = 0; i < sets[s].size(); ++i) {
      const net::Address& address = sets[s][i];
      auto [it, inserted] = next.try_emplace(address);
      if (inserted) {
        auto old = endpoints_.find(address);
        if (old != endpoints_.end()) {
          it->second = std::move(old->second);
        } else {
          it->second.reset(new Endpoint(address, to_ns(config_.default_rtt), now));
        }
        out->endpoints_.push_back(it->second);
      }
      Endpoint* endpoint = it->second.get();
      if (endpoint->seen_install_ == installs_ && endpoint->seen_set_ == s) continue;
      endpoint->seen_install_ = installs_;
      endpoint->seen_set_ = s;
      candidates.entries_.push_back({endpoint, i});
    }
    // Carried-over ejected endpoints start in front; the first draw that finds
    // one moves it behind.
    candidates.available_ = candidates.entries_.size();
  }
  endpoints_ = std::move(next);
  return out;
}

size_t Balancer::uniform(size_t n) {
  // Lemire's multiply-shift: unbiased enough for load balancing, no division.
  return static_cast<size_t>((static_cast<unsigned __int128>(random_()) * n) >> 64);
}

void Balancer::demote(Candidates& c, size_t i) {
  size_t last = c.available_ - 1;
  c.next_readmission_ = std::min(c.next_readmission_, c.entries_[i].endpoint->ejected_until_);
  std::swap(c.entries_[i], c.entries_[last]);
  c.available_ = last;
}

void Balancer::readmit(Candidates& c, TimePoint now) {
  TimePoint next = TimePoint::max();
  for (size_t k = c.available_; k < c.entries_.size(); ++k) {
    const Endpoint& endpoint = *c.entries_[k].endpoint;
    if (endpoint.ejected(now)) {
      next = std::min(next, endpoint.ejected_until_);
    } else {
      std::swap(c.entries_[k], c.entries_[c.available_]);
      ++c.available_;
    }
  }
  c.next_readmission_ = next;
  c.last_readmission_pass_ = now;
}

Choice Balancer::pick(Candidates& c) {
  const size_t n = c.entries_.size();
  if (n == 0) return {};
  const TimePoint now = clock_();
  if (n == 1) {
    const Candidates::Entry& only = c.entries_[0];
    if (only.endpoint->ejected(now)) ++panics_;
    return {only.endpoint, only.index};
  }
  if (now >= c.next_readmission_ && now >= c.last_readmission_pass_ + kReadmissionGranularity) {
    readmit(c, now);
  }
  for (bool rechecked = false;; rechecked = true) {
    // Each pass either answers or moves one ejected endpoint behind the
    // available ones, which happens once per ejection: O(1) amortized.
    while (c.available_ >= 2) {
      size_t i = uniform(c.available_);
      size_t j = uniform(c.available_ - 1);
      if (j >= i) ++j;
      if (c.entries_[i].endpoint->ejected(now)) {
        demote(c, i);
      } else if (c.entries_[j].endpoint->ejected(now)) {
        demote(c, j);
      } else {
        return cheaper(c.entries_[i], c.entries_[j], now);
      }
    }
    if (c.available_ == 1) {
      const Candidates::Entry& last = c.entries_[0];
      if (!last.endpoint->ejected(now)) return {last.endpoint, last.index};
      demote(c, 0);
    }
    // Before panicking, readmit what the granularity may have held back.
    if (rechecked || now < c.next_readmission_) break;
    readmit(c, now);
    if (c.available_ == 0) break;
  }
  ++panics_;
  size_t i = uniform(n);
  size_t j = uniform(n - 1);
  if (j >= i) ++j;
  return cheaper(c.entries_[i], c.entries_[j], now);
}

Choice Balancer::cheaper(const Candidates::Entry& a, const Candidates::Entry& b, TimePoint now) {
  const Candidates::Entry& winner =
      cost_at(*a.endpoint, now) <= cost_at(*b.endpoint, now) ? a : b;
  return {winner.endpoint, winner.index};
}

double Balancer::cost(Endpoint& endpoint) { return cost_at(endpoint, clock_()); }

double Balancer::cost_at(Endpoint& endpoint, TimePoint now) {
  observe(endpoint, now, 0);
  return endpoint.rtt_ns_ * (static_cast<double>(endpoint.outstanding_) + 1);
}

void Balancer::observe(Endpoint& endpoint, TimePoint now, double sample_ns) {
  if (endpoint.rtt_ns_ < sample_ns) {
    endpoint.rtt_ns_ = sample_ns;
  } else if (now > endpoint.updated_) {
    double elapsed_ns = to_ns(now - endpoint.updated_);
    double w = std::exp(-elapsed_ns / decay_ns_);
    endpoint.rtt_ns_ = endpoint.rtt_ns_ * w + sample_ns * (1 - w);
  }
  endpoint.updated_ = std::max(endpoint.updated_, now);
}

Attempt Balancer::start(Endpoint& endpoint) {
  Attempt attempt;
  attempt.endpoint_ = endpoint.shared_from_this();
  attempt.ejection_epoch_ = endpoint.ejection_epoch_;
  ++endpoint.outstanding_;
  return attempt;
}

void Balancer::finish(Attempt attempt, std::chrono::nanoseconds latency, Outcome outcome) {
  if (!attempt) return;
  std::shared_ptr<Endpoint> held = std::move(attempt.endpoint_);
  Endpoint& endpoint = *held;
  --endpoint.outstanding_;
  const TimePoint now = clock_();
  double sample_ns = to_ns(std::max(latency, std::chrono::nanoseconds(0)));
  if (outcome == Outcome::failure) sample_ns = std::max(sample_ns, endpoint.rtt_ns_);
  observe(endpoint, now, sample_ns);

  if (attempt.ejection_epoch_ != endpoint.ejection_epoch_ || endpoint.ejected(now)) return;
  if (outcome == Outcome::success) {
    endpoint.consecutive_failures_ = 0;
    endpoint.consecutive_ejections_ = 0;
    return;
  }
  ++endpoint.consecutive_failures_;
  bool on_probation = endpoint.consecutive_ejections_ > 0;
  if (on_probation || endpoint.consecutive_failures_ >= config_.failure_threshold) {
    eject(endpoint, now);
  }
}

void Balancer::eject(Endpoint& endpoint, TimePoint now) {
  const double max_ns = to_ns(config_.ejection_max);
  double base_ns = to_ns(config_.ejection_base);
  for (uint32_t k = 1; k <= endpoint.consecutive_ejections_ && base_ns < max_ns; ++k) {
    base_ns *= 2;
  }
  base_ns = std::min(base_ns, max_ns);
  double u = static_cast<double>(random_() >> 11) * 0x1.0p-53;
  double duration_ns = std::min(max_ns, base_ns * (1 + config_.ejection_jitter * (2 * u - 1)));

  ++endpoint.consecutive_ejections_;
  ++endpoint.ejection_epoch_;
  endpoint.consecutive_failures_ = 0;
  endpoint.ejected_until_ =
      now + std::chrono::duration_cast<TimePoint::duration>(
                std::chrono::duration<double, std::nano>(duration_ns));
  ++ejections_;
}

}  // namespace trellis::proxy::balancer
