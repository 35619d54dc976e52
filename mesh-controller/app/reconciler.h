// The controller's core loop: informers (Namespaces, Services,
// EndpointSlices, Pods, HTTPRoutes, GRPCRoutes) feed the resolver; the
// changes of one loop turn are coalesced, and only the client namespaces that
// have streams and were touched are recomputed and published to their
// sidecars; the leader's status writer gets the touched routes.
//
//   event → Resolver::upsert_*/remove_* → Changes ─┐ (merged until the next turn)
//                                                  ├→ compute(ns) → stream::Server::publish
//                                                  └→ StatusWriter::enqueue (leader only)
//
// No table is published before every informer has synced: a table computed
// from a partial world would lack routes, endpoints or identities (a pod not
// yet seen is never dialled in plaintext, so its address would be missing).
// Streams opened before then wait for their first table.
//
// A malformed object never reaches the resolver (the informer skips and
// counts it, keeping its last good version), and a route whose spec is
// refused stays in the resolver with Accepted=False: neither empties a table.
//
// Metrics: trellis_controller_resolution_seconds (computing one namespace's
// table), trellis_controller_synced (1 once every informer has synced), the
// status writer's, and common/kube's per informer (watch events, relists).
//
// Threading: the client's loop thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/kube/client.h"
#include "common/kube/informer.h"
#include "common/metrics/metrics.h"
#include "mesh-controller/app/status_writer.h"
#include "mesh-controller/gateway/route.h"
#include "mesh-controller/resolve/resolver.h"
#include "mesh-controller/stream/server.h"

namespace trellis::controller::app {

class Reconciler final : public stream::Server::Observer {
 public:
  // Registers metrics in `registry`. Errors: an invalid trust domain, the
  // status writer's options.
  static Result<std::unique_ptr<Reconciler>> create(kube::Client& client,
                                                    const resolve::Config& config,
                                                    metrics::Registry& registry,
                                                    StatusWriterOptions status_options = {},
                                                    kube::InformerOptions informer_options = {});
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Where tables go. The server is created with this reconciler as its
  // observer, so it is attached after both exist; it must outlive the
  // reconciler or be detached (nullptr) first.
  void attach(stream::Server* server);

  // Lists and watches; after stop(), lists again and delivers the difference.
  void start();
  void stop();
  bool synced() const { return synced_; }
  // The informers that have not synced yet ("pods", ...), for /ready.
  std::vector<std::string> unsynced() const;

  // Status is written while leading and synced and not stopping.
  void set_leading(bool leading);
  void set_stopping();
  const StatusWriter& status_writer() const { return *status_writer_; }
  const resolve::Resolver& resolver() const { return *resolver_; }

  // stream::Server::Observer
  void on_namespace_watched(const std::string& ns) override;
  void on_namespace_unwatched(const std::string& ns) override;

 private:
  template <typename T>
  using InformerPtr = std::unique_ptr<kube::Informer<T>>;

  Reconciler(kube::Client& client, std::unique_ptr<resolve::Resolver> resolver);
  template <typename T>
  InformerPtr<T> make_informer(const kube::Resource& resource,
                               typename kube::Informer<T>::Decode decode,
                               std::function<resolve::Changes(const T&)> upsert,
                               std::function<resolve::Changes(const T&)> remove,
                               const kube::InformerOptions& options);
  void on_informer_synced();
  void note(resolve::Changes changes);
  void flush();
  void publish(const std::string& ns, std::optional<stream::Clock::time_point> changed_at);
  void update_status_writer();

  kube::Client& client_;
  std::unique_ptr<resolve::Resolver> resolver_;
  std::unique_ptr<StatusWriter> status_writer_;
  stream::Server* server_ = nullptr;
  InformerPtr<kube::Namespace> namespaces_;
  InformerPtr<kube::Service> services_;
  InformerPtr<kube::EndpointSlice> endpoint_slices_;
  InformerPtr<kube::Pod> pods_;
  InformerPtr<gateway::Route> http_routes_;
  InformerPtr<gateway::Route> grpc_routes_;
  event::Timer flush_timer_;
  metrics::Histogram resolution_;
  metrics::Gauge synced_gauge_;
  resolve::Changes pending_;
  std::optional<stream::Clock::time_point> pending_since_;
  bool synced_ = false;
  bool leading_ = false;
  bool stopping_ = false;
};

}  // namespace trellis::controller::app
