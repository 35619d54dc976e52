// The pod-network harness itself (tests/integration/support/pod_network.h)
// and trellis-init's rules in a real pod, with trellis-echo standing in for
// the proxy: no trellis-proxy involved.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/proxy/support.h"

namespace ti = trellis::integration;
using namespace ti::proxy_test;  // NOLINT: test-local helpers
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

bool path_exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

// Gone, or a zombie nobody has reaped yet (an orphan whose reaper is slow).
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool eventually_gone(pid_t pid) {
  for (int i = 0; i < 200 && !process_gone(pid); ++i) usleep(10000);
  return process_gone(pid);
}

}  // namespace

TEST_CASE("two pods talk over TCP and HTTP across the bridge") {
  auto net = make_network("two-pods");
  ti::Pod* server = add_pod(*net, "server");
  ti::Pod* client = add_pod(*net, "client", {{{"server-svc", server->ip()}}});
  CHECK(server->ip() != client->ip());
  REQUIRE_OK(server->start_echo());

  // In-process sockets, created inside the client's namespace.
  auto socket = client->connect(server->ip(), 9090);
  REQUIRE_OK(socket);
  REQUIRE_OK(socket->send("hello over the bridge"));
  REQUIRE_OK(socket->shutdown_write());
  auto echoed = socket->read_to_eof(milliseconds(5000));
  REQUIRE_OK(echoed);
  CHECK(*echoed == "hello over the bridge");

  ti::HttpRequest request;
  request.target = "/path?x=1";
  auto response = client->http(server->ip(), 8080, request);
  REQUIRE_OK(response);
  CHECK(response->status == 200);
  CHECK(response->body.find("Hostname=server\n") != std::string::npos);
  CHECK(response->body.find("IP=" + client->ip() + "\n") != std::string::npos);

  // A process in the client pod, resolving the name through the pod's hosts file.
  auto out = client->exec({ti::echo_binary(), "client", "http://server-svc:8080/hi", "--count", "3", "--summary"});
  REQUIRE_OK(out);
  CHECK_MESSAGE(out->exit_code == 0, out->err);
  ti::EchoSummary summary = ti::parse_echo_summary(out->out);
  CHECK(summary.count("server") == 3);
  CHECK(summary.code(200) == 3);
  CHECK(summary.errors == 0);
  CHECK(out->out.find("[0 body] Host=server-svc:8080") != std::string::npos);
}

TEST_CASE("a pod's hosts file resolves Service names, also under ip netns exec") {
  auto net = make_network("hosts");
  std::string vip = net->next_cluster_ip();
  CHECK(vip != net->next_cluster_ip());
  ti::Pod* pod = add_pod(*net, "resolver", {{{"echo", vip}, {"echo.shop.svc.cluster.local", vip}}});

  auto ours = pod->exec({"getent", "hosts", "echo"});
  REQUIRE_OK(ours);
  CHECK(ours->exit_code == 0);
  CHECK(ours->out.substr(0, vip.size() + 1) == vip + " ");
  CHECK(ours->out.find(" echo\n") != std::string::npos);

  auto theirs = ti::TestNetwork::create("unused");  // a second network does not see this one's names
  REQUIRE_OK(theirs);
  ti::Pod* other = add_pod(**theirs, "resolver");
  auto missing = other->exec({"getent", "hosts", "echo"});
  REQUIRE_OK(missing);
  CHECK(missing->exit_code == 2);

  // What a human (or scripts/demo) gets with ip netns exec.
  std::string command = "ip netns exec " + pod->netns() + " getent hosts echo.shop.svc.cluster.local";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[256] = {};
  std::string printed = fgets(line, sizeof line, pipe) != nullptr ? line : "";
  pclose(pipe);
  CHECK(printed.substr(0, vip.size()) == vip);

  // Rewritten in place: a new process sees the new address, the pod's own name stays.
  std::string moved = net->next_cluster_ip();
  REQUIRE_OK(pod->write_hosts({{"echo", moved}}));
  auto again = pod->exec({"getent", "hosts", "echo"});
  REQUIRE_OK(again);
  CHECK(again->out.substr(0, moved.size()) == moved);
  auto self = pod->exec({"getent", "hosts", "resolver"});
  REQUIRE_OK(self);
  CHECK(self->out.substr(0, pod->ip().size()) == pod->ip());

  // A name in no hosts file fails at once: there is no resolver to wait for.
  auto started = std::chrono::steady_clock::now();
  auto unknown = pod->exec({"getent", "hosts", "nowhere.example"});
  REQUIRE_OK(unknown);
  CHECK(unknown->exit_code == 2);
  CHECK(std::chrono::steady_clock::now() - started < seconds(3));
}

TEST_CASE("processes run with the requested uid, hostname and environment; output is captured") {
  setenv("TRELLIS_IT_SECRET", "not for children", 1);
  auto net = make_network("process");
  ti::Pod* pod = add_pod(*net, "box");

  ti::RunOptions options;
  options.uid = ti::kProxyUid;
  options.hostname = "named-by-test";
  options.env = {{"FOO", "bar"}};
  auto out = pod->exec({"sh", "-c",
                        "id -u; id -g; id -G; hostname; echo \"$FOO|$HOSTNAME|${TRELLIS_IT_SECRET:-unset}\"; "
                        "echo to-stderr >&2; exit 3"},
                       options);
  REQUIRE_OK(out);
  CHECK(out->exit_code == 3);
  CHECK(out->out == "2790\n2790\n2790\nnamed-by-test\nbar|named-by-test|unset\n");
  CHECK(out->err == "to-stderr\n");

  // Defaults: root, the pod's name as hostname; the host keeps its own hostname.
  auto plain = pod->exec({"sh", "-c", "id -u; hostname"});
  REQUIRE_OK(plain);
  CHECK(plain->out == "0\nbox\n");
  char host_name[256] = {};
  gethostname(host_name, sizeof host_name - 1);
  CHECK(std::string(host_name) != "box");

  // A long-running process: its logs are files, its exit status is reported.
  auto sleeper = pod->run({"sh", "-c", "echo started; exec sleep 30"});
  REQUIRE_OK(sleeper);
  ti::Process* p = *sleeper;
  CHECK(p->running());
  CHECK(p->label() == "box/sh");
  auto early = p->wait(milliseconds(50));
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().message == "box/sh still running after 50ms");
  REQUIRE_OK(p->signal(SIGKILL));
  auto killed = p->wait(milliseconds(5000));
  REQUIRE_FALSE(killed.ok());
  CHECK(killed.error().message == "box/sh was killed by signal 9");
  CHECK(p->state() == "killed by signal 9");
  CHECK(p->out() == "started\n");
  auto again = p->signal(SIGTERM);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == "box/sh has already killed by signal 9");
}

TEST_CASE("exec kills a command that outlives its timeout; run reports what cannot start") {
  auto net = make_network("exec-errors");
  ti::Pod* pod = add_pod(*net, "box");

  auto slow = pod->exec({"sh", "-c", "echo partial; echo oops >&2; exec sleep 30"}, {}, milliseconds(300));
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().message == "box/sh still running after 300ms; stderr: oops\n; stdout: partial\n");

  auto missing = pod->run({"/nonexistent/program"});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "cannot start /nonexistent/program in " + pod->netns() +
                                       ": /nonexistent/program: No such file or directory");
  auto unknown = pod->run({"no-such-program-anywhere"});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("no-such-program-anywhere: not found in /usr/local/sbin:") !=
        std::string::npos);

  auto bad_name = net->add_pod("Bad_Name");
  REQUIRE_FALSE(bad_name.ok());
  CHECK(bad_name.error().message == "pod name 'Bad_Name': want a DNS label of at most 30 characters");
  auto twice = net->add_pod("box");
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.error().message == "pod name 'box': already used");

  // Nothing listens: a clear error naming the pod, address and last attempt.
  auto closed = pod->wait_for_port(4444, milliseconds(200));
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.error().message ==
        "box: nothing accepts on 127.0.0.1:4444 after 200ms (last: connect 127.0.0.1:4444: Connection refused)");
}

TEST_CASE("destroying a network stops its processes and leaves no namespace, veth or hosts file") {
  std::vector<std::string> names;
  std::vector<pid_t> pids;
  std::string dir;
  {
    auto net = make_network("cleanup");
    ti::Pod* a = add_pod(*net, "a", {{{"b", "10.0.0.1"}}});
    ti::Pod* b = add_pod(*net, "b");
    auto echo = a->start_echo();
    REQUIRE_OK(echo);
    pids.push_back((*echo)->pid());
    // Ignores SIGTERM: needs the SIGKILL after the grace period.
    auto stubborn = b->run({"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"});
    REQUIRE_OK(stubborn);
    pids.push_back((*stubborn)->pid());
    // An orphan that none of our Process objects knows: found by its namespace.
    auto orphan = b->exec({"sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"});
    REQUIRE_OK(orphan);
    pids.push_back(std::atoi(orphan->out.c_str()));
    CHECK(pids.back() > 0);
    names = net->namespaces();
    dir = net->dir();
    CHECK(names.size() == 3);
    for (const auto& name : names) {
      CHECK(name.rfind(net->prefix(), 0) == 0);
      CHECK(path_exists("/run/netns/" + name));
    }
    CHECK(path_exists("/etc/netns/" + a->netns() + "/hosts"));
    CHECK(path_exists(dir));
  }
  for (const auto& name : names) {
    CHECK_MESSAGE(!path_exists("/run/netns/" + name), name);
    CHECK_MESSAGE(!path_exists("/etc/netns/" + name), name);
  }
  for (pid_t pid : pids) CHECK_MESSAGE(eventually_gone(pid), pid);
  CHECK_FALSE(path_exists(dir));  // a passing test keeps no logs
}

TEST_CASE("leftovers of a test process that died are removed; live ones are not") {
  pid_t dead = fork();
  REQUIRE(dead >= 0);
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  std::string stale = "trit" + std::to_string(dead) + "-1";
  std::string stale_pod = stale + "-pod";
  REQUIRE(std::system(("ip netns add " + stale + " && ip netns add " + stale_pod).c_str()) == 0);
  REQUIRE(std::system(("mkdir -p /etc/netns/" + stale_pod + " && touch /etc/netns/" + stale_pod + "/hosts").c_str()) ==
          0);
  // A process inside the stale pod, not a child of ours.
  REQUIRE(std::system(("ip netns exec " + stale_pod + " setsid sleep 1000 </dev/null >/dev/null 2>&1 &").c_str()) ==
          0);
  pid_t sleeper = 0;
  for (int i = 0; i < 200 && sleeper == 0; ++i) {
    FILE* pipe = popen(("ip netns pids " + stale_pod).c_str(), "r");
    REQUIRE(pipe != nullptr);
    char line[64] = {};
    if (fgets(line, sizeof line, pipe) != nullptr) sleeper = std::atoi(line);
    pclose(pipe);
    if (sleeper == 0) usleep(10000);
  }
  REQUIRE(sleeper > 0);

  auto live = make_network("live");  // ours: a live pid
  add_pod(*live, "keep");

  auto removed = ti::remove_stale_networks();
  REQUIRE_OK(removed);
  CHECK(std::find(removed->begin(), removed->end(), stale) != removed->end());
  CHECK(std::find(removed->begin(), removed->end(), stale_pod) != removed->end());
  CHECK_FALSE(path_exists("/run/netns/" + stale));
  CHECK_FALSE(path_exists("/run/netns/" + stale_pod));
  CHECK_FALSE(path_exists("/etc/netns/" + stale_pod));
  CHECK(eventually_gone(sleeper));
  for (const auto& name : live->namespaces()) CHECK(path_exists("/run/netns/" + name));
}

TEST_CASE("trellis-init redirects a pod's outbound and inbound TCP, except the proxy's own and loopback") {
  auto net = make_network("init-redirect");
  std::string vip = net->next_cluster_ip();
  ti::Pod* backend = add_pod(*net, "backend");
  ti::Pod* meshed = add_pod(*net, "meshed", {{{"echo", vip}}});
  ti::Pod* outside = add_pod(*net, "outside");
  REQUIRE_OK(backend->start_echo());

  auto init = meshed->exec({ti::init_binary()});
  REQUIRE_OK(init);
  REQUIRE_MESSAGE(init->exit_code == 0, init->err);
  auto rules = meshed->exec({"iptables", "-w", "-t", "nat", "-S"});
  REQUIRE_OK(rules);
  CHECK(rules->out.find("-A OUTPUT -p tcp -j TRELLIS_OUTPUT") != std::string::npos);
  CHECK(rules->out.find("-A TRELLIS_OUTPUT -m owner --uid-owner 2790 -j RETURN") != std::string::npos);
  CHECK(rules->out.find("-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006") != std::string::npos);

  // A stand-in for the proxy, as the proxy's uid: HTTP echo on the outbound,
  // inbound and admin ports; its ServicePort= tells which port a connection reached.
  ti::EchoOptions stand_in;
  stand_in.http_ports = {ti::kOutboundPort, ti::kInboundPort, ti::kAdminPort, 8080};
  stand_in.uid = ti::kProxyUid;
  REQUIRE_OK(meshed->start_echo(stand_in));

  // The app (root) dials a ClusterIP that exists nowhere: the outbound port answers.
  auto outbound = meshed->exec({ti::echo_binary(), "client", "http://echo/x"});
  REQUIRE_OK(outbound);
  CHECK_MESSAGE(outbound->exit_code == 0, outbound->err);
  CHECK(outbound->out.find("[0 body] ServicePort=15001") != std::string::npos);
  CHECK(outbound->out.find("[0 body] Host=echo") != std::string::npos);
  // ... and a pod IP alike.
  auto to_pod = meshed->http(backend->ip(), 8080, {});
  REQUIRE_OK(to_pod);
  CHECK(to_pod->body.find("ServicePort=15001\n") != std::string::npos);
  CHECK(to_pod->body.find("Hostname=meshed\n") != std::string::npos);

  // The proxy's uid goes out untouched.
  ti::RunOptions as_proxy;
  as_proxy.uid = ti::kProxyUid;
  auto direct = meshed->exec({ti::echo_binary(), "client", "http://" + backend->ip() + ":8080/"}, as_proxy);
  REQUIRE_OK(direct);
  CHECK_MESSAGE(direct->exit_code == 0, direct->err);
  CHECK(direct->out.find("[0 body] Hostname=backend") != std::string::npos);

  // Loopback is not redirected: the stand-in's own 8080 answers as 8080.
  auto loopback = meshed->http("127.0.0.1", 8080, {});
  REQUIRE_OK(loopback);
  CHECK(loopback->body.find("ServicePort=8080\n") != std::string::npos);

  // Inbound: any port lands on 15006, except the admin port.
  auto inbound = outside->http(meshed->ip(), 8080, {});
  REQUIRE_OK(inbound);
  CHECK(inbound->body.find("ServicePort=15006\n") != std::string::npos);
  CHECK(inbound->body.find("IP=" + outside->ip() + "\n") != std::string::npos);
  auto admin = outside->http(meshed->ip(), ti::kAdminPort, {});
  REQUIRE_OK(admin);
  CHECK(admin->body.find("ServicePort=15020\n") != std::string::npos);

  // trellis-init --cleanup: the app reaches the backend itself again.
  auto cleanup = meshed->exec({ti::init_binary(), "--cleanup"});
  REQUIRE_OK(cleanup);
  CHECK_MESSAGE(cleanup->exit_code == 0, cleanup->err);
  auto after = meshed->http(backend->ip(), 8080, {});
  REQUIRE_OK(after);
  CHECK(after->body.find("Hostname=backend\n") != std::string::npos);
}

TEST_CASE("parse_metrics reads the exposition format; malformed lines are named") {
  const char* text =
      "# HELP trellis_requests_total Requests.\n"
      "# TYPE trellis_requests_total counter\n"
      "trellis_requests_total{direction=\"outbound\",backend_name=\"echo-v1\",status_code=\"200\"} 80\n"
      "trellis_requests_total{direction=\"outbound\",backend_name=\"echo-v2\",status_code=\"200\"} 20\n"
      "trellis_requests_total{direction=\"inbound\",backend_name=\"\",status_code=\"503\"} 3 1700000000000\n"
      "odd{path=\"a\\\"b\\\\c\\nd\"} 1.5e3\n"
      "plain 7\n";
  auto samples = ti::parse_metrics(text);
  REQUIRE_OK(samples);
  REQUIRE(samples->size() == 5);
  CHECK((*samples)[3].labels.at("path") == "a\"b\\c\nd");
  CHECK((*samples)[3].value == 1500);
  CHECK(ti::metric_sum(text, "trellis_requests_total") == 103);
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"direction", "outbound"}}) == 100);
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"backend_name", "echo-v2"}, {"status_code", "200"}}) == 20);
  CHECK(ti::metric_sum(text, "trellis_requests_total", {{"backend_name", "echo-v3"}}) == 0);
  CHECK(ti::metric_sum(text, "plain") == 7);
  CHECK(ti::metric_lines(text, "echo-v2") ==
        "trellis_requests_total{direction=\"outbound\",backend_name=\"echo-v2\",status_code=\"200\"} 20\n");

  auto bad = ti::parse_metrics("ok 1\nx{a} 1\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "metrics line 2: expected '=' after label name in 'x{a} 1'");
  auto bad_value = ti::parse_metrics("x 1z\n");
  REQUIRE_FALSE(bad_value.ok());
  CHECK(bad_value.error().message == "metrics line 1: malformed value '1z' in 'x 1z'");
}

TEST_CASE("parse_echo_summary reads trellis-echo client --summary") {
  auto s = ti::parse_echo_summary(
      "[0] Url=http://echo/\n[0 body] Hostname=echo-v1\n\n"
      "[summary] hostname=echo-v1 count=1600\n[summary] hostname=echo-v2 count=400\n"
      "[summary] code=200 count=1999\n[summary] code=503 count=1\n[summary] errors=0\n");
  CHECK(s.count("echo-v1") == 1600);
  CHECK(s.count("echo-v2") == 400);
  CHECK(s.count("echo-v3") == 0);
  CHECK(s.code(200) == 1999);
  CHECK(s.code(503) == 1);
  CHECK(s.errors == 0);
  CHECK(ti::parse_echo_summary("no summary here\n").errors == -1);
}
