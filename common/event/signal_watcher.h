// SignalWatcher: delivers process signals (SIGTERM, SIGINT for drain) as
// callbacks on a loop thread, where it is safe to do anything.
//
// While any watcher for a signal exists, libuv's handler replaces the
// signal's disposition; when the last one is destroyed the disposition
// returns to SIG_DFL. Destroying a watcher is safe from inside its callback.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/event/uv_handle.h"

namespace trellis::event {

class SignalWatcher {
 public:
  using Callback = std::function<void(int signum)>;

  // Errors: "signal watcher: no signals given", "invalid signal number 99",
  // "watch signal 9: invalid argument" (libuv refused it, e.g. SIGKILL).
  static Result<std::unique_ptr<SignalWatcher>> create(EventLoop& loop, std::vector<int> signals,
                                                       Callback callback);
  ~SignalWatcher() = default;
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  explicit SignalWatcher(Callback callback) : callback_(std::move(callback)) {}
  static void on_signal(uv_signal_t* handle, int signum);

  std::vector<UvHandle<uv_signal_t>> handles_;
  Callback callback_;
  DestructionFlag destruction_;
};

}  // namespace trellis::event
