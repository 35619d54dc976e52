#include "common/event/event_loop.h"

#include <utility>

#include "common/event/uv_error.h"
#include "common/log/log.h"

namespace trellis::event {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  if (int r = uv_loop_init(&loop->loop_); r != 0) return uv_error("event loop", r);
  if (int r = uv_async_init(&loop->loop_, &loop->wakeup_, &EventLoop::on_async); r != 0) {
    uv_loop_close(&loop->loop_);
    return uv_error("event loop wakeup", r);
  }
  loop->wakeup_.data = loop.get();
  uv_idle_init(&loop->loop_, &loop->deferred_runner_);
  loop->deferred_runner_.data = loop.get();
  uv_prepare_init(&loop->loop_, &loop->turn_end_);
  loop->turn_end_.data = loop.get();
  uv_prepare_start(&loop->turn_end_, [](uv_prepare_t* p) {
    static_cast<EventLoop*>(p->data)->turn_time_valid_ = false;
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(&loop->turn_end_));  // never keeps the loop alive
  loop->initialized_ = true;
  return loop;
}

EventLoop::~EventLoop() {
  if (!initialized_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    posted_batch_.swap(posted_);
  }
  // Destroying a task may destroy objects that close handles or defer more
  // work; keep going until nothing is queued.
  while (!posted_batch_.empty() || !deferred_.empty()) {
    posted_batch_.clear();
    deferred_batch_.swap(deferred_);
    deferred_batch_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&deferred_runner_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&turn_end_), nullptr);
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (uv_is_closing(h)) return;
        log::error("libuv handle still open when its event loop was destroyed",
                   {{"type", uv_handle_type_name(h->type)}});
        h->data = nullptr;
        uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);  // runs the close callbacks, which free handle memory
  if (int r = uv_loop_close(&loop_); r != 0) {
    log::error("event loop closed with requests outstanding", {{"error", uv_strerror(r)}});
  }
}

void EventLoop::run() { uv_run(&loop_, UV_RUN_DEFAULT); }

void EventLoop::stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_requested_ = true;
  // Sent under the lock: the destructor closes the handle only after setting
  // closed_ under the same lock.
  if (!closed_) uv_async_send(&wakeup_);
}

bool EventLoop::post(Task task) {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) {
    lock.unlock();
    task = nullptr;  // destroyed here, outside the lock, as documented
    return false;
  }
  posted_.push_back(std::move(task));
  if (!wakeup_pending_) {
    wakeup_pending_ = true;
    uv_async_send(&wakeup_);
  }
  return true;
}

void EventLoop::on_async(uv_async_t* async) {
  auto* self = static_cast<EventLoop*>(async->data);
  bool stop;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->posted_batch_.swap(self->posted_);
    self->wakeup_pending_ = false;
    stop = self->stop_requested_;
    self->stop_requested_ = false;  // each stop() ends exactly one run()
  }
  // One batch per wakeup: tasks posted meanwhile wake the loop again, so a
  // busy poster cannot starve I/O.
  for (Task& task : self->posted_batch_) task();
  self->posted_batch_.clear();
  if (stop) uv_stop(&self->loop_);
}

void EventLoop::defer(Task task) {
  if (deferred_.empty()) uv_idle_start(&deferred_runner_, &EventLoop::on_idle);
  deferred_.push_back(std::move(task));
}

void EventLoop::on_idle(uv_idle_t* idle) { static_cast<EventLoop*>(idle->data)->run_deferred(); }

void EventLoop::run_deferred() {
  deferred_batch_.swap(deferred_);
  for (Task& task : deferred_batch_) task();
  deferred_batch_.clear();
  if (deferred_.empty()) uv_idle_stop(&deferred_runner_);
}

std::chrono::steady_clock::time_point EventLoop::turn_time() {
  if (!turn_time_valid_) {
    turn_time_ = std::chrono::steady_clock::now();
    turn_time_valid_ = true;
  }
  return turn_time_;
}

uv_buf_t EventLoop::read_buffer() {
  if (!read_buffer_) read_buffer_.reset(new char[kReadBufferSize]);
  return uv_buf_init(read_buffer_.get(), kReadBufferSize);
}

}  // namespace trellis::event
