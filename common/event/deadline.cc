#include "common/event/deadline.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace trellis::event {

Deadline::Deadline(EventLoop& loop, Callback callback)
    : loop_(loop), handle_(make_uv_handle<uv_timer_t>()), callback_(std::move(callback)) {
  uv_timer_init(loop.uv(), handle_.get());  // cannot fail
  handle_->data = this;
  uv_unref(as_uv_handle(handle_.get()));  // referenced only while armed
}

void Deadline::arm(std::chrono::milliseconds after) {
  std::chrono::milliseconds now = loop_.now();
  due_ = now + std::max(after, std::chrono::milliseconds::zero());
  if (!armed_) {
    armed_ = true;
    uv_ref(as_uv_handle(handle_.get()));
  }
  bool pending = uv_is_active(as_uv_handle(handle_.get())) != 0;
  if (!pending || timer_due_ > due_) start_timer(now);
}

void Deadline::disarm() {
  if (!armed_) return;
  armed_ = false;
  // The pending timer stays; unreferenced, it no longer keeps the loop alive.
  uv_unref(as_uv_handle(handle_.get()));
}

void Deadline::start_timer(std::chrono::milliseconds now) {
  timer_due_ = due_;
  uv_timer_start(handle_.get(), &Deadline::on_timer, static_cast<uint64_t>((due_ - now).count()), 0);
}

void Deadline::on_timer(uv_timer_t* handle) {
  auto* self = static_cast<Deadline*>(handle->data);
  if (!self->armed_) return;
  std::chrono::milliseconds now = self->loop_.now();
  if (now < self->due_) {
    self->start_timer(now);  // re-armed later since this timer was set
    return;
  }
  self->disarm();
  // Moved out for the call: if the callback destroys the Deadline, the
  // closure it is running in must outlive that.
  Callback callback = std::move(self->callback_);
  CallbackScope scope(self->destruction_);
  callback();
  if (!scope.destroyed()) self->callback_ = std::move(callback);
}

}  // namespace trellis::event
