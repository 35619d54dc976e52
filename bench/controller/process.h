// The trellis-controller the bench starts, and the thread that tells when it
// became ready.
//
// Threading: ControllerProcess on the thread that spawned it; ReadyProbe runs
// its own thread and is read from any.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"

namespace trellis::bench::controller {

class ControllerProcess {
 public:
  // fork + exec of argv, its stdout and stderr appended to `log_path`, pinned
  // to `cpu` unless it is negative. The child gets SIGKILL if this process
  // dies first, so a crashed bench leaves no controller behind.
  static Result<std::unique_ptr<ControllerProcess>> spawn(const std::vector<std::string>& argv,
                                                          const std::string& log_path, int cpu);
  // Kills it (SIGKILL) if it still runs.
  ~ControllerProcess();
  ControllerProcess(const ControllerProcess&) = delete;
  ControllerProcess& operator=(const ControllerProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, then SIGKILL after `grace`; the exit code (128 + signal when
  // killed by one).
  int stop(std::chrono::milliseconds grace);
  // The exit code once it has exited.
  std::optional<int> exit_code() const { return exit_code_; }

 private:
  explicit ControllerProcess(pid_t pid) : pid_(pid) {}
  bool reap(bool block);

  pid_t pid_;
  std::optional<int> exit_code_;
};

// Polls GET /ready on the admin port every `interval` from its own thread
// (a slow answer cannot hold up the streams' loop) until it answers 200.
class ReadyProbe {
 public:
  using Clock = std::chrono::steady_clock;

  ReadyProbe(std::string ip, uint16_t port, std::chrono::milliseconds interval);
  ~ReadyProbe();
  ReadyProbe(const ReadyProbe&) = delete;
  ReadyProbe& operator=(const ReadyProbe&) = delete;

  // When /ready first answered 200; nullopt until then.
  std::optional<Clock::time_point> ready_at() const;
  // The last answer or error before that ("503: informers not synced: pods").
  std::string last_answer() const;

 private:
  void run();

  std::string ip_;
  uint16_t port_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::optional<Clock::time_point> ready_at_;
  std::string last_answer_;
  std::thread thread_;
};

}  // namespace trellis::bench::controller
