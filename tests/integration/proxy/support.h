// Shared pieces of the sidecar's integration tests: REQUIRE helpers over
// pod_network.h and route tables written by hand as JSON templates.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/support/metrics_text.h"
#include "tests/integration/support/pod_network.h"

namespace trellis::integration::proxy_test {

#define REQUIRE_OK(expr)                                                                     \
  do {                                                                                       \
    const auto& result_ = (expr);                                                            \
    REQUIRE_MESSAGE(result_.ok(), (result_.ok() ? std::string() : result_.error().message)); \
  } while (0)

// The namespace every hand-written table uses.
inline constexpr const char* kNamespace = "test";

// Replaces every ${KEY} of `text` by its value; an unknown key fails the test.
inline std::string fill(std::string text, const std::map<std::string, std::string>& values) {
  size_t at = 0;
  while ((at = text.find("${", at)) != std::string::npos) {
    size_t end = text.find('}', at);
    REQUIRE_MESSAGE(end != std::string::npos, "unterminated ${ in template");
    std::string key = text.substr(at + 2, end - at - 2);
    auto it = values.find(key);
    REQUIRE_MESSAGE(it != values.end(), "template key ${" << key << "} has no value");
    text.replace(at, end - at + 1, it->second);
    at += it->second.size();
  }
  return text;
}

inline std::unique_ptr<TestNetwork> make_network(const char* label) {
  auto net = TestNetwork::create(label);
  REQUIRE_MESSAGE(net.ok(), (net.ok() ? std::string() : net.error().message));
  return std::move(*net);
}

inline Pod* add_pod(TestNetwork& net, const std::string& name, const PodOptions& options = {}) {
  auto pod = net.add_pod(name, options);
  REQUIRE_MESSAGE(pod.ok(), (pod.ok() ? std::string() : pod.error().message));
  return *pod;
}

// A pod running trellis-echo server that answers as `name` (unmeshed).
inline Pod* echo_pod(TestNetwork& net, const std::string& name, EchoOptions options = {}) {
  Pod* pod = add_pod(net, name);
  auto echo = pod->start_echo(options);
  REQUIRE_MESSAGE(echo.ok(), (echo.ok() ? std::string() : echo.error().message));
  return pod;
}

inline Sidecar* mesh(Pod* pod, const std::string& routes_json, std::vector<std::string> proxy_args = {},
                     int workers = 2) {
  SidecarOptions options;
  options.routes_json = routes_json;
  options.workers = workers;
  options.proxy_args = std::move(proxy_args);
  auto sidecar = pod->add_sidecar(options);
  REQUIRE_MESSAGE(sidecar.ok(), (sidecar.ok() ? std::string() : sidecar.error().message));
  return *sidecar;
}

// Runs a command in the pod; it must start and end within the timeout.
inline ExecResult exec(Pod* pod, const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  auto out = pod->exec(argv, {}, timeout);
  REQUIRE_MESSAGE(out.ok(), (out.ok() ? std::string() : out.error().message));
  return std::move(*out);
}

// trellis-echo client <args...> in the pod.
inline ExecResult echo_client(Pod* pod, std::vector<std::string> args,
                              std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  args.insert(args.begin(), {echo_binary(), "client"});
  return exec(pod, args, timeout);
}

// The pod's /metrics, checked to parse.
inline std::string metrics_of(Pod* pod) {
  auto text = pod->metrics();
  REQUIRE_MESSAGE(text.ok(), (text.ok() ? std::string() : text.error().message));
  auto parsed = parse_metrics(*text);
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? std::string() : parsed.error().message));
  return std::move(*text);
}

inline double metric(Pod* pod, const char* name, const Labels& labels = {}) {
  return metric_sum(metrics_of(pod), name, labels);
}

}  // namespace trellis::integration::proxy_test
