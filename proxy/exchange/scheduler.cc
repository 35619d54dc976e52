#include "proxy/exchange/scheduler.h"

#include <utility>

namespace trellis::proxy::exchange {

namespace {

class LoopAlarm final : public Alarm {
 public:
  LoopAlarm(event::EventLoop& loop, std::function<void()> fire) : timer_(loop, std::move(fire)) {}
  void arm(std::chrono::milliseconds after) override { timer_.start(after); }
  void disarm() override { timer_.stop(); }

 private:
  event::Timer timer_;
};

}  // namespace

std::unique_ptr<Alarm> LoopScheduler::alarm(std::function<void()> fire) {
  return std::make_unique<LoopAlarm>(loop_, std::move(fire));
}

}  // namespace trellis::proxy::exchange
