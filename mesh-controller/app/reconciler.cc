#include "mesh-controller/app/reconciler.h"

#include "common/log/log.h"

namespace trellis::controller::app {

Reconciler::Reconciler(kube::Client& client, std::unique_ptr<resolve::Resolver> resolver)
    : client_(client),
      resolver_(std::move(resolver)),
      flush_timer_(client.loop(), [this] { flush(); }) {}

Reconciler::~Reconciler() {
  // The informers call into the resolver and the writer: they go first.
  namespaces_.reset();
  services_.reset();
  endpoint_slices_.reset();
  pods_.reset();
  http_routes_.reset();
  grpc_routes_.reset();
}

Result<std::unique_ptr<Reconciler>> Reconciler::create(kube::Client& client,
                                                       const resolve::Config& config,
                                                       metrics::Registry& registry,
                                                       StatusWriterOptions status_options,
                                                       kube::InformerOptions informer_options) {
  ASSIGN_OR_RETURN(auto resolver, resolve::Resolver::create(config));
  std::unique_ptr<Reconciler> r(new Reconciler(client, std::move(resolver)));
  ASSIGN_OR_RETURN(r->status_writer_, StatusWriter::create(client, *r->resolver_, registry,
                                                           std::move(status_options)));
  ASSIGN_OR_RETURN(auto resolution,
                   registry.histogram("trellis_controller_resolution_seconds",
                                      "Time to compute one client namespace's route table.", {},
                                      metrics::controller_duration_buckets()));
  ASSIGN_OR_RETURN(r->resolution_, resolution.with_labels({}));
  ASSIGN_OR_RETURN(auto synced, registry.gauge("trellis_controller_synced",
                                               "1 once every informer has synced."));
  ASSIGN_OR_RETURN(r->synced_gauge_, synced.with_labels({}));

  resolve::Resolver& rs = *r->resolver_;
  r->namespaces_ = r->make_informer<kube::Namespace>(
      kube::resources::kNamespaces, kube::decode_namespace,
      [&rs](const kube::Namespace& o) { return rs.upsert_namespace(o); },
      [&rs](const kube::Namespace& o) { return rs.remove_namespace(o.metadata.name); },
      informer_options);
  r->services_ = r->make_informer<kube::Service>(
      kube::resources::kServices, kube::decode_service,
      [&rs](const kube::Service& o) { return rs.upsert_service(o); },
      [&rs](const kube::Service& o) {
        return rs.remove_service(o.metadata.namespace_, o.metadata.name);
      },
      informer_options);
  r->endpoint_slices_ = r->make_informer<kube::EndpointSlice>(
      kube::resources::kEndpointSlices, kube::decode_endpoint_slice,
      [&rs](const kube::EndpointSlice& o) { return rs.upsert_endpoint_slice(o); },
      [&rs](const kube::EndpointSlice& o) {
        return rs.remove_endpoint_slice(o.metadata.namespace_, o.metadata.name);
      },
      informer_options);
  r->pods_ = r->make_informer<kube::Pod>(
      kube::resources::kPods, kube::decode_pod,
      [&rs](const kube::Pod& o) { return rs.upsert_pod(o); },
      [&rs](const kube::Pod& o) { return rs.remove_pod(o.metadata.namespace_, o.metadata.name); },
      informer_options);
  auto upsert_route = [&rs](const gateway::Route& o) { return rs.upsert_route(o); };
  auto remove_route = [&rs](const gateway::Route& o) {
    return rs.remove_route(resolve::RouteKey::of(o));
  };
  r->http_routes_ = r->make_informer<gateway::Route>(kube::resources::kHttpRoutes,
                                                     gateway::decode_http_route, upsert_route,
                                                     remove_route, informer_options);
  r->grpc_routes_ = r->make_informer<gateway::Route>(kube::resources::kGrpcRoutes,
                                                     gateway::decode_grpc_route, upsert_route,
                                                     remove_route, informer_options);
  return r;
}

template <typename T>
Reconciler::InformerPtr<T> Reconciler::make_informer(
    const kube::Resource& resource, typename kube::Informer<T>::Decode decode,
    std::function<resolve::Changes(const T&)> upsert,
    std::function<resolve::Changes(const T&)> remove, const kube::InformerOptions& options) {
  using Ptr = typename kube::Informer<T>::Ptr;
  typename kube::Informer<T>::Handlers handlers;
  handlers.on_add = [this, upsert](const Ptr& o) { note(upsert(*o)); };
  handlers.on_update = [this, upsert](const Ptr&, const Ptr& o) { note(upsert(*o)); };
  handlers.on_delete = [this, remove](const Ptr& o) { note(remove(*o)); };
  handlers.on_synced = [this] { on_informer_synced(); };
  return std::make_unique<kube::Informer<T>>(client_, resource, std::move(decode),
                                             std::move(handlers), options);
}

void Reconciler::attach(stream::Server* server) { server_ = server; }

void Reconciler::start() {
  namespaces_->start();
  services_->start();
  endpoint_slices_->start();
  pods_->start();
  http_routes_->start();
  grpc_routes_->start();
}

void Reconciler::stop() {
  namespaces_->stop();
  services_->stop();
  endpoint_slices_->stop();
  pods_->stop();
  http_routes_->stop();
  grpc_routes_->stop();
}

std::vector<std::string> Reconciler::unsynced() const {
  std::vector<std::string> out;
  if (!namespaces_->has_synced()) out.push_back("namespaces");
  if (!services_->has_synced()) out.push_back("services");
  if (!endpoint_slices_->has_synced()) out.push_back("endpointslices");
  if (!pods_->has_synced()) out.push_back("pods");
  if (!http_routes_->has_synced()) out.push_back("httproutes");
  if (!grpc_routes_->has_synced()) out.push_back("grpcroutes");
  return out;
}

void Reconciler::on_informer_synced() {
  if (synced_ || !unsynced().empty()) return;
  synced_ = true;
  synced_gauge_.set(1);
  // What was noted so far is in the world the first tables see.
  pending_ = {};
  pending_since_.reset();
  flush_timer_.stop();
  std::vector<std::string> watched;
  if (server_ != nullptr) watched = server_->watched_namespaces();
  log::info("informers synced; serving route tables",
            {{"routes", http_routes_->size() + grpc_routes_->size()},
             {"services", services_->size()},
             {"waiting_namespaces", watched.size()}});
  for (const std::string& ns : watched) publish(ns, std::nullopt);
  update_status_writer();
}

void Reconciler::note(resolve::Changes changes) {
  if (changes.empty()) return;
  if (!pending_since_) pending_since_ = stream::Clock::now();
  pending_.merge(changes);
  // Every change of this loop turn goes out together.
  if (synced_ && !flush_timer_.active()) flush_timer_.start(std::chrono::milliseconds(0));
}

void Reconciler::flush() {
  resolve::Changes changes = std::move(pending_);
  std::optional<stream::Clock::time_point> changed_at = pending_since_;
  pending_ = {};
  pending_since_.reset();
  if (server_ != nullptr) {
    for (const std::string& ns : server_->watched_namespaces()) {
      if (changes.touches(ns)) publish(ns, changed_at);
    }
  }
  if (status_writer_->active()) {
    for (const resolve::RouteKey& key : changes.routes) status_writer_->enqueue(key);
  }
}

void Reconciler::publish(const std::string& ns,
                         std::optional<stream::Clock::time_point> changed_at) {
  if (server_ == nullptr) return;
  auto started = stream::Clock::now();
  std::shared_ptr<const resolve::Table> table = resolver_->compute(ns);
  resolution_.observe(std::chrono::duration<double>(stream::Clock::now() - started).count());
  server_->publish(ns, std::move(table), changed_at);
}

void Reconciler::set_leading(bool leading) {
  leading_ = leading;
  update_status_writer();
}

void Reconciler::set_stopping() {
  stopping_ = true;
  update_status_writer();
}

void Reconciler::update_status_writer() {
  bool active = leading_ && synced_ && !stopping_;
  if (active == status_writer_->active()) return;
  status_writer_->set_active(active);
  if (!active) return;
  // A new leader owes every route its status.
  for (const auto& route : http_routes_->list()) status_writer_->enqueue(resolve::RouteKey::of(*route));
  for (const auto& route : grpc_routes_->list()) status_writer_->enqueue(resolve::RouteKey::of(*route));
}

void Reconciler::on_namespace_watched(const std::string& ns) {
  if (synced_) publish(ns, std::nullopt);
}

void Reconciler::on_namespace_unwatched(const std::string&) {}

}  // namespace trellis::controller::app
