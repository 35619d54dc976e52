#include "mesh-controller/app/controller.h"

#include <csignal>

#include "common/log/log.h"
#include "common/metrics/exposition.h"

namespace trellis::controller::app {
namespace {

// After SIGTERM the process exits at the latest after this, even when the
// Lease cannot be released (the API server is unreachable).
constexpr std::chrono::milliseconds kShutdownDeadline{10000};

}  // namespace

Controller::Controller(const ControllerConfig& config) : config_(config) {}

Controller::~Controller() {
  // Whatever calls into the client goes before it, the client before the loop.
  signals_.reset();
  elector_.reset();
  if (reconciler_) reconciler_->attach(nullptr);
  server_.reset();
  reconciler_.reset();
  admin_.reset();
  shutdown_deadline_.reset();
  client_.reset();
}

Result<std::unique_ptr<Controller>> Controller::start(const ControllerConfig& config) {
  std::unique_ptr<Controller> c(new Controller(config));
  RETURN_IF_ERROR(c->init());
  return c;
}

Status Controller::init() {
  ASSIGN_OR_RETURN(loop_, event::EventLoop::create());
  ASSIGN_OR_RETURN(kube::ClientConfig client_config,
                   kube::load_client_config(config_.kubeconfig, config::process_environment()));
  kube::ClientOptions client_options;
  ASSIGN_OR_RETURN(client_options.metrics, kube::Metrics::create(registry_));
  ASSIGN_OR_RETURN(client_, kube::Client::from_config(*loop_, client_config, client_options));
  ASSIGN_OR_RETURN(auto leader, registry_.gauge("trellis_controller_leader",
                                                "1 while this replica holds the Lease and writes "
                                                "route status."));
  ASSIGN_OR_RETURN(leader_, leader.with_labels({}));

  resolve::Config resolve_config;
  resolve_config.trust_domain = config_.trust_domain;
  ASSIGN_OR_RETURN(reconciler_, Reconciler::create(*client_, resolve_config, registry_));

  stream::ServerOptions stream_options;
  stream_options.policy.insecure_namespace_from_query = config_.insecure_namespace_from_query;
  stream_options.policy.trust_domain = config_.trust_domain;
  ASSIGN_OR_RETURN(server_, stream::Server::create(*loop_, stream_options, registry_, *reconciler_));
  reconciler_->attach(server_.get());
  net::ListenerOptions listener_options;
  listener_options.reuse_port = false;  // a second controller on the same port is a mistake
  // Streams carry heartbeats: a connection silent for three of them is dead.
  listener_options.connection.idle_timeout = 3 * stream_options.heartbeat_interval;
  // The server stops writing above its high water and resumes on the
  // connection's drained event, which needs the same high-water mark.
  listener_options.connection.high_water = stream_options.high_water;
  listener_options.connection.low_water = stream_options.high_water / 4;
  RETURN_IF_ERROR(server_->listen(config_.listen, listener_options));

  ASSIGN_OR_RETURN(auto admin_address, net::Address::from_ip("0.0.0.0", config_.admin_port));
  ASSIGN_OR_RETURN(admin_, admin::Server::listen(*loop_, admin_address));
  register_admin_routes();

  kube::LeaderElectionConfig election;
  election.lease_namespace = config_.leader_election_namespace.empty()
                                 ? client_config.namespace_
                                 : config_.leader_election_namespace;
  election.lease_name = config_.lease_name;
  election.identity = config_.identity;
  election.lease_duration = std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration);
  election.renew_deadline = config_.renew_deadline;
  election.retry_period = config_.retry_period;
  kube::LeaderElector::Callbacks callbacks;
  callbacks.on_started_leading = [this] {
    leader_.set(1);
    log::info("leading: this replica writes route status", {{"identity", config_.identity}});
    reconciler_->set_leading(true);
  };
  callbacks.on_stopped_leading = [this] {
    leader_.set(0);
    log::info("no longer leading", {{"identity", config_.identity}});
    reconciler_->set_leading(false);
  };
  callbacks.on_new_leader = [](const std::string& holder) {
    log::info("leader observed", {{"holder", holder}});
  };
  ASSIGN_OR_RETURN(elector_, kube::LeaderElector::create(*client_, election, callbacks));

  shutdown_deadline_ = std::make_unique<event::Timer>(*loop_, [this] {
    log::warn("shutdown deadline passed; exiting");
    loop_->stop();
  });
  ASSIGN_OR_RETURN(signals_, event::SignalWatcher::create(*loop_, {SIGTERM, SIGINT}, [this](int signum) {
                     begin_shutdown(signum == SIGTERM ? "SIGTERM" : "SIGINT");
                   }));

  reconciler_->start();
  elector_->start();
  log::info("trellis-controller started",
            {{"listen", server_->local_address()->to_string()},
             {"admin_port", config_.admin_port},
             {"kube", client_config.source},
             {"lease", election.lease_namespace + "/" + election.lease_name},
             {"identity", config_.identity},
             {"insecure_namespace_from_query", config_.insecure_namespace_from_query}});
  return ok_status();
}

void Controller::register_admin_routes() {
  admin_->route("GET", "/metrics", [this](const admin::Request&) {
    admin::Response r = admin::Response::text(200, metrics::text_exposition(registry_));
    r.content_type = std::string(metrics::kTextContentType);
    return r;
  });
  admin_->route("GET", "/live", [](const admin::Request&) { return admin::Response::text(200, "live\n"); });
  admin_->route("GET", "/ready", [this](const admin::Request&) {
    if (shutting_down_) return admin::Response::text(503, "shutting down\n");
    std::vector<std::string> waiting = reconciler_->unsynced();
    if (!waiting.empty()) {
      std::string names;
      for (const std::string& w : waiting) names += (names.empty() ? "" : ", ") + w;
      return admin::Response::text(503, "informers not synced: " + names + "\n");
    }
    return admin::Response::text(200, "ready\n");
  });
}

void Controller::begin_shutdown(const char* why) {
  if (shutting_down_) {
    log::warn("second signal; exiting now", {{"cause", why}});
    loop_->stop();
    return;
  }
  shutting_down_ = true;
  log::info("shutting down", {{"cause", why}});
  reconciler_->set_stopping();
  shutdown_deadline_->start(kShutdownDeadline);
  server_->shutdown([this] {
    streams_closed_ = true;
    maybe_stop();
  });
  elector_->release([this](const Status& released) {
    if (!released.ok()) log::warn("lease not released", {{"error", released.error().message}});
    lease_released_ = true;
    maybe_stop();
  });
}

void Controller::maybe_stop() {
  if (!streams_closed_ || !lease_released_) return;
  reconciler_->stop();
  log::info("stopped");
  loop_->stop();
}

int Controller::run() {
  loop_->run();
  return 0;
}

}  // namespace trellis::controller::app
