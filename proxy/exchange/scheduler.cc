#include "proxy/exchange/scheduler.h"

#include <utility>

#include "common/event/deadline.h"

namespace trellis::proxy::exchange {

namespace {

class LoopAlarm final : public Alarm {
 public:
  LoopAlarm(event::EventLoop& loop, std::function<void()> fire) : deadline_(loop, std::move(fire)) {}
  void arm(std::chrono::milliseconds after) override { deadline_.arm(after); }
  void disarm() override { deadline_.disarm(); }

 private:
  event::Deadline deadline_;
};

}  // namespace

std::unique_ptr<Alarm> LoopScheduler::alarm(std::function<void()> fire) {
  return std::make_unique<LoopAlarm>(loop_, std::move(fire));
}

}  // namespace trellis::proxy::exchange
