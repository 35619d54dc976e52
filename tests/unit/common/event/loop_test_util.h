// Test helper shared by the event and net tests: drive a loop until a
// condition holds, with a generous deadline so that a bug fails the test
// instead of hanging it. Tests assert ordering and outcomes, never speed.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>

#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/event/uv_handle.h"

namespace trellis::event::testing {

inline constexpr std::chrono::milliseconds kDeadline{20000};

// Runs the loop until done() is true, checking it before every wait for
// I/O; false if `limit` passed first.
inline bool run_until(EventLoop& loop, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = kDeadline) {
  if (done()) return true;
  struct Check {
    const std::function<bool()>* done;
    bool expired;
  } check{&done, false};
  Timer watchdog(loop, [&] { check.expired = true; });
  watchdog.start(limit);
  auto prepare = make_uv_handle<uv_prepare_t>();
  uv_prepare_init(loop.uv(), prepare.get());
  prepare->data = &check;
  uv_prepare_start(prepare.get(), [](uv_prepare_t* p) {
    auto* c = static_cast<Check*>(p->data);
    if (c->expired || (*c->done)()) uv_stop(p->loop);
  });
  uv_run(loop.uv(), UV_RUN_DEFAULT);
  return done();
}

// Runs the loop for about `duration` (to check that something does NOT happen).
inline void run_for(EventLoop& loop, std::chrono::milliseconds duration) {
  (void)run_until(loop, [] { return false; }, duration);
}

inline std::unique_ptr<EventLoop> make_loop() {
  auto loop = EventLoop::create();
  if (!loop.ok()) return nullptr;
  return std::move(loop).value();
}

}  // namespace trellis::event::testing
