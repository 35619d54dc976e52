// Deadline: a one-shot timeout that is cheap to re-arm and cancel many times
// per second, e.g. once per request on a keep-alive connection.
//
// An event::Timer costs a libuv heap update on every start() and stop().
// Deadline keeps its due time as a value and touches the libuv timer only when
// the due time moves earlier than the pending timer: disarm() only clears the
// value, and a later arm() that falls after the pending timer just waits for
// it, which then re-arms itself for the rest. For timeouts that are re-armed
// with the same duration (header, idle, request timeouts) that is no libuv
// call at all per request.
//
// Times are loop time (EventLoop::now(), millisecond resolution, cached per
// turn), like libuv's timers. The loop is kept alive only while the deadline
// is armed. Destroying a Deadline is always safe, also from its own callback.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <utility>

#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/event/uv_handle.h"

namespace trellis::event {

class Deadline {
 public:
  using Callback = std::function<void()>;

  Deadline(EventLoop& loop, Callback callback);
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Fires once, `after` from now (negative counts as zero), unless re-armed
  // or disarmed first. Replaces any earlier arm().
  void arm(std::chrono::milliseconds after);
  void disarm();
  bool armed() const { return armed_; }
  // Replaces what runs when it fires, so that a disarmed deadline can be
  // reused (its pending libuv timer with it). Not from inside the callback.
  void set_callback(Callback callback) { callback_ = std::move(callback); }

 private:
  static void on_timer(uv_timer_t* handle);
  void start_timer(std::chrono::milliseconds now);

  EventLoop& loop_;
  UvHandle<uv_timer_t> handle_;
  Callback callback_;
  std::chrono::milliseconds due_{0};        // loop time at which the callback runs
  std::chrono::milliseconds timer_due_{0};  // loop time of the pending libuv timer
  bool armed_ = false;
  DestructionFlag destruction_;
};

}  // namespace trellis::event
