#include "tests/integration/support/pod_network.h"

#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace trellis::integration {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kPrefix = "trit";
constexpr const char* kNetnsDir = "/run/netns/";
constexpr const char* kEtcNetnsDir = "/etc/netns/";
constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr milliseconds kStopGrace{3000};
constexpr size_t kDumpLines = 60;

std::string errno_text(int err) { return std::strerror(err); }

// ---- failed-test detection -------------------------------------------------

std::atomic<bool> g_test_failed{false};

// Notices failed assertions so that ~TestNetwork knows to print the logs.
struct FailureListener : doctest::IReporter {
  explicit FailureListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { g_test_failed = false; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override { g_test_failed = true; }
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData& data) override {
    if (data.m_failed) g_test_failed = true;
  }
  void log_message(const doctest::MessageData& data) override {
    if (data.m_severity & (doctest::assertType::is_check | doctest::assertType::is_require)) {
      g_test_failed = true;
    }
  }
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

// ---- files and text --------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Status write_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return make_error("open " + path + ": " + errno_text(errno), errno);
  while (!content.empty()) {
    ssize_t n = write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return make_error("write " + path + ": " + errno_text(err), err);
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  fchmod(fd, mode);  // O_CREAT's mode is filtered by the umask
  if (close(fd) != 0) return make_error("close " + path + ": " + errno_text(errno), errno);
  return ok_status();
}

Status make_dir(const std::string& path, mode_t mode = 0755) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return make_error("mkdir " + path + ": " + errno_text(errno), errno);
  }
  chmod(path.c_str(), mode);
  return ok_status();
}

std::string tail_lines(const std::string& text, size_t lines) {
  size_t start = text.size();
  if (start > 0 && text[start - 1] == '\n') --start;
  for (size_t i = 0; i < lines; ++i) {
    size_t newline = start == 0 ? std::string::npos : text.rfind('\n', start - 1);
    if (newline == std::string::npos) return text;
    start = newline;
  }
  return "[...]\n" + text.substr(start + 1);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

bool valid_pod_name(std::string_view name) {
  if (name.empty() || name.size() > 30 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

std::string build_path(const char* env_name, const std::string& relative) {
  if (const char* path = std::getenv(env_name); path != nullptr && *path != '\0') return path;
  return std::string(TRELLIS_BUILD_ROOT) + "/" + relative;
}

// argv[0] as execve needs it: a path, looked up in PATH when it has no '/'.
Result<std::string> resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (access(program.c_str(), X_OK) != 0) return make_error(program + ": " + errno_text(errno), errno);
    return program;
  }
  std::string_view path = kPath;
  while (!path.empty()) {
    size_t colon = path.find(':');
    std::string candidate = std::string(path.substr(0, colon)) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    path = colon == std::string_view::npos ? std::string_view() : path.substr(colon + 1);
  }
  return make_error(program + ": not found in " + std::string(kPath), ENOENT);
}

// ---- spawning --------------------------------------------------------------

// Everything the child needs, prepared before fork(): after it, the child
// makes only system calls until execve.
struct ChildPlan {
  std::string program;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value"
  int netns_fd = -1;             // -1: stay in the current network namespace
  bool isolate = false;          // own mount and UTS namespaces
  std::vector<std::pair<std::string, std::string>> binds;  // source → target, bind-mounted
  std::string hostname;
  std::optional<uint32_t> uid;
  int stdout_fd = -1;
  int stderr_fd = -1;
};

enum ChildStep : int { kStepStdio = 1, kStepSetns, kStepUnshare, kStepMount, kStepHostname, kStepCredentials,
                       kStepDeathSignal, kStepExec };

const char* step_name(int step) {
  switch (step) {
    case kStepStdio: return "stdio";
    case kStepSetns: return "setns";
    case kStepUnshare: return "unshare";
    case kStepMount: return "mount";
    case kStepHostname: return "sethostname";
    case kStepCredentials: return "setresuid";
    case kStepDeathSignal: return "prctl(PR_SET_PDEATHSIG)";
    case kStepExec: return "execve";
  }
  return "?";
}

[[noreturn]] void child_fail(int report_fd, int step) {
  int report[2] = {step, errno};
  ssize_t ignored = write(report_fd, report, sizeof report);
  (void)ignored;
  _exit(127);
}

[[noreturn]] void run_child(const ChildPlan& plan, char* const* argv, char* const* envp, int report_fd,
                            pid_t parent) {
  for (int signo = 1; signo < NSIG; ++signo) signal(signo, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(plan.stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(plan.stderr_fd, STDERR_FILENO) < 0) {
    child_fail(report_fd, kStepStdio);
  }
  if (plan.netns_fd >= 0 && setns(plan.netns_fd, CLONE_NEWNET) != 0) child_fail(report_fd, kStepSetns);
  if (plan.isolate) {
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0) child_fail(report_fd, kStepUnshare);
    // Our bind mounts must not leak back into the host's mount namespace.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) child_fail(report_fd, kStepMount);
    for (const auto& [source, target] : plan.binds) {
      if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
        child_fail(report_fd, kStepMount);
      }
    }
    if (!plan.hostname.empty() && sethostname(plan.hostname.data(), plan.hostname.size()) != 0) {
      child_fail(report_fd, kStepHostname);
    }
  }
  if (plan.uid) {
    // Raw system calls: after fork() glibc's setxid broadcast to (absent) threads is not needed.
    gid_t gid = *plan.uid;
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setresgid, gid, gid, gid) != 0 ||
        syscall(SYS_setresuid, *plan.uid, *plan.uid, *plan.uid) != 0) {
      child_fail(report_fd, kStepCredentials);
    }
  }
  // After the credential change, which clears it.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(report_fd, kStepDeathSignal);
  if (getppid() != parent) _exit(127);  // the test process died in between
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  execve(plan.program.c_str(), argv, envp);
  child_fail(report_fd, kStepExec);
}

// Forks and execs; the error names the step that failed in the child.
Result<pid_t> spawn_child(const ChildPlan& plan) {
  std::vector<char*> argv, envp;
  for (const auto& a : plan.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return make_error("pipe: " + errno_text(errno), errno);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(report[0]);
    close(report[1]);
    return make_error("fork: " + errno_text(err), err);
  }
  if (pid == 0) run_child(plan, argv.data(), envp.data(), report[1], parent);
  close(report[1]);
  int failure[2] = {0, 0};
  ssize_t got;
  do {
    got = read(report[0], failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got == static_cast<ssize_t>(sizeof failure)) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return make_error(std::string(step_name(failure[0])) + ": " + errno_text(failure[1]), failure[1]);
  }
  return pid;
}

// Runs a command in the test process's own namespaces (`ip ...`) and
// returns its output; an error when it fails, carrying its output.
Result<std::string> host_command(const std::vector<std::string>& argv) {
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
  auto program = resolve_program(argv[0]);
  if (!program.ok()) return make_error(command + ": " + program.error().message);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return make_error("pipe: " + errno_text(errno), errno);
  ChildPlan plan;
  plan.program = *program;
  plan.argv = argv;
  plan.env = {std::string("PATH=") + kPath, "LANG=C"};
  plan.stdout_fd = out[1];
  plan.stderr_fd = out[1];
  auto pid = spawn_child(plan);
  close(out[1]);
  if (!pid.ok()) {
    close(out[0]);
    return make_error(command + ": " + pid.error().message);
  }
  std::string output;
  char buf[4096];
  for (;;) {
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0) {
    if (errno != EINTR) return make_error(command + ": waitpid: " + errno_text(errno), errno);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return make_error(command + ": " + describe_wait_status(status) + ": " + output);
  }
  return output;
}

// ---- namespaces ------------------------------------------------------------

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// SIGKILLs every process whose network namespace is /run/netns/<name>.
void kill_namespace_processes(const std::string& name) {
  struct stat ns {};
  if (stat((kNetnsDir + name).c_str(), &ns) != 0) return;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  std::vector<pid_t> victims;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*entry->d_name == '\0' || *end != '\0' || pid == getpid()) continue;
    struct stat st {};
    std::string path = std::string("/proc/") + entry->d_name + "/ns/net";
    if (stat(path.c_str(), &st) == 0 && same_file(st, ns)) victims.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  for (pid_t pid : victims) kill(pid, SIGKILL);
}

// Deletes a namespace and its /etc/netns directory; absent ones are fine.
Status remove_namespace(const std::string& name) {
  kill_namespace_processes(name);
  Status result = ok_status();
  if (access((kNetnsDir + name).c_str(), F_OK) == 0) {
    auto deleted = host_command({"ip", "netns", "delete", name});
    if (!deleted.ok()) result = deleted.error();
  }
  std::error_code ignored;
  std::filesystem::remove_all(kEtcNetnsDir + name, ignored);
  return result;
}

// The pid in "trit<pid>-...", or 0.
pid_t owner_pid(std::string_view name) {
  if (name.substr(0, kPrefix.size()) != kPrefix) return 0;
  name.remove_prefix(kPrefix.size());
  size_t dash = name.find('-');
  if (dash == 0 || dash == std::string_view::npos) return 0;
  long pid = 0;
  for (char c : name.substr(0, dash)) {
    if (c < '0' || c > '9') return 0;
    pid = pid * 10 + (c - '0');
    if (pid > 1 << 22) return 0;
  }
  return static_cast<pid_t>(pid);
}

bool process_alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

std::vector<std::string> list_dir(const char* path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path);
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') names.push_back(entry->d_name);
  }
  closedir(dir);
  return names;
}

// The netns file's descriptor, for setns.
Result<int> open_netns(const std::string& name) {
  int fd = open((kNetnsDir + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("open " + std::string(kNetnsDir) + name + ": " + errno_text(errno), errno);
  return fd;
}

}  // namespace

// ---- public helpers --------------------------------------------------------

std::string proxy_binary() { return build_path("TRELLIS_PROXY_BIN", "proxy/trellis-proxy"); }
std::string init_binary() { return build_path("TRELLIS_INIT_BIN", "proxy/init/trellis-init"); }
std::string echo_binary() { return build_path("TRELLIS_ECHO_BIN", "tests/support/echo/trellis-echo"); }

bool current_test_failed() { return g_test_failed; }

Result<std::vector<std::string>> remove_stale_networks() {
  std::vector<std::string> removed;
  std::string first_error;
  for (const char* dir : {kNetnsDir, kEtcNetnsDir}) {
    for (const std::string& name : list_dir(dir)) {
      pid_t pid = owner_pid(name);
      if (pid == 0 || process_alive(pid)) continue;
      if (std::find(removed.begin(), removed.end(), name) != removed.end()) continue;
      Status s = remove_namespace(name);
      if (!s.ok() && first_error.empty()) first_error = s.error().message;
      removed.push_back(name);
    }
  }
  if (!first_error.empty()) return make_error("removing stale namespaces: " + first_error);
  return removed;
}

int EchoSummary::count(std::string_view hostname) const {
  auto it = hostnames.find(std::string(hostname));
  return it == hostnames.end() ? 0 : it->second;
}

int EchoSummary::code(int status) const {
  auto it = codes.find(status);
  return it == codes.end() ? 0 : it->second;
}

EchoSummary parse_echo_summary(std::string_view out) {
  EchoSummary summary;
  constexpr std::string_view kTag = "[summary] ";
  while (!out.empty()) {
    size_t eol = out.find('\n');
    std::string_view line = out.substr(0, eol);
    out = eol == std::string_view::npos ? std::string_view() : out.substr(eol + 1);
    if (line.substr(0, kTag.size()) != kTag) continue;
    line.remove_prefix(kTag.size());
    std::string key, value;
    int count = 0;
    size_t space = line.find(" count=");
    if (space != std::string_view::npos) count = std::atoi(std::string(line.substr(space + 7)).c_str());
    std::string_view pair = line.substr(0, space);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    key = std::string(pair.substr(0, eq));
    value = std::string(pair.substr(eq + 1));
    if (key == "hostname") {
      summary.hostnames[value] = count;
    } else if (key == "code") {
      summary.codes[std::atoi(value.c_str())] = count;
    } else if (key == "errors") {
      summary.errors = std::atoi(value.c_str());
    }
  }
  return summary;
}

// ---- Process ---------------------------------------------------------------

void Process::reap(bool block) {
  if (wait_status_ || pid_ <= 0) return;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r == pid_) wait_status_ = status;
    if (r < 0) {  // ECHILD: something else in the test process reaped it
      lost_ = true;
      wait_status_ = 0;
    }
    return;
  }
}

bool Process::running() {
  reap(false);
  return !wait_status_.has_value();
}

Result<int> Process::wait(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto pause = milliseconds(1);
  while (running()) {
    if (Clock::now() >= deadline) {
      return make_error(label_ + " still running after " + std::to_string(timeout.count()) + "ms");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, milliseconds(20));
  }
  if (lost_) return make_error(label_ + " was reaped elsewhere: its exit status is unknown");
  if (WIFSIGNALED(*wait_status_)) {
    return make_error(label_ + " was killed by signal " + std::to_string(WTERMSIG(*wait_status_)));
  }
  return WEXITSTATUS(*wait_status_);
}

Status Process::signal(int signo) {
  if (!running()) return make_error(label_ + " has already " + state());
  if (kill(pid_, signo) != 0) return make_error("kill " + label_ + ": " + errno_text(errno), errno);
  return ok_status();
}

void Process::stop(milliseconds grace) {
  if (!running()) return;
  kill(pid_, SIGTERM);
  if (wait(grace).ok() || !running()) return;
  kill(pid_, SIGKILL);
  reap(true);
}

std::string Process::out() const { return read_file(out_path_); }
std::string Process::err() const { return read_file(err_path_); }

std::string Process::state() const {
  if (lost_) return "reaped elsewhere";
  return wait_status_ ? describe_wait_status(*wait_status_) : std::string("running");
}

// ---- TestNetwork -----------------------------------------------------------

Result<std::unique_ptr<TestNetwork>> TestNetwork::create(std::string_view label) {
  if (geteuid() != 0) {
    return make_error("the pod network needs root (network namespaces, iptables); run the integration tests as root");
  }
  static bool cleaned = false;
  if (!cleaned) {
    cleaned = true;
    auto stale = remove_stale_networks();
    if (!stale.ok()) return stale.error();
  }
  static int counter = 0;
  int n = ++counter;
  pid_t pid = getpid();
  std::unique_ptr<TestNetwork> net(new TestNetwork());
  net->label_ = std::string(label);
  net->prefix_ = std::string(kPrefix) + std::to_string(pid) + "-" + std::to_string(n);
  net->switch_ns_ = net->prefix_;
  // Networks are isolated from each other, so these only need to be
  // distinct within a process; the pid spreads them for readable captures.
  unsigned slot = static_cast<unsigned>(pid) * 8u + static_cast<unsigned>(n);
  net->subnet_base_ = "10." + std::to_string(100 + (slot >> 8) % 100) + "." + std::to_string(slot & 255) + ".";
  net->cluster_base_ = "10.96." + std::to_string(slot & 255) + ".";
  net->gateway_ip_ = net->subnet_base_ + "1";

  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/trellis-it-";
  for (char c : label) pattern += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '_';
  pattern += "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return make_error("mkdtemp " + pattern + ": " + errno_text(errno), errno);
  net->dir_ = pattern;
  chmod(net->dir_.c_str(), 0755);  // the proxy (uid 2790) reads its route table here

  if (auto s = net->setup_switch(); !s.ok()) return s.error();  // ~TestNetwork removes what exists
  return net;
}

Status TestNetwork::setup_switch() {
  const std::vector<std::vector<std::string>> commands = {
      {"ip", "netns", "add", switch_ns_},
      {"ip", "-n", switch_ns_, "link", "set", "lo", "up"},
      {"ip", "-n", switch_ns_, "link", "add", "br0", "type", "bridge"},
      {"ip", "-n", switch_ns_, "addr", "add", gateway_ip_ + "/24", "dev", "br0"},
      {"ip", "-n", switch_ns_, "link", "set", "br0", "up"},
  };
  for (const auto& command : commands) {
    auto ran = host_command(command);
    if (!ran.ok()) return ran.error();
  }
  return ok_status();
}

Result<Pod*> TestNetwork::add_pod(std::string_view name, const PodOptions& options) {
  if (!valid_pod_name(name)) {
    return make_error("pod name '" + std::string(name) + "': want a DNS label of at most 30 characters");
  }
  if (pod(name) != nullptr) return make_error("pod name '" + std::string(name) + "': already used");
  if (next_host_ > 250) return make_error("pod name '" + std::string(name) + "': the /24 is full");
  int host = next_host_++;
  std::unique_ptr<Pod> p(new Pod());
  p->network_ = this;
  p->name_ = std::string(name);
  p->netns_ = prefix_ + "-" + p->name_;
  p->ip_ = subnet_base_ + std::to_string(host);
  p->dir_ = dir_ + "/" + p->name_;
  p->etc_dir_ = kEtcNetnsDir + p->netns_;
  Pod* raw = p.get();
  pods_.push_back(std::move(p));  // from here on, teardown removes its namespace

  if (auto s = make_dir(raw->dir_); !s.ok()) return s.error();
  std::string veth = "v" + std::to_string(host);
  const std::vector<std::vector<std::string>> commands = {
      {"ip", "netns", "add", raw->netns_},
      {"ip", "-n", switch_ns_, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", raw->netns_},
      {"ip", "-n", switch_ns_, "link", "set", veth, "master", "br0", "up"},
      {"ip", "-n", raw->netns_, "link", "set", "lo", "up"},
      {"ip", "-n", raw->netns_, "addr", "add", raw->ip_ + "/24", "dev", "eth0"},
      {"ip", "-n", raw->netns_, "link", "set", "eth0", "up"},
      {"ip", "-n", raw->netns_, "route", "add", "default", "via", gateway_ip_},
  };
  for (const auto& command : commands) {
    auto ran = host_command(command);
    if (!ran.ok()) return ran.error();
  }
  if (auto s = make_dir(kEtcNetnsDir); !s.ok()) return s.error();
  if (auto s = make_dir(raw->etc_dir_); !s.ok()) return s.error();
  // No resolver exists here: a name missing from hosts fails at once
  // (port unreachable on loopback) instead of waiting for DNS timeouts.
  if (auto s = write_file(raw->etc_dir_ + "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
      !s.ok()) {
    return s.error();
  }
  if (auto s = raw->write_hosts(options.hosts); !s.ok()) return s.error();
  return raw;
}

Pod* TestNetwork::pod(std::string_view name) {
  for (auto& p : pods_) {
    if (p->name_ == name) return p.get();
  }
  return nullptr;
}

std::string TestNetwork::next_cluster_ip() { return cluster_base_ + std::to_string(next_cluster_host_++); }

std::vector<std::string> TestNetwork::namespaces() const {
  std::vector<std::string> names = {switch_ns_};
  for (const auto& p : pods_) names.push_back(p->netns_);
  return names;
}

Result<Process*> TestNetwork::spawn(Pod* pod, const std::vector<std::string>& argv, const RunOptions& options,
                                    bool transient) {
  if (argv.empty()) return make_error("run: empty argv");
  std::string base = argv[0].substr(argv[0].rfind('/') + 1);
  std::string label = options.label.empty() ? base : options.label;
  auto program = resolve_program(argv[0]);
  if (!program.ok()) {
    return make_error("cannot start " + argv[0] + " in " + pod->netns_ + ": " + program.error().message);
  }

  std::unique_ptr<Process> process(new Process());
  process->label_ = pod->name_ + "/" + label;
  process->transient_ = transient;
  std::string stem = pod->dir_ + "/" + std::to_string(++next_log_) + "-" + label;
  process->out_path_ = stem + ".out";
  process->err_path_ = stem + ".err";

  ChildPlan plan;
  plan.program = *program;
  plan.argv = argv;
  std::string hostname = options.hostname.empty() ? pod->name_ : options.hostname;
  plan.env = {std::string("PATH=") + kPath, "HOME=/", "LANG=C.UTF-8", "HOSTNAME=" + hostname};
  for (const char* passed : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}) {
    if (const char* value = std::getenv(passed)) plan.env.push_back(std::string(passed) + "=" + value);
  }
  for (const auto& [key, value] : options.env) plan.env.push_back(key + "=" + value);
  plan.isolate = true;
  plan.hostname = hostname;
  plan.uid = options.uid;
  for (const char* file : {"hosts", "resolv.conf"}) {
    std::string source = pod->etc_dir_ + "/" + file;
    if (access(source.c_str(), F_OK) == 0) plan.binds.emplace_back(source, std::string("/etc/") + file);
  }

  auto netns = open_netns(pod->netns_);
  if (!netns.ok()) return netns.error();
  plan.netns_fd = *netns;
  plan.stdout_fd = open(process->out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  plan.stderr_fd = open(process->err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  Result<pid_t> pid = make_error("open " + stem + ".{out,err}: " + errno_text(errno), errno);
  if (plan.stdout_fd >= 0 && plan.stderr_fd >= 0) pid = spawn_child(plan);
  for (int fd : {plan.netns_fd, plan.stdout_fd, plan.stderr_fd}) {
    if (fd >= 0) close(fd);
  }
  if (!pid.ok()) return make_error("cannot start " + argv[0] + " in " + pod->netns_ + ": " + pid.error().message);
  process->pid_ = *pid;
  processes_.push_back(std::move(process));
  return processes_.back().get();
}

void TestNetwork::dump_logs(std::ostream& out) const {
  out << "==== pod network " << prefix_ << " (" << label_ << "): logs in " << dir_ << "\n";
  for (const auto& p : processes_) {
    bool failed = p->lost_ || !p->wait_status_ || !WIFEXITED(*p->wait_status_) || WEXITSTATUS(*p->wait_status_) != 0;
    if (p->transient_ && !failed) continue;
    out << "---- " << p->label_ << " (pid " << p->pid_ << ", " << p->state() << ")\n";
    for (const auto& [what, path] : {std::pair<const char*, const std::string&>{"stderr", p->err_path_},
                                     std::pair<const char*, const std::string&>{"stdout", p->out_path_}}) {
      std::string text = read_file(path);
      if (text.empty()) continue;
      out << "  " << what << " (" << path << "):\n" << tail_lines(text, kDumpLines);
      if (text.back() != '\n') out << "\n";
    }
  }
  out << "==== end of pod network " << prefix_ << "\n";
}

void TestNetwork::teardown() {
  for (auto& p : processes_) {
    if (p->running()) kill(p->pid_, SIGTERM);
  }
  auto deadline = Clock::now() + kStopGrace;
  for (auto& p : processes_) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (p->running() && !p->wait(std::max(left, milliseconds(0))).ok() && p->running()) {
      kill(p->pid_, SIGKILL);
      p->reap(true);
    }
  }
  std::vector<std::string> names = namespaces();
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    Status s = remove_namespace(*it);
    if (!s.ok()) std::cerr << "pod network cleanup: " << s.error().message << "\n";
  }
}

TestNetwork::~TestNetwork() {
  bool failed = current_test_failed() || std::uncaught_exceptions() > 0;
  if (failed) dump_logs(std::cerr);
  teardown();
  if (!failed && !dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

// ---- Pod -------------------------------------------------------------------

Result<Process*> Pod::run(const std::vector<std::string>& argv, RunOptions options) {
  return network_->spawn(this, argv, options, /*transient=*/false);
}

Result<ExecResult> Pod::exec(const std::vector<std::string>& argv, RunOptions options, milliseconds timeout) {
  auto process = network_->spawn(this, argv, options, /*transient=*/true);
  if (!process.ok()) return process.error();
  Process& p = **process;
  auto code = p.wait(timeout);
  if (!code.ok()) {
    p.stop(milliseconds(1000));
    return make_error(code.error().message + "; stderr: " + tail_lines(p.err(), 10) +
                      "; stdout: " + tail_lines(p.out(), 10));
  }
  return ExecResult{*code, p.out(), p.err()};
}

Result<Socket> Pod::connect(std::string_view ip, uint16_t port, milliseconds timeout) {
  int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) return make_error("open /proc/thread-self/ns/net: " + errno_text(errno), errno);
  auto target = open_netns(netns_);
  if (!target.ok()) {
    close(original);
    return target.error();
  }
  Result<Socket> socket = make_error("setns " + netns_ + ": " + errno_text(errno));
  if (setns(*target, CLONE_NEWNET) == 0) {
    socket = connect_tcp(ip, port, timeout);
    if (setns(original, CLONE_NEWNET) != 0) {
      // The thread would keep working in the pod: nothing after this could be trusted.
      std::cerr << "Pod::connect: cannot return to the test's network namespace: " << errno_text(errno) << "\n";
      std::abort();
    }
  } else {
    socket = make_error("setns " + netns_ + ": " + errno_text(errno), errno);
  }
  close(*target);
  close(original);
  return socket;
}

Status Pod::wait_for_port(uint16_t port, milliseconds timeout, std::string_view ip) {
  auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    auto socket = connect(ip, port, milliseconds(500));
    if (socket.ok()) return ok_status();
    last = socket.error().message;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return make_error(name_ + ": nothing accepts on " + std::string(ip) + ":" + std::to_string(port) + " after " +
                    std::to_string(timeout.count()) + "ms (last: " + last + ")");
}

Result<HttpResponse> Pod::http(std::string_view ip, uint16_t port, const HttpRequest& request, milliseconds timeout) {
  auto socket = connect(ip, port, timeout);
  if (!socket.ok()) return socket.error();
  return http_exchange(*socket, request, std::string(ip) + ":" + std::to_string(port), timeout);
}

Result<std::string> Pod::metrics() {
  HttpRequest request;
  request.target = "/metrics";
  auto response = http("127.0.0.1", kAdminPort, request);
  if (!response.ok()) return make_error(name_ + " /metrics: " + response.error().message);
  if (response->status != 200) {
    return make_error(name_ + " /metrics: status " + std::to_string(response->status) + ": " + response->body);
  }
  return std::move(response->body);
}

Status Pod::write_hosts(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + ip_ + "\t" + name_ + "\n";
  for (const auto& [name, ip] : entries) text += ip + "\t" + name + "\n";
  std::string path = etc_dir_ + "/hosts";
  // In place, not by rename: running processes have this very inode bind-mounted.
  return write_file(path, text);
}

Result<Process*> Pod::start_echo(const EchoOptions& options) {
  std::string binary = echo_binary();
  if (access(binary.c_str(), X_OK) != 0) return make_error("trellis-echo is not built: " + binary);
  std::vector<std::string> argv = {binary, "server", "--hostname",
                                   options.hostname.empty() ? name_ : options.hostname};
  for (uint16_t p : options.http_ports) argv.insert(argv.end(), {"--port", std::to_string(p)});
  for (uint16_t p : options.grpc_ports) argv.insert(argv.end(), {"--grpc", std::to_string(p)});
  for (uint16_t p : options.tcp_ports) argv.insert(argv.end(), {"--tcp", std::to_string(p)});
  if (!options.tcp_greeting.empty()) argv.insert(argv.end(), {"--tcp-greeting", options.tcp_greeting});
  if (!options.version.empty()) argv.insert(argv.end(), {"--version", options.version});
  RunOptions run_options;
  run_options.uid = options.uid;
  run_options.label = "echo";
  auto process = run(argv, run_options);
  if (!process.ok()) return process.error();
  std::vector<uint16_t> ports = options.http_ports;
  ports.insert(ports.end(), options.grpc_ports.begin(), options.grpc_ports.end());
  ports.insert(ports.end(), options.tcp_ports.begin(), options.tcp_ports.end());
  for (uint16_t port : ports) {
    if (auto s = wait_for_port(port, milliseconds(10000)); !s.ok()) {
      return make_error(s.error().message + "; echo " + (*process)->state() + ", stderr: " +
                        tail_lines((*process)->err(), 10));
    }
  }
  return process;
}

Result<Sidecar*> Pod::add_sidecar(const SidecarOptions& options) {
  if (sidecar_) return make_error(name_ + ": already has a sidecar");
  for (const std::string& binary : {init_binary(), proxy_binary()}) {
    if (access(binary.c_str(), X_OK) != 0) {
      return make_error(binary.substr(binary.rfind('/') + 1) + " is not built: " + binary);
    }
  }
  std::vector<std::string> init = {init_binary()};
  init.insert(init.end(), options.init_args.begin(), options.init_args.end());
  RunOptions init_options;
  init_options.label = "trellis-init";
  auto ran = exec(init, init_options, milliseconds(30000));
  if (!ran.ok()) return make_error(name_ + ": trellis-init: " + ran.error().message);
  if (ran->exit_code != 0) {
    return make_error(name_ + ": trellis-init exited " + std::to_string(ran->exit_code) + ": " + ran->err);
  }

  auto sidecar = std::unique_ptr<Sidecar>(new Sidecar());
  sidecar->pod_ = this;
  sidecar->routes_path_ = dir_ + "/routes.json";
  if (auto s = write_file(sidecar->routes_path_, options.routes_json); !s.ok()) return s.error();

  std::vector<std::string> argv = {proxy_binary(), "--routes-file", sidecar->routes_path_, "--workers",
                                   std::to_string(options.workers)};
  argv.insert(argv.end(), options.proxy_args.begin(), options.proxy_args.end());
  RunOptions proxy_options;
  proxy_options.uid = kProxyUid;
  proxy_options.label = "trellis-proxy";
  auto proxy = run(argv, proxy_options);
  if (!proxy.ok()) return proxy.error();
  sidecar->proxy_ = *proxy;

  auto deadline = Clock::now() + options.ready_timeout;
  std::string last;
  for (;;) {
    if (!sidecar->proxy_->running()) {
      return make_error(name_ + ": trellis-proxy " + sidecar->proxy_->state() + " before it was ready; stderr: " +
                        tail_lines(sidecar->proxy_->err(), 15));
    }
    auto ready = sidecar->admin("GET", "/ready", milliseconds(1000));
    if (ready.ok() && ready->status == 200) break;
    last = ready.ok() ? "status " + std::to_string(ready->status) + ": " + ready->body : ready.error().message;
    if (Clock::now() >= deadline) {
      return make_error(name_ + ": trellis-proxy not ready after " + std::to_string(options.ready_timeout.count()) +
                        "ms (last /ready: " + last + "); stderr: " + tail_lines(sidecar->proxy_->err(), 15));
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  sidecar_ = std::move(sidecar);
  return sidecar_.get();
}

// ---- Sidecar ---------------------------------------------------------------

Status Sidecar::replace_routes(std::string_view json) {
  std::string staged = routes_path_ + ".next-" + std::to_string(++replacements_);
  if (auto s = write_file(staged, json); !s.ok()) return s;
  if (rename(staged.c_str(), routes_path_.c_str()) != 0) {
    return make_error("rename " + staged + " " + routes_path_ + ": " + errno_text(errno), errno);
  }
  return ok_status();
}

Result<HttpResponse> Sidecar::admin(std::string_view method, std::string_view path, milliseconds timeout) {
  HttpRequest request;
  request.method = std::string(method);
  request.target = std::string(path);
  return pod_->http("127.0.0.1", kAdminPort, request, timeout);
}

Result<std::string> Sidecar::metrics() { return pod_->metrics(); }

Status Sidecar::wait_for_version(std::string_view version, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string wanted = "\"" + std::string(version) + "\"";
  std::string last;
  for (;;) {
    auto config = admin("GET", "/config");
    if (config.ok() && config->status == 200) {
      const std::string& body = config->body;
      for (size_t at = body.find("\"version\""); at != std::string::npos; at = body.find("\"version\"", at + 1)) {
        size_t value = at + 9;
        while (value < body.size() && (body[value] == ' ' || body[value] == ':' || body[value] == '\n')) ++value;
        if (body.compare(value, wanted.size(), wanted) == 0) return ok_status();
      }
      last = body.substr(0, 400);
    } else {
      last = config.ok() ? "status " + std::to_string(config->status) : config.error().message;
    }
    if (Clock::now() >= deadline) {
      return make_error(pod_->name() + ": /config does not show version " + std::string(version) + " after " +
                        std::to_string(timeout.count()) + "ms; last: " + last);
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

}  // namespace trellis::integration

DOCTEST_REGISTER_LISTENER("trellis-pod-network", 1, trellis::integration::FailureListener);
