#include "common/event/turn_task.h"

#include <utility>

namespace trellis::event {

// One allocation for both handles, freed once both have closed.
struct TurnHooks {
  uv_check_t check;
  uv_idle_t idle;
  TurnTask* owner = nullptr;  // null once the task is gone
  int open_handles = 0;
  bool armed = false;
};

void TurnHooksCloser::operator()(TurnHooks* hooks) const noexcept {
  hooks->owner = nullptr;
  auto closed = [](uv_handle_t* handle) {
    auto* h = static_cast<TurnHooks*>(handle->data);
    if (--h->open_handles == 0) delete h;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&hooks->check), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&hooks->idle), closed);
}

TurnTask::TurnTask(EventLoop& loop, std::function<void()> callback)
    : callback_(std::move(callback)), hooks_(new TurnHooks()) {
  TurnHooks& h = *hooks_;
  uv_check_init(loop.uv(), &h.check);  // cannot fail
  uv_idle_init(loop.uv(), &h.idle);    // cannot fail
  h.check.data = &h;
  h.idle.data = &h;
  h.owner = this;
  h.open_handles = 2;
}

TurnTask::~TurnTask() = default;  // hooks_ closes the handles: no callback after this

void TurnTask::schedule() {
  if (hooks_->armed) return;
  hooks_->armed = true;
  uv_check_start(&hooks_->check, &TurnTask::on_check);
  uv_idle_start(&hooks_->idle, &TurnTask::on_idle);
}

void TurnTask::cancel() {
  if (!hooks_->armed) return;
  hooks_->armed = false;
  uv_check_stop(&hooks_->check);
  uv_idle_stop(&hooks_->idle);
}

bool TurnTask::scheduled() const { return hooks_->armed; }

void TurnTask::on_check(uv_check_t* handle) {
  auto* hooks = static_cast<TurnHooks*>(handle->data);
  if (hooks->owner != nullptr) hooks->owner->run();
}

void TurnTask::on_idle(uv_idle_t* handle) {
  auto* hooks = static_cast<TurnHooks*>(handle->data);
  if (hooks->owner != nullptr) hooks->owner->run();
}

void TurnTask::run() {
  cancel();
  // Moved out for the call: if the callback destroys the task, the closure
  // it is running in must outlive that.
  std::function<void()> callback = std::move(callback_);
  CallbackScope scope(destruction_);
  callback();
  if (!scope.destroyed()) callback_ = std::move(callback);
}

}  // namespace trellis::event
