// TurnTask: runs a callback once at the end of the current loop turn,
// however many times it was scheduled meanwhile. This is how work is batched
// per turn: a connection writes what the turn's callbacks queued in one
// write(), an HTTP/2 session serializes all the turn's frames at once.
//
// When: right after the turn's I/O callbacks (a uv_check handle); scheduled
// from anywhere else (a timer, a deferred task, another TurnTask), before the
// loop next waits for I/O (a uv_idle handle keeps the wait from blocking), so
// nothing scheduled ever sits behind an unrelated event. Never from inside
// schedule(), and never twice in one pass: a task scheduled from its own
// callback runs in the next pass.
//
// Loop thread only. Scheduling allocates nothing. Destroying the task (also
// from inside its own callback) cancels a pending run; the two libuv handles
// are freed by their close callbacks.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"

namespace trellis::event {

struct TurnHooks;  // the two libuv handles; see turn_task.cc
struct TurnHooksCloser {
  void operator()(TurnHooks* hooks) const noexcept;
};

class TurnTask {
 public:
  TurnTask(EventLoop& loop, std::function<void()> callback);
  ~TurnTask();
  TurnTask(const TurnTask&) = delete;
  TurnTask& operator=(const TurnTask&) = delete;

  void schedule();
  void cancel();
  bool scheduled() const;

 private:
  static void on_check(uv_check_t* handle);
  static void on_idle(uv_idle_t* handle);
  void run();

  std::function<void()> callback_;
  std::unique_ptr<TurnHooks, TurnHooksCloser> hooks_;
  DestructionFlag destruction_;
};

}  // namespace trellis::event
