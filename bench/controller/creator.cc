#include "bench/controller/creator.h"

#include <uv.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <optional>

#include "common/event/timer.h"
#include "common/kube/errors.h"

namespace trellis::bench::controller {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Result<CreateStats> Creator::run(const std::string& what, size_t count,
                                 const std::function<CreateJob(size_t)>& job) {
  CreateStats stats;
  const auto started = Clock::now();
  size_t next = 0;       // the next index never sent
  size_t in_flight = 0;  // requests and back-offs pending
  size_t done = 0;
  std::optional<Error> failure;
  std::deque<std::unique_ptr<event::Timer>> backoffs;
  event::EventLoop& loop = client_.loop();

  std::function<void(size_t, int)> send = [&](size_t index, int attempt) {
    CreateJob j = job(index);
    client_.create(*j.resource, j.ns, std::move(j.body),
                   [&, index, attempt](Result<json::Document> answer) {
                     if (answer.ok() || kube::is_already_exists(answer.error())) {
                       ++(answer.ok() ? stats.created : stats.existed);
                       ++done;
                       --in_flight;
                       return;
                     }
                     if (!kube::is_retryable(answer.error()) || attempt + 1 >= options_.max_attempts) {
                       if (!failure) failure = make_error(what + ": " + answer.error().message);
                       --in_flight;
                       return;
                     }
                     ++stats.retries;
                     auto delay = std::chrono::milliseconds(100 << std::min(attempt, 5));
                     backoffs.push_back(std::make_unique<event::Timer>(
                         loop, [&send, index, attempt] { send(index, attempt + 1); }));
                     backoffs.back()->start(delay);
                   });
  };

  auto last_progress = started;
  while (!failure && done < count) {
    while (next < count && in_flight < options_.inflight) {
      ++in_flight;
      send(next++, 0);
    }
    uv_run(loop.uv(), UV_RUN_ONCE);
    if (Clock::now() - last_progress >= options_.progress_interval) {
      last_progress = Clock::now();
      double s = seconds_since(started);
      std::fprintf(stderr, "[controller-bench] %s: %zu/%zu created (%.0f/s, %zu retries)\n",
                   what.c_str(), done, count, static_cast<double>(done) / s, stats.retries);
    }
  }
  // Let requests still in flight after a failure end before their callbacks'
  // captures go out of scope.
  while (in_flight > 0) uv_run(loop.uv(), UV_RUN_ONCE);
  if (failure) return *failure;
  stats.seconds = seconds_since(started);
  return stats;
}

}  // namespace trellis::bench::controller
