#include "common/event/deadline.h"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "common/event/timer.h"
#include "tests/unit/common/event/loop_test_util.h"

using trellis::event::Deadline;
using trellis::event::Timer;
using trellis::event::testing::make_loop;
using trellis::event::testing::run_for;
using trellis::event::testing::run_until;
using namespace std::chrono_literals;

TEST_CASE("a deadline fires once, not before its time") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  std::chrono::milliseconds fired_at{0};
  Deadline d(*loop, [&] {
    ++fired;
    fired_at = loop->now();
  });
  std::chrono::milliseconds armed_at = loop->now();
  d.arm(30ms);
  CHECK(d.armed());
  REQUIRE(run_until(*loop, [&] { return fired == 1; }));
  CHECK(fired_at - armed_at >= 30ms);
  CHECK_FALSE(d.armed());
  run_for(*loop, 50ms);
  CHECK(fired == 1);
}

TEST_CASE("re-arming later moves the deadline; the earlier pending timer does not fire it") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<int> events;
  Deadline d(*loop, [&] { events.push_back(1); });
  Timer rearm(*loop, [&] { d.arm(60ms); });  // at 20 ms: now due at 80 ms
  Timer marker(*loop, [&] { events.push_back(0); });
  d.arm(30ms);
  rearm.start(20ms);
  marker.start(50ms);  // after the first timer's 30 ms, before the new deadline
  REQUIRE(run_until(*loop, [&] { return events.size() == 2; }));
  CHECK(events == std::vector<int>{0, 1});
}

TEST_CASE("re-arming earlier fires at the earlier time") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<int> events;
  Deadline d(*loop, [&] { events.push_back(1); });
  Timer marker(*loop, [&] { events.push_back(0); });
  d.arm(10s);
  d.arm(10ms);
  marker.start(200ms);
  REQUIRE(run_until(*loop, [&] { return events.size() == 2; }));
  CHECK(events == std::vector<int>{1, 0});
}

namespace {

// Handles that keep uv_run going: active and referenced.
int handles_keeping_loop_alive(trellis::event::EventLoop& loop) {
  int n = 0;
  uv_walk(
      loop.uv(),
      [](uv_handle_t* h, void* count) {
        if (uv_is_active(h) && uv_has_ref(h)) ++*static_cast<int*>(count);
      },
      &n);
  return n;
}

}  // namespace

TEST_CASE("a disarmed deadline never fires and does not keep the loop alive") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  Deadline d(*loop, [&] { ++fired; });
  int base = handles_keeping_loop_alive(*loop);
  d.arm(50ms);
  CHECK(handles_keeping_loop_alive(*loop) == base + 1);
  d.disarm();
  CHECK_FALSE(d.armed());
  CHECK(handles_keeping_loop_alive(*loop) == base);  // its timer is pending, unreferenced
  run_for(*loop, 100ms);
  CHECK(fired == 0);

  d.arm(5ms);
  CHECK(handles_keeping_loop_alive(*loop) == base + 1);
  REQUIRE(run_until(*loop, [&] { return fired == 1; }));
  CHECK(handles_keeping_loop_alive(*loop) == base);
}

TEST_CASE("a deadline disarmed and re-armed many times fires once, at the last due time") {
  auto loop = make_loop();
  REQUIRE(loop);
  int fired = 0;
  Deadline d(*loop, [&] { ++fired; });
  for (int i = 0; i < 1000; ++i) {
    d.arm(20ms);
    d.disarm();
  }
  d.arm(20ms);
  REQUIRE(run_until(*loop, [&] { return fired == 1; }));
  run_for(*loop, 40ms);
  CHECK(fired == 1);
}

TEST_CASE("a deadline may destroy itself or re-arm from its callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto owned = std::make_unique<Deadline>(*loop, [] {});
  bool destroyed = false;
  owned = std::make_unique<Deadline>(*loop, [&] {
    owned.reset();
    destroyed = true;
  });
  owned->arm(1ms);
  REQUIRE(run_until(*loop, [&] { return destroyed; }));

  int fired = 0;
  Deadline again(*loop, [&] {
    if (++fired < 3) again.arm(1ms);
  });
  again.arm(1ms);
  REQUIRE(run_until(*loop, [&] { return fired == 3; }));
  CHECK_FALSE(again.armed());
}

TEST_CASE("a disarmed deadline reused with a new callback runs only the new one") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<int> fired;
  Deadline d(*loop, [&] { fired.push_back(1); });
  d.arm(5ms);
  d.disarm();
  d.set_callback([&] { fired.push_back(2); });
  d.arm(10ms);  // later than the pending timer, which then re-arms itself
  REQUIRE(run_until(*loop, [&] { return !fired.empty(); }));
  run_for(*loop, 20ms);
  CHECK(fired == std::vector<int>{2});
}
