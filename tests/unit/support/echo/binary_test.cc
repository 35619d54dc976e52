// The trellis-echo binary as integration tests and pods run it: a server
// child process that reports its ports on its first stdout line, and the
// client's stdout, stderr and exit status. The binary's path comes from the
// TRELLIS_ECHO environment variable (set by meson).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/unit/support/echo/echo_parse.h"
#include "tests/unit/support/echo/echo_test_util.h"

extern char** environ;

using namespace trellis::support::echo::testing;

namespace {

std::string echo_binary() {
  const char* path = std::getenv("TRELLIS_ECHO");
  REQUIRE_MESSAGE(path != nullptr, "TRELLIS_ECHO must name the trellis-echo binary (meson sets it)");
  return path;
}

class Child {
 public:
  // Starts `args` (argv[0] is the binary) with the environment plus `extra_env`.
  Child(const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) {
    int out[2], err[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(pipe2(err, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    std::vector<std::string> env_strings = extra_env;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    std::vector<char*> argv, envp;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    REQUIRE_MESSAGE(rc == 0, "posix_spawn " << args[0] << " failed");
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_fd_);
    ::close(err_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads stdout until its first line is complete.
  std::string first_line() {
    while (out_.find('\n') == std::string::npos) {
      REQUIRE_MESSAGE(read_some(true), "the child closed stdout before its first line; stderr: " << err_);
    }
    return out_.substr(0, out_.find('\n'));
  }

  void signal(int signum) { REQUIRE(::kill(pid_, signum) == 0); }

  // Drains stdout and stderr to EOF and reaps the child; its exit status.
  int wait() {
    while (read_some(false)) {
    }
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    REQUIRE_MESSAGE(WIFEXITED(status), "the child died of signal " << WTERMSIG(status));
    return WEXITSTATUS(status);
  }

  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  // One poll over both pipes (20 s deadline); false once both are at EOF
  // (or, with stdout_only, once stdout is).
  bool read_some(bool stdout_only) {
    pollfd fds[2] = {{out_eof_ ? -1 : out_fd_, POLLIN, 0}, {err_eof_ ? -1 : err_fd_, POLLIN, 0}};
    if ((out_eof_ && (stdout_only || err_eof_))) return false;
    int n = ::poll(fds, 2, 20000);
    REQUIRE_MESSAGE(n > 0, "the child produced no output for 20 s");
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      std::string& sink = i == 0 ? out_ : err_;
      if (got > 0) {
        sink.append(buf, static_cast<size_t>(got));
      } else {
        (i == 0 ? out_eof_ : err_eof_) = true;
      }
    }
    return !(out_eof_ && (stdout_only || err_eof_));
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool out_eof_ = false;
  bool err_eof_ = false;
  std::string out_;
  std::string err_;
};

// "listening http=127.0.0.1:P grpc=... tcp=..." -> the port after "<kind>=".
uint16_t port_of(const std::string& line, const std::string& kind) {
  size_t at = line.find(" " + kind + "=");
  REQUIRE(at != std::string::npos);
  size_t colon = line.find(':', at);
  size_t end = line.find_first_of(" ,", colon);
  return static_cast<uint16_t>(std::stoi(line.substr(colon + 1, end - colon - 1)));
}

}  // namespace

TEST_CASE("binary: the server reports its ports, serves the client, and exits on SIGTERM") {
  std::string binary = echo_binary();
  Child server({binary, "server", "--port", "0", "--grpc=0", "--tcp", "0", "--bind", "127.0.0.1", "--version",
                "v2"},
               {"POD_NAME=echo-v2-6d5f7b9c8-x2x7q"});
  std::string line = server.first_line();
  CHECK(line.rfind("listening http=127.0.0.1:", 0) == 0);
  CHECK(line.find(" grpc=127.0.0.1:") != std::string::npos);
  CHECK(line.find(" tcp=127.0.0.1:") != std::string::npos);
  uint16_t http = port_of(line, "http");
  uint16_t grpc = port_of(line, "grpc");

  // Exactly the argv the conformance suite builds.
  Child batch({binary, "client", "http://127.0.0.1:" + std::to_string(http) + "/v2", "--method=GET", "-H",
               "Version:two", "--count=5"});
  CHECK(batch.wait() == 0);
  CHECK(batch.err().empty());
  auto responses = parse_multiple_responses(batch.out());
  REQUIRE(responses.size() == 5);
  for (const auto& p : responses) {
    CHECK(p.code == "200");
    CHECK(p.hostname == "echo-v2-6d5f7b9c8-x2x7q");
    CHECK(backend_name(p.hostname) == "echo-v2");
    CHECK(p.version == "v2");
    CHECK(p.request_header("version") == "two");
  }

  Child grpc_client({binary, "client", "grpc://127.0.0.1:" + std::to_string(grpc), "-H", "x-test-case:set"});
  CHECK(grpc_client.wait() == 0);
  ParsedResponse g = parse_response(grpc_client.out());
  CHECK(g.code == "200");
  CHECK(g.request_header("x-test-case") == "set");

  server.signal(SIGTERM);
  CHECK(server.wait() == 0);
  CHECK(server.err().find("\"msg\":\"echo server started\"") != std::string::npos);
}

TEST_CASE("binary: request errors exit 1 with stdout empty; usage errors exit 2") {
  std::string binary = echo_binary();
  uint16_t closed_port;
  {
    TestServer gone;
    closed_port = gone.http_port;
  }
  Child refused({binary, "client", "http://127.0.0.1:" + std::to_string(closed_port) + "/"});
  CHECK(refused.wait() == 1);
  CHECK(refused.out().empty());
  CHECK(refused.err() == "[0 error] connect to 127.0.0.1:" + std::to_string(closed_port) +
                             ": connection refused\ntrellis-echo client: 1 of 1 requests failed\n");

  Child usage({binary, "client"});
  CHECK(usage.wait() == 2);
  CHECK(usage.out().empty());
  CHECK(usage.err() == "trellis-echo client: missing URL\n(trellis-echo client --help shows the flags)\n");

  Child bad_server({binary, "server", "--port", "x"});
  CHECK(bad_server.wait() == 2);
  CHECK(bad_server.err() ==
        "trellis-echo server: --port: expected a port between 0 and 65535, got 'x'\n"
        "(trellis-echo server --help shows the flags)\n");

  Child unknown({binary, "serve"});
  CHECK(unknown.wait() == 2);
  CHECK(unknown.err().rfind("trellis-echo: unknown command 'serve'\n", 0) == 0);

  Child help({binary, "client", "--help"});
  CHECK(help.wait() == 0);
  CHECK(help.out().rfind("usage: trellis-echo client <url> [flags]\n", 0) == 0);
}

TEST_CASE("binary: a port in use makes the server exit 1 and say why") {
  std::string binary = echo_binary();
  TestServer holder;
  Child server({binary, "server", "--port", std::to_string(holder.http_port), "--grpc", "0", "--tcp", "0", "--bind",
                "127.0.0.1"});
  CHECK(server.wait() == 1);
  CHECK(server.out().empty());
  CHECK(server.err().find("http listener: bind 127.0.0.1:" + std::to_string(holder.http_port) +
                          ": address already in use") != std::string::npos);
}
