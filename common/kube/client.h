// The Kubernetes REST client: typed-resource addressing over a Transport, on
// one EventLoop, all calls asynchronous.
//
//   auto config = kube::load_client_config(flags.kubeconfig, config::process_environment());
//   auto client = kube::Client::from_config(loop, *config).value();
//   client->get(kube::resources::kServices, "shop", "echo", [](Result<json::Document> doc) {
//     if (!doc) { log::warn("get failed", {{"error", doc.error().message}}); return; }
//     auto svc = kube::decode_service(doc->root());
//   });
//
// Answers: the object the server returned (for DELETE, the deleted object or
// a Status), as a json::Document. Errors: "<METHOD> <path>: <why>", with
// Error::code the HTTP status (409 for a conflicting resourceVersion, 404,
// 410, ...) or 0 when no answer arrived (see errors.h), e.g.
//   "PUT /api/v1/namespaces/a/configmaps/b: Conflict (409): Operation cannot
//    be fulfilled on configmaps \"b\": the object has been modified; ..."
//
// Threading: the loop thread only. A callback never runs inside the call that
// made the request, runs once, and never after cancel(id) or after the Client
// is destroyed. A Watch must be destroyed before its Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/event_loop.h"
#include "common/json/json.h"
#include "common/kube/client_config.h"
#include "common/kube/https_transport.h"
#include "common/kube/metrics.h"
#include "common/kube/resource.h"
#include "common/kube/transport.h"
#include "common/kube/watch.h"

namespace trellis::kube {

enum class PatchType {
  merge,            // application/merge-patch+json (RFC 7386)
  json,             // application/json-patch+json (RFC 6902)
  strategic_merge,  // application/strategic-merge-patch+json (built-in types only)
  apply,            // server-side apply: application/apply-patch+yaml, needs field_manager
};

struct GetOptions {
  std::string subresource;  // "status", "scale", ...
};

struct WriteOptions {
  std::string subresource;
  std::string field_manager;
  bool dry_run = false;
};

struct PatchOptions {
  std::string subresource;
  std::string field_manager;  // required for PatchType::apply
  bool force = false;         // apply: take ownership of conflicting fields
  bool dry_run = false;
};

struct DeleteOptions {
  // Preconditions: delete only this incarnation / this version.
  std::optional<std::string> uid;
  std::optional<std::string> resource_version;
  std::string propagation_policy;  // "Foreground", "Background", "Orphan"
  std::optional<int64_t> grace_period_seconds;
};

struct ClientOptions {
  TransportOptions transport;
  std::shared_ptr<Metrics> metrics;  // optional; shared by the informers
  // Bounds one JSON answer (a list page).
  json::Limits json_limits{size_t{64} << 20, 128};
};

// Receives one watch's events. Destroying the Watch from inside any of these
// is allowed; nothing is called after on_end.
class WatchHandler {
 public:
  virtual ~WatchHandler() = default;
  // The server accepted the watch (200); events follow.
  virtual void on_open() {}
  virtual void on_event(WatchEvent&& event) = 0;
  // A line that is not a valid event was skipped.
  virtual void on_malformed(const Error& error) = 0;
  // The stream ended: OK when the server closed it (timeoutSeconds), else
  // why (a 410 answer, a broken connection, ...). The last call.
  virtual void on_end(const Status& status) = 0;
};

// An open watch; destroying it stops the watch.
class Watch {
 public:
  virtual ~Watch() = default;
};

class Client {
 public:
  using Callback = std::function<void(Result<json::Document> object)>;
  using RawCallback = std::function<void(Result<HttpResponse> response)>;

  // An HTTPS client for `config` (see HttpsTransport).
  static Result<std::unique_ptr<Client>> from_config(event::EventLoop& loop,
                                                     const ClientConfig& config,
                                                     ClientOptions options = {});
  // Over any transport (tests use a scripted one).
  Client(event::EventLoop& loop, std::unique_ptr<Transport> transport, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  event::EventLoop& loop() const { return loop_; }
  // Null when the client was built without metrics.
  Metrics* metrics() const { return options_.metrics.get(); }

  RequestId get(const Resource& resource, std::string_view ns, std::string_view name,
                Callback done, const GetOptions& options = {});
  // One page; follow metadata.continue for the next (Informer does).
  RequestId list(const Resource& resource, std::string_view ns, const ListOptions& options,
                 Callback done);
  RequestId create(const Resource& resource, std::string_view ns, std::string body,
                   Callback done, const WriteOptions& options = {});
  // PUT: with metadata.resourceVersion in `body`, a concurrent change fails
  // with 409 Conflict.
  RequestId update(const Resource& resource, std::string_view ns, std::string_view name,
                   std::string body, Callback done, const WriteOptions& options = {});
  RequestId patch(const Resource& resource, std::string_view ns, std::string_view name,
                  PatchType type, std::string body, Callback done,
                  const PatchOptions& options = {});
  RequestId remove(const Resource& resource, std::string_view ns, std::string_view name,
                   Callback done, const DeleteOptions& options = {});

  // The status subresource.
  RequestId get_status(const Resource& resource, std::string_view ns, std::string_view name,
                       Callback done);
  RequestId update_status(const Resource& resource, std::string_view ns, std::string_view name,
                          std::string body, Callback done, const WriteOptions& options = {});
  RequestId patch_status(const Resource& resource, std::string_view ns, std::string_view name,
                         PatchType type, std::string body, Callback done,
                         PatchOptions options = {});

  // Any request (e.g. GET /version); the answer whatever its status.
  RequestId raw(HttpRequest request, RawCallback done);

  // Drops a request: its callback will not run.
  void cancel(RequestId id);

  // WATCH (options.watch is implied). The handler must outlive the Watch.
  // With options.timeout_seconds, a stream silent for that long plus a minute
  // is considered broken.
  std::unique_ptr<Watch> watch(const Resource& resource, std::string_view ns,
                               ListOptions options, WatchHandler& handler);

 private:
  RequestId send(std::string_view verb, HttpRequest request, Callback done);
  RequestId fail_soon(std::string_view method, const Resource& resource, Error error,
                      Callback done);

  event::EventLoop& loop_;
  std::unique_ptr<Transport> transport_;
  ClientOptions options_;
  // Requests refused before reaching the transport (bad names), answered on
  // the next loop turn; ids count down from the top so they never collide.
  std::map<RequestId, Callback> refused_;
  RequestId next_refused_id_ = ~RequestId{0};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace trellis::kube
