// Workers: N threads, each running its own EventLoop. Whatever a worker owns
// (listeners, connections, pools) lives and dies on its thread: nothing is
// shared between workers, so nothing on a worker's path takes a lock.
//
//   auto workers = Workers::start(2, [&](EventLoop& loop, size_t index)
//       -> Result<std::unique_ptr<WorkerState>> { ... open listeners ... });
//   workers.value()->post_all([](EventLoop&, WorkerState* s) { ... drain ... });
//
// Only shutdown() ends a worker: a task calling stop() on its worker's loop
// merely makes the worker run it again.
//
// Shutdown: shutdown() (or the destructor) refuses further posts, runs every
// task already accepted, stops each loop, destroys each worker's state and
// then its loop on the worker's own thread, and joins. A post() refused
// during or after shutdown returns false and the task is destroyed before
// post() returns: posted work is always either run or destroyed.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/base/result.h"
#include "common/event/event_loop.h"

namespace trellis::event {

// Per-worker state, created on the worker's thread by Workers::Init and
// destroyed there, after its loop stops and before the loop is destroyed.
class WorkerState {
 public:
  virtual ~WorkerState() = default;
};

class Workers {
 public:
  // Runs on the worker's thread before its loop runs. May return nullptr.
  using Init = std::function<Result<std::unique_ptr<WorkerState>>(EventLoop& loop, size_t index)>;
  // Runs on the worker's thread; `state` is what Init returned.
  using Task = std::function<void(EventLoop& loop, WorkerState* state)>;
  static constexpr size_t kMaxWorkers = 256;

  // Errors: "workers: count must be between 1 and 256, got 0"; a failing Init
  // as "worker 1: <its message>" (the other workers are shut down first).
  static Result<std::unique_ptr<Workers>> start(size_t count, Init init = nullptr);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  size_t size() const { return workers_.size(); }

  // Any thread. False when `index` is out of range or shutdown has begun.
  bool post(size_t index, Task task);
  // Any thread. Posts a copy of `task` to every worker; returns how many
  // accepted it (size() or 0).
  size_t post_all(const Task& task);

  // Idempotent; call it from a thread that is not a worker (a worker cannot
  // join itself): from a worker it fails with "workers: shutdown called from
  // worker thread 1" and does nothing.
  Status shutdown();

 private:
  struct Worker;
  Workers() = default;
  static void run_worker(Worker* worker, std::unique_ptr<EventLoop> loop, const Init* init,
                         std::promise<Status> ready);

  std::mutex shutdown_mu_;  // makes a concurrent second shutdown() wait for the first
  std::mutex mu_;           // guards accepting_; posts hold it so shutdown cannot overtake them
  bool accepting_ = true;
  std::vector<std::unique_ptr<Worker>> workers_;  // fixed once start() returns
};

}  // namespace trellis::event
