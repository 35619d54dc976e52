// The trellis-controller process: the Kubernetes client, the reconciler
// (informers → resolver → tables and statuses, reconciler.h), the route-table
// stream server, the admin server and leader election, on one loop.
//
// Two replicas may run at once: both serve sidecars, the Lease holder writes
// route status. SIGTERM/SIGINT: /ready turns 503, the status writer stops,
// every stream ends and its connection gets GOAWAY (the sidecars reconnect,
// to the other replica), the Lease is released so that the other replica
// takes over at once, then the process exits.
//
// Metrics besides the stream server's, the reconciler's and common/kube's:
// trellis_controller_leader (1 while this replica holds the Lease).
//
// Threading: one loop thread; everything here lives on it.
#pragma once

#include <memory>

#include "common/admin/server.h"
#include "common/event/event_loop.h"
#include "common/event/signal_watcher.h"
#include "common/event/timer.h"
#include "common/kube/client.h"
#include "common/kube/leader_election.h"
#include "common/metrics/metrics.h"
#include "mesh-controller/app/controller_config.h"
#include "mesh-controller/app/reconciler.h"
#include "mesh-controller/stream/server.h"

namespace trellis::controller::app {

class Controller {
 public:
  // Binds both ports, then starts the informers and leader election. Errors:
  // the kube config's, a port's bind error, ...
  static Result<std::unique_ptr<Controller>> start(const ControllerConfig& config);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Runs the loop until the shutdown finishes; returns the exit code.
  int run();

 private:
  explicit Controller(const ControllerConfig& config);
  Status init();
  void register_admin_routes();
  void begin_shutdown(const char* why);
  void maybe_stop();

  ControllerConfig config_;
  metrics::Registry registry_;
  std::unique_ptr<event::EventLoop> loop_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<stream::Server> server_;
  std::unique_ptr<admin::Server> admin_;
  std::unique_ptr<kube::LeaderElector> elector_;
  std::unique_ptr<event::SignalWatcher> signals_;
  std::unique_ptr<event::Timer> shutdown_deadline_;
  metrics::Gauge leader_;
  bool shutting_down_ = false;
  bool streams_closed_ = false;
  bool lease_released_ = false;
};

}  // namespace trellis::controller::app
