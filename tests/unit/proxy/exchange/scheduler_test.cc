// LoopScheduler: alarms and deferred tasks on a real loop.
#include "proxy/exchange/scheduler.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace ex = trellis::proxy::exchange;
using std::chrono::milliseconds;

TEST_CASE("LoopScheduler: alarms fire once when armed, not when disarmed; defer runs soon") {
  auto loop = trellis::event::EventLoop::create();
  REQUIRE(loop.ok());
  ex::LoopScheduler scheduler(**loop);
  std::vector<std::string> events;
  auto disarmed = scheduler.alarm([&] { events.push_back("disarmed"); });
  disarmed->arm(milliseconds(0));
  disarmed->disarm();
  bool rearmed_first = false;
  auto rearmed = scheduler.alarm([&] {
    events.push_back("rearmed");
    rearmed_first = std::find(events.begin(), events.end(), "last") == events.end();
  });
  rearmed->arm(milliseconds(10000));
  rearmed->arm(milliseconds(1));  // replaces the first schedule
  auto last = scheduler.alarm([&] {
    events.push_back("last");
    scheduler.defer([&] { (*loop)->stop(); });
  });
  last->arm(milliseconds(5));
  scheduler.defer([&] { events.push_back("deferred"); });
  ex::TimePoint before = scheduler.now();
  (*loop)->run();
  // Timers due when the loop starts may run before the deferred task (a
  // loaded machine): only the order of the two alarms is fixed.
  std::sort(events.begin(), events.end());
  CHECK(events == std::vector<std::string>{"deferred", "last", "rearmed"});
  CHECK(rearmed_first);
  CHECK(scheduler.now() >= before);
}

TEST_CASE("LoopScheduler: released alarms never fire, also once their deadlines serve new alarms") {
  auto loop = trellis::event::EventLoop::create();
  REQUIRE(loop.ok());
  auto scheduler = std::make_unique<ex::LoopScheduler>(**loop);
  std::vector<std::string> events;
  for (int i = 0; i < 100; ++i) {  // a keep-alive connection's requests, each with a timeout
    auto alarm = scheduler->alarm([&] { events.push_back("released"); });
    alarm->arm(milliseconds(1));
  }
  auto held = scheduler->alarm([&] { events.push_back("held"); });
  held->arm(milliseconds(5));
  auto stopper = scheduler->alarm([&] { (*loop)->stop(); });
  stopper->arm(milliseconds(30));
  (*loop)->run();
  CHECK(events == std::vector<std::string>{"held"});
  // Alarms may outlive their scheduler (their owner may be a deferred task).
  scheduler.reset();
  held->arm(milliseconds(1));
  stopper->arm(milliseconds(20));
  (*loop)->run();
  CHECK(events == std::vector<std::string>{"held", "held"});
}
