#include "common/event/event_loop.h"

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/event/timer.h"
#include "common/event/uv_handle.h"
#include "tests/unit/common/event/loop_test_util.h"

using trellis::event::EventLoop;
using trellis::event::Timer;
using trellis::event::testing::make_loop;
using trellis::event::testing::run_until;
using namespace std::chrono_literals;

namespace {

// Counts its own destruction, to prove a task was destroyed rather than leaked.
struct Sentinel {
  explicit Sentinel(std::atomic<int>& destroyed) : destroyed_(destroyed) {}
  ~Sentinel() { ++destroyed_; }
  std::atomic<int>& destroyed_;
};

}  // namespace

TEST_CASE("posts from many threads all run, each thread's posts in order") {
  auto loop = make_loop();
  REQUIRE(loop);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::vector<int> last_seen(kThreads, -1);
  int ran = 0;
  bool in_order = true;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        bool accepted = loop->post([&, t, i] {
          if (i != last_seen[t] + 1) in_order = false;
          last_seen[t] = i;
          if (++ran == kThreads * kPerThread) loop->stop();
        });
        if (!accepted) in_order = false;
      }
    });
  }
  loop->run();
  for (auto& th : threads) th.join();
  CHECK(ran == kThreads * kPerThread);
  CHECK(in_order);
}

TEST_CASE("run() returns after stop() only once every task posted before it has run") {
  auto loop = make_loop();
  REQUIRE(loop);
  int ran = 0;
  int accepted = 0;
  std::thread poster([&] {
    for (int i = 0; i < 500; ++i) accepted += loop->post([&] { ++ran; }) ? 1 : 0;
    loop->stop();
  });
  loop->run();
  poster.join();
  CHECK(accepted == 500);
  CHECK(ran == 500);
}

TEST_CASE("stop() before run() makes the next run() return; the loop can run again") {
  auto loop = make_loop();
  REQUIRE(loop);
  loop->stop();
  loop->run();  // returns at once
  int ran = 0;
  REQUIRE(loop->post([&] { ++ran; }));
  REQUIRE(loop->post([&] { loop->stop(); }));
  loop->run();
  CHECK(ran == 1);
}

TEST_CASE("post after stop is queued for the next run or destroyed with the loop") {
  std::atomic<int> destroyed{0};
  auto loop = make_loop();
  REQUIRE(loop);
  REQUIRE(loop->post([&] { loop->stop(); }));
  loop->run();

  int ran = 0;
  auto sentinel = std::make_shared<Sentinel>(destroyed);
  CHECK(loop->post([&ran, sentinel] { ++ran; }));
  sentinel.reset();
  CHECK(destroyed == 0);  // held by the queued task
  loop.reset();           // never run again
  CHECK(ran == 0);
  CHECK(destroyed == 1);
}

TEST_CASE("a task posted while the loop is being destroyed is refused and destroyed at once") {
  std::atomic<int> destroyed{0};
  bool refused = false;
  auto loop = make_loop();
  REQUIRE(loop);
  EventLoop* raw = loop.get();
  // Destroying this queued task posts another one, as an object dying with
  // the loop might.
  struct PostsOnDestruction {
    PostsOnDestruction(EventLoop* l, std::atomic<int>* d, bool* r)
        : loop(l), destroyed(d), refused(r) {}
    EventLoop* loop;
    std::atomic<int>* destroyed;
    bool* refused;
    ~PostsOnDestruction() {
      auto sentinel = std::make_shared<Sentinel>(*destroyed);
      *refused = !loop->post([sentinel] {});
    }
  };
  auto poster = std::make_shared<PostsOnDestruction>(raw, &destroyed, &refused);
  REQUIRE(loop->post([poster] {}));
  poster.reset();
  loop.reset();
  CHECK(refused);
  CHECK(destroyed == 1);
}

TEST_CASE("defer runs after the current callback returns; nested defers run on a later turn") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<std::string> events;
  Timer timer(*loop, [&] {
    loop->defer([&] {
      events.push_back("deferred");
      loop->defer([&] { events.push_back("nested"); });
      events.push_back("deferred end");
    });
    events.push_back("callback end");
  });
  timer.start(0ms);
  REQUIRE(run_until(*loop, [&] { return events.size() == 4; }));
  CHECK(events == std::vector<std::string>{"callback end", "deferred", "deferred end", "nested"});
}

TEST_CASE("delete_later destroys an object on the next turn, from inside its own callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  struct SelfDestructing {
    std::unique_ptr<SelfDestructing>* owner;
    EventLoop* loop;
    bool* destroyed;
    Timer timer;
    bool callback_finished = false;
    SelfDestructing(EventLoop& l, std::unique_ptr<SelfDestructing>* o, bool* d)
        : owner(o), loop(&l), destroyed(d), timer(l, [this] {
            this->loop->delete_later(std::move(*owner));
            callback_finished = true;  // `this` is still alive here
          }) {}
    ~SelfDestructing() {
      CHECK(callback_finished);
      *destroyed = true;
    }
  };
  bool destroyed = false;
  std::unique_ptr<SelfDestructing> object;
  object = std::make_unique<SelfDestructing>(*loop, &object, &destroyed);
  object->timer.start(1ms);
  REQUIRE(run_until(*loop, [&] { return destroyed; }));
  CHECK(object == nullptr);
}

TEST_CASE("deferred tasks that never ran are destroyed with the loop") {
  std::atomic<int> destroyed{0};
  auto loop = make_loop();
  REQUIRE(loop);
  auto sentinel = std::make_shared<Sentinel>(destroyed);
  loop->defer([sentinel] {});
  loop->delete_later(std::make_unique<Sentinel>(destroyed));
  sentinel.reset();
  loop.reset();
  CHECK(destroyed == 2);
}

TEST_CASE("now() is loop time and advances across turns") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto start = loop->now();
  bool fired = false;
  Timer timer(*loop, [&] { fired = true; });
  timer.start(20ms);
  REQUIRE(run_until(*loop, [&] { return fired; }));
  CHECK(loop->now() - start >= 20ms);
}

TEST_CASE("read_buffer is one reusable buffer of kReadBufferSize") {
  auto loop = make_loop();
  REQUIRE(loop);
  uv_buf_t a = loop->read_buffer();
  uv_buf_t b = loop->read_buffer();
  CHECK(a.base == b.base);
  CHECK(a.len == EventLoop::kReadBufferSize);
}

TEST_CASE("UvHandle frees initialised and never-initialised handles without leaking") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto never_initialised = trellis::event::make_uv_handle<uv_timer_t>();
  never_initialised.reset();  // freed directly: libuv never saw it
  auto timer = trellis::event::make_uv_handle<uv_timer_t>();
  uv_timer_init(loop->uv(), timer.get());
  timer.reset();  // closed; freed in the close callback when the loop is destroyed
  loop.reset();   // ASan reports a leak if either handle was not freed
}

TEST_CASE("turn_time is read once per loop turn and moves on after the loop waits") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<std::chrono::steady_clock::time_point> seen;
  Timer first(*loop, [&] {
    seen.push_back(loop->turn_time());
    std::this_thread::sleep_for(2ms);
    seen.push_back(loop->turn_time());  // same turn: the same reading
  });
  Timer later(*loop, [&] { seen.push_back(loop->turn_time()); });
  first.start(1ms);
  later.start(30ms);  // the loop waits in between
  REQUIRE(run_until(*loop, [&] { return seen.size() == 3; }));
  CHECK(seen[0] == seen[1]);
  CHECK(seen[2] - seen[0] >= 25ms);
}
