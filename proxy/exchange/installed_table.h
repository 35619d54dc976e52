// A route table made ready for the exchanges, in two parts:
//
// InstalledTable — built once per route table on the MAIN thread, then shared
// read-only by every worker (std::shared_ptr<const InstalledTable>). On top
// of the compiled router::Table it holds what requests need by ordinal,
// without allocating:
//   - per rule: its retry policy (retry::make_policy from Rule::retry, the
//     implicit policy otherwise), its route's retry budget, its timeouts;
//   - per rule, backend, mirror and frontend: the label values of its metric
//     series (metrics.h), deduplicated;
//   - the distinct endpoint sets of backends, mirrors and passthrough
//     frontends, as address lists for Balancer::install, with each address's
//     SPIFFE identity.
// Retry budgets are per route identity (kind, namespace, name) and must
// survive table swaps: a BudgetRegistry on the main thread hands a route the
// Budget it had in the previous table. Passthrough Service ports get a budget
// per (namespace, name, port).
//
// WorkerTable — the per-worker companion, built on the worker when it adopts
// an InstalledTable: the balancer's EndpointSets for the table's sets and the
// worker's metric handles (resolved lazily, copied over from the previous
// WorkerTable for series the new table keeps). An exchange holds the
// WorkerTable it started with (shared_ptr) until it ends.
#pragma once

// First: the router's headers name message types as `http::` from inside
// trellis::proxy, which proxy/http/stream.h (included by metrics.h) would
// shadow with trellis::proxy::http.
#include "proxy/router/filters.h"
#include "proxy/router/table.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/result.h"
#include "common/net/address.h"
#include "proxy/balancer/balancer.h"
#include "proxy/exchange/metrics.h"
#include "proxy/retry/budget.h"
#include "proxy/retry/policy.h"

namespace trellis::proxy::exchange {

class Installer;

// Route identity -> Budget, on the main thread. Each install keeps the budgets
// of the routes the new table has and forgets the others (tables still in
// use hold their own references).
class BudgetRegistry {
 public:
  // Errors: retry::validate's for the budget config.
  static Result<std::unique_ptr<BudgetRegistry>> create(const retry::BudgetConfig& config,
                                                        retry::Clock clock);

  size_t size() const { return budgets_.size(); }
  // The budget registered under `key`, or nullptr. For tests and admin pages.
  std::shared_ptr<retry::Budget> find(const std::string& key) const;

 private:
  friend class Installer;
  BudgetRegistry(const retry::BudgetConfig& config, retry::Clock clock)
      : config_(config), clock_(std::move(clock)) {}

  retry::BudgetConfig config_;
  retry::Clock clock_;
  std::unordered_map<std::string, std::shared_ptr<retry::Budget>> budgets_;
};

// Registry keys: "HTTPRoute/<ns>/<name>", "GRPCRoute/<ns>/<name>",
// "Service/<ns>/<name>:<port>" (passthrough).
std::string route_budget_key(const routes::Route& route);
std::string service_budget_key(std::string_view ns, std::string_view name, uint16_t port);

struct RulePlan {
  size_t series = 0;  // trellis_requests_total for answers without a backend
  size_t scope = 0;   // retries and timeouts
  retry::Policy policy;
  std::shared_ptr<retry::Budget> budget;
  std::chrono::milliseconds request_timeout{0};  // 0: none
  std::chrono::milliseconds backend_timeout{0};  // 0: none
};

struct BackendPlan {
  bool mirror = false;  // a RequestMirror's backend: `series` is a mirror series
  size_t series = 0;
  std::optional<size_t> endpoint_set;  // none for an invalid backend
};

struct FrontendPlan {
  size_t series = 0;  // passthrough: backend_* = the Service; routed: answers without a rule (404)
  size_t scope = 0;
  std::optional<size_t> endpoint_set;  // passthrough with an endpoints entry
  std::shared_ptr<retry::Budget> budget;  // passthrough
};

class InstalledTable {
 public:
  // Main thread. Errors: a rule's retry stanza that make_policy rejects,
  // as "HTTPRoute shop/split rules[1].retry.codes[0]: 399 is not in [400, 599]".
  // On error the registry is unchanged.
  static Result<std::shared_ptr<const InstalledTable>> create(
      std::shared_ptr<const router::Table> table, const retry::Config& retry_config,
      BudgetRegistry& budgets);

  const router::Table& router() const { return *router_; }
  const retry::Config& retry_config() const { return retry_config_; }
  const retry::Policy& implicit_policy() const { return implicit_policy_; }

  // nullptr when `frontend` is not one of this table's (never, for the
  // router's own answers).
  const FrontendPlan* frontend(const router::Frontend& frontend) const;
  const RulePlan& rule(const router::Rule& rule) const { return rules_[rule.ordinal]; }
  const BackendPlan& backend(const router::Backend& backend) const {
    return backends_[backend.ordinal];
  }

  // Endpoint sets, for Balancer::install, and per address its identity
  // ("" = plaintext).
  const std::vector<std::vector<net::Address>>& endpoint_sets() const { return sets_; }
  std::string_view identity(size_t set, size_t index) const { return identities_[set][index]; }

  // Metric series: the label values of each, distinct within a kind.
  const std::vector<std::vector<std::string>>& request_series() const { return request_labels_; }
  const std::vector<std::vector<std::string>>& scope_series() const { return scope_labels_; }
  const std::vector<std::vector<std::string>>& mirror_series() const { return mirror_labels_; }

 private:
  friend class Installer;
  InstalledTable() = default;

  std::shared_ptr<const router::Table> router_;
  retry::Config retry_config_;
  retry::Policy implicit_policy_;
  std::unordered_map<const router::Frontend*, FrontendPlan> frontends_;
  std::vector<RulePlan> rules_;
  std::vector<BackendPlan> backends_;
  std::vector<std::vector<net::Address>> sets_;
  std::vector<std::vector<std::string_view>> identities_;
  std::vector<std::vector<std::string>> request_labels_;
  std::vector<std::vector<std::string>> scope_labels_;
  std::vector<std::vector<std::string>> mirror_labels_;
};

class WorkerTable {
 public:
  // Worker thread, when the worker adopts `table`: installs the table's
  // endpoint sets in `balancer` and carries the handles of `previous` (the
  // worker's current WorkerTable, or null) over. `metrics` must outlive the
  // WorkerTable (it is the factory's).
  static std::shared_ptr<WorkerTable> create(std::shared_ptr<const InstalledTable> table,
                                             balancer::Balancer& balancer,
                                             const ExchangeMetrics& metrics,
                                             const WorkerTable* previous);

  const InstalledTable& table() const { return *table_; }
  balancer::Candidates& candidates(size_t set) { return (*sets_)[set]; }
  const balancer::EndpointSets& endpoint_sets() const { return *sets_; }
  RequestSeries& request_series(size_t i) { return requests_[i]; }
  ScopeSeries& scope_series(size_t i) { return scopes_[i]; }
  MirrorSeries& mirror_series(size_t i) { return mirrors_[i]; }

 private:
  WorkerTable() = default;

  std::shared_ptr<const InstalledTable> table_;
  std::shared_ptr<balancer::EndpointSets> sets_;
  std::vector<RequestSeries> requests_;
  std::vector<ScopeSeries> scopes_;
  std::vector<MirrorSeries> mirrors_;
};

}  // namespace trellis::proxy::exchange
