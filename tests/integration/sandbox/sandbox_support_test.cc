// The C++ sandbox helper: one control plane per run, reachable from a test
// process once it has entered the node's network namespace.
#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <thread>

#include "tests/integration/support/sandbox.h"

namespace ti = trellis::integration;

namespace {

const ti::Sandbox& sandbox() {
  static auto result = ti::ensure_sandbox();
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.error().message));
  return *result;
}

bool is_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

TEST_CASE("ensure_sandbox starts the control plane and describes it") {
  const auto& sb = sandbox();
  CHECK(sb.api_server_url == "https://10.77.0.1:6443");
  CHECK(sb.netns == "trellis-node");
  CHECK(is_file(sb.kubeconfig));
  CHECK(is_file(sb.ca_file));
  CHECK(is_file(sb.kubectl));
  CHECK((sb.gateway_api_channel == "standard" || sb.gateway_api_channel == "experimental"));

  // A second call in the same process answers without running sandbox/up.
  auto again = ti::ensure_sandbox();
  REQUIRE(again.ok());
  CHECK(again->kubeconfig == sb.kubeconfig);
}

TEST_CASE("enter_sandbox_network refuses a process that already has threads") {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  auto status = ti::enter_sandbox_network(sandbox());
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_one();
  waiter.join();
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message ==
        "enter_sandbox_network: the process has 2 threads; call it before creating any");
}

TEST_CASE("a test process in the node's network reaches the apiserver's /readyz") {
  const auto& sb = sandbox();
  REQUIRE(ti::enter_sandbox_network(sb).ok());
  REQUIRE(ti::enter_sandbox_network(sb).ok());  // idempotent

  // A child inherits the namespace: plain curl, no `ip netns exec`.
  auto curl = ti::run_command(
      {"curl", "-sS", "--max-time", "10", "--cacert", sb.ca_file, sb.api_server_url + "/readyz"});
  REQUIRE(curl.ok());
  CHECK_MESSAGE(curl->exit_code == 0, curl->err);
  CHECK(curl->out == "ok");

  auto readyz = ti::run_kubectl(sb, {"get", "--raw", "/readyz"});
  REQUIRE_MESSAGE(readyz.ok(), (readyz.ok() ? "" : readyz.error().message));
  CHECK(*readyz == "ok");
}

TEST_CASE("run_kubectl reports kubectl's error") {
  auto out = ti::run_kubectl(sandbox(), {"get", "no-such-kind"});
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().message.rfind("kubectl exited with status 1: ", 0) == 0);
  CHECK(out.error().message.find("the server doesn't have a resource type \"no-such-kind\"") !=
        std::string::npos);
}

TEST_CASE("run_command names a program it cannot start") {
  auto out = ti::run_command({"/nonexistent/trellis-no-such-program"});
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().message ==
        "cannot run '/nonexistent/trellis-no-such-program': No such file or directory");
}
