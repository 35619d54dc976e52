// trellis-proxy in real pods: a meshed client pod (trellis-init +
// trellis-proxy + the app, here trellis-echo client or the test's own
// sockets) sends to ClusterIPs that exist nowhere; its iptables hand the
// connections to the proxy, which routes them by a hand-written route table
// to trellis-echo backend pods. Each case builds its own network
// (pod_network.h) and asserts on what the app sees and on the proxy's /metrics.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/proxy/support.h"

namespace ti = trellis::integration;
using namespace ti::proxy_test;  // NOLINT: test-local helpers
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

// Two versions of one app behind a Service "echo" (port 80, an HTTPRoute
// splitting W1/W2) and a Service "grpc-echo" (port 7070, a GRPCRoute
// splitting 70/30). Keys: VERSION, VIP, GRPC_VIP, W1, W2, V1_IP, V2_IP.
constexpr const char* kTwoVersions = R"({
  "version": "${VERSION}",
  "namespace": "test",
  "services": [
    {"namespace": "test", "name": "echo", "clusterIPs": ["${VIP}"],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
     "routes": [{"kind": "HTTPRoute", "namespace": "test", "name": "split",
                 "creationTimestamp": "2026-01-02T03:04:05Z", "port": 80,
                 "rules": [{"backendRefs": [{"name": "echo-v1", "port": 80, "weight": ${W1}},
                                            {"name": "echo-v2", "port": 80, "weight": ${W2}}]}]}]},
    {"namespace": "test", "name": "grpc-echo", "clusterIPs": ["${GRPC_VIP}"],
     "ports": [{"name": "grpc", "port": 7070, "appProtocol": "grpc"}],
     "routes": [{"kind": "GRPCRoute", "namespace": "test", "name": "grpc-split",
                 "creationTimestamp": "2026-01-02T03:04:05Z", "port": 7070,
                 "rules": [{"backendRefs": [{"name": "echo-v1", "port": 7070, "weight": 70},
                                            {"name": "echo-v2", "port": 7070, "weight": 30}]}]}]},
    {"namespace": "test", "name": "echo-v1", "clusterIPs": [],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 7070}]},
    {"namespace": "test", "name": "echo-v2", "clusterIPs": [],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 7070}]}
  ],
  "endpoints": [
    {"namespace": "test", "service": "echo-v1", "port": 80,
     "addresses": [{"ip": "${V1_IP}", "port": 8080, "pod": "echo-v1"}]},
    {"namespace": "test", "service": "echo-v2", "port": 80,
     "addresses": [{"ip": "${V2_IP}", "port": 8080, "pod": "echo-v2"}]},
    {"namespace": "test", "service": "echo-v1", "port": 7070,
     "addresses": [{"ip": "${V1_IP}", "port": 7070, "pod": "echo-v1"}]},
    {"namespace": "test", "service": "echo-v2", "port": 7070,
     "addresses": [{"ip": "${V2_IP}", "port": 7070, "pod": "echo-v2"}]}
  ]
})";

// One HTTPRoute rule on Service "echo" (port 80) to the single backend
// "echo-v1". Keys: VERSION, VIP, ROUTE (route name), RULE (more fields of the
// rule, each followed by a comma, or empty), V1_IP.
constexpr const char* kOneRule = R"({
  "version": "${VERSION}",
  "namespace": "test",
  "services": [
    {"namespace": "test", "name": "echo", "clusterIPs": ["${VIP}"],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
     "routes": [{"kind": "HTTPRoute", "namespace": "test", "name": "${ROUTE}",
                 "creationTimestamp": "2026-01-02T03:04:05Z", "port": 80,
                 "rules": [{${RULE} "backendRefs": [{"name": "echo-v1", "port": 80}]}]}]},
    {"namespace": "test", "name": "echo-v1", "clusterIPs": [],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
  ],
  "endpoints": [
    {"namespace": "test", "service": "echo-v1", "port": 80,
     "addresses": [{"ip": "${V1_IP}", "port": 8080, "pod": "echo-v1"}]}
  ]
})";

// A Service without routes (passthrough to its own endpoints). Keys: VERSION,
// VIP, A_IP, B_IP.
constexpr const char* kPassthrough = R"({
  "version": "${VERSION}",
  "namespace": "test",
  "services": [
    {"namespace": "test", "name": "echo", "clusterIPs": ["${VIP}"],
     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
  ],
  "endpoints": [
    {"namespace": "test", "service": "echo", "port": 80,
     "addresses": [{"ip": "${A_IP}", "port": 8080, "pod": "echo-a"},
                   {"ip": "${B_IP}", "port": 8080, "pod": "echo-b"}]}
  ]
})";

// The client pod of most cases: meshed, "echo" and "grpc-echo" in its hosts file.
struct SplitSetup {
  std::unique_ptr<ti::TestNetwork> net;
  ti::Pod* v1 = nullptr;
  ti::Pod* v2 = nullptr;
  ti::Pod* client = nullptr;
  ti::Sidecar* sidecar = nullptr;
  std::string vip, grpc_vip;

  std::string table(const std::string& version, int w1, int w2) const {
    return fill(kTwoVersions, {{"VERSION", version},
                               {"VIP", vip},
                               {"GRPC_VIP", grpc_vip},
                               {"W1", std::to_string(w1)},
                               {"W2", std::to_string(w2)},
                               {"V1_IP", v1->ip()},
                               {"V2_IP", v2->ip()}});
  }
};

SplitSetup split_setup(const char* label, int w1, int w2, std::vector<std::string> proxy_args = {}) {
  SplitSetup s;
  s.net = make_network(label);
  s.v1 = echo_pod(*s.net, "echo-v1");
  s.v2 = echo_pod(*s.net, "echo-v2");
  s.vip = s.net->next_cluster_ip();
  s.grpc_vip = s.net->next_cluster_ip();
  s.client = add_pod(*s.net, "client", {{{"echo", s.vip}, {"grpc-echo", s.grpc_vip}}});
  s.sidecar = mesh(s.client, s.table("split-1", w1, w2), std::move(proxy_args));
  return s;
}

// A client pod meshed with kOneRule over one echo backend.
struct OneRuleSetup {
  std::unique_ptr<ti::TestNetwork> net;
  ti::Pod* backend = nullptr;
  ti::Pod* client = nullptr;
  ti::Sidecar* sidecar = nullptr;
  std::string vip;
};

OneRuleSetup one_rule_setup(const char* label, const std::string& route, const std::string& rule,
                            std::vector<std::string> proxy_args = {}) {
  OneRuleSetup s;
  s.net = make_network(label);
  s.backend = echo_pod(*s.net, "echo-v1");
  s.vip = s.net->next_cluster_ip();
  s.client = add_pod(*s.net, "client", {{{"echo", s.vip}}});
  s.sidecar = mesh(s.client,
                   fill(kOneRule, {{"VERSION", "one-rule-1"},
                                   {"VIP", s.vip},
                                   {"ROUTE", route},
                                   {"RULE", rule},
                                   {"V1_IP", s.backend->ip()}}),
                   std::move(proxy_args));
  return s;
}

ti::HttpRequest get(const std::string& target, const std::string& host = "echo") {
  ti::HttpRequest request;
  request.target = target;
  request.host = host;
  return request;
}

long long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
}

// The indices of the requests trellis-echo client printed as answered with
// `status` ("[i] StatusCode=200").
std::set<int> answered_with(const std::string& out, int status) {
  std::set<int> indices;
  std::istringstream in(out);
  std::string line;
  std::string wanted = "] StatusCode=" + std::to_string(status);
  while (std::getline(in, line)) {
    if (line.size() > 2 && line[0] == '[' && line.find(wanted) != std::string::npos &&
        line.find(' ') > line.find(']')) {
      indices.insert(std::atoi(line.c_str() + 1));
    }
  }
  return indices;
}

}  // namespace

TEST_CASE("an 80/20 HTTPRoute split holds within 3 % over 2000 requests") {
  SplitSetup s = split_setup("split", 80, 20);
  ti::ExecResult out = echo_client(s.client, {"http://echo/", "--count", "2000", "--summary", "--timeout", "120s"});
  REQUIRE_MESSAGE(out.exit_code == 0, out.err);
  ti::EchoSummary summary = ti::parse_echo_summary(out.out);
  REQUIRE(summary.errors == 0);
  CHECK(summary.code(200) == 2000);
  int v1 = summary.count("echo-v1"), v2 = summary.count("echo-v2");
  CHECK(v1 + v2 == 2000);
  CHECK_MESSAGE((v1 >= 1540 && v1 <= 1660), "echo-v1 answered " << v1 << " of 2000 (want 80 % ± 3 %)");

  std::string text = metrics_of(s.client);
  ti::Labels v1_ok = {{"direction", "outbound"}, {"route_name", "split"}, {"backend_name", "echo-v1"},
                      {"status_code", "200"}};
  ti::Labels v2_ok = v1_ok;
  v2_ok["backend_name"] = "echo-v2";
  CHECK_MESSAGE(ti::metric_sum(text, "trellis_requests_total", v1_ok) == v1,
                ti::metric_lines(text, "trellis_requests_total"));
  CHECK(ti::metric_sum(text, "trellis_requests_total", v2_ok) == v2);
}

TEST_CASE("timeouts.request answers 504 within 10 % of the bound") {
  OneRuleSetup s = one_rule_setup("request-timeout", "slow", R"("timeouts": {"request": "1s"},)");

  // Well inside the bound: answered.
  auto fast = s.client->http(s.vip, 80, get("/?delay=200ms"));
  REQUIRE_OK(fast);
  CHECK(fast->status == 200);

  auto started = Clock::now();
  auto slow = s.client->http(s.vip, 80, get("/?delay=5s"));
  long long took = elapsed_ms(started);
  REQUIRE_OK(slow);
  CHECK(slow->status == 504);
  CHECK_MESSAGE((took >= 900 && took <= 1100), "504 after " << took << "ms (bound 1000ms ± 10 %)");

  std::string text = metrics_of(s.client);
  CHECK_MESSAGE(ti::metric_sum(text, "trellis_timeouts_total",
                               {{"direction", "outbound"}, {"route_name", "slow"}, {"kind", "request"}}) == 1,
                ti::metric_lines(text, "trellis_timeouts_total"));
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"route_name", "slow"}, {"status_code", "504"}}) == 1);
}

TEST_CASE("a 503 answered once is retried and succeeds; trellis_retries_total moves") {
  OneRuleSetup s = one_rule_setup("retry-once", "retried", R"("retry": {"codes": [503], "attempts": 1},)");

  // echo's codes knob is a deterministic round-robin per spelling: 503, 200, 503, ...
  // so every original attempt gets 503 and its retry 200.
  for (int i = 0; i < 10; ++i) {
    auto response = s.client->http(s.vip, 80, get("/?codes=503:1,200:1"));
    REQUIRE_OK(response);
    CHECK_MESSAGE(response->status == 200, "request " << i << ": " << response->status << " " << response->body);
  }
  std::string text = metrics_of(s.client);
  CHECK_MESSAGE(ti::metric_sum(text, "trellis_retries_total",
                               {{"direction", "outbound"}, {"route_name", "retried"}, {"reason", "response"}}) == 10,
                ti::metric_lines(text, "trellis_retries_total"));
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"route_name", "retried"}, {"status_code", "200"}}) == 10);
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"route_name", "retried"}, {"status_code", "503"}}) == 0);
}

TEST_CASE("retries of an always-failing backend stop at the retry budget") {
  // Budget: min_per_second * ttl (10 s) + ratio * requests = 1 * 10 + 0.2 * 200 = 50
  // retries, where the policy alone would send 3 per request (600).
  constexpr int kRequests = 200;
  constexpr double kBudget = 1 * 10 + 0.2 * kRequests;
  OneRuleSetup s = one_rule_setup("retry-budget", "always-fails",
                                  R"("retry": {"codes": [503], "attempts": 3, "backoff": "1ms"},)",
                                  {"--retry-budget-ratio", "0.2", "--retry-budget-min-per-second", "1"});
  ti::ExecResult out = echo_client(
      s.client, {"http://echo/?codes=503", "--count", std::to_string(kRequests), "--summary", "--timeout", "60s"});
  REQUIRE_MESSAGE(out.exit_code == 0, out.err);
  ti::EchoSummary summary = ti::parse_echo_summary(out.out);
  CHECK(summary.code(503) == kRequests);

  std::string text = metrics_of(s.client);
  ti::Labels scope = {{"direction", "outbound"}, {"route_name", "always-fails"}};
  double retries = ti::metric_sum(text, "trellis_retries_total", scope);
  double exhausted = ti::metric_sum(text, "trellis_retry_budget_exhausted_total", scope);
  INFO(ti::metric_lines(text, "trellis_retr"));
  CHECK_MESSAGE(retries <= kBudget, retries << " retries, budget " << kBudget);
  CHECK_MESSAGE(retries >= kBudget * 0.8, retries << " retries: the budget was not used");
  CHECK_MESSAGE(exhausted >= kRequests - kBudget, exhausted << " budget refusals");
}

TEST_CASE("a killed endpoint is ejected and traffic continues on the other") {
  auto net = make_network("ejection");
  ti::Pod* a = echo_pod(*net, "echo-a");
  ti::Pod* b = add_pod(*net, "echo-b");
  auto b_echo = b->start_echo();
  REQUIRE_OK(b_echo);
  std::string vip = net->next_cluster_ip();
  ti::Pod* client = add_pod(*net, "client", {{{"echo", vip}}});
  mesh(client, fill(kPassthrough, {{"VERSION", "ejection-1"},
                                   {"VIP", vip},
                                   {"A_IP", a->ip()},
                                   {"B_IP", b->ip()}}));

  constexpr int kRequests = 1500;
  auto load = client->run({ti::echo_binary(), "client", "http://echo/", "--count", std::to_string(kRequests),
                           "--qps", "300", "--concurrency", "10", "--timeout", "90s", "--summary"});
  REQUIRE_OK(load);
  std::this_thread::sleep_for(milliseconds(1500));
  REQUIRE_OK((*b_echo)->signal(SIGKILL));
  auto done = (*load)->wait(seconds(100));
  REQUIRE_OK(done);
  std::string out = (*load)->out();
  ti::EchoSummary summary = ti::parse_echo_summary(out);
  CHECK(summary.count("echo-b") > 0);  // it served before it died
  CHECK(summary.count("echo-a") > summary.count("echo-b"));

  std::set<int> ok = answered_with(out, 200);
  int first_failure = kRequests;
  for (int i = 0; i < kRequests; ++i) {
    if (ok.count(i) == 0) {
      first_failure = i;
      break;
    }
  }
  int after = kRequests - first_failure - 1, ok_after = 0;
  for (int i = first_failure + 1; i < kRequests; ++i) ok_after += static_cast<int>(ok.count(i));
  INFO("first failure: request " << first_failure << "; " << (*load)->err());
  CHECK_MESSAGE(ok_after >= after * 0.99,
                ok_after << " of the " << after << " requests after the first failure succeeded");
  CHECK(static_cast<int>(ok.size()) >= kRequests * 0.99);

  // Ejected: the dead endpoint is not dialled for every request.
  double connect_failures = metric(client, "trellis_upstream_connect_failures_total");
  CHECK_MESSAGE(connect_failures < 50, connect_failures << " connect failures to the dead endpoint");
}

TEST_CASE("HTTP/2 prior knowledge is routed per request; a GRPCRoute splits 70/30 per call on one connection") {
  SplitSetup s = split_setup("h2-grpc", 80, 20);

  SUBCASE("h2c") {
    ti::ExecResult out = echo_client(s.client, {"http://echo/h2", "--http2", "--count", "400", "--summary",
                                            "--timeout", "60s"});
    REQUIRE_MESSAGE(out.exit_code == 0, out.err);
    ti::EchoSummary summary = ti::parse_echo_summary(out.out);
    CHECK(summary.code(200) == 400);
    CHECK(summary.count("echo-v1") > summary.count("echo-v2"));
    CHECK(summary.count("echo-v2") > 0);  // per request, not per connection
    CHECK(out.out.find("[0 body] Proto=HTTP/2.0") != std::string::npos);
    CHECK(metric(s.client, "trellis_downstream_requests_total", {{"direction", "outbound"}, {"protocol", "HTTP/2"}}) ==
          400);
  }
  SUBCASE("gRPC") {
    constexpr int kCalls = 2000;
    ti::ExecResult out = echo_client(s.client, {"grpc://grpc-echo:7070", "--count", std::to_string(kCalls), "--summary",
                                            "--timeout", "120s"});
    REQUIRE_MESSAGE(out.exit_code == 0, out.err);
    ti::EchoSummary summary = ti::parse_echo_summary(out.out);
    CHECK(summary.errors == 0);
    int v1 = summary.count("echo-v1"), v2 = summary.count("echo-v2");
    CHECK(v1 + v2 == kCalls);
    CHECK_MESSAGE((v1 >= 1340 && v1 <= 1460), "echo-v1 answered " << v1 << " of " << kCalls << " (want 70 % ± 3 %)");
    CHECK(out.out.find("[0 body] Proto=GRPC") != std::string::npos);
    std::string text = metrics_of(s.client);
    ti::Labels grpc_v1 = {{"route_kind", "GRPCRoute"}, {"route_name", "grpc-split"}, {"backend_name", "echo-v1"}};
    CHECK_MESSAGE(ti::metric_sum(text, "trellis_requests_total", grpc_v1) == v1, ti::metric_lines(text, "grpc-split"));
  }
}

TEST_CASE("opaque TCP and server-speaks-first protocols pass through the outbound port") {
  auto net = make_network("opaque");
  ti::Pod* tcp = echo_pod(*net, "tcp-echo");
  ti::EchoOptions greeting;
  greeting.tcp_greeting = "220 greeter ready\r\n";
  ti::Pod* greeter = echo_pod(*net, "greeter", greeting);
  std::string tcp_vip = net->next_cluster_ip(), greeter_vip = net->next_cluster_ip();
  ti::Pod* client = add_pod(*net, "client", {{{"tcp-echo", tcp_vip}, {"greeter", greeter_vip}}});
  constexpr const char* kTable = R"({
    "version": "opaque-1", "namespace": "test",
    "services": [
      {"namespace": "test", "name": "tcp-echo", "clusterIPs": ["${TCP_VIP}"],
       "ports": [{"port": 9000, "targetPort": 9090}]},
      {"namespace": "test", "name": "greeter", "clusterIPs": ["${GREETER_VIP}"],
       "ports": [{"port": 9001, "targetPort": 9090}]}
    ],
    "endpoints": [
      {"namespace": "test", "service": "tcp-echo", "port": 9000, "addresses": [{"ip": "${TCP_IP}", "port": 9090}]},
      {"namespace": "test", "service": "greeter", "port": 9001, "addresses": [{"ip": "${GREETER_IP}", "port": 9090}]}
    ]
  })";
  mesh(client, fill(kTable, {{"TCP_VIP", tcp_vip},
                             {"GREETER_VIP", greeter_vip},
                             {"TCP_IP", tcp->ip()},
                             {"GREETER_IP", greeter->ip()}}));


  // The app: trellis-echo client to a ClusterIP without routes.
  ti::ExecResult out = echo_client(client, {"tcp://tcp-echo:9000", "--body", "opaque bytes"});
  REQUIRE_MESSAGE(out.exit_code == 0, out.err);
  CHECK(out.out.find("opaque bytes") != std::string::npos);

  // Bytes no HTTP parser would take, both ways, through the test's own socket.
  const std::string binary("\x00\x01\x02\xff\r\n\r\nnot http at all", 24);
  auto socket = client->connect(tcp_vip, 9000);
  REQUIRE_OK(socket);
  REQUIRE_OK(socket->send(binary));
  REQUIRE_OK(socket->shutdown_write());
  auto echoed = socket->read_to_eof(milliseconds(5000));
  REQUIRE_OK(echoed);
  CHECK(*echoed == binary);

  // Server speaks first: the client sends nothing, so detection must give up
  // (--detect-timeout, 500ms by default) and connect.
  auto started = Clock::now();
  auto greeted = client->connect(greeter_vip, 9001);
  REQUIRE_OK(greeted);
  auto hello = greeted->read_some(milliseconds(5000));
  long long took = elapsed_ms(started);
  REQUIRE_OK(hello);
  CHECK(*hello == "220 greeter ready\r\n");
  CHECK_MESSAGE(took < 2000, "greeting after " << took << "ms");
  REQUIRE_OK(greeted->send("QUIT\r\n"));
  REQUIRE_OK(greeted->shutdown_write());
  auto rest = greeted->read_to_eof(milliseconds(5000));
  REQUIRE_OK(rest);
  CHECK(*rest == "QUIT\r\n");
  ti::ExecResult greeted_app = echo_client(client, {"tcp://greeter:9001"});
  REQUIRE_MESSAGE(greeted_app.exit_code == 0, greeted_app.err);
  CHECK(greeted_app.out.find("220 greeter ready") != std::string::npos);

  // Not a Service address (the pod IP itself): passed through untouched, by the proxy.
  ti::Labels outbound = {{"direction", "outbound"}};
  double received_before = metric(client, "trellis_tcp_received_bytes_total", outbound);
  auto direct = client->connect(tcp->ip(), 9090);
  REQUIRE_OK(direct);
  const std::string payload = "straight to the pod\n";
  REQUIRE_OK(direct->send(payload));
  REQUIRE_OK(direct->shutdown_write());
  auto back = direct->read_to_eof(milliseconds(5000));
  REQUIRE_OK(back);
  CHECK(*back == payload);
  std::string text = metrics_of(client);
  CHECK_MESSAGE(ti::metric_sum(text, "trellis_tcp_received_bytes_total", outbound) - received_before >= payload.size(),
                ti::metric_lines(text, "trellis_tcp_"));

  // A server that speaks first, dialled on its pod IP: nothing to detect, so no detection delay.
  started = Clock::now();
  auto greeter_direct = client->connect(greeter->ip(), 9090);
  REQUIRE_OK(greeter_direct);
  auto direct_hello = greeter_direct->read_some(milliseconds(5000));
  took = elapsed_ms(started);
  REQUIRE_OK(direct_hello);
  CHECK(*direct_hello == "220 greeter ready\r\n");
  CHECK_MESSAGE(took < 450, "greeting through the passthrough after " << took << "ms");
}

TEST_CASE("SIGTERM drains: in-flight requests complete, new connections are refused, the proxy exits 0") {
  OneRuleSetup s = one_rule_setup("drain", "drained", "", {"--drain-timeout", "20s"});
  constexpr int kInFlight = 5;
  std::vector<ti::Socket> sockets;
  for (int i = 0; i < kInFlight; ++i) {
    auto socket = s.client->connect(s.vip, 80);
    REQUIRE_OK(socket);
    REQUIRE_OK(socket->send(ti::format_request(get("/?delay=2s"), "echo")));
    sockets.push_back(std::move(*socket));
  }
  std::this_thread::sleep_for(milliseconds(500));  // all five wait at the backend now
  auto signalled = Clock::now();
  REQUIRE_OK(s.sidecar->proxy().signal(SIGTERM));

  bool refused = false;
  std::string last = "not tried";
  while (!refused && elapsed_ms(signalled) < 1000) {
    auto probe = s.client->connect(s.vip, 80, milliseconds(500));
    refused = !probe.ok() && probe.error().code == ECONNREFUSED;
    if (!refused) {
      last = probe.ok() ? "accepted" : probe.error().message;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  CHECK_MESSAGE(refused, "1s after SIGTERM a new connection is still " << last);
  long long refused_after = elapsed_ms(signalled);
  CHECK_MESSAGE(refused_after < 1400, "refused only " << refused_after << "ms after SIGTERM");

  for (size_t i = 0; i < sockets.size(); ++i) {
    auto response = sockets[i].read_response(seconds(10));
    REQUIRE_MESSAGE(response.ok(),
                    "in-flight request " << i << ": " << (response.ok() ? "" : response.error().message));
    CHECK(response->status == 200);
    CHECK(response->body.find("Hostname=echo-v1\n") != std::string::npos);
  }
  auto code = s.sidecar->proxy().wait(seconds(15));
  REQUIRE_OK(code);
  CHECK(*code == 0);
}

namespace {

bool readable(const ti::Socket& socket) {
  pollfd p{socket.fd(), POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

}  // namespace

TEST_CASE("malformed and slow clients get 400, 408 and 431 and do not disturb a well-behaved client") {
  auto net = make_network("bad-clients");
  ti::Pod* a = echo_pod(*net, "echo-a");
  ti::Pod* b = echo_pod(*net, "echo-b");
  std::string vip = net->next_cluster_ip();
  ti::Pod* client = add_pod(*net, "client", {{{"echo", vip}}});
  mesh(client, fill(kPassthrough, {{"VERSION", "bad-clients-1"}, {"VIP", vip}, {"A_IP", a->ip()}, {"B_IP", b->ip()}}),
       {"--header-timeout", "2s"});

  constexpr int kGood = 300;
  auto good = client->run({ti::echo_binary(), "client", "http://echo/", "--count", std::to_string(kGood), "--qps",
                           "40", "--concurrency", "4", "--timeout", "90s", "--summary"});
  REQUIRE_OK(good);

  // Slowloris: 20 connections trickling one header byte every 250ms.
  constexpr int kSlow = 20;
  std::vector<ti::Socket> slow;
  for (int i = 0; i < kSlow; ++i) {
    auto socket = client->connect(vip, 80);
    REQUIRE_OK(socket);
    REQUIRE_OK(socket->send("GET / HTTP/1.1\r\nHost: echo\r\nX-Slow: "));
    slow.push_back(std::move(*socket));
  }
  auto slow_started = Clock::now();

  auto bad = [&](const std::string& bytes, int want, const char* what) {
    auto socket = client->connect(vip, 80);
    REQUIRE_OK(socket);
    (void)socket->send(bytes);  // the proxy may answer and close before reading it all
    auto response = socket->read_response(seconds(5));
    REQUIRE_MESSAGE(response.ok(), what << ": " << (response.ok() ? "" : response.error().message));
    CHECK_MESSAGE(response->status == want, what << ": " << response->status << " " << response->body);
  };
  // Bytes that are no protocol at all are opaque to detection: spliced to a
  // backend, whose own parser answers 400. The rest meet the proxy's parser.
  bad(std::string("\x00\x01\x02garbage\xff\xfe\r\n\r\n", 17), 400, "garbage bytes");
  bad("GET /a\x01z HTTP/1.1\r\nHost: echo\r\n\r\n", 400, "control character in the target");
  bad("GET / HTTP/1.1\r\nHost: echo\r\nno colon here\r\n\r\n", 400, "header line without a colon");
  bad("GET / HTTP/1.1\r\nHost: echo\r\nX-Big: " + std::string(80 * 1024, 'a') + "\r\n\r\n", 431, "80 KiB header");

  std::vector<bool> answered(kSlow, false);
  int open = kSlow;
  while (open > 0 && elapsed_ms(slow_started) < 6000) {
    for (int i = 0; i < kSlow; ++i) {
      if (answered[i]) continue;
      if (readable(slow[i])) {
        answered[i] = true;
        --open;
        continue;
      }
      (void)slow[i].send("x");
    }
    std::this_thread::sleep_for(milliseconds(250));
  }
  long long slow_took = elapsed_ms(slow_started);
  CHECK_MESSAGE(open == 0, open << " slowloris connections unanswered after " << slow_took << "ms");
  for (int i = 0; i < kSlow; ++i) {
    auto response = slow[i].read_response(seconds(5));
    REQUIRE_MESSAGE(response.ok(), "slowloris " << i << ": " << (response.ok() ? "" : response.error().message));
    CHECK(response->status == 408);
  }
  CHECK_MESSAGE(slow_took >= 1800, "408 after " << slow_took << "ms (--header-timeout 2s)");

  auto done = (*good)->wait(seconds(100));
  REQUIRE_OK(done);
  ti::EchoSummary summary = ti::parse_echo_summary((*good)->out());
  CHECK_MESSAGE(*done == 0, (*good)->err());
  CHECK(summary.code(200) == kGood);
  CHECK(summary.errors == 0);
  CHECK(client->sidecar()->proxy().running());

  std::string text = metrics_of(client);
  INFO(ti::metric_lines(text, "trellis_http_malformed_requests_total"));
  ti::Labels outbound = {{"direction", "outbound"}};
  auto malformed = [&](const char* reason) {
    ti::Labels labels = outbound;
    labels["reason"] = reason;
    return ti::metric_sum(text, "trellis_http_malformed_requests_total", labels);
  };
  CHECK(malformed("bad_request") == 2);
  CHECK(malformed("header_too_large") == 1);
  CHECK(malformed("header_timeout") == kSlow);
}

TEST_CASE("replacing the route table under load fails no request; /config shows each new version") {
  SplitSetup s = split_setup("reload", 1, 0);
  constexpr int kRequests = 1200;
  auto load = s.client->run({ti::echo_binary(), "client", "http://echo/", "--count", std::to_string(kRequests),
                             "--qps", "150", "--concurrency", "10", "--timeout", "90s", "--summary"});
  REQUIRE_OK(load);
  for (int generation = 2; generation <= 7; ++generation) {
    std::this_thread::sleep_for(milliseconds(800));
    bool to_v2 = generation % 2 == 0;
    std::string version = "split-" + std::to_string(generation);
    REQUIRE_OK(s.sidecar->replace_routes(s.table(version, to_v2 ? 0 : 1, to_v2 ? 1 : 0)));
    REQUIRE_OK(s.sidecar->wait_for_version(version, seconds(5)));
    CHECK_MESSAGE((*load)->running(), "the load ended before generation " << generation);
  }
  auto done = (*load)->wait(seconds(100));
  REQUIRE_OK(done);
  CHECK_MESSAGE(*done == 0, (*load)->err());
  ti::EchoSummary summary = ti::parse_echo_summary((*load)->out());
  CHECK(summary.errors == 0);
  CHECK(summary.code(200) == kRequests);
  CHECK(summary.count("echo-v1") > 0);
  CHECK(summary.count("echo-v2") > 0);

  std::string text = metrics_of(s.client);
  CHECK_MESSAGE(ti::metric_sum(text, "trellis_route_table_reloads_total") >= 6,
                ti::metric_lines(text, "trellis_route_table"));
  CHECK(ti::metric_sum(text, "trellis_route_table_version_info", {{"version", "split-7"}}) == 1);
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"direction", "outbound"}, {"status_code", "200"}}) ==
        kRequests);
}

TEST_CASE("inbound: a meshed backend takes sidecar traffic on 15006 (HTTP/2 between sidecars) to its app") {
  auto net = make_network("inbound");
  ti::Pod* backend = add_pod(*net, "echo-m");
  REQUIRE_OK(backend->start_echo());
  ti::Sidecar* backend_sidecar =
      mesh(backend, R"({"version": "backend-1", "namespace": "test", "services": [], "endpoints": []})");
  std::string vip = net->next_cluster_ip(), plain_vip = net->next_cluster_ip();
  ti::Pod* client = add_pod(*net, "client", {{{"echo-m", vip}, {"echo-m-plain", plain_vip}}});
  ti::Pod* outsider = add_pod(*net, "outsider");
  constexpr const char* kTable = R"({
    "version": "client-1", "namespace": "test",
    "services": [
      {"namespace": "test", "name": "echo-m", "clusterIPs": ["${VIP}"],
       "ports": [{"port": 80, "targetPort": 8080}]},
      {"namespace": "test", "name": "echo-m-plain", "clusterIPs": ["${PLAIN_VIP}"],
       "ports": [{"port": 80, "targetPort": 8080}]}
    ],
    "endpoints": [
      {"namespace": "test", "service": "echo-m", "port": 80,
       "addresses": [{"ip": "${IP}", "port": 8080, "pod": "echo-m",
                      "identity": "spiffe://cluster.local/ns/test/sa/echo-m"}]},
      {"namespace": "test", "service": "echo-m-plain", "port": 80,
       "addresses": [{"ip": "${IP}", "port": 8080, "pod": "echo-m"}]}
    ]
  })";
  mesh(client, fill(kTable, {{"VIP", vip}, {"PLAIN_VIP", plain_vip}, {"IP", backend->ip()}}));

  ti::ExecResult meshed = echo_client(client, {"http://echo-m/mesh", "--count", "20", "--summary"});
  REQUIRE_MESSAGE(meshed.exit_code == 0, meshed.err);
  CHECK(ti::parse_echo_summary(meshed.out).count("echo-m") == 20);
  CHECK(meshed.out.find("[0 body] IP=127.0.0.1") != std::string::npos);     // handed over by its sidecar
  CHECK(meshed.out.find("[0 body] Proto=HTTP/1.1") != std::string::npos);   // restored from the h2 stream
  CHECK(meshed.out.find("[0 body] URL=/mesh") != std::string::npos);

  ti::Labels inbound_ok = {{"direction", "inbound"}, {"target_port", "8080"}, {"status_code", "200"}};
  ti::Labels inbound_h2 = {{"direction", "inbound"}, {"protocol", "HTTP/2"}};
  ti::Labels inbound_h1 = {{"direction", "inbound"}, {"protocol", "HTTP/1.1"}};
  std::string text = metrics_of(backend);
  INFO(ti::metric_lines(text, "inbound"));
  CHECK(ti::metric_sum(text, "trellis_requests_total", inbound_ok) == 20);
  CHECK(ti::metric_sum(text, "trellis_downstream_requests_total", inbound_h2) == 20);
  CHECK(metric(client, "trellis_upstream_connections_open", {{"protocol", "mesh"}}) >= 1);

  // No identity in the table: plain HTTP/1 to the same pod, still through its inbound port.
  ti::ExecResult plain = echo_client(client, {"http://echo-m-plain/plain", "--count", "10", "--summary"});
  REQUIRE_MESSAGE(plain.exit_code == 0, plain.err);
  CHECK(plain.out.find("[0 body] IP=127.0.0.1") != std::string::npos);
  text = metrics_of(backend);
  CHECK(ti::metric_sum(text, "trellis_requests_total", inbound_ok) == 30);
  CHECK(ti::metric_sum(text, "trellis_downstream_requests_total", inbound_h1) == 10);
  CHECK(ti::metric_sum(text, "trellis_downstream_requests_total", inbound_h2) == 20);

  // An unmeshed client: inbound passes it to the app as well (permissive).
  auto direct = outsider->http(backend->ip(), 8080, get("/direct", "echo-m"));
  REQUIRE_OK(direct);
  CHECK(direct->status == 200);
  CHECK(direct->body.find("IP=127.0.0.1\n") != std::string::npos);
  CHECK(backend_sidecar->proxy().running());
}
