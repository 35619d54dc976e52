// The installed table (main thread), the worker's companion, table swaps,
// configuration errors and the metrics a scripted sequence leaves behind.
#include "tests/unit/proxy/exchange/support.h"

using namespace exchange_test;

namespace {

retry::Clock steady() {
  return [] { return std::chrono::steady_clock::now(); };
}

std::unique_ptr<ex::BudgetRegistry> registry() {
  auto r = ex::BudgetRegistry::create(retry::BudgetConfig{}, steady());
  REQUIRE(r.ok());
  return std::move(*r);
}

const router::Frontend& frontend(const router::Table& t, const char* ip, uint16_t port) {
  const router::Frontend* f = t.frontend(router::IpAddress::parse(ip), port);
  REQUIRE(f != nullptr);
  return *f;
}

constexpr char kTwoRules[] = R"([
    {"name":"named","matches":[{"path":{"type":"PathPrefix","value":"/a"}}],
     "timeouts":{"request":"2s","backendRequest":"500ms"},
     "retry":{"codes":[502,503],"attempts":3,"backoff":"100ms"},
     "backendRefs":[{"name":"echo-v1","port":80},{"name":"echo-v2","port":80}]},
    {"matches":[{"path":{"type":"PathPrefix","value":"/b"}}],
     "filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"echo-v2","port":80}}}],
     "backendRefs":[{"name":"echo-v1","port":80}]}])";

}  // namespace

TEST_CASE("an installed table carries per-rule policies, budgets, timeouts and label sets") {
  auto budgets = registry();
  auto compiled = compile(table_json(http_route(kTwoRules)));
  auto installed = ex::InstalledTable::create(compiled, retry::Config{}, *budgets);
  REQUIRE(installed.ok());
  const ex::InstalledTable& t = **installed;

  const router::Frontend& echo = frontend(*compiled, kEcho, 80);
  REQUIRE(echo.rules.size() == 2);
  const ex::RulePlan& named = t.rule(echo.rules[0]);
  CHECK(named.policy.configured);
  CHECK(named.policy.max_retries == 3);
  CHECK(named.policy.retries_status(503));
  CHECK(!named.policy.retries_status(500));
  CHECK(named.policy.backoff == milliseconds(100));
  CHECK(named.request_timeout == milliseconds(2000));
  CHECK(named.backend_timeout == milliseconds(500));
  const ex::RulePlan& unnamed = t.rule(echo.rules[1]);
  CHECK(!unnamed.policy.configured);
  CHECK(unnamed.policy.max_retries == 1);  // implicit: connect failures
  CHECK(unnamed.request_timeout == milliseconds(0));
  // One budget per route, shared by its rules.
  CHECK(named.budget == unnamed.budget);
  CHECK(named.budget == budgets->find("HTTPRoute/shop/r"));

  CHECK(t.request_series()[named.series] ==
        std::vector<std::string>{"outbound", "shop", "echo", "80", "HTTPRoute", "shop", "r",
                                 "named", "", "", "", "", ""});
  CHECK(t.scope_series()[unnamed.scope] ==
        std::vector<std::string>{"outbound", "shop", "echo", "80", "HTTPRoute", "shop", "r", "1"});
  const ex::BackendPlan& v2 = t.backend(echo.rules[0].backends[1]);
  CHECK(!v2.mirror);
  CHECK(t.request_series()[v2.series][9] == "echo-v2");
  const ex::BackendPlan& mirror = t.backend(echo.rules[1].filters.mirrors[0].backend);
  CHECK(mirror.mirror);
  CHECK(t.mirror_series()[mirror.series] ==
        std::vector<std::string>{"shop", "echo", "80", "HTTPRoute", "shop", "r", "1", "shop",
                                 "echo-v2", "80"});

  // Endpoint sets: one per distinct endpoints entry, with identities.
  REQUIRE(v2.endpoint_set.has_value());
  CHECK(*t.backend(echo.rules[1].backends[0]).endpoint_set ==
        *t.backend(echo.rules[0].backends[0]).endpoint_set);
  CHECK(*mirror.endpoint_set == *v2.endpoint_set);
  size_t v1_set = *t.backend(echo.rules[0].backends[0]).endpoint_set;
  REQUIRE(t.endpoint_sets()[v1_set].size() == 2);
  CHECK(t.endpoint_sets()[v1_set][0].to_string() == "10.244.1.1:8080");
  CHECK(t.identity(v1_set, 1) == kV1Identity);
  CHECK(t.identity(*v2.endpoint_set, 0).empty());

  // Frontends: a routed one answers 404s under its own series; passthrough
  // ports have the Service's endpoints and a budget of their own.
  const ex::FrontendPlan* routed = t.frontend(echo);
  REQUIRE(routed != nullptr);
  CHECK(!routed->endpoint_set);
  CHECK(t.request_series()[routed->series][8].empty());
  const ex::FrontendPlan* pass = t.frontend(frontend(*compiled, kEchoV1, 80));
  REQUIRE(pass != nullptr);
  CHECK(pass->endpoint_set == std::optional<size_t>(v1_set));
  CHECK(pass->budget == budgets->find("Service/shop/echo-v1:80"));
  CHECK(t.request_series()[pass->series][9] == "echo-v1");
  CHECK(t.endpoint_sets()[*t.frontend(frontend(*compiled, kEmpty, 80))->endpoint_set].empty());
}

TEST_CASE("retry budgets survive table swaps; routes that leave drop theirs") {
  auto budgets = registry();
  auto first = ex::InstalledTable::create(compile(table_json(http_route(kTwoRules), "v1")),
                                          retry::Config{}, *budgets);
  REQUIRE(first.ok());
  auto budget = budgets->find("HTTPRoute/shop/r");
  REQUIRE(budget != nullptr);
  size_t count = budgets->size();  // the route, and the passthrough ports
  CHECK(count == 5);

  auto second = ex::InstalledTable::create(compile(table_json(http_route(kTwoRules), "v2")),
                                           retry::Config{}, *budgets);
  REQUIRE(second.ok());
  CHECK(budgets->find("HTTPRoute/shop/r") == budget);
  CHECK((*second)->rule(*(*second)->router().rules()[0]).budget == budget);

  auto third = ex::InstalledTable::create(compile(table_json("[]", "v3")), retry::Config{},
                                          *budgets);
  REQUIRE(third.ok());
  CHECK(budgets->find("HTTPRoute/shop/r") == nullptr);
  CHECK(budgets->find("Service/shop/echo:80") != nullptr);
  // The first table still holds it.
  CHECK((*first)->rule(*(*first)->router().rules()[0]).budget == budget);
}

TEST_CASE("a retry stanza the policy rejects fails the install with a path-qualified error") {
  auto parsed = trellis::routes::parse(table_json(http_route(kTwoRules)));
  REQUIRE(parsed.ok());
  trellis::routes::RouteTable broken = **parsed;
  broken.services[0].routes[0].http_rules[0].retry->codes = {503, 399};
  auto budgets = registry();
  auto installed = ex::InstalledTable::create(
      router::Table::compile(std::make_shared<const trellis::routes::RouteTable>(broken)),
      retry::Config{}, *budgets);
  REQUIRE(!installed.ok());
  CHECK(installed.error().message ==
        "HTTPRoute shop/r rules[0].retry.codes[1]: 399 is not in [400, 599]");
  CHECK(budgets->size() == 0);  // nothing committed

  retry::Config bad;
  bad.backoff_cap_factor = 0;
  auto invalid = ex::InstalledTable::create(compile(table_json("[]")), bad, *budgets);
  REQUIRE(!invalid.ok());
  CHECK(invalid.error().message == "retry.backoff_cap_factor: must be in [1, 1000]");
  auto none = ex::InstalledTable::create(nullptr, retry::Config{}, *budgets);
  REQUIRE(!none.ok());
  CHECK(none.error().message == "installed table: no route table");
}

TEST_CASE("configuration and factory errors are exact") {
  ex::ExchangeConfig c;
  c.mirror_timeout = milliseconds(0);
  CHECK(ex::validate(c).error().message == "exchange.mirror_timeout: must be positive");
  c = ex::ExchangeConfig();
  c.inbound_target_ip = "localhost";
  CHECK(ex::validate(c).error().message ==
        "exchange.inbound_target_ip: invalid IP address 'localhost'");
  c = ex::ExchangeConfig();
  c.inbound_retry_backoff = milliseconds(-1);
  CHECK(ex::validate(c).error().message == "exchange.inbound_retry_backoff: must not be negative");
  c = ex::ExchangeConfig();
  c.retry.budget.ttl = milliseconds(10);
  CHECK(ex::validate(c).error().message == "retry_budget.ttl: must be in [1s, 60s]");
  CHECK(ex::validate(ex::ExchangeConfig()).ok());

  auto budget = retry::Budget::create(retry::BudgetConfig{}, steady());
  REQUIRE(budget.ok());
  std::shared_ptr<retry::Budget> shared = std::move(*budget);
  auto out = ex::OutboundFactory::create(ex::ExchangeConfig(), ex::WorkerContext{},
                                         ex::ExchangeMetrics{}, shared);
  REQUIRE(!out.ok());
  CHECK(out.error().message ==
        "outbound exchange: pool, scheduler, balancer, random source and budget are required");
  auto in = ex::InboundFactory::create(ex::ExchangeConfig(), ex::WorkerContext{},
                                       ex::ExchangeMetrics{}, shared);
  REQUIRE(!in.ok());
  CHECK(in.error().message ==
        "inbound exchange: pool, scheduler, random source and budget are required");
  auto registry_error = ex::BudgetRegistry::create(retry::BudgetConfig{}, nullptr);
  REQUIRE(!registry_error.ok());
  CHECK(registry_error.error().message == "retry_budget: a clock is required");

  trellis::metrics::Registry metrics_registry;
  REQUIRE(ex::ExchangeMetrics::create(metrics_registry).ok());
  auto twice = ex::ExchangeMetrics::create(metrics_registry);
  REQUIRE(!twice.ok());
  CHECK(twice.error().message ==
        "metric trellis_requests_total is already registered as a counter");
}

TEST_CASE("a table swap keeps the counts of the series that stay and drops the others") {
  std::string rules = R"([{"backendRefs":[{"name":"echo-v1","port":80}]}])";
  Harness h(http_route(rules));
  h.pool.responder = [](Upstream& u) { u.respond(200); };
  h.send(get("/"));
  h.scheduler.run();
  h.clients.clear();  // the exchange held the first table
  const std::map<std::string, std::string> series = {{"route_name", "r"},
                                                     {"backend_name", "echo-v1"},
                                                     {"status_code", "200"}};
  CHECK(h.value("trellis_requests_total", series) == 1);

  h.install(table_json(http_route(rules), "t2"));
  CHECK(h.value("trellis_requests_total", series) == 1);
  CHECK(h.value("trellis_request_duration_seconds_count", {{"route_name", "r"}}) == 1);
  h.send(get("/"));
  h.scheduler.run();
  CHECK(h.value("trellis_requests_total", series) == 2);

  // The route goes away: so do its series, once nothing uses the old table.
  h.clients.clear();
  h.install(table_json(http_route(rules, "other"), "t3"));
  CHECK(h.value("trellis_requests_total", {{"route_name", "r"}}) == 0);
  h.send(get("/"));
  h.scheduler.run();
  CHECK(h.value("trellis_requests_total", {{"route_name", "other"}}) == 1);
}

TEST_CASE("an exchange keeps the table it started with across a swap") {
  Harness h(http_route(R"([{"backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& c = h.send(get("/"));
  REQUIRE(h.pool.streams.size() == 1);
  h.install(table_json("[]", "t2"));  // echo:80 becomes passthrough
  h.pool.last().respond(200);
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_requests_total", {{"route_name", "r"}, {"status_code", "200"}}) == 1);
  // New requests follow the new table.
  h.send(get("/"));
  CHECK(h.pool.last().target.address.ip().rfind("10.244.0.", 0) == 0);
}

TEST_CASE("metrics after a scripted sequence, as exposed") {
  Harness h(http_route(R"([
      {"matches":[{"path":{"type":"PathPrefix","value":"/retry"}}],
       "retry":{"codes":[503],"attempts":1,"backoff":"1ms"},"backendRefs":[{"name":"echo-v1","port":80}]},
      {"matches":[{"path":{"type":"PathPrefix","value":"/slow"}}],"timeouts":{"request":"50ms"},
       "backendRefs":[{"name":"echo-v1","port":80}]},
      {"matches":[{"path":{"type":"Exact","value":"/go"}}],
       "filters":[{"type":"RequestRedirect","requestRedirect":{"hostname":"example.org"}}]}])"));
  // 1: 503 then 200 after one retry. 2: the same path, 200 at once.
  int answered = 0;
  h.pool.responder = [&](Upstream& u) { u.respond(answered++ == 0 ? 503 : 200); };
  h.send(get("/retry"));
  h.scheduler.advance(milliseconds(10));
  h.send(get("/retry"));
  h.scheduler.run();
  // 3: a redirect. 4: no route. 5: a timeout.
  h.send(get("/go"));
  h.send(get("/nothing"));
  h.pool.responder = nullptr;
  h.send(get("/slow"));
  h.scheduler.advance(milliseconds(50));

  std::string text = trellis::metrics::text_exposition(h.registry);
  INFO(text);
  const char* base = R"(direction="outbound",parent_name="echo",parent_namespace="shop",parent_port="80",)";
  auto has = [&](const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
  };
  std::string retried = std::string("trellis_retries_total{") + base +
                        R"(reason="response",route_kind="HTTPRoute",route_name="r",route_namespace="shop",route_rule="0"} 1)";
  std::string timeouts =
      R"(trellis_timeouts_total{direction="outbound",kind="request",parent_name="echo",parent_namespace="shop",)"
      R"(parent_port="80",route_kind="HTTPRoute",route_name="r",route_namespace="shop",route_rule="1"} 1)";
  std::string ok = std::string(R"(trellis_requests_total{backend_name="echo-v1",backend_namespace="shop",backend_port="80",)") +
                   base + R"(peer_identity="",route_kind="HTTPRoute",route_name="r",route_namespace="shop",route_rule="0",status_code="200",target_port=""} 2)";
  CHECK(has(retried));
  CHECK(has(timeouts));
  CHECK(has(ok));
  CHECK(has(R"(trellis_local_responses_total{direction="outbound",reason="redirect"} 1)"));
  CHECK(has(R"(trellis_local_responses_total{direction="outbound",reason="no_route"} 1)"));
  CHECK(has(R"(trellis_local_responses_total{direction="outbound",reason="request_timeout"} 1)"));
  CHECK(h.value("trellis_requests_total", {{"route_rule", "2"}, {"status_code", "302"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"route_name", ""}, {"status_code", "404"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"route_rule", "1"}, {"status_code", "504"}}) == 1);
  CHECK(h.value("trellis_requests_total") == 5);
  CHECK(h.value("trellis_request_duration_seconds_count") == 5);
  CHECK(h.value("trellis_retry_budget_exhausted_total") == 0);
}
