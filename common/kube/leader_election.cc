#include "common/kube/leader_election.h"

#include "common/kube/errors.h"
#include "common/log/log.h"

namespace trellis::kube {

namespace {

using std::chrono::milliseconds;

std::string ms_text(milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// client-go's JitterFactor: a candidate retries within [1, 1.2) retry periods.
constexpr double kRetryJitter = 0.2;

}  // namespace

Status validate(const LeaderElectionConfig& c) {
  if (c.lease_namespace.empty()) return make_error("lease_namespace is empty");
  if (c.lease_name.empty()) return make_error("lease_name is empty");
  if (c.identity.empty()) return make_error("identity is empty");
  milliseconds duration = c.lease_duration;
  if (c.retry_period.count() <= 0) return make_error("retry_period must be positive");
  if (duration <= c.renew_deadline) {
    return make_error("lease_duration (" + ms_text(duration) +
                      ") must be longer than renew_deadline (" + ms_text(c.renew_deadline) + ")");
  }
  if (static_cast<double>(c.renew_deadline.count()) <=
      (1.0 + kRetryJitter) * static_cast<double>(c.retry_period.count())) {
    return make_error("renew_deadline (" + ms_text(c.renew_deadline) +
                      ") must be longer than 1.2 × retry_period (" + ms_text(c.retry_period) +
                      ")");
  }
  return ok_status();
}

LeaseElection::LeaseElection(const LeaderElectionConfig& config) : config_(config) {}

LeaseElection::Plan LeaseElection::plan(const std::optional<Lease>& current,
                                        std::chrono::system_clock::time_point wall,
                                        std::chrono::steady_clock::time_point now) {
  std::string stamp = format_micro_time(wall);
  auto duration_seconds = static_cast<int32_t>(config_.lease_duration.count());
  Plan plan;
  if (!current) {
    observed_ = LeaseSpec{};
    has_observed_ = false;
    plan.action = Action::create;
    plan.lease.metadata.name = config_.lease_name;
    plan.lease.metadata.namespace_ = config_.lease_namespace;
    plan.lease.spec = LeaseSpec{config_.identity, duration_seconds, stamp, stamp, 0};
    return plan;
  }
  observe(*current, now);
  const LeaseSpec& held = current->spec;
  std::chrono::seconds held_for(held.lease_duration_seconds > 0 ? held.lease_duration_seconds
                                                                : config_.lease_duration.count());
  bool someone_else = !held.holder_identity.empty() && held.holder_identity != config_.identity;
  if (someone_else && now < observed_at_ + held_for) return plan;  // wait

  plan.action = Action::update;
  plan.lease.metadata = current->metadata;
  LeaseSpec& spec = plan.lease.spec;
  spec = held;
  spec.lease_duration_seconds = duration_seconds;
  spec.renew_time = stamp;
  if (held.holder_identity != config_.identity) {
    spec.holder_identity = config_.identity;
    spec.acquire_time = stamp;
    spec.lease_transitions = held.lease_transitions + 1;
  } else if (spec.acquire_time.empty()) {
    spec.acquire_time = stamp;
  }
  return plan;
}

void LeaseElection::observe(const Lease& lease, std::chrono::steady_clock::time_point now) {
  // Expiry counts from when *we* first saw this exact record.
  if (has_observed_ && lease.spec == observed_ &&
      lease.metadata.resource_version == observed_resource_version_) {
    return;
  }
  observed_ = lease.spec;
  observed_resource_version_ = lease.metadata.resource_version;
  observed_at_ = now;
  has_observed_ = true;
}

Lease LeaseElection::release(const Lease& current,
                             std::chrono::system_clock::time_point wall) const {
  Lease lease = current;
  std::string stamp = format_micro_time(wall);
  lease.spec.holder_identity.clear();
  lease.spec.lease_duration_seconds = 1;
  lease.spec.acquire_time = stamp;
  lease.spec.renew_time = stamp;
  return lease;
}

Result<std::unique_ptr<LeaderElector>> LeaderElector::create(Client& client,
                                                             LeaderElectionConfig config,
                                                             Callbacks callbacks, Clock clock,
                                                             RandomSource random) {
  if (auto s = validate(config); !s.ok()) return std::move(s).error();
  if (!clock.wall) clock.wall = [] { return std::chrono::system_clock::now(); };
  if (!clock.monotonic) clock.monotonic = [] { return std::chrono::steady_clock::now(); };
  if (!random) random = default_random_source();
  return std::unique_ptr<LeaderElector>(new LeaderElector(
      client, std::move(config), std::move(callbacks), std::move(clock), std::move(random)));
}

LeaderElector::LeaderElector(Client& client, LeaderElectionConfig config, Callbacks callbacks,
                             Clock clock, RandomSource random)
    : client_(client),
      config_(std::move(config)),
      callbacks_(std::move(callbacks)),
      clock_(std::move(clock)),
      random_(std::move(random)),
      election_(config_),
      retry_timer_(client.loop(), [this] { attempt(); }),
      deadline_timer_(client.loop(), [this] {
        log::warn("kube: leader election: lease not renewed within the deadline",
                  {{"lease", config_.lease_namespace + "/" + config_.lease_name},
                   {"renew_deadline_ms", static_cast<long long>(config_.renew_deadline.count())}});
        if (request_ != 0) {
          client_.cancel(request_);
          request_ = 0;
        }
        stop_leading();
      }) {}

LeaderElector::~LeaderElector() {
  if (request_ != 0) client_.cancel(request_);
}

void LeaderElector::start() {
  if (running_) return;
  running_ = true;
  attempt();
}

void LeaderElector::attempt() {
  if (!running_ || request_ != 0) return;
  request_ = client_.get(resources::kLeases, config_.lease_namespace, config_.lease_name,
                         [this](Result<json::Document> answer) {
                           request_ = 0;
                           on_read(std::move(answer));
                         });
}

void LeaderElector::on_read(Result<json::Document> answer) {
  std::optional<Lease> current;
  if (!answer.ok()) {
    if (!is_not_found(answer.error())) {
      log::warn("kube: leader election: cannot read the lease",
                {{"error", answer.error().message}});
      attempt_done(false);
      return;
    }
  } else {
    auto lease = decode_lease(answer->root());
    if (!lease.ok()) {
      log::warn("kube: leader election: malformed lease", {{"error", lease.error().message}});
      attempt_done(false);
      return;
    }
    current = std::move(*lease);
  }
  auto plan = election_.plan(current, clock_.wall(), clock_.monotonic());
  event::CallbackScope scope(destruction_);
  note_holder();
  if (scope.destroyed()) return;
  if (plan.action == LeaseElection::Action::wait) {
    // Someone else holds a live lease; a leader that sees this has lost it.
    attempt_done(false);
    if (scope.destroyed()) return;
    if (leading_) stop_leading();
    return;
  }
  auto done = [this](Result<json::Document> written) {
    request_ = 0;
    on_written(std::move(written));
  };
  std::string body = encode_lease(plan.lease);
  if (plan.action == LeaseElection::Action::create) {
    request_ = client_.create(resources::kLeases, config_.lease_namespace, std::move(body), done);
  } else {
    request_ = client_.update(resources::kLeases, config_.lease_namespace, config_.lease_name,
                              std::move(body), done);
  }
}

void LeaderElector::on_written(Result<json::Document> answer) {
  if (!answer.ok()) {
    // 409: another candidate wrote first; we learn who at the next read.
    if (!is_conflict(answer.error())) {
      log::warn("kube: leader election: cannot write the lease",
                {{"error", answer.error().message}});
    }
    attempt_done(false);
    return;
  }
  auto lease = decode_lease(answer->root());
  if (lease.ok()) {
    last_written_ = std::move(*lease);
    election_.observe(*last_written_, clock_.monotonic());
  }
  attempt_done(true);
}

void LeaderElector::attempt_done(bool renewed) {
  event::CallbackScope scope(destruction_);
  if (renewed) {
    deadline_timer_.start(config_.renew_deadline);
    note_holder();
    if (scope.destroyed()) return;
    if (!leading_) {
      leading_ = true;
      log::info("kube: leader election: started leading",
                {{"lease", config_.lease_namespace + "/" + config_.lease_name},
                 {"identity", config_.identity}});
      if (callbacks_.on_started_leading) callbacks_.on_started_leading();
      if (scope.destroyed()) return;
    }
  }
  schedule_next();
}

void LeaderElector::schedule_next() {
  if (!running_) return;
  // A leader renews on time; candidates spread out their attempts.
  milliseconds delay =
      leading_ ? config_.retry_period : jittered(config_.retry_period, kRetryJitter, random_);
  retry_timer_.start(delay);
}

// Calls on_stopped_leading last: callers must not touch the elector after it.
void LeaderElector::stop_leading() {
  deadline_timer_.stop();
  if (!leading_) return;
  leading_ = false;
  log::info("kube: leader election: stopped leading",
            {{"lease", config_.lease_namespace + "/" + config_.lease_name},
             {"identity", config_.identity}});
  if (running_ && request_ == 0 && !retry_timer_.active()) schedule_next();
  if (callbacks_.on_stopped_leading) callbacks_.on_stopped_leading();
}

void LeaderElector::note_holder() {
  const std::string& holder = election_.observed_holder();
  if (holder == last_holder_) return;
  last_holder_ = holder;
  if (callbacks_.on_new_leader) callbacks_.on_new_leader(holder);
}

void LeaderElector::release(std::function<void(const Status&)> done) {
  running_ = false;
  retry_timer_.stop();
  if (request_ != 0) {
    client_.cancel(request_);
    request_ = 0;
  }
  if (!leading_ || !last_written_) {
    event::EventLoop& loop = client_.loop();
    stop_leading();
    loop.defer([done = std::move(done)] { done(ok_status()); });
    return;
  }
  deadline_timer_.stop();
  Lease released = election_.release(*last_written_, clock_.wall());
  request_ = client_.update(resources::kLeases, config_.lease_namespace, config_.lease_name,
                            encode_lease(released),
                            [this, done = std::move(done)](Result<json::Document> answer) {
                              request_ = 0;
                              Status status = answer.ok() ? ok_status()
                                                          : Status(std::move(answer).error());
                              if (!status.ok()) {
                                log::warn("kube: leader election: release failed",
                                          {{"error", status.error().message}});
                              }
                              // `done` is ours, not the elector's: callable even
                              // if on_stopped_leading destroyed the elector.
                              stop_leading();
                              done(status);
                            });
}

}  // namespace trellis::kube
