#include "common/event/turn_task.h"

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/event/timer.h"
#include "tests/unit/common/event/loop_test_util.h"

using trellis::event::Timer;
using trellis::event::TurnTask;
using namespace trellis::event::testing;
using namespace std::chrono_literals;

TEST_CASE("a turn task runs once per turn, after the callback that scheduled it") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<std::string> log;
  TurnTask task(*loop, [&] { log.push_back("task"); });
  Timer timer(*loop, [&] {
    task.schedule();
    task.schedule();
    CHECK(task.scheduled());
    log.push_back("timer");
    task.schedule();
  });
  timer.start(0ms);
  // Nothing else happens on the loop: a task left waiting for I/O would sit
  // there until the limit.
  REQUIRE(run_until(*loop, [&] { return !log.empty() && !task.scheduled(); }, 2s));
  run_for(*loop, 10ms);
  CHECK(log == std::vector<std::string>{"timer", "task"});

  // From an I/O callback (a readable socket): at the end of the same turn.
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  struct Readable {
    uv_poll_t poll;
    std::function<void()> on_readable;
  };
  auto* readable = new Readable{{}, [&] {
                                  task.schedule();
                                  log.push_back("data");
                                }};
  REQUIRE(uv_poll_init(loop->uv(), &readable->poll, fds[0]) == 0);
  readable->poll.data = readable;
  REQUIRE(uv_poll_start(&readable->poll, UV_READABLE, [](uv_poll_t* poll, int, int) {
            uv_poll_stop(poll);
            static_cast<Readable*>(poll->data)->on_readable();
          }) == 0);
  REQUIRE(::write(fds[1], "x", 1) == 1);
  REQUIRE(run_until(*loop, [&] { return log.size() == 4; }, 2s));
  CHECK(log == std::vector<std::string>{"timer", "task", "data", "task"});
  uv_close(reinterpret_cast<uv_handle_t*>(&readable->poll),
           [](uv_handle_t* h) { delete static_cast<Readable*>(h->data); });
  run_for(*loop, 1ms);
  ::close(fds[0]);
  ::close(fds[1]);

  // From a deferred task, and between two runs of the loop.
  loop->defer([&] { task.schedule(); });
  REQUIRE(run_until(*loop, [&] { return log.size() == 5; }, 2s));
  task.schedule();
  REQUIRE(run_until(*loop, [&] { return log.size() == 6; }, 2s));
}

TEST_CASE("a turn task scheduled from its own callback runs again on a later pass, not in a loop") {
  auto loop = make_loop();
  REQUIRE(loop);
  int runs = 0;
  std::unique_ptr<TurnTask> task;
  task = std::make_unique<TurnTask>(*loop, [&] {
    ++runs;
    task->schedule();
  });
  task->schedule();
  // Were it run again in the same pass, the loop would never get back to
  // run_for's check, and this would not return.
  run_for(*loop, 20ms);
  CHECK(runs > 1);
  task.reset();
}

TEST_CASE("a cancelled or destroyed turn task never runs; destroying it inside its callback is safe") {
  auto loop = make_loop();
  REQUIRE(loop);
  int runs = 0;
  TurnTask cancelled(*loop, [&] { ++runs; });
  cancelled.schedule();
  cancelled.cancel();
  CHECK_FALSE(cancelled.scheduled());
  auto destroyed = std::make_unique<TurnTask>(*loop, [&] { ++runs; });
  destroyed->schedule();
  destroyed.reset();
  run_for(*loop, 20ms);
  CHECK(runs == 0);

  std::unique_ptr<TurnTask> self_destroying;
  std::string captured = "still alive";
  self_destroying = std::make_unique<TurnTask>(*loop, [&, captured] {
    self_destroying.reset();
    CHECK(captured == "still alive");  // the closure outlives the task
    ++runs;
  });
  self_destroying->schedule();
  REQUIRE(run_until(*loop, [&] { return runs == 1; }, 2s));
  CHECK(self_destroying == nullptr);
}
