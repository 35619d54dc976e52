#include "proxy/app/sidecar.h"

#include <csignal>

#include "common/json/json.h"
#include "common/log/log.h"
#include "common/metrics/exposition.h"

namespace trellis::proxy::app {

Sidecar::Sidecar(const ProxyConfig& config) : config_(config) {}

Sidecar::~Sidecar() {
  // Workers first: their connections reference what the main thread built.
  watcher_.reset();
  controller_.reset();
  if (workers_) (void)workers_->shutdown();
  workers_.reset();
  main_worker_.reset();
  admin_.reset();
  signals_.reset();
  drain_poll_.reset();
}

Result<std::unique_ptr<Sidecar>> Sidecar::start(const ProxyConfig& config) {
  std::unique_ptr<Sidecar> s(new Sidecar(config));
  RETURN_IF_ERROR(s->init());
  return s;
}

Status Sidecar::init() {
  ASSIGN_OR_RETURN(loop_, event::EventLoop::create());
  ASSIGN_OR_RETURN(env_, WorkerEnvironment::create(config_, registry_));
  ASSIGN_OR_RETURN(budgets_, exchange::BudgetRegistry::create(env_->exchange.retry.budget,
                                                              [] { return std::chrono::steady_clock::now(); }));
  ASSIGN_OR_RETURN(version_info_, registry_.info("trellis_route_table_version_info",
                                                 "The active route table's version (value 1).",
                                                 {"version", "namespace"}));

  ASSIGN_OR_RETURN(auto admin_address, net::Address::from_ip("0.0.0.0", config_.admin_port));
  ASSIGN_OR_RETURN(admin_, admin::Server::listen(*loop_, admin_address));
  register_admin_routes();

  workers_by_index_.assign(static_cast<size_t>(config_.workers), nullptr);
  if (config_.workers == 1) {
    ASSIGN_OR_RETURN(main_worker_, Worker::create(*loop_, env_, 0));
    workers_by_index_[0] = main_worker_.get();
  } else {
    auto env = env_;
    ASSIGN_OR_RETURN(workers_, event::Workers::start(
                                   static_cast<size_t>(config_.workers),
                                   [this, env](event::EventLoop& loop,
                                               size_t index) -> Result<std::unique_ptr<event::WorkerState>> {
                                     ASSIGN_OR_RETURN(auto worker, Worker::create(loop, env, index));
                                     workers_by_index_[index] = worker.get();
                                     return std::unique_ptr<event::WorkerState>(std::move(worker));
                                   }));
  }

  auto install_table = [this](LoadedTable t) { install(std::move(t)); };
  if (config_.controller.port != 0) {
    ControllerStreamOptions stream;
    stream.controller = config_.controller;
    stream.ns = config_.namespace_;
    stream.connect_timeout = config_.connect_timeout;
    ASSIGN_OR_RETURN(controller_, ControllerStream::start(*loop_, stream, registry_, install_table));
  } else {
    ASSIGN_OR_RETURN(watcher_, RoutesFileWatcher::start(*loop_, config_.routes_file, registry_,
                                                        install_table));
  }
  ASSIGN_OR_RETURN(signals_, event::SignalWatcher::create(*loop_, {SIGTERM, SIGINT}, [this](int signum) {
                     begin_drain(signum == SIGTERM ? "SIGTERM" : "SIGINT");
                   }));
  drain_poll_ = std::make_unique<event::Timer>(*loop_, [this] { check_drained(); });
  log::info("trellis-proxy started", {{"outbound_port", config_.outbound_port},
                                      {"inbound_port", config_.inbound_port},
                                      {"admin_port", config_.admin_port},
                                      {"workers", config_.workers}});
  return ok_status();
}

void Sidecar::install(LoadedTable table) {
  auto installed = exchange::InstalledTable::create(table.compiled, env_->exchange.retry, *budgets_);
  if (!installed.ok()) {
    log::error("route table rejected; keeping the previous one", {{"error", installed.error().message}});
    return;
  }
  std::shared_ptr<const exchange::InstalledTable> shared = std::move(*installed);
  for_each_worker([shared](Worker& w) { w.install(shared); });
  current_ = table.routes;
  (void)version_info_.set({current_->version, current_->ns});
}

void Sidecar::register_admin_routes() {
  admin_->route("GET", "/metrics", [this](const admin::Request&) {
    admin::Response r = admin::Response::text(200, metrics::text_exposition(registry_));
    r.content_type = std::string(metrics::kTextContentType);
    return r;
  });
  admin_->route("GET", "/live", [](const admin::Request&) { return admin::Response::text(200, "live\n"); });
  admin_->route("GET", "/ready", [this](const admin::Request&) {
    if (draining_) return admin::Response::text(503, "draining\n");
    if (!current_) return admin::Response::text(503, "no route table loaded\n");
    return admin::Response::text(200, "ready\n");
  });
  admin_->route("GET", "/config", [this](const admin::Request&) {
    if (!current_) return admin::Response::json(503, "{\"error\":\"no route table loaded\"}");
    std::string body = "{\"version\":" + json::quote(current_->version) +
                       ",\"namespace\":" + json::quote(current_->ns) +
                       ",\"table\":" + routes::serialize(*current_) + "}";
    return admin::Response::json(200, std::move(body));
  });
  admin_->route("POST", "/drain", [this](const admin::Request&) {
    begin_drain("POST /drain");
    return admin::Response::json(202, "{\"draining\":true}");
  });
}

void Sidecar::begin_drain(const char* why) {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ = std::chrono::steady_clock::now() + config_.drain_timeout;
  log::info("draining", {{"cause", why}, {"timeout_ms", static_cast<int64_t>(config_.drain_timeout.count())}});
  for_each_worker([](Worker& w) { w.drain(); });
  drain_poll_->start(std::chrono::milliseconds(50), std::chrono::milliseconds(50));
}

void Sidecar::check_drained() {
  size_t open = 0;
  for (Worker* w : workers_by_index_) open += w->open_connections();
  bool expired = std::chrono::steady_clock::now() >= drain_deadline_;
  if (open > 0 && !expired) {
    for_each_worker([](Worker& w) { w.refresh_open_count(); });
    return;
  }
  if (open > 0) {
    log::warn("drain deadline passed; closing what is left", {{"open_connections", open}});
    for_each_worker([](Worker& w) { w.close_all(); });
  } else {
    log::info("drained");
  }
  drain_poll_->stop();
  loop_->defer([this] { loop_->stop(); });  // after the worker tasks deferred above
}

void Sidecar::for_each_worker(const std::function<void(Worker&)>& task) {
  if (main_worker_) {
    loop_->defer([this, task] { task(*main_worker_); });
    return;
  }
  workers_->post_all([task](event::EventLoop&, event::WorkerState* state) { task(*static_cast<Worker*>(state)); });
}

int Sidecar::run() {
  loop_->run();
  return 0;
}

}  // namespace trellis::proxy::app
