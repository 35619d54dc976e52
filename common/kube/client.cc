#include "common/kube/client.h"

#include "common/kube/errors.h"

namespace trellis::kube {

namespace {

constexpr std::string_view kJson = "application/json";
// A silent watch is broken once it outlives its server-side timeout by this.
constexpr std::chrono::seconds kWatchGrace{60};

std::string_view content_type(PatchType type) {
  switch (type) {
    case PatchType::merge: return "application/merge-patch+json";
    case PatchType::json: return "application/json-patch+json";
    case PatchType::strategic_merge: return "application/strategic-merge-patch+json";
    case PatchType::apply: return "application/apply-patch+yaml";
  }
  return "application/merge-patch+json";
}

// "?fieldManager=x&force=true&dryRun=All", or "".
std::string write_query(std::string_view field_manager, bool force, bool dry_run) {
  std::string query;
  auto add = [&query](std::string_view key, std::string_view value) {
    query += query.empty() ? '?' : '&';
    query += key;
    query += '=';
    query += percent_encode(value);
  };
  if (!field_manager.empty()) add("fieldManager", field_manager);
  if (force) add("force", "true");
  if (dry_run) add("dryRun", "All");
  return query;
}

std::string path_of(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

// A watch stream: its decoder and the transport stream under it.
class WatchStream : public Watch, public StreamHandler {
 public:
  WatchStream(event::EventLoop& loop, WatchHandler& handler, std::string what, Metrics* metrics)
      : loop_(loop), handler_(handler), what_(std::move(what)), metrics_(metrics) {}

  void attach(std::unique_ptr<Stream> stream) { stream_ = std::move(stream); }

  // Ends the watch with `error` from the loop (never inside Client::watch).
  void fail_soon(Error error) {
    std::weak_ptr<bool> alive = alive_;
    loop_.defer([this, alive, error = std::move(error)] {
      if (!alive.expired()) on_end(error);
    });
  }

 private:
  void on_open() override {
    opened_ = true;
    if (metrics_ != nullptr) metrics_->count_request("watch", 200);
    handler_.on_open();
  }

  void on_data(std::string_view bytes) override {
    decoder_.feed(bytes, [this](Result<WatchEvent> event) {
      event::CallbackScope scope(destruction_);
      if (event.ok()) {
        handler_.on_event(std::move(event).value());
      } else {
        handler_.on_malformed(event.error());
      }
      return !scope.destroyed();
    });
  }

  void on_end(const Status& status) override {
    if (status.ok()) {
      handler_.on_end(status);
      return;
    }
    if (!opened_ && metrics_ != nullptr) metrics_->count_request("watch", status.error().code);
    handler_.on_end(make_error(what_ + ": " + status.error().message, status.error().code));
  }

  event::EventLoop& loop_;
  WatchHandler& handler_;
  std::string what_;
  Metrics* metrics_;
  bool opened_ = false;
  WatchDecoder decoder_;
  std::unique_ptr<Stream> stream_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  event::DestructionFlag destruction_;
};

}  // namespace

Result<std::unique_ptr<Client>> Client::from_config(event::EventLoop& loop,
                                                    const ClientConfig& config,
                                                    ClientOptions options) {
  auto transport = HttpsTransport::create(loop, config, options.transport);
  if (!transport) return std::move(transport).error();
  return std::make_unique<Client>(loop, std::move(*transport), std::move(options));
}

Client::Client(event::EventLoop& loop, std::unique_ptr<Transport> transport,
               ClientOptions options)
    : loop_(loop), transport_(std::move(transport)), options_(std::move(options)) {}

Client::~Client() = default;

RequestId Client::send(std::string_view verb, HttpRequest request, Callback done) {
  std::string what = request.method + " " + path_of(request.target);
  std::string verb_label(verb);
  return transport_->send(std::move(request), [this, what = std::move(what),
                                               verb_label = std::move(verb_label),
                                               done = std::move(done)](Result<HttpResponse> r) {
    if (!r.ok()) {
      if (metrics()) metrics()->count_request(verb_label, 0);
      done(make_error(what + ": " + r.error().message, 0));
      return;
    }
    if (metrics()) metrics()->count_request(verb_label, r->status);
    if (r->status < 200 || r->status >= 300) {
      Error e = api_error(r->status, r->body);
      done(make_error(what + ": " + e.message, e.code));
      return;
    }
    auto doc = json::Document::parse(r->body, options_.json_limits);
    if (!doc.ok()) {
      done(make_error(what + ": invalid answer: " + doc.error().message, r->status));
      return;
    }
    done(std::move(doc));
  });
}

RequestId Client::fail_soon(std::string_view method, const Resource& resource, Error error,
                            Callback done) {
  RequestId id = next_refused_id_--;
  refused_.emplace(id, std::move(done));
  std::weak_ptr<bool> alive = alive_;
  std::string prefix = std::string(method) + " " + resource.label() + ": ";
  loop_.defer([this, alive, id, error = make_error(prefix + error.message, 0)]() {
    if (alive.expired()) return;
    auto it = refused_.find(id);
    if (it == refused_.end()) return;
    Callback done = std::move(it->second);
    refused_.erase(it);
    done(error);
  });
  return id;
}

RequestId Client::get(const Resource& resource, std::string_view ns, std::string_view name,
                      Callback done, const GetOptions& options) {
  auto path = object_path(resource, ns, name, options.subresource);
  if (!path) return fail_soon("GET", resource, std::move(path).error(), std::move(done));
  return send("get", HttpRequest{"GET", std::move(*path), "", "", {}}, std::move(done));
}

RequestId Client::list(const Resource& resource, std::string_view ns, const ListOptions& options,
                       Callback done) {
  auto path = collection_path(resource, ns);
  if (!path) return fail_soon("GET", resource, std::move(path).error(), std::move(done));
  ListOptions list_options = options;
  list_options.watch = false;
  return send("list", HttpRequest{"GET", *path + query_string(list_options), "", "", {}},
              std::move(done));
}

RequestId Client::create(const Resource& resource, std::string_view ns, std::string body,
                         Callback done, const WriteOptions& options) {
  auto path = options.subresource.empty() ? collection_path(resource, ns)
                                          : Result<std::string>(make_error(
                                                "create: subresources need an object name"));
  if (!path) return fail_soon("POST", resource, std::move(path).error(), std::move(done));
  std::string target = *path + write_query(options.field_manager, false, options.dry_run);
  return send("create",
              HttpRequest{"POST", std::move(target), std::string(kJson), std::move(body), {}},
              std::move(done));
}

RequestId Client::update(const Resource& resource, std::string_view ns, std::string_view name,
                         std::string body, Callback done, const WriteOptions& options) {
  auto path = object_path(resource, ns, name, options.subresource);
  if (!path) return fail_soon("PUT", resource, std::move(path).error(), std::move(done));
  std::string target = *path + write_query(options.field_manager, false, options.dry_run);
  return send("update",
              HttpRequest{"PUT", std::move(target), std::string(kJson), std::move(body), {}},
              std::move(done));
}

RequestId Client::patch(const Resource& resource, std::string_view ns, std::string_view name,
                        PatchType type, std::string body, Callback done,
                        const PatchOptions& options) {
  auto path = object_path(resource, ns, name, options.subresource);
  if (!path) return fail_soon("PATCH", resource, std::move(path).error(), std::move(done));
  if (type == PatchType::apply && options.field_manager.empty()) {
    return fail_soon("PATCH", resource, make_error("server-side apply needs a field manager"),
                     std::move(done));
  }
  if (options.force && type != PatchType::apply) {
    return fail_soon("PATCH", resource, make_error("force applies to server-side apply only"),
                     std::move(done));
  }
  std::string target = *path + write_query(options.field_manager, options.force, options.dry_run);
  return send("patch",
              HttpRequest{"PATCH", std::move(target), std::string(content_type(type)),
                          std::move(body), {}},
              std::move(done));
}

RequestId Client::remove(const Resource& resource, std::string_view ns, std::string_view name,
                         Callback done, const DeleteOptions& options) {
  auto path = object_path(resource, ns, name);
  if (!path) return fail_soon("DELETE", resource, std::move(path).error(), std::move(done));
  std::string body;
  bool has_options = options.uid || options.resource_version ||
                     !options.propagation_policy.empty() || options.grace_period_seconds;
  if (has_options) {
    json::Writer w;
    w.start_object().string_field("apiVersion", "v1").string_field("kind", "DeleteOptions");
    if (options.uid || options.resource_version) {
      w.key("preconditions").start_object();
      if (options.uid) w.string_field("uid", *options.uid);
      if (options.resource_version) w.string_field("resourceVersion", *options.resource_version);
      w.end_object();
    }
    if (!options.propagation_policy.empty()) {
      w.string_field("propagationPolicy", options.propagation_policy);
    }
    if (options.grace_period_seconds) {
      w.integer_field("gracePeriodSeconds", *options.grace_period_seconds);
    }
    w.end_object();
    body = w.str();
  }
  return send("delete",
              HttpRequest{"DELETE", std::move(*path), body.empty() ? "" : std::string(kJson),
                          std::move(body), {}},
              std::move(done));
}

RequestId Client::get_status(const Resource& resource, std::string_view ns,
                             std::string_view name, Callback done) {
  return get(resource, ns, name, std::move(done), GetOptions{"status"});
}

RequestId Client::update_status(const Resource& resource, std::string_view ns,
                                std::string_view name, std::string body, Callback done,
                                const WriteOptions& options) {
  WriteOptions status_options = options;
  status_options.subresource = "status";
  return update(resource, ns, name, std::move(body), std::move(done), status_options);
}

RequestId Client::patch_status(const Resource& resource, std::string_view ns,
                               std::string_view name, PatchType type, std::string body,
                               Callback done, PatchOptions options) {
  options.subresource = "status";
  return patch(resource, ns, name, type, std::move(body), std::move(done), options);
}

RequestId Client::raw(HttpRequest request, RawCallback done) {
  return transport_->send(std::move(request), std::move(done));
}

void Client::cancel(RequestId id) {
  if (refused_.erase(id) > 0) return;
  transport_->cancel(id);
}

std::unique_ptr<Watch> Client::watch(const Resource& resource, std::string_view ns,
                                     ListOptions options, WatchHandler& handler) {
  options.watch = true;
  auto path = collection_path(resource, ns);
  if (!path.ok()) {
    auto stream =
        std::make_unique<WatchStream>(loop_, handler, "GET " + resource.label(), metrics());
    stream->fail_soon(std::move(path).error());
    return stream;
  }
  auto stream = std::make_unique<WatchStream>(loop_, handler, "GET " + *path, metrics());
  HttpRequest request{"GET", *path + query_string(options), "", "", {}};
  if (options.timeout_seconds) {
    request.timeout = std::chrono::seconds(*options.timeout_seconds) + kWatchGrace;
  }
  stream->attach(transport_->open_stream(std::move(request), *stream));
  return stream;
}

}  // namespace trellis::kube
