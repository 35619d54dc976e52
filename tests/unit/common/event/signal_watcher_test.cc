#include "common/event/signal_watcher.h"

#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <vector>

#include "tests/unit/common/event/loop_test_util.h"

using trellis::event::SignalWatcher;
using trellis::event::testing::make_loop;
using trellis::event::testing::run_until;

TEST_CASE("SIGTERM and SIGINT raised in-process reach the callback on the loop") {
  auto loop = make_loop();
  REQUIRE(loop);
  std::vector<int> received;
  auto watcher = SignalWatcher::create(*loop, {SIGTERM, SIGINT},
                                       [&](int signum) { received.push_back(signum); });
  REQUIRE(watcher.ok());
  REQUIRE(raise(SIGTERM) == 0);
  REQUIRE(run_until(*loop, [&] { return received.size() == 1; }));
  REQUIRE(raise(SIGINT) == 0);
  REQUIRE(run_until(*loop, [&] { return received.size() == 2; }));
  CHECK(received == std::vector<int>{SIGTERM, SIGINT});
}

TEST_CASE("a watcher may be destroyed from inside its callback") {
  auto loop = make_loop();
  REQUIRE(loop);
  int calls = 0;
  std::unique_ptr<SignalWatcher> watcher;
  auto created = SignalWatcher::create(*loop, {SIGTERM}, [&](int) {
    watcher.reset();
    ++calls;  // the closure is still alive
  });
  REQUIRE(created.ok());
  watcher = std::move(created).value();
  REQUIRE(raise(SIGTERM) == 0);
  REQUIRE(run_until(*loop, [&] { return calls == 1; }));
  CHECK(watcher == nullptr);
}

TEST_CASE("bad signal lists are rejected with exact errors") {
  auto loop = make_loop();
  REQUIRE(loop);
  auto none = SignalWatcher::create(*loop, {}, [](int) {});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "signal watcher: no signals given");

  for (int bad : {0, -1, NSIG, 999}) {
    auto r = SignalWatcher::create(*loop, {SIGTERM, bad}, [](int) {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == "invalid signal number " + std::to_string(bad));
  }

  auto kill = SignalWatcher::create(*loop, {SIGKILL}, [](int) {});
  REQUIRE_FALSE(kill.ok());
  CHECK(kill.error().message == "watch signal 9: invalid argument");
  CHECK(kill.error().code == EINVAL);
}
