#include "proxy/init/command.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace trellis::proxy::init {
namespace {

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

Result<CommandOutput> run_command(const std::vector<std::string>& argv, const std::string& input) {
  if (argv.empty()) return make_error("run_command: empty argv");
  int in[2] = {-1, -1};
  int err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    std::string e = std::strerror(errno);
    close_fd(in[0]);
    close_fd(in[1]);
    return make_error("pipe: " + e);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    std::string e = std::strerror(errno);
    for (int* fd : {&in[0], &in[1], &err[0], &err[1]}) close_fd(*fd);
    return make_error("fork: " + e);
  }
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(err[1], STDERR_FILENO);
    execvp(args[0], args.data());
    dprintf(STDERR_FILENO, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close_fd(in[0]);
  close_fd(err[1]);

  // Feed stdin and drain stderr together so neither pipe can fill and block.
  size_t written = 0;
  CommandOutput out;
  if (input.empty()) close_fd(in[1]);
  while (err[0] >= 0) {
    pollfd fds[2] = {{err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    int n = poll(fds, in[1] >= 0 ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (in[1] >= 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(in[1], input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 || written == input.size()) close_fd(in[1]);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      ssize_t r = ::read(err[0], buf, sizeof buf);
      if (r > 0) {
        out.stderr_text.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        close_fd(err[0]);
      }
    }
  }
  close_fd(in[1]);
  close_fd(err[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (out.exit_code == 127 && out.stderr_text.rfind("cannot run ", 0) == 0) {
    while (!out.stderr_text.empty() && out.stderr_text.back() == '\n') out.stderr_text.pop_back();
    return make_error(out.stderr_text);
  }
  return out;
}

}  // namespace trellis::proxy::init
