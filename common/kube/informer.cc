#include "common/kube/informer.h"

#include "common/kube/errors.h"
#include "common/log/log.h"

namespace trellis::kube {

namespace {

// A watch the server ends this soon without any event is treated as a
// failure, so that a server closing watches at once cannot make us spin.
constexpr std::chrono::milliseconds kShortestHealthyWatch{1000};

InformerOptions with_defaults(InformerOptions options) {
  if (!options.random) options.random = default_random_source();
  return options;
}

// metadata.resourceVersion, or "" when unreadable.
std::string resource_version_of(const json::Value& object) {
  auto o = object.object();
  if (!o.ok()) return std::string();
  auto meta = o->optional_object("metadata");
  if (!meta.ok() || !*meta) return std::string();
  auto rv = (*meta)->optional_string("resourceVersion");
  if (!rv.ok() || !*rv) return std::string();
  return std::string(**rv);
}

}  // namespace

Status validate(const InformerOptions& options) {
  if (!options.namespace_.empty()) {
    if (auto s = check_path_segment("namespace", options.namespace_); !s.ok()) return s;
  }
  if (options.page_size <= 0) return make_error("page_size must be positive");
  if (options.watch_timeout.count() <= 0) return make_error("watch_timeout must be positive");
  if (auto s = validate(options.backoff); !s.ok()) {
    return make_error("backoff: " + s.error().message);
  }
  return ok_status();
}

void log_decode_error(const Resource& resource, const json::Value& object, const Error& error) {
  auto meta = decode_object_meta(object);
  log::warn("kube: skipping a malformed object",
            {{"resource", resource.label()},
             {"object", meta.ok() ? meta->key() : std::string("(unknown)")},
             {"error", error.message}});
}

Reflector::Reflector(Client& client, Resource resource, InformerOptions options, Sink& sink)
    : client_(client),
      resource_(std::move(resource)),
      options_(with_defaults(std::move(options))),
      sink_(sink),
      metrics_(client.metrics() != nullptr ? client.metrics()->for_resource(resource_.label())
                                           : ResourceMetrics{}),
      backoff_(options_.backoff, options_.random),
      retry_timer_(client.loop(), [this] {
        auto action = retry_action_;
        retry_action_ = nullptr;
        if (action != nullptr) (this->*action)();
      }) {}

Reflector::~Reflector() {
  if (request_ != 0) client_.cancel(request_);
}


void Reflector::start() {
  stop();
  list(std::string());
}

void Reflector::stop() {
  ++generation_;
  if (request_ != 0) {
    client_.cancel(request_);
    request_ = 0;
    sink_.on_list_abort();
  }
  watch_.reset();
  retry_timer_.stop();
  retry_action_ = nullptr;
}

void Reflector::relist() { list(std::string()); }

void Reflector::list(std::string continue_token) {
  bool first_page = continue_token.empty();
  if (first_page) {
    if (lists_ > 0) metrics_.relists.inc();
    sink_.on_list_begin();
  }
  ListOptions o;
  o.label_selector = options_.label_selector;
  o.field_selector = options_.field_selector;
  o.limit = options_.page_size;
  o.continue_token = std::move(continue_token);
  request_ = client_.list(resource_, options_.namespace_, o,
                          [this, first_page](Result<json::Document> page) {
                            request_ = 0;
                            on_page(std::move(page), first_page);
                          });
}

void Reflector::on_page(Result<json::Document> page, bool first_page) {
  std::optional<Error> failure;
  std::optional<json::Array> items;
  std::string list_rv;
  std::string continue_token;
  if (page.ok()) {
    auto root = page->root().object();
    auto meta = root.ok() ? root->required_object("metadata") : Result<json::Object>(root.error());
    auto rv = meta.ok() ? meta->required_string("resourceVersion")
                        : Result<std::string_view>(meta.error());
    auto next = meta.ok() ? meta->optional_string("continue")
                          : Result<std::optional<std::string_view>>(meta.error());
    auto array = root.ok() ? root->optional_array("items")
                           : Result<std::optional<json::Array>>(root.error());
    if (!rv.ok()) {
      failure = make_error("list " + resource_.label() + ": " + rv.error().message);
    } else if (!next.ok()) {
      failure = make_error("list " + resource_.label() + ": " + next.error().message);
    } else if (!array.ok()) {
      failure = make_error("list " + resource_.label() + ": " + array.error().message);
    } else {
      list_rv = std::string(*rv);
      continue_token = std::string(next->value_or(""));
      items = *array;
    }
  } else {
    failure = page.error();
  }

  if (failure) {
    sink_.on_list_abort();
    if (!first_page && is_gone(*failure)) {
      // The continue token expired mid-list: start over at once.
      log::info("kube: list continuation expired, listing again",
                {{"resource", resource_.label()}});
      list(std::string());
      return;
    }
    metrics_.list_errors.inc();
    log::warn("kube: list failed", {{"resource", resource_.label()}, {"error", failure->message}});
    retry_after_backoff(&Reflector::relist);
    return;
  }

  event::CallbackScope scope(destruction_);
  if (items) {
    for (size_t i = 0; i < items->size(); ++i) {
      sink_.on_list_item((*items)[i]);
      if (scope.destroyed()) return;
    }
  }
  if (!continue_token.empty()) {
    list(std::move(continue_token));
    return;
  }
  resource_version_ = std::move(list_rv);
  ++lists_;
  uint64_t generation = generation_;
  sink_.on_list_end();
  if (scope.destroyed() || generation != generation_) return;  // a handler stopped us
  backoff_.reset();
  start_watch();
}

void Reflector::start_watch() {
  ListOptions o;
  o.label_selector = options_.label_selector;
  o.field_selector = options_.field_selector;
  o.resource_version = resource_version_;
  o.allow_watch_bookmarks = true;
  auto timeout = jittered(std::chrono::duration_cast<std::chrono::milliseconds>(
                              options_.watch_timeout),
                          1.0, options_.random);
  o.timeout_seconds = std::max<int64_t>(1, timeout.count() / 1000);
  watch_started_ = client_.loop().now();
  watch_events_ = 0;
  watch_ = client_.watch(resource_, options_.namespace_, std::move(o), *this);
}

void Reflector::retry_after_backoff(void (Reflector::*action)()) {
  auto delay = backoff_.next();
  retry_action_ = action;
  retry_timer_.start(delay);
}

void Reflector::on_open() { backoff_.reset(); }

void Reflector::on_event(WatchEvent&& event) {
  json::Value object = event.object();
  switch (event.type) {
    case WatchEventType::bookmark: {
      metrics_.bookmarks.inc();
      std::string rv = resource_version_of(object);
      if (!rv.empty()) resource_version_ = std::move(rv);
      return;
    }
    case WatchEventType::error:
      metrics_.error_events.inc();
      watch_failed(status_error(object));
      return;
    case WatchEventType::added: metrics_.added.inc(); break;
    case WatchEventType::modified: metrics_.modified.inc(); break;
    case WatchEventType::deleted: metrics_.deleted.inc(); break;
  }
  ++watch_events_;
  std::string rv = resource_version_of(object);
  if (!rv.empty()) resource_version_ = std::move(rv);
  sink_.on_watch_event(event.type, object);
}

void Reflector::on_malformed(const Error& error) {
  metrics_.decode_errors.inc();
  log::warn("kube: skipping a malformed watch event",
            {{"resource", resource_.label()}, {"error", error.message}});
}

void Reflector::on_end(const Status& status) {
  if (!status.ok()) {
    watch_failed(status.error());
    return;
  }
  watch_.reset();
  if (watch_events_ == 0 && client_.loop().now() - watch_started_ < kShortestHealthyWatch) {
    retry_after_backoff(&Reflector::start_watch);
    return;
  }
  start_watch();  // the server's timeout: resume from the last resourceVersion
}

void Reflector::watch_failed(const Error& error) {
  watch_.reset();
  if (is_gone(error)) {
    log::info("kube: resourceVersion too old, listing again",
              {{"resource", resource_.label()}, {"error", error.message}});
    relist();
    return;
  }
  metrics_.watch_errors.inc();
  log::warn("kube: watch failed", {{"resource", resource_.label()}, {"error", error.message}});
  retry_after_backoff(&Reflector::start_watch);
}

}  // namespace trellis::kube
