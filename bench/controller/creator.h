// Creates many Kubernetes objects quickly and politely: at most `inflight`
// requests at once (the API server limits concurrent requests per priority
// level, and beyond a few dozen they only queue), retrying what the server
// asks to retry, with a progress line every few seconds.
//
//   Creator creator(client, {.inflight = 32});
//   Status s = creator.run("services", 10000, [&](size_t i) { return CreateJob{...}; });
//
// An object that already exists (409 AlreadyExists) counts as created, so a
// run can resume a world that is partly there. Failures without an answer,
// 429 and 5xx are retried after a back-off (kube::is_retryable).
//
// Threading: runs the client's loop until done; call it on the loop thread
// while nothing else runs the loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "common/base/result.h"
#include "common/kube/client.h"

namespace trellis::bench::controller {

struct CreateJob {
  const kube::Resource* resource = nullptr;
  std::string ns;
  std::string body;
};

struct CreatorOptions {
  size_t inflight = 32;
  int max_attempts = 8;  // per object, for retryable failures
  std::chrono::milliseconds progress_interval{5000};
};

struct CreateStats {
  size_t created = 0;
  size_t existed = 0;
  size_t retries = 0;
  double seconds = 0;
};

class Creator {
 public:
  Creator(kube::Client& client, CreatorOptions options) : client_(client), options_(options) {}

  // Creates job(0) .. job(count - 1). Errors: the first failure that is not
  // retryable or ran out of attempts, prefixed with what ("services: POST
  // /api/v1/namespaces/x/services: ...").
  Result<CreateStats> run(const std::string& what, size_t count,
                          const std::function<CreateJob(size_t)>& job);

 private:
  kube::Client& client_;
  CreatorOptions options_;
};

}  // namespace trellis::bench::controller
