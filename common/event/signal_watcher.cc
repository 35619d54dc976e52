#include "common/event/signal_watcher.h"

#include <csignal>
#include <string>
#include <utility>

#include "common/event/uv_error.h"

namespace trellis::event {

Result<std::unique_ptr<SignalWatcher>> SignalWatcher::create(EventLoop& loop,
                                                             std::vector<int> signals,
                                                             Callback callback) {
  if (signals.empty()) return make_error("signal watcher: no signals given");
  std::unique_ptr<SignalWatcher> watcher(new SignalWatcher(std::move(callback)));
  for (int signum : signals) {
    if (signum <= 0 || signum >= NSIG) {
      return make_error("invalid signal number " + std::to_string(signum), EINVAL);
    }
    auto handle = make_uv_handle<uv_signal_t>();
    if (int r = uv_signal_init(loop.uv(), handle.get()); r != 0) {
      return uv_error("watch signal " + std::to_string(signum), r);
    }
    handle->data = watcher.get();
    if (int r = uv_signal_start(handle.get(), &SignalWatcher::on_signal, signum); r != 0) {
      return uv_error("watch signal " + std::to_string(signum), r);
    }
    watcher->handles_.push_back(std::move(handle));
  }
  return watcher;
}

void SignalWatcher::on_signal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<SignalWatcher*>(handle->data);
  Callback callback = std::move(self->callback_);  // survives the watcher's destruction
  CallbackScope scope(self->destruction_);
  callback(signum);
  if (!scope.destroyed()) self->callback_ = std::move(callback);
}

}  // namespace trellis::event
