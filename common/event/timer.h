// Timer: a one-shot or repeating libuv timer on the loop thread.
//
// start() (re)arms it, replacing any pending schedule; stop() disarms it.
// Destroying a Timer is always safe, also from inside its own callback (the
// callback object stays alive until it returns). Timers due at the same loop
// time fire in the order they were started.
#pragma once

#include <chrono>
#include <functional>

#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/event/uv_handle.h"

namespace trellis::event {

class Timer {
 public:
  using Callback = std::function<void()>;

  Timer(EventLoop& loop, Callback callback);
  ~Timer() = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires after `timeout`, then every `repeat` if it is positive. A negative
  // timeout counts as zero (fires on the next loop turn); a huge one never
  // fires in practice (libuv saturates instead of overflowing).
  void start(std::chrono::milliseconds timeout,
             std::chrono::milliseconds repeat = std::chrono::milliseconds::zero());
  void stop();
  bool active() const;

 private:
  static void on_timer(uv_timer_t* handle);

  UvHandle<uv_timer_t> handle_;
  Callback callback_;
  DestructionFlag destruction_;
};

}  // namespace trellis::event
