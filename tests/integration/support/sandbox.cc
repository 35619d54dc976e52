#include "tests/integration/support/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>

namespace trellis::integration {
namespace {

// Where sandbox/ lives; set by meson, overridable for an installed tree.
std::string sandbox_home() {
  if (const char* home = std::getenv("TRELLIS_SANDBOX_HOME"); home != nullptr && *home != '\0') {
    return home;
  }
  return std::string(TRELLIS_SOURCE_ROOT) + "/sandbox";
}

// The same default as sandbox/lib/common.sh.
Result<std::string> state_dir() {
  if (const char* dir = std::getenv("TRELLIS_SANDBOX_DIR"); dir != nullptr && *dir != '\0') {
    return std::string(dir);
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    return make_error("neither TRELLIS_SANDBOX_DIR nor HOME is set");
  }
  return std::string(home) + "/.local/state/trellis-sandbox";
}

std::string errno_text(int err) { return std::strerror(err); }

// The last `lines` lines of a command's output, for error messages.
std::string last_lines(std::string text, int lines) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t start = text.size();
  for (int i = 0; i < lines; ++i) {
    if (start == 0) return text;
    size_t newline = text.rfind('\n', start - 1);
    if (newline == std::string::npos) return text;
    start = newline;
  }
  return text.substr(start + 1);
}

// Runs argv; collects stdout, and stderr unless it is passed through.
Result<CommandOutput> spawn(const std::vector<std::string>& argv, bool capture_err) {
  if (argv.empty()) return make_error("run_command: empty argv");
  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return make_error("pipe: " + errno_text(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    close(out_pipe[0]);
    close(out_pipe[1]);
    return make_error("pipe: " + errno_text(err));
  }
  // Carries exec's errno to the parent; closed by a successful exec.
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return make_error("pipe: " + errno_text(err));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], exec_pipe[0], exec_pipe[1]}) {
      close(fd);
    }
    return make_error("fork: " + errno_text(err));
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    if (capture_err) dup2(err_pipe[1], STDERR_FILENO);
    execvp(args[0], args.data());
    int err = errno;
    ssize_t ignored = write(exec_pipe[1], &err, sizeof err);
    (void)ignored;
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(exec_pipe[1]);

  CommandOutput result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[16384];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int exec_errno = 0;
  ssize_t got = read(exec_pipe[0], &exec_errno, sizeof exec_errno);
  close(exec_pipe[0]);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return make_error("waitpid: " + errno_text(errno));
  }
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    return make_error("cannot run '" + argv[0] + "': " + errno_text(exec_errno));
  }
  if (WIFSIGNALED(status)) {
    return make_error("'" + argv[0] + "' died from signal " + std::to_string(WTERMSIG(status)));
  }
  result.exit_code = WEXITSTATUS(status);
  return result;
}

// Reads the KEY=value lines that sandbox/up writes to $TRELLIS_SANDBOX_DIR/env.
Result<Sandbox> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(path + ": cannot open: " + errno_text(errno));
  std::map<std::string, std::string> env;
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  Sandbox sandbox;
  const std::pair<const char*, std::string*> fields[] = {
      {"KUBECONFIG", &sandbox.kubeconfig},
      {"TRELLIS_SANDBOX_APISERVER", &sandbox.api_server_url},
      {"TRELLIS_SANDBOX_CA", &sandbox.ca_file},
      {"TRELLIS_SANDBOX_NETNS", &sandbox.netns},
      {"TRELLIS_SANDBOX_KUBECTL", &sandbox.kubectl},
      {"TRELLIS_SANDBOX_GATEWAY_API_CHANNEL", &sandbox.gateway_api_channel},
  };
  for (const auto& [key, field] : fields) {
    auto it = env.find(key);
    if (it == env.end() || it->second.empty()) return make_error(path + ": " + key + " is missing");
    *field = it->second;
  }
  return sandbox;
}

int thread_count() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

}  // namespace

Result<CommandOutput> run_command(const std::vector<std::string>& argv) {
  return spawn(argv, /*capture_err=*/true);
}

Result<Sandbox> ensure_sandbox(const SandboxOptions& options) {
  static std::optional<Sandbox> cached;
  if (cached && (!options.experimental_gateway_api || cached->gateway_api_channel == "experimental")) {
    return *cached;
  }
  if (geteuid() != 0) {
    return make_error("the sandbox needs root (network namespaces); run the integration tests as root");
  }
  auto dir = state_dir();
  if (!dir.ok()) return dir.error();
  std::vector<std::string> up = {sandbox_home() + "/up", "--quiet"};
  if (options.experimental_gateway_api) up.push_back("--experimental");
  // Progress (a first build takes many minutes) goes straight to our stderr.
  auto ran = spawn(up, /*capture_err=*/false);
  if (!ran.ok()) return ran.error();
  if (ran->exit_code != 0) {
    return make_error(up[0] + " failed with exit status " + std::to_string(ran->exit_code) +
                      " (its errors are above)");
  }
  auto sandbox = read_env_file(*dir + "/env");
  if (!sandbox.ok()) return sandbox.error();
  cached = *sandbox;
  return sandbox;
}

Status enter_sandbox_network(const Sandbox& sandbox) {
  std::string path = "/run/netns/" + sandbox.netns;
  struct stat target {}, current {};
  if (stat(path.c_str(), &target) != 0) {
    return make_error("enter_sandbox_network: " + path + ": " + errno_text(errno) +
                      " (is the sandbox up?)");
  }
  if (stat("/proc/self/ns/net", &current) == 0 && current.st_dev == target.st_dev &&
      current.st_ino == target.st_ino) {
    return ok_status();
  }
  int threads = thread_count();
  if (threads != 1) {
    return make_error("enter_sandbox_network: the process has " + std::to_string(threads) +
                      " threads; call it before creating any");
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("enter_sandbox_network: " + path + ": " + errno_text(errno));
  int rc = setns(fd, CLONE_NEWNET);
  int err = errno;
  close(fd);
  if (rc != 0) return make_error("enter_sandbox_network: setns " + path + ": " + errno_text(err));
  return ok_status();
}

Result<std::string> run_kubectl(const Sandbox& sandbox, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip", "netns", "exec", sandbox.netns, sandbox.kubectl,
                                   "--kubeconfig", sandbox.kubeconfig};
  argv.insert(argv.end(), args.begin(), args.end());
  auto ran = run_command(argv);
  if (!ran.ok()) return ran.error();
  if (ran->exit_code != 0) {
    return make_error("kubectl exited with status " + std::to_string(ran->exit_code) + ": " +
                      last_lines(ran->err, 5));
  }
  return std::move(ran->out);
}

}  // namespace trellis::integration
