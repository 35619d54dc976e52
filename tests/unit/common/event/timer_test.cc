#include "common/event/timer.h"

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "tests/unit/common/event/loop_test_util.h"

using trellis::event::Timer;
using trellis::event::testing::make_loop;
using trellis::event::testing::run_for;
using trellis::event::testing::run_until;
using namespace std::chrono_literals;

TEST_CASE("timers fire in deadline order, equal deadlines in start order") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<int> fired;
  Timer t30(*loop, [&] { fired.push_back(30); });
  Timer t10(*loop, [&] { fired.push_back(10); });
  Timer t20(*loop, [&] { fired.push_back(20); });
  Timer t20b(*loop, [&] { fired.push_back(21); });
  t30.start(30ms);
  t10.start(10ms);
  t20.start(20ms);
  t20b.start(20ms);
  REQUIRE(run_until(*loop, [&] { return fired.size() == 4; }));
  CHECK(fired == std::vector<int>{10, 20, 21, 30});
  CHECK_FALSE(t10.active());
}

TEST_CASE("a stopped timer never fires; a restarted one fires once, at the new deadline") {
  auto loop = make_loop();
  REQUIRE(loop);
  int cancelled = 0;
  int restarted = 0;
  bool marker = false;
  Timer cancel(*loop, [&] { ++cancelled; });
  Timer restart(*loop, [&] { ++restarted; });
  Timer late_marker(*loop, [&] { marker = true; });
  cancel.start(5ms);
  CHECK(cancel.active());
  cancel.stop();
  CHECK_FALSE(cancel.active());
  restart.start(5ms);
  restart.start(60ms);  // replaces the 5 ms schedule
  late_marker.start(30ms);
  REQUIRE(run_until(*loop, [&] { return marker; }));
  CHECK(restarted == 0);  // the 5 ms deadline is gone
  REQUIRE(run_until(*loop, [&] { return restarted == 1; }));
  run_for(*loop, 80ms);
  CHECK(restarted == 1);
  CHECK(cancelled == 0);
}

TEST_CASE("a repeating timer fires until stopped from its own callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(*loop, [&] {
    if (++fired == 3) timer->stop();
  });
  timer->start(1ms, 2ms);
  REQUIRE(run_until(*loop, [&] { return fired == 3; }));
  run_for(*loop, 30ms);
  CHECK(fired == 3);
}

TEST_CASE("a timer may restart itself from its callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(*loop, [&] {
    if (++fired < 3) timer->start(1ms);
  });
  timer->start(1ms);
  REQUIRE(run_until(*loop, [&] { return fired == 3; }));
  CHECK_FALSE(timer->active());
}

TEST_CASE("destroying a timer inside its own callback is safe") {
  auto loop = make_loop();
  REQUIRE(loop);
  int after_destroy = 0;
  std::unique_ptr<Timer> timer;
  timer = std::make_unique<Timer>(*loop, [&] {
    timer.reset();
    ++after_destroy;  // reads the closure's captures: they must still be alive
  });
  timer->start(1ms, 1ms);
  REQUIRE(run_until(*loop, [&] { return after_destroy == 1; }));
  run_for(*loop, 10ms);
  CHECK(after_destroy == 1);
  CHECK(timer == nullptr);
}

TEST_CASE("zero and negative timeouts fire on the next turn, not inside start()") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  Timer zero(*loop, [&] { ++fired; });
  Timer negative(*loop, [&] { ++fired; });
  zero.start(0ms);
  negative.start(-5ms, -5ms);  // a negative repeat means no repeat
  CHECK(fired == 0);
  REQUIRE(run_until(*loop, [&] { return fired == 2; }));
  run_for(*loop, 10ms);
  CHECK(fired == 2);
}

TEST_CASE("a huge timeout stays pending and the timer is destroyed cleanly") {
  auto loop = make_loop();
  REQUIRE(loop);
  bool fired = false;
  auto timer = std::make_unique<Timer>(*loop, [&] { fired = true; });
  timer->start(std::chrono::milliseconds::max(), std::chrono::milliseconds::max());
  run_for(*loop, 10ms);
  CHECK(timer->active());
  CHECK_FALSE(fired);
  timer.reset();
  loop.reset();
}
