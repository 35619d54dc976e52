// The sidecar process: admin server, route-table source (--routes-file or
// --controller; both feed install() with a parsed and compiled table) and
// workers on top of one main loop, and the drain sequence (SIGTERM or POST /drain): stop
// accepting, let in-flight requests finish within --drain-timeout (HTTP/2
// peers get GOAWAY), then stop.
#pragma once

#include <functional>
#include <memory>

#include "common/admin/server.h"
#include "common/event/event_loop.h"
#include "common/event/signal_watcher.h"
#include "common/event/timer.h"
#include "common/event/workers.h"
#include "common/metrics/metrics.h"
#include "proxy/app/controller_stream.h"
#include "proxy/app/routes_file.h"
#include "proxy/app/worker.h"
#include "proxy/config/proxy_config.h"
#include "proxy/exchange/installed_table.h"

namespace trellis::proxy::app {

class Sidecar {
 public:
  // Binds every port and starts the workers; loads the routes file once, or
  // starts streaming from the controller.
  static Result<std::unique_ptr<Sidecar>> start(const ProxyConfig& config);
  ~Sidecar();

  // Runs the main loop until the drain has finished. Returns the exit code.
  int run();

 private:
  explicit Sidecar(const ProxyConfig& config);
  Status init();
  void install(LoadedTable table);
  void register_admin_routes();
  void begin_drain(const char* why);
  void check_drained();
  // Runs `task` on every worker's loop, later (never inside the caller).
  void for_each_worker(const std::function<void(Worker&)>& task);

  ProxyConfig config_;
  metrics::Registry registry_;
  std::unique_ptr<event::EventLoop> loop_;
  std::unique_ptr<admin::Server> admin_;
  std::shared_ptr<const WorkerEnvironment> env_;
  std::unique_ptr<exchange::BudgetRegistry> budgets_;
  std::vector<Worker*> workers_by_index_;  // owned by workers_ or main_worker_; main thread only
  std::unique_ptr<event::Workers> workers_;
  // --workers 1: the one worker runs on the main loop and the process has a
  // single thread, like linkerd2-proxy's runtime on one core. Besides a
  // thread, that saves an atomic per syscall: the kernel takes no reference
  // on the file of an fd a single-threaded process uses, and libc's read and
  // send skip their cancellation bookkeeping.
  std::unique_ptr<Worker> main_worker_;
  std::unique_ptr<RoutesFileWatcher> watcher_;     // --routes-file
  std::unique_ptr<ControllerStream> controller_;  // --controller
  std::unique_ptr<event::SignalWatcher> signals_;
  std::unique_ptr<event::Timer> drain_poll_;
  std::shared_ptr<const routes::RouteTable> current_;  // for /config and /ready
  metrics::InfoGauge version_info_;
  bool draining_ = false;
  std::chrono::steady_clock::time_point drain_deadline_;
};

}  // namespace trellis::proxy::app
