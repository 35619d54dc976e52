// EventLoop: one libuv loop, run by one thread (its "loop thread").
//
// Threading: post() and stop() may be called from any thread; everything else
// (defer, delete_later, now, turn_time, read_buffer, and every handle created on the
// loop) belongs to the loop thread. Hot-path operations (defer) take no lock.
//
// Lifetime: objects that own handles on a loop (Timer, TcpConnection, ...)
// must be destroyed before the loop. Destroying the loop destroys queued
// tasks without running them, runs the close callbacks of handles closed so
// far, and logs any handle still open (an owner outliving its loop is a bug).
// Destroy it on the loop thread, or on another thread once run() has
// returned and nothing can post to it any more.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/base/result.h"

namespace trellis::event {

class EventLoop {
 public:
  using Task = std::function<void()>;
  // Size of the per-loop read buffer (libuv asks for 64 KiB per read).
  static constexpr size_t kReadBufferSize = 64 * 1024;

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  uv_loop_t* uv() { return &loop_; }

  // Runs the loop on the calling thread until stop(). Before it returns it
  // runs every task post()ed before stop() was called. May be called again.
  void run();
  // Any thread. Makes the current run() return, or the next one if none is
  // running.
  void stop();

  // Any thread. Queues `task` to run on the loop thread; wakeups are
  // coalesced (one per batch of posts). Returns false once the loop is being
  // destroyed: the task is then destroyed, unrun, before post() returns.
  bool post(Task task);

  // Loop thread. Runs `task` after the current callback has returned, before
  // the loop next blocks for I/O. Tasks deferred by a deferred task run on a
  // later turn.
  void defer(Task task);

  // Loop thread. Destroys `object` on the next loop turn: for objects that
  // must die while one of their own methods is still on the stack.
  template <typename T>
  void delete_later(std::unique_ptr<T> object) {
    std::shared_ptr<T> doomed(std::move(object));
    defer([doomed]() mutable { doomed.reset(); });
  }

  // Loop time: monotonic, cached at the start of each loop turn.
  std::chrono::milliseconds now() const {
    return std::chrono::milliseconds(uv_now(&loop_));
  }

  // Loop thread. A steady_clock reading shared by everything that runs in
  // one loop turn: taken at the first call after the loop last waited for
  // I/O. The turn's events all became ready while the loop waited, so this is
  // when they were seen (nginx and HAProxy time requests the same way), at
  // one clock read per turn instead of several per request.
  std::chrono::steady_clock::time_point turn_time();

  // Loop thread. A buffer libuv reads into; its contents are only valid
  // until the read callback that received them returns.
  uv_buf_t read_buffer();

 private:
  EventLoop() = default;
  static void on_async(uv_async_t* async);
  static void on_idle(uv_idle_t* idle);
  void run_deferred();

  bool initialized_ = false;  // false only while create() fails
  uv_loop_t loop_{};
  uv_async_t wakeup_{};
  uv_idle_t deferred_runner_{};
  uv_prepare_t turn_end_{};  // runs right before the loop waits: turn_time_ expires
  std::chrono::steady_clock::time_point turn_time_{};
  bool turn_time_valid_ = false;

  std::mutex mu_;  // guards the four members below
  std::vector<Task> posted_;
  bool wakeup_pending_ = false;
  bool stop_requested_ = false;
  bool closed_ = false;

  // Batches being run, kept so that their capacity is reused every turn.
  std::vector<Task> posted_batch_;
  std::vector<Task> deferred_;
  std::vector<Task> deferred_batch_;
  std::unique_ptr<char[]> read_buffer_;
};

}  // namespace trellis::event
