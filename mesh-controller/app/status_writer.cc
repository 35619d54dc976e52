#include "mesh-controller/app/status_writer.h"

#include <algorithm>
#include <cmath>

#include "common/kube/errors.h"
#include "common/log/log.h"
#include "mesh-controller/gateway/status.h"

namespace trellis::controller::app {

Status validate(const StatusWriterOptions& options) {
  if (options.max_in_flight == 0) return make_error("max_in_flight must be positive");
  if (!(options.writes_per_second > 0)) return make_error("writes_per_second must be positive");
  if (!(options.burst >= 1)) return make_error("burst must be at least 1");
  if (options.conflict_retry.count() <= 0) return make_error("conflict_retry must be positive");
  if (Status s = kube::validate(options.error_backoff); !s.ok()) {
    return make_error("error_backoff: " + s.error().message);
  }
  return ok_status();
}

StatusWriter::StatusWriter(kube::Client& client, const resolve::Resolver& resolver,
                           StatusWriterOptions options)
    : client_(client),
      resolver_(resolver),
      options_(std::move(options)),
      error_backoff_(options_.error_backoff),
      tokens_(options_.burst),
      refilled_at_(client.loop().now()),
      pump_timer_(client.loop(), [this] { pump(); }),
      delay_timer_(client.loop(), [this] { release_delayed(); }) {}

StatusWriter::~StatusWriter() {
  for (const auto& entry : in_flight_) client_.cancel(entry.second);
}

Result<std::unique_ptr<StatusWriter>> StatusWriter::create(kube::Client& client,
                                                           const resolve::Resolver& resolver,
                                                           metrics::Registry& registry,
                                                           StatusWriterOptions options) {
  RETURN_IF_ERROR(validate(options));
  std::unique_ptr<StatusWriter> w(new StatusWriter(client, resolver, std::move(options)));
  ASSIGN_OR_RETURN(w->writes_, registry.counter("trellis_controller_status_writes_total",
                                                "Route status writes by outcome.", {"result"}));
  for (const char* result : {"ok", "conflict", "not_found", "error"}) {
    ASSIGN_OR_RETURN(w->counters_[result], w->writes_.with_labels({result}));
  }
  return w;
}

void StatusWriter::set_active(bool active) {
  if (active == active_) return;
  active_ = active;
  if (active) return;
  for (const auto& entry : in_flight_) client_.cancel(entry.second);
  in_flight_.clear();
  again_.clear();
  queue_.clear();
  queued_.clear();
  delayed_.clear();
  pump_timer_.stop();
  delay_timer_.stop();
}

void StatusWriter::enqueue(const resolve::RouteKey& key) {
  if (!active_) return;
  if (in_flight_.count(key) != 0) {
    again_.insert(key);
    return;
  }
  if (!queued_.insert(key).second) return;
  queue_.push_back(key);
  if (!pump_timer_.active()) pump_timer_.start(std::chrono::milliseconds(0));
}

void StatusWriter::pump() {
  if (!active_) return;
  while (in_flight_.size() < options_.max_in_flight && !queue_.empty()) {
    std::chrono::milliseconds now = client_.loop().now();
    double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
    tokens_ = std::min(options_.burst, tokens_ + elapsed * options_.writes_per_second);
    refilled_at_ = now;
    if (tokens_ < 1) {
      auto wait = std::chrono::milliseconds(
          static_cast<int64_t>(std::ceil((1 - tokens_) / options_.writes_per_second * 1000)));
      pump_timer_.start(std::max(wait, std::chrono::milliseconds(1)));
      return;
    }
    resolve::RouteKey key = queue_.front();
    queue_.pop_front();
    queued_.erase(key);
    if (write(key)) tokens_ -= 1;
  }
}

bool StatusWriter::write(const resolve::RouteKey& key) {
  const gateway::Route* route = resolver_.route(key);
  if (route == nullptr) return false;  // deleted
  std::optional<std::string> body =
      gateway::status_patch(*route, resolver_.status(key), options_.controller_name,
                            gateway::format_time(options_.now()));
  if (!body) return false;  // already says this
  const kube::Resource& resource = key.kind == routes::RouteKind::grpc_route
                                       ? kube::resources::kGrpcRoutes
                                       : kube::resources::kHttpRoutes;
  kube::RequestId id = client_.patch_status(
      resource, key.ns, key.name, kube::PatchType::merge, std::move(*body),
      [this, key](Result<json::Document> answer) { written(key, std::move(answer)); });
  in_flight_[key] = id;
  return true;
}

void StatusWriter::written(const resolve::RouteKey& key, Result<json::Document> answer) {
  in_flight_.erase(key);
  if (answer.ok()) {
    count("ok");
    error_backoff_.reset();
    log::debug("route status written", {{"route", key.str()}});
  } else if (kube::is_conflict(answer.error())) {
    count("conflict");
    log::debug("route status write conflicted; retrying with the fresh object",
               {{"route", key.str()}});
    if (again_.count(key) == 0) retry_later(key, options_.conflict_retry);
  } else if (kube::is_not_found(answer.error())) {
    count("not_found");
  } else {
    count("error");
    log::warn("route status write failed", {{"route", key.str()}, {"error", answer.error().message}});
    if (again_.count(key) == 0) retry_later(key, error_backoff_.next());
  }
  if (again_.erase(key) != 0) enqueue(key);
  pump();
}

void StatusWriter::retry_later(const resolve::RouteKey& key, std::chrono::milliseconds delay) {
  std::chrono::milliseconds due = client_.loop().now() + delay;
  delayed_.emplace(due, key);
  if (!delay_timer_.active() || delayed_.begin()->first == due) {
    delay_timer_.start(std::max(delayed_.begin()->first - client_.loop().now(),
                                std::chrono::milliseconds(0)));
  }
}

void StatusWriter::release_delayed() {
  std::chrono::milliseconds now = client_.loop().now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    resolve::RouteKey key = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    enqueue(key);
  }
  if (!delayed_.empty()) delay_timer_.start(delayed_.begin()->first - now);
}

void StatusWriter::count(const char* result) { counters_[result].inc(); }

}  // namespace trellis::controller::app
