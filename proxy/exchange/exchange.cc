#include "proxy/exchange/exchange.h"

#include <utility>

#include "common/log/log.h"
#include "proxy/exchange/engine.h"
#include "proxy/exchange/local_reply.h"
#include "proxy/router/filters.h"

namespace trellis::proxy::exchange {

namespace h = trellis::http;

namespace {

// Which local answer decide() gave, from its status and the filters that can
// cause it (decide() answers 500 for ExtensionRef and for backends it cannot
// use, 503 for a backend without endpoints).
LocalReason classify(const router::Action& action, const router::Rule& rule) {
  int status = action.response.status;
  if (status >= 300 && status < 400) return LocalReason::redirect;
  if (status == 503) return LocalReason::no_endpoint;
  if (status == 500) {
    bool unsupported = rule.filters.unsupported ||
                       (action.backend != nullptr && action.backend->filters.unsupported);
    return unsupported ? LocalReason::unsupported_filter : LocalReason::no_backend;
  }
  return LocalReason::cors_preflight;
}

std::unique_ptr<Exchange> answered(Shared& shared, http::DownstreamStream& stream, Plan plan,
                                   bool grpc, h::ResponseHead head, LocalReason reason) {
  auto exchange = std::make_unique<Exchange>(shared, nullptr, stream, std::move(plan),
                                             h::RequestHead(), std::nullopt, grpc, true);
  exchange->answer(std::move(head), reason);
  return exchange;
}

std::unique_ptr<Exchange> answered(Shared& shared, http::DownstreamStream& stream, Plan plan,
                                   bool grpc, int status, LocalReason reason) {
  return answered(shared, stream, std::move(plan), grpc, local_reply(status, reason), reason);
}

}  // namespace

Status validate(const ExchangeConfig& config) {
  RETURN_IF_ERROR(retry::validate(config.retry));
  if (config.mirror_timeout.count() <= 0) {
    return make_error("exchange.mirror_timeout: must be positive");
  }
  if (config.inbound_retry_backoff.count() < 0) {
    return make_error("exchange.inbound_retry_backoff: must not be negative");
  }
  if (auto ip = net::Address::from_ip(config.inbound_target_ip, 0); !ip.ok()) {
    return make_error("exchange.inbound_target_ip: " + ip.error().message);
  }
  return ok_status();
}

// --- outbound ---------------------------------------------------------------------

Result<std::unique_ptr<OutboundFactory>> OutboundFactory::create(
    const ExchangeConfig& config, WorkerContext context, ExchangeMetrics metrics,
    std::shared_ptr<retry::Budget> unrouted_budget) {
  RETURN_IF_ERROR(validate(config));
  if (context.pool == nullptr || context.scheduler == nullptr || context.balancer == nullptr ||
      !context.random || !unrouted_budget) {
    return make_error(
        "outbound exchange: pool, scheduler, balancer, random source and budget are required");
  }
  return std::unique_ptr<OutboundFactory>(new OutboundFactory(
      config, std::move(context), std::move(metrics), std::move(unrouted_budget)));
}

OutboundFactory::OutboundFactory(const ExchangeConfig& config, WorkerContext context,
                                 ExchangeMetrics metrics,
                                 std::shared_ptr<retry::Budget> unrouted_budget)
    : shared_{config, std::move(context), std::move(metrics)},
      mirrors_(std::make_unique<MirrorSet>(shared_)),
      unrouted_budget_(std::move(unrouted_budget)),
      implicit_policy_(retry::implicit_policy(config.retry)) {
  SeriesLabels labels;
  labels.direction = http::Direction::outbound;
  unrouted_labels_ = labels.request_values();
  unrouted_scope_labels_ = labels.scope_values();
  unrouted_series_ = RequestSeries(&shared_.metrics, &unrouted_labels_);
  unrouted_scope_ = ScopeSeries(&shared_.metrics, &unrouted_scope_labels_);
}

OutboundFactory::~OutboundFactory() = default;

void OutboundFactory::install(std::shared_ptr<const InstalledTable> table) {
  if (!table) return;
  current_ = WorkerTable::create(std::move(table), *shared_.context.balancer, shared_.metrics,
                                 current_.get());
}

size_t OutboundFactory::mirrors_in_flight() const { return mirrors_->in_flight(); }

std::unique_ptr<http::DownstreamCallbacks> OutboundFactory::create(
    http::DownstreamStream& stream, h::RequestHead&& head, bool end_stream) {
  const http::DownstreamInfo& info = stream.info();
  bool grpc = is_grpc(head);
  std::shared_ptr<WorkerTable> table = current_;
  const router::Frontend* frontend =
      table ? table->table().router().frontend(info.original_destination.sockaddr_ptr())
            : nullptr;
  const FrontendPlan* frontend_plan = frontend ? table->table().frontend(*frontend) : nullptr;

  Plan plan;
  plan.direction = http::Direction::outbound;
  if (frontend_plan == nullptr) {
    // The downstream side only hands us frontends, so the table changed
    // under the connection: keep the app's traffic flowing to where it went.
    plan.fixed = info.original_destination;
    plan.policy = &implicit_policy_;
    plan.budget = unrouted_budget_.get();
    plan.series = &unrouted_series_;
    plan.scope = &unrouted_scope_;
    auto exchange = std::make_unique<Exchange>(shared_, nullptr, stream, std::move(plan),
                                               std::move(head), std::nullopt, grpc, end_stream);
    exchange->start();
    return exchange;
  }

  const InstalledTable& installed = table->table();
  plan.table = table;
  plan.series = &table->request_series(frontend_plan->series);
  plan.scope = &table->scope_series(frontend_plan->scope);

  if (frontend->mode == router::Mode::passthrough) {
    if (!frontend_plan->endpoint_set) {
      return answered(shared_, stream, std::move(plan), grpc, 503, LocalReason::no_endpoint);
    }
    plan.endpoint_set = frontend_plan->endpoint_set;
    plan.policy = &installed.implicit_policy();
    plan.budget = frontend_plan->budget.get();
    auto exchange = std::make_unique<Exchange>(shared_, nullptr, stream, std::move(plan),
                                               std::move(head), std::nullopt, grpc, end_stream);
    exchange->start();
    return exchange;
  }

  const router::Rule* rule = installed.router().match(*frontend, head);
  if (rule == nullptr) {
    return answered(shared_, stream, std::move(plan), grpc, 404, LocalReason::no_route);
  }
  router::Action action = router::decide(*frontend, *rule, head, shared_.context.random());
  const RulePlan& rule_plan = installed.rule(*rule);
  plan.rule = rule;
  plan.backend = action.backend;
  plan.scope = &table->scope_series(rule_plan.scope);
  plan.series = &table->request_series(
      action.backend != nullptr ? installed.backend(*action.backend).series : rule_plan.series);
  if (action.kind == router::Action::Kind::respond) {
    LocalReason reason = classify(action, *rule);
    return answered(shared_, stream, std::move(plan), grpc, std::move(action.response), reason);
  }

  plan.endpoint_set = installed.backend(*action.backend).endpoint_set;
  plan.policy = &rule_plan.policy;
  plan.budget = rule_plan.budget.get();
  plan.request_timeout = rule_plan.request_timeout;
  plan.backend_timeout = rule_plan.backend_timeout;
  h::RequestHead forwarded = head;
  router::apply_request_filters(*rule, action.backend, forwarded);
  router::mirrors_of(*rule, action.backend, [&](const router::Mirror& m) {
    if (router::mirror_selected(m, shared_.context.random())) plan.mirrors.push_back(&m.backend);
  });
  // Response filters read the request only for CORS (its Origin).
  bool cors = rule->filters.cors || action.backend->filters.cors;
  std::optional<h::RequestHead> original;
  if (cors) original = std::move(head);
  auto exchange = std::make_unique<Exchange>(shared_, mirrors_.get(), stream, std::move(plan),
                                             std::move(forwarded), std::move(original), grpc,
                                             end_stream);
  exchange->start();
  return exchange;
}

// --- inbound ----------------------------------------------------------------------

Result<std::unique_ptr<InboundFactory>> InboundFactory::create(
    const ExchangeConfig& config, WorkerContext context, ExchangeMetrics metrics,
    std::shared_ptr<retry::Budget> budget) {
  RETURN_IF_ERROR(validate(config));
  if (context.pool == nullptr || context.scheduler == nullptr || !context.random || !budget) {
    return make_error("inbound exchange: pool, scheduler, random source and budget are required");
  }
  return std::unique_ptr<InboundFactory>(
      new InboundFactory(config, std::move(context), std::move(metrics), std::move(budget)));
}

InboundFactory::InboundFactory(const ExchangeConfig& config, WorkerContext context,
                               ExchangeMetrics metrics, std::shared_ptr<retry::Budget> budget)
    : shared_{config, std::move(context), std::move(metrics)},
      budget_(std::move(budget)),
      policy_(retry::implicit_policy(config.retry)) {
  // Connect failures only (the policy is not `configured`), with a backoff:
  // an app that is starting refuses connections for a while.
  policy_.backoff = config.inbound_retry_backoff;
  policy_.max_backoff = config.inbound_retry_backoff * config.retry.backoff_cap_factor;
  SeriesLabels labels;
  labels.direction = http::Direction::inbound;
  scope_labels_ = labels.scope_values();
  scope_ = ScopeSeries(&shared_.metrics, &scope_labels_);
}

InboundFactory::~InboundFactory() = default;

InboundFactory::Port& InboundFactory::port(uint16_t number) {
  auto it = ports_.find(number);
  if (it != ports_.end()) return it->second;
  Port& port = ports_[number];
  // The IP was validated with the config: from_ip cannot fail here.
  if (auto target = net::Address::from_ip(shared_.config.inbound_target_ip, number); target.ok()) {
    port.target = *target;
  }
  return port;
}

RequestSeries& InboundFactory::series(Port& port, uint16_t number,
                                      const std::string& peer_identity) {
  auto it = port.peers.find(std::string_view(peer_identity));
  if (it != port.peers.end()) return it->second->series;
  auto entry = std::make_unique<PeerSeries>();
  SeriesLabels labels;
  labels.direction = http::Direction::inbound;
  labels.target_port = std::to_string(number);
  labels.peer_identity = peer_identity;
  entry->labels = labels.request_values();
  entry->series = RequestSeries(&shared_.metrics, &entry->labels);
  RequestSeries& series = entry->series;
  port.peers.emplace(peer_identity, std::move(entry));
  return series;
}

std::unique_ptr<http::DownstreamCallbacks> InboundFactory::create(http::DownstreamStream& stream,
                                                                  h::RequestHead&& head,
                                                                  bool end_stream) {
  const http::DownstreamInfo& info = stream.info();
  uint16_t number = info.original_destination.port();
  Port& target = port(number);
  bool grpc = is_grpc(head);
  Plan plan;
  plan.direction = http::Direction::inbound;
  plan.fixed = target.target;
  plan.policy = &policy_;
  plan.budget = budget_.get();
  plan.series = &series(target, number, info.peer_identity);
  plan.scope = &scope_;

  if (head.version == h::Version::http2) {
    const std::string* orig = head.headers.get(kOrigProtoHeader);
    if (orig == nullptr) {
      plan.protocol = http::UpstreamProtocol::h2c;
    } else {
      if (*orig == "HTTP/1.1") {
        head.version = h::Version::http11;
      } else if (*orig == "HTTP/1.0") {
        head.version = h::Version::http10;
      } else {
        log::warn("invalid trellis-orig-proto",
                  {{"value", *orig}, {"peer", info.peer.to_string()},
                   {"peer_identity", info.peer_identity}});
        return answered(shared_, stream, std::move(plan), grpc, 400, LocalReason::bad_request);
      }
      head.headers.remove(kOrigProtoHeader);
      plan.protocol = http::UpstreamProtocol::http1;
    }
  } else {
    // Only a peer sidecar's HTTP/2 streams may carry it.
    head.headers.remove(kOrigProtoHeader);
    plan.protocol = http::UpstreamProtocol::http1;
  }
  auto exchange = std::make_unique<Exchange>(shared_, nullptr, stream, std::move(plan),
                                             std::move(head), std::nullopt, grpc, end_stream);
  exchange->start();
  return exchange;
}

}  // namespace trellis::proxy::exchange
