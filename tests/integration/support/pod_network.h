// An isolated pod network for one integration test of the sidecar: real
// network namespaces, a real bridge, real iptables (trellis-init), real
// processes and sockets.
//
//   auto net = TestNetwork::create("weighted-split");      // needs root
//   REQUIRE(net.ok());
//   Pod* v1 = (*net)->add_pod("echo-v1").value();            // 10.x.y.2, eth0 on the bridge
//   v1->start_echo();                                         // trellis-echo server: Hostname=echo-v1
//   std::string vip = (*net)->next_cluster_ip();              // 10.96.z.10: exists nowhere
//   Pod* client = (*net)->add_pod("client", {{{"echo", vip}}}).value();   // /etc/hosts: echo → vip
//   client->add_sidecar({routes_json});                       // trellis-init + trellis-proxy (uid 2790)
//   auto out = client->exec({echo_binary(), "client", "http://echo/", "--count", "100", "--summary"});
//
// Topology: a "switch" namespace holds a Linux bridge whose address is every
// pod's default gateway; each pod is a namespace with lo up and an eth0 (one
// end of a veth pair whose other end is a bridge port in the switch). The
// switch forwards nothing else anywhere, so a network cannot see the host or
// another test's network: subnets may repeat across processes without harm.
// ClusterIPs come from a separate /24 that no interface holds; a meshed pod's
// iptables redirect connections to them to its proxy, an unmeshed pod cannot
// reach them.
//
// Names: every namespace is "trit<pid>-<n>" (the switch) or
// "trit<pid>-<n>-<pod>"; interface names (br0, eth0, v<k>) do not derive from
// them, so the 15-character interface limit never applies. A pod's hosts and
// resolv.conf live in /etc/netns/<ns>/, so `ip netns exec <ns>` (the demo, a
// human debugging) sees the same names as the processes started here.
//
// Processes: Pod::run forks, enters the pod's network namespace, a private
// mount namespace (where the pod's hosts file is bind-mounted on /etc/hosts)
// and a UTS namespace (its hostname), drops to the requested uid and execs.
// stdout and stderr go to files under dir(); they are printed when the test
// fails (a doctest listener notices failed assertions) and kept on disk then.
// Children get SIGKILL if the test process dies.
//
// Cleanup: ~TestNetwork stops every process (SIGTERM, then SIGKILL after a
// grace period), kills anything else left in its namespaces, and deletes
// them (which deletes veths and bridge) and their /etc/netns directories —
// also when a REQUIRE fails. The first create() in a process also removes
// what test processes that no longer exist left behind ("trit<pid>-..." of a
// dead pid).
//
// Threading: everything here is for one thread (the test's); Pod::connect
// moves the calling thread into the pod's network namespace while it
// connects, and back.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"
#include "tests/integration/support/metrics_text.h"
#include "tests/integration/support/test_socket.h"

namespace trellis::integration {

// trellis-init excludes this uid from redirection; trellis-proxy runs as it.
inline constexpr uint32_t kProxyUid = 2790;
inline constexpr uint16_t kOutboundPort = 15001;
inline constexpr uint16_t kInboundPort = 15006;
inline constexpr uint16_t kAdminPort = 15020;

// The binaries under test: $TRELLIS_PROXY_BIN, $TRELLIS_INIT_BIN,
// $TRELLIS_ECHO_BIN, else their place in the build tree this was built in.
std::string proxy_binary();
std::string init_binary();
std::string echo_binary();

using milliseconds = std::chrono::milliseconds;

class TestNetwork;
class Pod;

struct RunOptions {
  std::optional<uint32_t> uid;  // uid = gid = this, no supplementary groups; unset: root
  // Added to the child's environment, which is otherwise PATH, HOME=/,
  // LANG=C.UTF-8 and HOSTNAME (the test process's environment is not passed on).
  std::vector<std::pair<std::string, std::string>> env;
  std::string hostname;  // the child's hostname (its own UTS namespace); empty: the pod's name
  std::string label;     // names its log files; empty: the program's file name
};

// A child process started by Pod::run. Owned by its TestNetwork; pointers
// stay valid until it is destroyed.
class Process {
 public:
  pid_t pid() const { return pid_; }
  const std::string& label() const { return label_; }  // "<pod>/<label>"
  const std::string& out_path() const { return out_path_; }
  const std::string& err_path() const { return err_path_; }

  // False once it has exited (and then it is reaped).
  bool running();
  // Its exit code once it exits. Errors: "client/trellis-proxy still running
  // after 5000ms", "client/trellis-proxy was killed by signal 9".
  Result<int> wait(milliseconds timeout);
  // Errors when it has already exited: a reaped pid may belong to another process.
  Status signal(int signo);
  // SIGTERM, up to `grace` to exit, then SIGKILL. No-op once exited.
  void stop(milliseconds grace);
  // What it wrote so far.
  std::string out() const;
  std::string err() const;
  // "running", "exited 0", "killed by signal 9" (or "reaped elsewhere").
  std::string state() const;

 private:
  friend class TestNetwork;
  friend class Pod;
  Process() = default;
  void reap(bool block);

  pid_t pid_ = -1;
  std::string label_;
  std::string out_path_;
  std::string err_path_;
  bool transient_ = false;  // started by exec(): logs dumped only when it failed
  bool lost_ = false;       // reaped by someone else: the status is unknown
  std::optional<int> wait_status_;
};

struct ExecResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// trellis-echo server (tests/support/echo/README.md) in a pod.
struct EchoOptions {
  std::string hostname;  // --hostname, reported as Hostname=; empty: the pod's name
  std::vector<uint16_t> http_ports{8080};
  std::vector<uint16_t> grpc_ports{7070};
  std::vector<uint16_t> tcp_ports{9090};
  std::string tcp_greeting;  // --tcp-greeting: the server speaks first
  std::string version;       // --version, reported as ServiceVersion=
  std::optional<uint32_t> uid;
};

// trellis-init + trellis-proxy in a pod.
struct SidecarOptions {
  std::string routes_json;  // written to <dir>/<pod>/routes.json, passed as --routes-file
  int workers = 1;
  std::vector<std::string> proxy_args;  // more flags (--drain-timeout 5s, ...)
  std::vector<std::string> init_args;   // more trellis-init flags
  milliseconds ready_timeout{20000};    // until /ready answers 200
};

class Sidecar {
 public:
  Process& proxy() { return *proxy_; }
  const std::string& routes_path() const { return routes_path_; }

  // Writes the table next to the current one and renames it into place: the
  // proxy sees one atomic replacement.
  Status replace_routes(std::string_view json);
  // An admin request (http://127.0.0.1:15020<path>) from inside the pod.
  Result<HttpResponse> admin(std::string_view method, std::string_view path, milliseconds timeout = milliseconds(5000));
  Result<std::string> metrics();
  // Polls /config until its body mentions `"version":"<version>"` (spaces
  // allowed); the error carries the last body.
  Status wait_for_version(std::string_view version, milliseconds timeout);

 private:
  friend class Pod;
  Pod* pod_ = nullptr;
  Process* proxy_ = nullptr;
  std::string routes_path_;
  int replacements_ = 0;
};

class Pod {
 public:
  const std::string& name() const { return name_; }
  const std::string& netns() const { return netns_; }
  const std::string& ip() const { return ip_; }
  TestNetwork& network() { return *network_; }

  // Starts argv inside the pod; argv[0] without a '/' is looked up in PATH.
  // Errors: "cannot start curl in trit12-1-client: setns: ...".
  Result<Process*> run(const std::vector<std::string>& argv, RunOptions options = {});
  // Runs argv to completion and collects its output; a non-zero exit is in
  // exit_code. Errors: it could not start, was killed by a signal, or was
  // still running after `timeout` (then it is killed; the error shows the
  // tail of its stderr).
  Result<ExecResult> exec(const std::vector<std::string>& argv, RunOptions options = {},
                          milliseconds timeout = milliseconds(60000));

  // A TCP connection created in the pod's network namespace (as root, so a
  // meshed pod's iptables redirect it like the app's).
  Result<Socket> connect(std::string_view ip, uint16_t port, milliseconds timeout = milliseconds(5000));
  // Retries connect() until it succeeds. Error: "echo-v1: nothing accepts on
  // 127.0.0.1:8080 after 10000ms (last: connect ...: Connection refused)".
  Status wait_for_port(uint16_t port, milliseconds timeout, std::string_view ip = "127.0.0.1");
  // One request on a fresh connection from inside the pod.
  Result<HttpResponse> http(std::string_view ip, uint16_t port, const HttpRequest& request,
                            milliseconds timeout = milliseconds(10000));
  // GET http://127.0.0.1:15020/metrics from inside the pod.
  Result<std::string> metrics();

  // Rewrites /etc/netns/<ns>/hosts in place (running processes see it):
  // localhost, the pod's own name, then `entries` (name → IP).
  Status write_hosts(const std::vector<std::pair<std::string, std::string>>& entries);

  // Starts trellis-echo server and waits until its ports accept.
  Result<Process*> start_echo(const EchoOptions& options = {});
  // Meshes the pod: runs trellis-init (must exit 0), writes the route table,
  // starts trellis-proxy as kProxyUid and waits for /ready. The pod's
  // existing processes are not affected until they open new connections.
  Result<Sidecar*> add_sidecar(const SidecarOptions& options);
  // The sidecar added, or nullptr.
  Sidecar* sidecar() { return sidecar_.get(); }

  // Where this pod's files live (logs, routes.json): <network dir>/<pod>.
  const std::string& dir() const { return dir_; }

 private:
  friend class TestNetwork;
  Pod() = default;

  TestNetwork* network_ = nullptr;
  std::string name_;
  std::string netns_;
  std::string ip_;
  std::string dir_;
  std::string etc_dir_;  // /etc/netns/<ns>
  std::unique_ptr<Sidecar> sidecar_;
};

struct PodOptions {
  std::vector<std::pair<std::string, std::string>> hosts;  // name → IP, in /etc/hosts
};

class TestNetwork {
 public:
  // Needs root. `label` names the log directory ($TMPDIR/trellis-it-<label>-XXXXXX).
  // Errors: "the pod network needs root (network namespaces, iptables); run
  // the integration tests as root", or the failing `ip` command and its stderr.
  static Result<std::unique_ptr<TestNetwork>> create(std::string_view label);
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // A pod with the next address. `name`: a DNS label of at most 30
  // characters, unique in the network.
  Result<Pod*> add_pod(std::string_view name, const PodOptions& options = {});
  Pod* pod(std::string_view name);

  // The next unused address of the ClusterIP range (10.96.<n>.10, .11, ...).
  std::string next_cluster_ip();

  const std::string& gateway_ip() const { return gateway_ip_; }
  const std::string& prefix() const { return prefix_; }  // every namespace's name starts with it
  const std::string& dir() const { return dir_; }
  std::vector<std::string> namespaces() const;  // the switch's and every pod's

  // Every process's state and the tail of its logs; ~TestNetwork calls it
  // when the test failed.
  void dump_logs(std::ostream& out) const;

 private:
  friend class Pod;
  TestNetwork() = default;
  Status setup_switch();
  Result<Process*> spawn(Pod* pod, const std::vector<std::string>& argv, const RunOptions& options,
                         bool transient);
  void teardown();

  std::string label_;
  std::string prefix_;
  std::string switch_ns_;
  std::string subnet_base_;   // "10.123.45." : pods are .2 and up
  std::string cluster_base_;  // "10.96.45."
  std::string gateway_ip_;
  std::string dir_;
  int next_host_ = 2;
  int next_cluster_host_ = 10;
  int next_log_ = 0;
  std::vector<std::unique_ptr<Pod>> pods_;
  std::vector<std::unique_ptr<Process>> processes_;
};

// Removes namespaces (with their processes) and /etc/netns entries named
// "trit<pid>-..." whose pid is not a live process. create() calls it once
// per process; exposed for tests. Returns the namespaces removed.
Result<std::vector<std::string>> remove_stale_networks();

// Whether the current doctest test case has failed so far.
bool current_test_failed();

// trellis-echo client --summary lines, `[summary] hostname=X count=N` etc.
struct EchoSummary {
  std::map<std::string, int> hostnames;
  std::map<int, int> codes;
  int errors = -1;  // -1: no summary found
  int count(std::string_view hostname) const;
  int code(int status) const;
};
EchoSummary parse_echo_summary(std::string_view out);

}  // namespace trellis::integration
