#include "common/event/workers.h"

#include <pthread.h>

#include <atomic>
#include <string>
#include <system_error>
#include <utility>

namespace trellis::event {

struct Workers::Worker {
  size_t index = 0;
  std::thread::id thread_id;  // immutable once start() returns
  std::thread thread;
  // Owned by the worker's thread, which destroys it after run() returns;
  // valid to post to and stop until stop() has been called.
  EventLoop* loop = nullptr;
  WorkerState* state = nullptr;  // read and written only on the worker's thread
  std::atomic<bool> stopping{false};  // set by shutdown() before it stops the loop
};

Result<std::unique_ptr<Workers>> Workers::start(size_t count, Init init) {
  if (count == 0 || count > kMaxWorkers) {
    return make_error("workers: count must be between 1 and " + std::to_string(kMaxWorkers) +
                      ", got " + std::to_string(count));
  }
  std::unique_ptr<Workers> workers(new Workers());
  std::vector<std::future<Status>> ready;
  for (size_t i = 0; i < count; ++i) {
    auto loop = EventLoop::create();
    if (!loop.ok()) {
      (void)workers->shutdown();
      return make_error("worker " + std::to_string(i) + ": " + loop.error().message,
                        loop.error().code);
    }
    auto worker = std::make_unique<Worker>();
    worker->index = i;
    worker->loop = loop.value().get();
    std::promise<Status> started;
    ready.push_back(started.get_future());
    try {
      worker->thread = std::thread(&Workers::run_worker, worker.get(), std::move(loop).value(),
                                   &init, std::move(started));
    } catch (const std::system_error& e) {  // std::thread reports failure only by throwing
      (void)workers->shutdown();
      return make_error("worker " + std::to_string(i) + ": cannot start thread: " + e.what(),
                        e.code().value());
    }
    worker->thread_id = worker->thread.get_id();
    workers->workers_.push_back(std::move(worker));
  }
  // Wait for every Init (they use `init`, which lives on this stack frame).
  Status first_failure;
  for (size_t i = 0; i < ready.size(); ++i) {
    Status s = ready[i].get();
    if (!s.ok() && first_failure.ok()) {
      first_failure = make_error("worker " + std::to_string(i) + ": " + s.error().message,
                                 s.error().code);
    }
  }
  if (!first_failure.ok()) {
    (void)workers->shutdown();
    return std::move(first_failure).error();
  }
  return workers;
}

void Workers::run_worker(Worker* worker, std::unique_ptr<EventLoop> loop, const Init* init,
                         std::promise<Status> ready) {
  std::string name = "trellis-w" + std::to_string(worker->index);
  pthread_setname_np(pthread_self(), name.c_str());  // at most 15 chars: fits up to w255

  std::unique_ptr<WorkerState> state;
  Status status;
  if (*init) {
    auto created = (*init)(*loop, worker->index);
    if (created.ok()) {
      state = std::move(created).value();
    } else {
      status = std::move(created).error();
    }
  }
  worker->state = state.get();
  ready.set_value(std::move(status));
  // Runs even after a failed Init: the loop lives until shutdown() stops it,
  // and a stray stop() from a task does not end the worker.
  do {
    loop->run();
  } while (!worker->stopping);
  worker->state = nullptr;
  state.reset();
  loop.reset();
}

Workers::~Workers() { (void)shutdown(); }

bool Workers::post(size_t index, Task task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!accepting_ || index >= workers_.size()) return false;
  Worker* w = workers_[index].get();
  return w->loop->post([w, task = std::move(task)] { task(*w->loop, w->state); });
}

size_t Workers::post_all(const Task& task) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!accepting_) return 0;
  size_t accepted = 0;
  for (auto& w : workers_) {
    Worker* worker = w.get();
    if (worker->loop->post([worker, task] { task(*worker->loop, worker->state); })) ++accepted;
  }
  return accepted;
}

Status Workers::shutdown() {
  for (const auto& w : workers_) {
    if (w->thread_id == std::this_thread::get_id()) {
      return make_error("workers: shutdown called from worker thread " + std::to_string(w->index));
    }
  }
  std::lock_guard<std::mutex> serial(shutdown_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return ok_status();
    accepting_ = false;
  }
  for (auto& w : workers_) {
    w->stopping = true;
    w->loop->stop();
  }
  for (auto& w : workers_) w->thread.join();
  return ok_status();
}

}  // namespace trellis::event
