#include "common/event/timer.h"

#include <cstdint>
#include <utility>

namespace trellis::event {
namespace {

uint64_t to_uv_ms(std::chrono::milliseconds ms) {
  return ms.count() < 0 ? 0 : static_cast<uint64_t>(ms.count());
}

}  // namespace

Timer::Timer(EventLoop& loop, Callback callback)
    : handle_(make_uv_handle<uv_timer_t>()), callback_(std::move(callback)) {
  uv_timer_init(loop.uv(), handle_.get());  // cannot fail
  handle_->data = this;
}

void Timer::start(std::chrono::milliseconds timeout, std::chrono::milliseconds repeat) {
  uv_timer_start(handle_.get(), &Timer::on_timer, to_uv_ms(timeout), to_uv_ms(repeat));
}

void Timer::stop() { uv_timer_stop(handle_.get()); }

bool Timer::active() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(handle_.get())) != 0;
}

void Timer::on_timer(uv_timer_t* handle) {
  auto* self = static_cast<Timer*>(handle->data);
  // Moved out for the call: if the callback destroys the Timer, the closure
  // it is running in must outlive that.
  Callback callback = std::move(self->callback_);
  CallbackScope scope(self->destruction_);
  callback();
  if (!scope.destroyed()) self->callback_ = std::move(callback);
}

}  // namespace trellis::event
