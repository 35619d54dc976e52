// Time for the exchanges of one worker: a clock, one-shot alarms and deferred
// tasks. Production uses the worker's EventLoop (LoopScheduler); tests drive a
// manual one, so that timeouts, backoffs and latencies are exact and no test
// waits on a wall clock.
//
// Loop thread only, like everything an exchange touches.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "common/event/event_loop.h"

namespace trellis::proxy::exchange {

using TimePoint = std::chrono::steady_clock::time_point;

// A one-shot alarm. Destroying it disarms it; arm() replaces a pending
// schedule. Never destroy an Alarm from inside its own callback.
class Alarm {
 public:
  virtual ~Alarm() = default;
  virtual void arm(std::chrono::milliseconds after) = 0;
  virtual void disarm() = 0;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual TimePoint now() = 0;
  virtual std::unique_ptr<Alarm> alarm(std::function<void()> fire) = 0;
  // Runs `task` after the current callback has returned: for objects that
  // must not die inside their own callback.
  virtual void defer(std::function<void()> task) = 0;
};

class DeadlinePool;

// Backed by a worker's loop: the loop's turn time for the clock (a
// steady_clock reading per loop turn: sub-millisecond latencies for the
// balancer and the duration histogram), EventLoop::defer, and for alarms
// event::Deadlines that outlive the alarms: a released alarm's deadline
// (and its pending libuv timer) serves the next one, so a request with a
// timeout neither creates nor closes a libuv timer, and re-arming the same
// duration updates no timer either. The loop must outlive the scheduler and
// its alarms; alarms may outlive the scheduler.
class LoopScheduler final : public Scheduler {
 public:
  explicit LoopScheduler(event::EventLoop& loop);
  ~LoopScheduler() override;
  TimePoint now() override { return loop_.turn_time(); }
  std::unique_ptr<Alarm> alarm(std::function<void()> fire) override;
  void defer(std::function<void()> task) override { loop_.defer(std::move(task)); }

 private:
  event::EventLoop& loop_;
  std::shared_ptr<DeadlinePool> deadlines_;  // shared with the alarms
};

}  // namespace trellis::proxy::exchange
