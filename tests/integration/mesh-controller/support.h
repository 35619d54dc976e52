// Helpers for trellis-controller's integration tests: child processes (the
// controller, the proxy), free ports, a blocking HTTP/1.0 GET for admin
// endpoints, Prometheus text lookups, and the Gateway API conformance
// module's files.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace trellis::integration::mesh {

// A process started by the test, its output appended to a log file. The
// destructor kills it (SIGKILL) if it still runs.
class ChildProcess {
 public:
  static Result<std::unique_ptr<ChildProcess>> spawn(const std::vector<std::string>& argv,
                                                     const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signum) const;
  // The exit code (128 + signal for a signal) once it has exited within
  // `timeout`; nullopt while it runs.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  bool running();
  // The last `lines` lines of its log, for failure messages.
  std::string log_tail(int lines = 30) const;
  std::string log() const;

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// A TCP port nobody listens on right now (bound to port 0, then released).
uint16_t free_port();

struct HttpAnswer {
  int status = 0;
  std::string body;
};
// GET http://<ip>:<port><path> with HTTP/1.0, the whole body; an error when
// nothing answers within `timeout`.
Result<HttpAnswer> http_get(const std::string& ip, uint16_t port, const std::string& path,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

// The value of one series in a Prometheus text exposition, e.g.
// metric(text, "trellis_controller_leader") or
// metric(text, "trellis_kube_relists_total{resource=\"pods\"}"); nullopt when absent.
std::optional<double> metric(const std::string& exposition, const std::string& series);

// The directory of sigs.k8s.io/gateway-api/conformance at the sandbox's
// pinned Gateway API version, from the Go module cache the sandbox uses
// (downloaded into it if missing). It holds mesh/manifests.yaml and
// tests/mesh/*.yaml.
Result<std::string> conformance_module_dir();

// Reads a whole file.
Result<std::string> read_text(const std::string& path);

}  // namespace trellis::integration::mesh
