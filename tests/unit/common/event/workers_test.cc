#include "common/event/workers.h"

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/event/timer.h"

using trellis::Result;
using trellis::event::EventLoop;
using trellis::event::Timer;
using trellis::event::WorkerState;
using trellis::event::Workers;
using namespace std::chrono_literals;

namespace {

// Remembers on which threads it was created and destroyed, and owns a live
// handle on its worker's loop (as a worker's listeners would).
struct TestState : WorkerState {
  TestState(EventLoop& loop, size_t index, std::atomic<int>* wrong_thread_destructions)
      : index(index),
        created_on(std::this_thread::get_id()),
        timer(loop, [] {}),
        wrong_thread_destructions(wrong_thread_destructions) {
    timer.start(std::chrono::hours(1));
  }
  ~TestState() override {
    if (std::this_thread::get_id() != created_on) ++*wrong_thread_destructions;
  }
  size_t index;
  std::thread::id created_on;
  Timer timer;
  std::atomic<int>* wrong_thread_destructions;
};

// Owned by a task; its destruction proves the task did not leak.
struct Probe {
  explicit Probe(std::atomic<int>* destroyed) : destroyed(destroyed) {}
  ~Probe() { ++*destroyed; }
  std::atomic<int>* destroyed;
};

// Waits until `count` tasks have signalled.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void count_down() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  bool wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return count_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

}  // namespace

TEST_CASE("worker counts outside 1..256 are rejected with exact errors") {
  auto zero = Workers::start(0);
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.error().message == "workers: count must be between 1 and 256, got 0");
  auto huge = Workers::start(100000);
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.error().message == "workers: count must be between 1 and 256, got 100000");
}

TEST_CASE("each worker runs its own loop on its own thread, with its own state") {
  std::atomic<int> wrong_thread{0};
  auto started = Workers::start(3, [&](EventLoop& loop, size_t index)
                                       -> Result<std::unique_ptr<WorkerState>> {
    return std::unique_ptr<WorkerState>(new TestState(loop, index, &wrong_thread));
  });
  REQUIRE(started.ok());
  auto workers = std::move(started).value();
  CHECK(workers->size() == 3);

  std::mutex mu;
  std::set<std::thread::id> threads;
  std::set<EventLoop*> loops;
  std::vector<size_t> state_index(3, 99);
  Latch latch(3);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(workers->post(i, [&, i](EventLoop& loop, WorkerState* state) {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
      loops.insert(&loop);
      state_index[i] = static_cast<TestState*>(state)->index;
      latch.count_down();
    }));
  }
  REQUIRE(latch.wait());
  CHECK(threads.size() == 3);
  CHECK(threads.count(std::this_thread::get_id()) == 0);
  CHECK(loops.size() == 3);
  CHECK(state_index == std::vector<size_t>{0, 1, 2});

  Latch all(3);
  CHECK(workers->post_all([&](EventLoop&, WorkerState*) { all.count_down(); }) == 3);
  REQUIRE(all.wait());

  CHECK_FALSE(workers->post(3, [](EventLoop&, WorkerState*) {}));
  CHECK(workers->shutdown().ok());
  CHECK(wrong_thread == 0);  // states were destroyed on their own worker threads
}

TEST_CASE("a failing Init fails start with the worker's index and stops the others") {
  std::atomic<int> wrong_thread{0};
  std::atomic<int> created{0};
  auto started = Workers::start(3, [&](EventLoop& loop, size_t index)
                                       -> Result<std::unique_ptr<WorkerState>> {
    if (index == 1) return trellis::make_error("bind 0.0.0.0:80: address already in use", 98);
    ++created;
    return std::unique_ptr<WorkerState>(new TestState(loop, index, &wrong_thread));
  });
  REQUIRE_FALSE(started.ok());
  CHECK(started.error().message == "worker 1: bind 0.0.0.0:80: address already in use");
  CHECK(started.error().code == 98);
  CHECK(created == 2);
  CHECK(wrong_thread == 0);
}

TEST_CASE("work posted around shutdown is run if accepted and destroyed if refused") {
  auto started = Workers::start(2);
  REQUIRE(started.ok());
  auto workers = std::move(started).value();

  std::atomic<int> destroyed{0};
  std::atomic<int> ran{0};
  std::atomic<int> accepted{0};
  std::atomic<int> posted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < 3000; ++i) {
        auto probe = std::make_shared<Probe>(&destroyed);
        ++posted;
        bool ok = workers->post(static_cast<size_t>(i + t) % 2,
                                [probe, &ran](EventLoop&, WorkerState*) { ++ran; });
        if (ok) ++accepted;
      }
    });
  }
  go = true;
  std::this_thread::sleep_for(2ms);  // let some posts land before shutdown begins
  REQUIRE(workers->shutdown().ok());
  for (auto& p : posters) p.join();
  CHECK(ran == accepted);
  CHECK(destroyed == posted);
  CHECK(posted == 12000);

  CHECK_FALSE(workers->post(0, [](EventLoop&, WorkerState*) {}));
  CHECK(workers->post_all([](EventLoop&, WorkerState*) {}) == 0);
  CHECK(workers->shutdown().ok());  // idempotent
}

TEST_CASE("shutdown from a worker thread is refused with an exact error") {
  auto started = Workers::start(2);
  REQUIRE(started.ok());
  auto workers = std::move(started).value();
  std::string message;
  Latch latch(1);
  REQUIRE(workers->post(1, [&](EventLoop&, WorkerState*) {
    auto s = workers->shutdown();
    message = s.ok() ? "ok" : s.error().message;
    latch.count_down();
  }));
  REQUIRE(latch.wait());
  CHECK(message == "workers: shutdown called from worker thread 1");
  // Posting still works: the refused shutdown changed nothing.
  Latch again(1);
  CHECK(workers->post(0, [&](EventLoop&, WorkerState*) { again.count_down(); }));
  CHECK(again.wait());
}

TEST_CASE("work a worker leaves queued when it stops is destroyed, not leaked") {
  std::atomic<int> destroyed{0};
  auto started = Workers::start(1);
  REQUIRE(started.ok());
  auto workers = std::move(started).value();
  REQUIRE(workers->post(0, [&](EventLoop& loop, WorkerState*) {
    // Whether this runs before or in the final batch, what it queues is
    // either run or destroyed with the loop.
    loop.delete_later(std::make_unique<Probe>(&destroyed));
    auto probe = std::make_shared<Probe>(&destroyed);
    loop.post([probe] {});
  }));
  REQUIRE(workers->shutdown().ok());
  CHECK(destroyed == 2);
}

TEST_CASE("a task stopping its own worker's loop does not end the worker") {
  auto started = Workers::start(1);
  REQUIRE(started.ok());
  auto workers = std::move(started).value();
  REQUIRE(workers->post(0, [](EventLoop& loop, WorkerState*) { loop.stop(); }));
  Latch latch(1);
  REQUIRE(workers->post(0, [&](EventLoop&, WorkerState*) { latch.count_down(); }));
  CHECK(latch.wait());
}
