// Informer<T>: a local cache of one resource kept current by LIST then WATCH,
// with handlers for every change.
//
//   kube::Informer<kube::Service> services(client, kube::resources::kServices,
//                                          kube::decode_service, handlers);
//   services.start();
//   ... services.has_synced(), services.get("shop", "echo"), services.list()
//
// How it stays correct:
// - It lists (pages of options.page_size, following `continue`), then watches
//   from the list's resourceVersion with bookmarks; each event and bookmark
//   advances the resourceVersion.
// - A watch that the server ends (timeoutSeconds, jittered per watch so that
//   replicas do not reconnect together) is resumed from the last
//   resourceVersion without relisting. A broken watch is resumed the same way
//   after a jittered exponential back-off.
// - 410 Gone (the resourceVersion or a continue token is too old) relists. A
//   relist replaces the cache in one step and delivers the difference:
//   on_add for new keys and on_update for changed resourceVersions (in key
//   order), then on_delete for keys that are gone. A failed list leaves the
//   cache as it was.
// - A malformed object (decode fails) is logged, counted
//   (trellis_kube_decode_errors_total) and skipped; the cached version of it,
//   if any, is kept rather than deleted, so one bad object never empties the
//   cache.
// - has_synced() turns true after the first complete list (on_synced runs
//   once, after that list's on_add calls).
// - stop() pauses it with the cache kept; start() then relists and delivers
//   what changed meanwhile.
//
// T: any type with an `ObjectMeta metadata` member, produced by the decode
// function (the controller supplies its own for HTTPRoute and GRPCRoute).
//
// Threading: the Client's loop thread. Handlers may destroy the Informer.
// Objects are shared, immutable snapshots: handlers may keep them.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/event/callback_scope.h"
#include "common/event/timer.h"
#include "common/json/json.h"
#include "common/kube/backoff.h"
#include "common/kube/client.h"
#include "common/kube/metrics.h"
#include "common/kube/objects.h"
#include "common/kube/resource.h"

namespace trellis::kube {

struct InformerOptions {
  std::string namespace_;  // empty: every namespace
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;
  // Each watch asks the server to end it after this, stretched by up to 100 %
  // at random (as client-go does).
  std::chrono::seconds watch_timeout{300};
  BackoffOptions backoff;
  RandomSource random;  // unset: a seeded generator
};

// "invalid namespace 'a/b'", "page_size must be positive", "watch_timeout
// must be positive", or a back-off error prefixed with "backoff: ". Informers
// do not check: validate options that come from configuration first.
Status validate(const InformerOptions& options);

// The LIST/WATCH loop of one informer, independent of the object type.
class Reflector : private WatchHandler {
 public:
  // Receives the objects. May destroy the Reflector's owner from any call.
  class Sink {
   public:
    // A (re)list's pages: begin, items, then end (commit) or abort.
    virtual void on_list_begin() = 0;
    virtual void on_list_item(const json::Value& object) = 0;
    virtual void on_list_end() = 0;
    virtual void on_list_abort() = 0;
    // ADDED, MODIFIED or DELETED.
    virtual void on_watch_event(WatchEventType type, const json::Value& object) = 0;

   protected:
    ~Sink() = default;
  };

  Reflector(Client& client, Resource resource, InformerOptions options, Sink& sink);
  ~Reflector() override;
  Reflector(const Reflector&) = delete;
  Reflector& operator=(const Reflector&) = delete;

  void start();
  // Drops the list or watch in progress and any pending retry.
  void stop();
  const std::string& resource_version() const { return resource_version_; }
  const Resource& resource() const { return resource_; }
  const ResourceMetrics& metrics() const { return metrics_; }
  // Lists completed, the first included.
  int lists() const { return lists_; }

 private:
  void list(std::string continue_token);
  void on_page(Result<json::Document> page, bool first_page);
  void start_watch();
  void relist();
  void retry_after_backoff(void (Reflector::*action)());
  void on_open() override;
  void on_event(WatchEvent&& event) override;
  void on_malformed(const Error& error) override;
  void on_end(const Status& status) override;
  void watch_failed(const Error& error);

  Client& client_;
  Resource resource_;
  InformerOptions options_;
  Sink& sink_;
  ResourceMetrics metrics_;
  Backoff backoff_;
  std::string resource_version_;
  std::string list_resource_version_;
  RequestId request_ = 0;  // the list page in flight, 0 when none
  std::unique_ptr<Watch> watch_;
  std::chrono::milliseconds watch_started_{0};
  int watch_events_ = 0;
  int lists_ = 0;
  uint64_t generation_ = 0;  // counts stop()s, so a handler's stop() is noticed
  event::Timer retry_timer_;
  void (Reflector::*retry_action_)() = nullptr;
  event::DestructionFlag destruction_;
};

// Logs a skipped object: resource, namespace/name when readable, the error.
void log_decode_error(const Resource& resource, const json::Value& object, const Error& error);

template <typename T>
class Informer : private Reflector::Sink {
 public:
  using Ptr = std::shared_ptr<const T>;
  using Decode = std::function<Result<T>(const json::Value& object)>;
  struct Handlers {
    std::function<void(const Ptr& object)> on_add;
    std::function<void(const Ptr& old_object, const Ptr& new_object)> on_update;
    std::function<void(const Ptr& object)> on_delete;  // the last state known
    std::function<void()> on_synced;
  };

  Informer(Client& client, Resource resource, Decode decode, Handlers handlers,
           InformerOptions options = {})
      : decode_(std::move(decode)),
        handlers_(std::move(handlers)),
        reflector_(client, std::move(resource), std::move(options), *this) {}
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Lists, then watches. After stop(), lists again and delivers the
  // difference against the cache as it was (a restart keeps the cache).
  void start() { reflector_.start(); }
  // Stops listing and watching; the cache stays as it is (and synced).
  void stop() { reflector_.stop(); }
  bool has_synced() const { return synced_; }
  Ptr get(std::string_view ns, std::string_view name) const {
    auto it = cache_.find(object_key(ns, name));
    return it == cache_.end() ? nullptr : it->second;
  }
  // Every cached object, ordered by namespace/name.
  std::vector<Ptr> list() const {
    std::vector<Ptr> out;
    out.reserve(cache_.size());
    for (const auto& entry : cache_) out.push_back(entry.second);
    return out;
  }
  size_t size() const { return cache_.size(); }
  const std::string& resource_version() const { return reflector_.resource_version(); }
  const Reflector& reflector() const { return reflector_; }

 private:
  using Cache = std::map<std::string, Ptr, std::less<>>;

  void on_list_begin() override {
    staged_.clear();
    kept_.clear();
  }

  void on_list_item(const json::Value& object) override {
    Result<T> decoded = decode_(object);
    if (decoded.ok()) {
      std::string key = decoded->metadata.key();
      staged_[key] = std::make_shared<const T>(std::move(decoded).value());
      return;
    }
    skipped(object, decoded.error());
    // Keep the last good version of an object that is now malformed.
    if (auto meta = decode_object_meta(object); meta.ok()) kept_.insert(meta->key());
  }

  void on_list_abort() override {
    staged_.clear();
    kept_.clear();
  }

  void on_list_end() override {
    struct Change {
      Ptr old_object;
      Ptr new_object;
    };
    std::vector<Change> changes;
    Cache next = std::move(staged_);
    staged_.clear();
    for (const std::string& key : kept_) {
      auto old = cache_.find(key);
      if (old != cache_.end()) next[key] = old->second;
    }
    kept_.clear();
    for (auto& [key, object] : next) {
      auto old = cache_.find(key);
      if (old == cache_.end()) {
        changes.push_back({nullptr, object});
      } else if (old->second->metadata.resource_version != object->metadata.resource_version) {
        changes.push_back({old->second, object});
      } else {
        object = old->second;  // unchanged: keep the snapshot handlers may hold
      }
    }
    for (const auto& [key, object] : cache_) {
      if (next.find(key) == next.end()) changes.push_back({object, nullptr});
    }
    cache_ = std::move(next);
    bool first_sync = !synced_;
    synced_ = true;
    event::CallbackScope scope(destruction_);
    for (const Change& change : changes) {
      if (!change.old_object) {
        if (handlers_.on_add) handlers_.on_add(change.new_object);
      } else if (!change.new_object) {
        if (handlers_.on_delete) handlers_.on_delete(change.old_object);
      } else if (handlers_.on_update) {
        handlers_.on_update(change.old_object, change.new_object);
      }
      if (scope.destroyed()) return;
    }
    if (first_sync && handlers_.on_synced) handlers_.on_synced();
  }

  void on_watch_event(WatchEventType type, const json::Value& object) override {
    Result<T> decoded = decode_(object);
    event::CallbackScope scope(destruction_);
    if (type == WatchEventType::deleted) {
      std::string key;
      if (decoded.ok()) {
        key = decoded->metadata.key();
      } else {
        skipped(object, decoded.error());
        auto meta = decode_object_meta(object);
        if (!meta.ok()) return;
        key = meta->key();
      }
      auto it = cache_.find(key);
      if (it == cache_.end()) return;
      Ptr last = decoded.ok() ? std::make_shared<const T>(std::move(decoded).value()) : it->second;
      cache_.erase(it);
      if (handlers_.on_delete) handlers_.on_delete(last);
      return;
    }
    if (!decoded.ok()) {
      skipped(object, decoded.error());
      return;
    }
    std::string key = decoded->metadata.key();
    auto object_ptr = std::make_shared<const T>(std::move(decoded).value());
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      cache_.emplace(std::move(key), object_ptr);
      if (handlers_.on_add) handlers_.on_add(object_ptr);
      return;
    }
    Ptr old = std::move(it->second);
    it->second = object_ptr;
    if (handlers_.on_update) handlers_.on_update(old, object_ptr);
  }

  void skipped(const json::Value& object, const Error& error) {
    reflector_.metrics().decode_errors.inc();
    log_decode_error(reflector_.resource(), object, error);
  }

  Decode decode_;
  Handlers handlers_;
  Cache cache_;
  Cache staged_;              // the relist in progress
  std::set<std::string> kept_;  // malformed in the relist: keep the cached version
  bool synced_ = false;
  event::DestructionFlag destruction_;
  Reflector reflector_;  // last: destroyed first, so no list or watch outlives the cache
};

}  // namespace trellis::kube
