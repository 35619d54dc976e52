// Helpers for the controller's app tests: a kube::Client on a scripted
// transport, the Kubernetes objects they feed, and list/watch scripting.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/kube/client.h"
#include "common/routes/route_table.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/common/kube/fake_transport.h"

namespace trellis::controller::app::test {

// A loop and a client whose requests the test answers.
struct KubeHarness {
  KubeHarness() {
    loop = event::testing::make_loop();
    REQUIRE(loop);
    auto t = std::make_unique<kube::testing::FakeTransport>();
    transport = t.get();
    kube::ClientOptions options;
    options.metrics = kube::Metrics::create(registry).value();
    client = std::make_unique<kube::Client>(*loop, std::move(t), options);
  }

  void run_for(std::chrono::milliseconds d) { event::testing::run_for(*loop, d); }
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
    return event::testing::run_until(*loop, done, limit);
  }

  // The PATCH requests sent so far.
  std::vector<kube::HttpRequest> patches() const {
    std::vector<kube::HttpRequest> out;
    for (const auto& r : transport->requests) {
      if (r.method == "PATCH") out.push_back(r);
    }
    return out;
  }

  metrics::Registry registry;
  std::unique_ptr<event::EventLoop> loop;
  kube::testing::FakeTransport* transport = nullptr;
  std::unique_ptr<kube::Client> client;
};

inline std::string ns_object(const std::string& name, const std::string& rv = "1") {
  return R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + name +
         R"(","resourceVersion":")" + rv + R"("}})";
}

inline std::string service_object(const std::string& ns, const std::string& name,
                                  const std::string& ip, const std::string& rv = "1",
                                  const std::string& ports =
                                      R"([{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}])") {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"name":")" + name +
         R"(","namespace":")" + ns + R"(","resourceVersion":")" + rv +
         R"("},"spec":{"type":"ClusterIP","clusterIP":")" + ip + R"(","clusterIPs":[")" + ip +
         R"("],"ports":)" + ports + R"(,"selector":{"app":")" + name + R"("}}})";
}

inline std::string slice_object(const std::string& ns, const std::string& service,
                                const std::string& pod, const std::string& ip,
                                const std::string& rv = "1") {
  return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":")" +
         service + R"(-x","namespace":")" + ns + R"(","resourceVersion":")" + rv +
         R"(","labels":{"kubernetes.io/service-name":")" + service +
         R"("}},"addressType":"IPv4","endpoints":[{"addresses":[")" + ip +
         R"("],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":")" + ns +
         R"(","name":")" + pod + R"("}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]})";
}

inline std::string pod_object(const std::string& ns, const std::string& name, const std::string& ip) {
  return R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":")" + name + R"(","namespace":")" +
         ns + R"(","resourceVersion":"1","annotations":{"trellis.dev/proxy-version":"test"}},)" +
         R"("spec":{"serviceAccountName":"web","containers":[{"name":"app","image":"app"}]},)" +
         R"("status":{"phase":"Running","podIP":")" + ip + R"("}})";
}

// An HTTPRoute attached to Service `parent` (port 80), one rule.
inline std::string route_object(const std::string& ns, const std::string& name,
                                const std::string& parent_ns, const std::string& parent,
                                const std::string& rule = R"({"backendRefs":[{"name":"echo","port":80}]})",
                                const std::string& rv = "1", const std::string& status = "") {
  return R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":")" +
         name + R"(","namespace":")" + ns + R"(","resourceVersion":")" + rv +
         R"(","generation":3,"creationTimestamp":"2026-01-02T03:04:05Z"},)"
         R"("spec":{"parentRefs":[{"group":"","kind":"Service","namespace":")" +
         parent_ns + R"(","name":")" + parent + R"(","port":80}],"rules":[)" + rule + "]}" +
         (status.empty() ? "" : R"(,"status":)" + status) + "}";
}

inline std::string list_of(const std::vector<std::string>& items, const std::string& rv = "10") {
  std::string out = R"({"kind":"List","metadata":{"resourceVersion":")" + rv + R"("},"items":[)";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]}";
}

inline std::string watch_line(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}

// The parsed table of a stream line.
inline std::shared_ptr<const routes::RouteTable> parse_table(const std::string& line) {
  auto t = routes::parse(line);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
  return *t;
}

// "ns/name" of every route on every Service of a table.
inline std::vector<std::string> route_names(const routes::RouteTable& t) {
  std::vector<std::string> out;
  for (const auto& s : t.services) {
    for (const auto& r : s.routes) out.push_back(r.ns + "/" + r.name);
  }
  return out;
}

}  // namespace trellis::controller::app::test
