#include "proxy/exchange/installed_table.h"

#include <utility>

namespace trellis::proxy::exchange {

namespace {

std::string key_of(const std::vector<std::string>& values) {
  std::string key;
  for (const std::string& v : values) {
    key += v;
    key += '\0';
  }
  return key;
}

std::string port_label(uint16_t port) { return port == 0 ? std::string() : std::to_string(port); }

SeriesLabels parent_labels(const routes::Service& service, const routes::ServicePort& port) {
  SeriesLabels l;
  l.parent_namespace = service.ns;
  l.parent_name = service.name;
  l.parent_port = port_label(port.port);
  return l;
}

SeriesLabels rule_labels(const router::RuleId& id) {
  SeriesLabels l;
  l.parent_namespace = std::string(id.parent_namespace);
  l.parent_name = std::string(id.parent_name);
  l.parent_port = port_label(id.parent_port);
  l.route_kind = std::string(routes::name(id.route_kind));
  l.route_namespace = std::string(id.route_namespace);
  l.route_name = std::string(id.route_name);
  l.route_rule = id.rule_name.empty() ? std::to_string(id.rule_index) : std::string(id.rule_name);
  return l;
}

void set_backend(SeriesLabels& l, const router::BackendId& id) {
  l.backend_namespace = std::string(id.ns);
  l.backend_name = std::string(id.name);
  l.backend_port = port_label(id.port);
}

}  // namespace

std::string route_budget_key(const routes::Route& route) {
  return std::string(routes::name(route.kind)) + "/" + route.ns + "/" + route.name;
}

std::string service_budget_key(std::string_view ns, std::string_view name, uint16_t port) {
  return "Service/" + std::string(ns) + "/" + std::string(name) + ":" + std::to_string(port);
}

Result<std::unique_ptr<BudgetRegistry>> BudgetRegistry::create(const retry::BudgetConfig& config,
                                                                retry::Clock clock) {
  RETURN_IF_ERROR(retry::validate(config));
  if (!clock) return make_error("retry_budget: a clock is required");
  return std::unique_ptr<BudgetRegistry>(new BudgetRegistry(config, std::move(clock)));
}

std::shared_ptr<retry::Budget> BudgetRegistry::find(const std::string& key) const {
  auto it = budgets_.find(key);
  return it == budgets_.end() ? nullptr : it->second;
}

// Builds one InstalledTable; commits the budgets only when everything succeeded.
class Installer {
 public:
  Installer(std::shared_ptr<const router::Table> table, const retry::Config& config,
            BudgetRegistry& budgets)
      : budgets_(budgets), out_(new InstalledTable()) {
    out_->router_ = std::move(table);
    out_->retry_config_ = config;
    out_->implicit_policy_ = retry::implicit_policy(config);
  }

  Result<std::shared_ptr<const InstalledTable>> run() {
    RETURN_IF_ERROR(retry::validate(out_->retry_config_));
    const router::Table& t = *out_->router_;
    out_->rules_.resize(t.rules().size());
    out_->backends_.resize(t.backends().size());
    for (const auto& f : t.frontends()) RETURN_IF_ERROR(frontend(*f));
    budgets_.budgets_ = std::move(next_budgets_);
    return std::shared_ptr<const InstalledTable>(std::move(out_));
  }

 private:
  Status frontend(const router::Frontend& f) {
    FrontendPlan plan;
    SeriesLabels labels = parent_labels(*f.service, *f.port);
    plan.scope = scope(labels);
    if (f.mode == router::Mode::passthrough) {
      labels.backend_namespace = f.service->ns;
      labels.backend_name = f.service->name;
      labels.backend_port = port_label(f.port->port);
      if (f.endpoints != nullptr) {
        ASSIGN_OR_RETURN(size_t set, endpoint_set(*f.endpoints));
        plan.endpoint_set = set;
      }
      std::string key = service_budget_key(f.service->ns, f.service->name, f.port->port);
      ASSIGN_OR_RETURN(plan.budget, budget(key));
    }
    plan.series = request(labels);
    out_->frontends_.emplace(&f, std::move(plan));
    for (const router::Rule& r : f.rules) RETURN_IF_ERROR(rule(r));
    return ok_status();
  }

  Status rule(const router::Rule& r) {
    RulePlan& plan = out_->rules_[r.ordinal];
    SeriesLabels labels = rule_labels(r.id);
    plan.series = request(labels);
    plan.scope = scope(labels);
    ASSIGN_OR_RETURN(plan.budget, budget(route_budget_key(*r.route)));
    if (r.timeouts != nullptr) {
      if (r.timeouts->request) plan.request_timeout = r.timeouts->request->value;
      if (r.timeouts->backend_request) plan.backend_timeout = r.timeouts->backend_request->value;
    }
    if (r.retry != nullptr) {
      std::optional<std::chrono::milliseconds> backoff;
      if (r.retry->backoff) backoff = r.retry->backoff->value;
      std::string path = std::string(routes::name(r.id.route_kind)) + " " +
                         std::string(r.id.route_namespace) + "/" + std::string(r.id.route_name) +
                         " rules[" + std::to_string(r.id.rule_index) + "].retry";
      auto policy = retry::make_policy(path, r.retry->codes, r.retry->attempts, backoff,
                                       out_->retry_config_);
      if (!policy.ok()) return std::move(policy).error();
      plan.policy = *policy;
    } else {
      plan.policy = out_->implicit_policy_;
    }
    for (const router::Backend& b : r.backends) {
      SeriesLabels bl = labels;
      set_backend(bl, b.id);
      BackendPlan& bp = out_->backends_[b.ordinal];
      bp.series = request(bl);
      if (b.endpoints != nullptr) {
        ASSIGN_OR_RETURN(size_t set, endpoint_set(*b.endpoints));
        bp.endpoint_set = set;
      }
    }
    for (const router::Mirror& m : r.filters.mirrors) RETURN_IF_ERROR(mirror(labels, m));
    for (const router::Backend& b : r.backends) {
      for (const router::Mirror& m : b.filters.mirrors) RETURN_IF_ERROR(mirror(labels, m));
    }
    return ok_status();
  }

  Status mirror(const SeriesLabels& rule, const router::Mirror& m) {
    SeriesLabels labels = rule;
    set_backend(labels, m.backend.id);
    BackendPlan& bp = out_->backends_[m.backend.ordinal];
    bp.mirror = true;
    bp.series = add(out_->mirror_labels_, mirror_index_, labels.mirror_values());
    if (m.backend.endpoints != nullptr) {
      ASSIGN_OR_RETURN(size_t set, endpoint_set(*m.backend.endpoints));
      bp.endpoint_set = set;
    }
    return ok_status();
  }

  size_t request(const SeriesLabels& l) {
    return add(out_->request_labels_, request_index_, l.request_values());
  }
  size_t scope(const SeriesLabels& l) {
    return add(out_->scope_labels_, scope_index_, l.scope_values());
  }

  static size_t add(std::vector<std::vector<std::string>>& list,
                    std::unordered_map<std::string, size_t>& index,
                    std::vector<std::string> values) {
    auto [it, inserted] = index.emplace(key_of(values), list.size());
    if (inserted) list.push_back(std::move(values));
    return it->second;
  }

  Result<size_t> endpoint_set(const router::EndpointSet& set) {
    auto [it, inserted] = set_index_.emplace(&set, out_->sets_.size());
    if (!inserted) return it->second;
    std::vector<net::Address> addresses;
    std::vector<std::string_view> identities;
    for (const routes::EndpointAddress* a : set.eligible) {
      auto address = net::Address::from_ip(a->ip, a->port);
      if (!address.ok()) {
        const routes::Endpoints& e = *set.source;
        return make_error("endpoints " + e.ns + "/" + e.service + ":" + std::to_string(e.port) +
                          ": " + address.error().message);
      }
      addresses.push_back(*address);
      identities.push_back(a->identity ? std::string_view(*a->identity) : std::string_view());
    }
    out_->sets_.push_back(std::move(addresses));
    out_->identities_.push_back(std::move(identities));
    return it->second;
  }

  Result<std::shared_ptr<retry::Budget>> budget(const std::string& key) {
    if (auto it = next_budgets_.find(key); it != next_budgets_.end()) return it->second;
    std::shared_ptr<retry::Budget> b = budgets_.find(key);
    if (!b) {
      auto created = retry::Budget::create(budgets_.config_, budgets_.clock_);
      if (!created.ok()) return std::move(created).error();
      b = std::move(*created);
    }
    next_budgets_.emplace(key, b);
    return b;
  }

  BudgetRegistry& budgets_;
  std::unique_ptr<InstalledTable> out_;
  std::unordered_map<const router::EndpointSet*, size_t> set_index_;
  // Label values -> series, to give equal label sets one series.
  std::unordered_map<std::string, size_t> request_index_;
  std::unordered_map<std::string, size_t> scope_index_;
  std::unordered_map<std::string, size_t> mirror_index_;
  std::unordered_map<std::string, std::shared_ptr<retry::Budget>> next_budgets_;
};

Result<std::shared_ptr<const InstalledTable>> InstalledTable::create(
    std::shared_ptr<const router::Table> table, const retry::Config& retry_config,
    BudgetRegistry& budgets) {
  if (!table) return make_error("installed table: no route table");
  return Installer(std::move(table), retry_config, budgets).run();
}

const FrontendPlan* InstalledTable::frontend(const router::Frontend& frontend) const {
  auto it = frontends_.find(&frontend);
  return it == frontends_.end() ? nullptr : &it->second;
}

namespace {

// Gives `series` the handles of the series of `previous` with the same
// labels. Only the series the previous table used are looked up.
template <typename Series>
void carry_over(const std::vector<Series>& previous,
                const std::vector<std::vector<std::string>>& previous_labels,
                std::vector<Series>& series, const std::vector<std::vector<std::string>>& labels) {
  std::unordered_map<std::string, size_t> used;
  for (size_t i = 0; i < previous.size(); ++i) {
    if (previous[i].used()) used.emplace(key_of(previous_labels[i]), i);
  }
  if (used.empty()) return;
  for (size_t i = 0; i < series.size(); ++i) {
    auto it = used.find(key_of(labels[i]));
    if (it != used.end()) series[i].adopt(previous[it->second]);
  }
}

}  // namespace

std::shared_ptr<WorkerTable> WorkerTable::create(std::shared_ptr<const InstalledTable> table,
                                                 balancer::Balancer& balancer,
                                                 const ExchangeMetrics& metrics,
                                                 const WorkerTable* previous) {
  std::shared_ptr<WorkerTable> w(new WorkerTable());
  w->table_ = std::move(table);
  const InstalledTable& t = *w->table_;
  w->sets_ = balancer.install(t.endpoint_sets());
  w->requests_.reserve(t.request_series().size());
  for (const auto& labels : t.request_series()) w->requests_.emplace_back(&metrics, &labels);
  w->scopes_.reserve(t.scope_series().size());
  for (const auto& labels : t.scope_series()) w->scopes_.emplace_back(&metrics, &labels);
  w->mirrors_.reserve(t.mirror_series().size());
  for (const auto& labels : t.mirror_series()) w->mirrors_.emplace_back(&metrics, &labels);
  if (previous == nullptr) return w;

  // The handles of series the new table keeps, so that their children (and
  // counts) are not dropped when the previous table is released.
  const InstalledTable& old = *previous->table_;
  carry_over(previous->requests_, old.request_series(), w->requests_, t.request_series());
  carry_over(previous->scopes_, old.scope_series(), w->scopes_, t.scope_series());
  carry_over(previous->mirrors_, old.mirror_series(), w->mirrors_, t.mirror_series());
  return w;
}

}  // namespace trellis::proxy::exchange
