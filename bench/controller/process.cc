#include "bench/controller/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/controller/measure.h"

namespace trellis::bench::controller {

Result<std::unique_ptr<ControllerProcess>> ControllerProcess::spawn(
    const std::vector<std::string>& argv, const std::string& log_path, int cpu) {
  if (argv.empty()) return make_error("spawn: empty argv");
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return make_error(log_path + ": " + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(log);
    return make_error(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (::sched_setaffinity(0, sizeof set, &set) != 0) ::_exit(125);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log);
  return std::unique_ptr<ControllerProcess>(new ControllerProcess(pid));
}

ControllerProcess::~ControllerProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
}

bool ControllerProcess::reap(bool block) {
  if (exit_code_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  if (r < 0) exit_code_ = -1;  // not our child any more: nothing to wait for
  return r < 0;
}

bool ControllerProcess::running() { return !reap(false); }

int ControllerProcess::stop(std::chrono::milliseconds grace) {
  if (running()) {
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (running()) {
      ::kill(pid_, SIGKILL);
      reap(true);
    }
  }
  return *exit_code_;
}

ReadyProbe::ReadyProbe(std::string ip, uint16_t port, std::chrono::milliseconds interval)
    : ip_(std::move(ip)), port_(port), interval_(interval), thread_([this] { run(); }) {}

ReadyProbe::~ReadyProbe() {
  stop_ = true;
  thread_.join();
}

void ReadyProbe::run() {
  while (!stop_) {
    auto answer = http_get(ip_, port_, "/ready", std::chrono::milliseconds(5000));
    auto at = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (answer.ok() && answer->status == 200) {
        ready_at_ = at;
        return;
      }
      last_answer_ = answer.ok() ? std::to_string(answer->status) + ": " + answer->body
                                 : answer.error().message;
      while (!last_answer_.empty() && last_answer_.back() == '\n') last_answer_.pop_back();
    }
    std::this_thread::sleep_for(interval_);
  }
}

std::optional<ReadyProbe::Clock::time_point> ReadyProbe::ready_at() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ready_at_;
}

std::string ReadyProbe::last_answer() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_answer_;
}

}  // namespace trellis::bench::controller
