#include "proxy/exchange/scheduler.h"

#include <utility>
#include <vector>

#include "common/event/deadline.h"

namespace trellis::proxy::exchange {

// Deadlines of released alarms, disarmed, for the next alarms.
class DeadlinePool {
 public:
  explicit DeadlinePool(event::EventLoop& loop) : loop_(loop) {}

  std::unique_ptr<event::Deadline> take(std::function<void()> fire) {
    if (spare_.empty()) return std::make_unique<event::Deadline>(loop_, std::move(fire));
    std::unique_ptr<event::Deadline> deadline = std::move(spare_.back());
    spare_.pop_back();
    deadline->set_callback(std::move(fire));
    return deadline;
  }

  void give_back(std::unique_ptr<event::Deadline> deadline) {
    if (spare_.size() >= kMaxSpare) return;  // a past burst: let its timers go
    deadline->disarm();
    deadline->set_callback(nullptr);  // holds nothing of the released alarm's owner
    spare_.push_back(std::move(deadline));
  }

 private:
  // More than the exchanges a worker usually has in flight at once.
  static constexpr size_t kMaxSpare = 1024;

  event::EventLoop& loop_;
  std::vector<std::unique_ptr<event::Deadline>> spare_;
};

namespace {

class LoopAlarm final : public Alarm {
 public:
  LoopAlarm(std::shared_ptr<DeadlinePool> pool, std::function<void()> fire)
      : pool_(std::move(pool)), deadline_(pool_->take(std::move(fire))) {}
  ~LoopAlarm() override { pool_->give_back(std::move(deadline_)); }
  LoopAlarm(const LoopAlarm&) = delete;
  LoopAlarm& operator=(const LoopAlarm&) = delete;

  void arm(std::chrono::milliseconds after) override { deadline_->arm(after); }
  void disarm() override { deadline_->disarm(); }

 private:
  std::shared_ptr<DeadlinePool> pool_;
  std::unique_ptr<event::Deadline> deadline_;
};

}  // namespace

LoopScheduler::LoopScheduler(event::EventLoop& loop)
    : loop_(loop), deadlines_(std::make_shared<DeadlinePool>(loop)) {}

LoopScheduler::~LoopScheduler() = default;

std::unique_ptr<Alarm> LoopScheduler::alarm(std::function<void()> fire) {
  return std::make_unique<LoopAlarm>(deadlines_, std::move(fire));
}

}  // namespace trellis::proxy::exchange
