#include "tests/integration/mesh-controller/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/support/sandbox.h"

namespace trellis::integration::mesh {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const std::vector<std::string>& argv,
                                                          const std::string& log_path) {
  if (argv.empty()) return make_error("spawn: empty argv");
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return make_error(log_path + ": " + errno_text());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    ::close(log);
    return make_error("fork: " + errno_text());
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  ::close(log);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, log_path));
}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    (void)wait_for(std::chrono::milliseconds(5000));
  }
}

void ChildProcess::signal(int signum) const {
  if (!exit_code_) ::kill(pid_, signum);
}

std::optional<int> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (r < 0 && errno != EINTR) {
      exit_code_ = -1;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

bool ChildProcess::running() { return !wait_for(std::chrono::milliseconds(0)).has_value(); }

std::string ChildProcess::log() const {
  auto text = read_text(log_path_);
  return text.ok() ? *text : text.error().message;
}

std::string ChildProcess::log_tail(int lines) const {
  std::string text = log();
  size_t start = text.size();
  for (int i = 0; i <= lines && start > 0; ++i) {
    size_t nl = text.rfind('\n', start - 1);
    if (nl == std::string::npos) return text;
    start = nl;
  }
  return text.substr(start);
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

Result<HttpAnswer> http_get(const std::string& ip, uint16_t port, const std::string& path,
                            std::chrono::milliseconds timeout) {
  std::string where = "GET http://" + ip + ":" + std::to_string(port) + path;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(where + ": socket: " + errno_text());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    ::close(fd);
    return make_error(where + ": not an IPv4 address");
  }
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string e = errno_text();
    ::close(fd);
    return make_error(where + ": " + e);
  }
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    std::string e = errno_text();
    ::close(fd);
    return make_error(where + ": send: " + e);
  }
  std::string response;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string e = errno_text();
      ::close(fd);
      return make_error(where + ": recv: " + e);
    }
    break;
  }
  ::close(fd);
  size_t head_end = response.find("\r\n\r\n");
  if (response.compare(0, 9, "HTTP/1.1 ") != 0 && response.compare(0, 9, "HTTP/1.0 ") != 0) {
    return make_error(where + ": not an HTTP response");
  }
  HttpAnswer answer;
  answer.status = std::atoi(response.c_str() + 9);
  if (head_end != std::string::npos) answer.body = response.substr(head_end + 4);
  return answer;
}

std::optional<double> metric(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return std::nullopt;
}

Result<std::string> conformance_module_dir() {
  // The sandbox's own Go settings (GOMODCACHE under ~/.cache/trellis) and
  // pinned version; cached after the first download.
  std::string script =
      "source \"$0/lib/common.sh\" && sandbox_go mod download -json "
      "\"sigs.k8s.io/gateway-api/conformance@$GATEWAY_API_VERSION\"";
  auto out = run_command({"bash", "-c", script, std::string(TRELLIS_SOURCE_ROOT) + "/sandbox"});
  if (!out.ok()) return out.error();
  if (out->exit_code != 0) {
    return make_error("go mod download sigs.k8s.io/gateway-api/conformance failed: " + out->err +
                      out->out);
  }
  const std::string key = "\"Dir\": \"";
  size_t at = out->out.find(key);
  if (at == std::string::npos) return make_error("go mod download: no Dir in " + out->out);
  size_t end = out->out.find('"', at + key.size());
  return out->out.substr(at + key.size(), end - at - key.size());
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(path + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace trellis::integration::mesh
