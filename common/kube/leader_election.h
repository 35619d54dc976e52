// Leader election on a coordination.k8s.io/v1 Lease, compatible with
// client-go's LeaseLock: the leader renews spec.renewTime every retry_period;
// a candidate takes the Lease over once it has seen the same record unchanged
// for leaseDurationSeconds (measured on its own monotonic clock, so clock skew
// between replicas does not matter) or when holderIdentity is empty. Every
// write carries the resourceVersion that was read, so two candidates cannot
// both win: the loser gets 409 Conflict.
//
//   auto elector = kube::LeaderElector::create(client, {"trellis", "trellis-controller",
//                                                        pod_name}, callbacks).value();
//   elector->start();
//   ... on shutdown: elector->release([](const Status&) { loop.stop(); });
//
// A leader that cannot renew within renew_deadline stops leading
// (on_stopped_leading) and campaigns again. release() clears holderIdentity
// so that another replica takes over at its next retry instead of waiting for
// the lease to expire.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/timer.h"
#include "common/kube/backoff.h"
#include "common/kube/client.h"
#include "common/kube/objects.h"

namespace trellis::kube {

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  std::string identity;  // unique per replica: the pod name
  std::chrono::seconds lease_duration{15};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// "lease_namespace is empty", "lease_name is empty", "identity is empty",
// "lease_duration (10000 ms) must be longer than renew_deadline (10000 ms)",
// "renew_deadline (2000 ms) must be longer than 1.2 × retry_period (2000 ms)".
Status validate(const LeaderElectionConfig& config);

// The decisions of leader election without I/O: given the Lease as read and
// the time, what to write. Tests drive it with a fake clock.
class LeaseElection {
 public:
  enum class Action { create, update, wait };
  struct Plan {
    Action action = Action::wait;
    Lease lease;  // for create and update: the whole object to write
  };

  explicit LeaseElection(const LeaderElectionConfig& config);

  // `current`: the Lease as just read, nullopt when it does not exist.
  // `wall` stamps acquireTime/renewTime; `now` (monotonic) times expiry.
  Plan plan(const std::optional<Lease>& current, std::chrono::system_clock::time_point wall,
            std::chrono::steady_clock::time_point now);

  // Records a Lease as seen at `now` (plan() does this for what it reads; the
  // elector also for what it wrote).
  void observe(const Lease& lease, std::chrono::steady_clock::time_point now);

  // The Lease that gives leadership up: holder cleared, duration 1 s.
  Lease release(const Lease& current, std::chrono::system_clock::time_point wall) const;

  // The holder of the last Lease observed ("" when none).
  const std::string& observed_holder() const { return observed_.holder_identity; }

 private:
  LeaderElectionConfig config_;
  LeaseSpec observed_;
  std::string observed_resource_version_;
  std::chrono::steady_clock::time_point observed_at_{};
  bool has_observed_ = false;
};

class LeaderElector {
 public:
  struct Callbacks {
    std::function<void()> on_started_leading;
    std::function<void()> on_stopped_leading;
    // The observed holder changed ("" when nobody holds the lease).
    std::function<void(const std::string& holder)> on_new_leader;
  };
  struct Clock {
    std::function<std::chrono::system_clock::time_point()> wall;
    std::function<std::chrono::steady_clock::time_point()> monotonic;
  };

  // Errors: validate(config).
  static Result<std::unique_ptr<LeaderElector>> create(Client& client,
                                                       LeaderElectionConfig config,
                                                       Callbacks callbacks, Clock clock = {},
                                                       RandomSource random = {});
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Starts campaigning (the first attempt is immediate).
  void start();
  // Stops campaigning; if leading, clears the Lease's holder first, then
  // calls on_stopped_leading. `done` gets the outcome of that write (OK when
  // there was nothing to release).
  void release(std::function<void(const Status&)> done);

  bool is_leader() const { return leading_; }
  const std::string& leader() const { return election_.observed_holder(); }

 private:
  LeaderElector(Client& client, LeaderElectionConfig config, Callbacks callbacks, Clock clock,
                RandomSource random);
  void attempt();
  void on_read(Result<json::Document> answer);
  void on_written(Result<json::Document> answer);
  void attempt_done(bool renewed);
  void schedule_next();
  void stop_leading();
  void note_holder();

  Client& client_;
  LeaderElectionConfig config_;
  Callbacks callbacks_;
  Clock clock_;
  RandomSource random_;
  LeaseElection election_;
  std::optional<Lease> last_written_;  // our last successful write
  std::string last_holder_;
  bool running_ = false;
  bool leading_ = false;
  RequestId request_ = 0;
  event::Timer retry_timer_;
  event::Timer deadline_timer_;  // armed while leading: renew_deadline after the last renewal
  event::DestructionFlag destruction_;
};

}  // namespace trellis::kube
