#include "common/metrics/metrics.h"

#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics/exposition.h"

namespace metrics = trellis::metrics;

namespace {

std::string metric_error(trellis::Status s) {
  REQUIRE_FALSE(s.ok());
  return s.error().message;
}

template <typename T>
std::string error_of(const trellis::Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("metric names follow the data model, with exact errors") {
  CHECK(metrics::check_metric_name("trellis_requests_total").ok());
  CHECK(metrics::check_metric_name("job:rate5m").ok());
  CHECK(metrics::check_metric_name("_private").ok());
  CHECK(metric_error(metrics::check_metric_name("")) == "metric name is empty");
  CHECK(metric_error(metrics::check_metric_name("5xx_total")) ==
        "metric name '5xx_total' must not start with a digit");
  CHECK(metric_error(metrics::check_metric_name("__internal")) ==
        "metric name '__internal' uses the reserved prefix '__'");
  CHECK(metric_error(metrics::check_metric_name("trellis-requests")) ==
        "metric name 'trellis-requests' contains '-' (allowed: a-z A-Z 0-9 _ :)");
  CHECK(metric_error(metrics::check_metric_name("caf\xc3\xa9")) ==
        "metric name 'caf\\xc3\\xa9' contains '\\xc3' (allowed: a-z A-Z 0-9 _ :)");
  CHECK(metric_error(metrics::check_metric_name(std::string("a\0b", 3))) ==
        "metric name 'a\\x00b' contains '\\x00' (allowed: a-z A-Z 0-9 _ :)");
}

TEST_CASE("label names follow the data model, with exact errors") {
  CHECK(metrics::check_label_name("route_name").ok());
  CHECK(metric_error(metrics::check_label_name("")) == "label name is empty");
  CHECK(metric_error(metrics::check_label_name("1st")) ==
        "label name '1st' must not start with a digit");
  CHECK(metric_error(metrics::check_label_name("__name__")) ==
        "label name '__name__' uses the reserved prefix '__'");
  CHECK(metric_error(metrics::check_label_name("a:b")) ==
        "label name 'a:b' contains ':' (allowed: a-z A-Z 0-9 _)");
  CHECK(metric_error(metrics::check_label_name("a b")) ==
        "label name 'a b' contains ' ' (allowed: a-z A-Z 0-9 _)");
}

TEST_CASE("registering families validates name, help and label names") {
  metrics::Registry r;
  CHECK(error_of(r.counter("bad-name", "h")) ==
        "metric name 'bad-name' contains '-' (allowed: a-z A-Z 0-9 _ :)");
  CHECK(error_of(r.gauge("g", "")) == "g: help text is empty");
  CHECK(error_of(r.counter("c", "h", {"route", "__x"})) ==
        "c: label name '__x' uses the reserved prefix '__'");
  CHECK(error_of(r.counter("c", "h", {"route", "route"})) == "c: duplicate label name route");
  CHECK(error_of(r.histogram("h", "h", {"le"}, {1})) ==
        "h: label name le is reserved for histogram buckets");
  CHECK(r.counter("le_ok", "a counter may use le", {"le"}).ok());
  // A failed registration does not reserve the name.
  CHECK(r.counter("c", "h", {"route"}).ok());
}

TEST_CASE("a name is registered once, whatever the type") {
  metrics::Registry r;
  REQUIRE(r.counter("trellis_x", "h").ok());
  CHECK(error_of(r.gauge("trellis_x", "h")) ==
        "metric trellis_x is already registered as a counter");
  CHECK(error_of(r.counter("trellis_x", "h")) ==
        "metric trellis_x is already registered as a counter");
  REQUIRE(r.histogram("trellis_h", "h", {}, {1}).ok());
  CHECK(error_of(r.counter("trellis_h", "h")) ==
        "metric trellis_h is already registered as a histogram");
  REQUIRE(r.info("trellis_i", "h", {"v"}).ok());
  CHECK(error_of(r.gauge("trellis_i", "h")) ==
        "metric trellis_i is already registered as an info gauge");
}

TEST_CASE("histogram bucket boundaries must be finite and strictly increasing") {
  metrics::Registry r;
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(error_of(r.histogram("h", "h", {}, {})) ==
        "h: a histogram needs at least one bucket boundary");
  for (const auto& bad : std::vector<std::vector<double>>{{1, 1}, {2, 1}, {1, inf}, {nan}, {-inf, 0}}) {
    CHECK(error_of(r.histogram("h", "h", {}, bad)) ==
          "h: bucket boundaries must be finite and strictly increasing");
  }
  CHECK(r.histogram("h", "h", {}, {-1, 0, 1}).ok());
}

TEST_CASE("bucket presets are valid histograms spanning their range") {
  metrics::Registry r;
  auto proxy = metrics::proxy_duration_buckets();
  CHECK(proxy.front() == 0.0005);
  CHECK(proxy.back() == 10);
  CHECK(r.histogram("proxy_seconds", "h", {}, proxy).ok());
  auto controller = metrics::controller_duration_buckets();
  CHECK(controller.front() == 0.001);
  CHECK(controller.back() == 60);
  CHECK(r.histogram("controller_seconds", "h", {}, controller).ok());
}

TEST_CASE("label values: exact count, valid UTF-8") {
  metrics::Registry r;
  auto f = r.counter("c", "h", {"direction", "code"});
  REQUIRE(f.ok());
  CHECK(f->name() == "c");
  CHECK(error_of(f->with_labels({"outbound"})) == "c: expected 2 label values, got 1");
  CHECK(error_of(f->with_labels({"a", "b", "c"})) == "c: expected 2 label values, got 3");
  CHECK(error_of(f->with_labels({"outbound", "\xff"})) ==
        "c: value of label code is not valid UTF-8");
  CHECK(error_of(f->with_labels({"\xc0\xaf", "200"})) ==  // overlong '/'
        "c: value of label direction is not valid UTF-8");
  CHECK(error_of(f->with_labels({"\xed\xa0\x80", "200"})) ==  // surrogate
        "c: value of label direction is not valid UTF-8");
  CHECK(error_of(f->with_labels({"\xe2\x82", "200"})) ==  // truncated
        "c: value of label direction is not valid UTF-8");
  CHECK(f->with_labels({"caf\xc3\xa9 \xf0\x9f\x8c\xb3", ""}).ok());
  CHECK(metrics::text_exposition(r) == "");  // handles dropped: nothing to expose
}

TEST_CASE("exposition of a small registry is exact text format 0.0.4") {
  metrics::Registry r;
  auto requests = r.counter("trellis_requests_total", "Requests handled.", {"route", "code"});
  auto open = r.gauge("trellis_tcp_connections_open", "Open TCP connections.");
  auto latency = r.histogram("trellis_request_duration_seconds", "Request latency.\nIn seconds, \\o/",
                             {"route"}, {0.005, 0.1, 1});
  REQUIRE(requests.ok());
  REQUIRE(open.ok());
  REQUIRE(latency.ok());

  auto ok = requests->with_labels({"shop/echo", "200"}).value();
  auto hostile = requests->with_labels({"a\"b\\c\nd", "503"}).value();
  auto connections = open->with_labels({}).value();
  auto echo_latency = latency->with_labels({"shop/echo"}).value();
  ok.inc();
  ok.inc(2);
  hostile.inc();
  connections.set(7);
  connections.dec(2.5);
  echo_latency.observe(0.002);
  echo_latency.observe(0.05);
  echo_latency.observe(0.05);
  echo_latency.observe(3);

  CHECK(metrics::text_exposition(r) ==
        "# HELP trellis_request_duration_seconds Request latency.\\nIn seconds, \\\\o/\n"
        "# TYPE trellis_request_duration_seconds histogram\n"
        "trellis_request_duration_seconds_count{route=\"shop/echo\"} 4\n"
        "trellis_request_duration_seconds_sum{route=\"shop/echo\"} 3.102\n"
        "trellis_request_duration_seconds_bucket{route=\"shop/echo\",le=\"0.005\"} 1\n"
        "trellis_request_duration_seconds_bucket{route=\"shop/echo\",le=\"0.1\"} 3\n"
        "trellis_request_duration_seconds_bucket{route=\"shop/echo\",le=\"1\"} 3\n"
        "trellis_request_duration_seconds_bucket{route=\"shop/echo\",le=\"+Inf\"} 4\n"
        "# HELP trellis_requests_total Requests handled.\n"
        "# TYPE trellis_requests_total counter\n"
        "trellis_requests_total{code=\"200\",route=\"shop/echo\"} 3\n"
        "trellis_requests_total{code=\"503\",route=\"a\\\"b\\\\c\\nd\"} 1\n"
        "# HELP trellis_tcp_connections_open Open TCP connections.\n"
        "# TYPE trellis_tcp_connections_open gauge\n"
        "trellis_tcp_connections_open 4.5\n");
  CHECK(std::string(metrics::kTextContentType) == "text/plain; version=0.0.4; charset=utf-8");
}

TEST_CASE("extra collectables are merged into the exposition in name order") {
  metrics::Registry main;
  metrics::Registry worker;
  auto a = main.gauge("b_gauge", "B.").value().with_labels({}).value();
  auto b = worker.gauge("a_gauge", "A.").value().with_labels({}).value();
  auto c = worker.gauge("c_gauge", "C.").value().with_labels({}).value();
  a.set(2);
  b.set(1);
  c.set(3);

  struct Adapter : prometheus::Collectable {
    const metrics::Registry* registry;
    explicit Adapter(const metrics::Registry* r) : registry(r) {}
    std::vector<prometheus::MetricFamily> Collect() const override { return registry->collect(); }
  } adapter(&worker);

  CHECK(metrics::text_exposition(main, {&adapter}) ==
        "# HELP a_gauge A.\n# TYPE a_gauge gauge\na_gauge 1\n"
        "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge 2\n"
        "# HELP c_gauge C.\n# TYPE c_gauge gauge\nc_gauge 3\n");
}

TEST_CASE("a child is exposed while a handle on it exists") {
  metrics::Registry r;
  auto family = r.counter("routed_total", "Routed.", {"route"}).value();
  auto a = family.with_labels({"a"}).value();
  auto b = family.with_labels({"b"}).value();
  a.inc();
  b.inc(5);
  const std::string with_both =
      "# HELP routed_total Routed.\n# TYPE routed_total counter\n"
      "routed_total{route=\"a\"} 1\nrouted_total{route=\"b\"} 5\n";
  REQUIRE(metrics::text_exposition(r) == with_both);

  SUBCASE("a second handle shares the child and keeps it alive") {
    auto b_again = family.with_labels({"b"}).value();
    CHECK(b_again.value() == 5);
    b = metrics::Counter();
    CHECK(metrics::text_exposition(r) == with_both);
    b_again.inc();
    CHECK(metrics::text_exposition(r).find("routed_total{route=\"b\"} 6\n") != std::string::npos);
  }
  SUBCASE("dropping the last handle removes the series; re-adding starts from zero") {
    b = metrics::Counter();
    CHECK(metrics::text_exposition(r) ==
          "# HELP routed_total Routed.\n# TYPE routed_total counter\nrouted_total{route=\"a\"} 1\n");
    b.inc();  // empty handle: no-op, no crash
    CHECK(b.value() == 0);
    auto b_new = family.with_labels({"b"}).value();
    CHECK(b_new.value() == 0);
  }
  SUBCASE("copies and moves count references") {
    auto copy = a;
    auto moved = std::move(a);
    copy = moved;  // assigning a handle on the same child keeps one reference each
    moved = metrics::Counter();
    CHECK(metrics::text_exposition(r) == with_both);
    copy = std::move(copy);  // self-move keeps the reference
    CHECK(metrics::text_exposition(r) == with_both);
    copy = b;  // last reference on "a" replaced
    CHECK(metrics::text_exposition(r) ==
          "# HELP routed_total Routed.\n# TYPE routed_total counter\nrouted_total{route=\"b\"} 5\n");
  }
}

TEST_CASE("counters ignore negative and NaN increments; histograms ignore NaN") {
  metrics::Registry r;
  auto c = r.counter("c", "h").value().with_labels({}).value();
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  c.inc(0.5);
  CHECK(c.value() == 0.5);
  auto h = r.histogram("h", "h", {}, {1}).value().with_labels({}).value();
  h.observe(std::numeric_limits<double>::quiet_NaN());
  h.observe(2);
  auto text = metrics::text_exposition(r);
  CHECK(text.find("h_count 1\nh_sum 2\n") != std::string::npos);
}

TEST_CASE("concurrent updates from worker threads sum exactly") {
  metrics::Registry r;
  auto counter_family = r.counter("ops_total", "h", {"route"}).value();
  auto gauge = r.gauge("inflight", "h").value().with_labels({}).value();
  auto histogram = r.histogram("lat", "h", {}, metrics::proxy_duration_buckets()).value();
  auto shared = counter_family.with_labels({"shared"}).value();
  auto latency = histogram.with_labels({}).value();
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto own = counter_family.with_labels({"worker" + std::to_string(t)}).value();
      for (int i = 0; i < kIterations; ++i) {
        shared.inc();
        own.inc();
        gauge.inc();
        gauge.dec();
        gauge.inc(0.5);
        latency.observe(0.001);
      }
      CHECK(own.value() == kIterations);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(shared.value() == kThreads * kIterations);
  CHECK(gauge.value() == kThreads * kIterations * 0.5);
  CHECK(metrics::text_exposition(r).find("lat_count 80000\n") != std::string::npos);
}

TEST_CASE("scrapes and handle churn run concurrently") {
  metrics::Registry r;
  auto family = r.counter("churn_total", "h", {"route"}).value();
  auto keep = family.with_labels({"keep"}).value();
  std::thread churn([&] {
    for (int i = 0; i < 2000; ++i) {
      auto h = family.with_labels({"route" + std::to_string(i % 7)}).value();
      h.inc();
      keep.inc();
    }
  });
  for (int i = 0; i < 200; ++i) {
    auto text = metrics::text_exposition(r);
    CHECK(text.rfind("# HELP churn_total h\n", 0) == 0);
  }
  churn.join();
  CHECK(metrics::text_exposition(r) ==
        "# HELP churn_total h\n# TYPE churn_total counter\nchurn_total{route=\"keep\"} 2000\n");
}

TEST_CASE("an info gauge holds one series and replaces it atomically") {
  metrics::Registry r;
  auto info = r.info("trellis_route_table_version_info", "Installed route table.", {"version"});
  REQUIRE(info.ok());
  CHECK(metrics::text_exposition(r) == "");  // nothing until set
  REQUIRE(info->set({"v1"}).ok());
  CHECK(metrics::text_exposition(r) ==
        "# HELP trellis_route_table_version_info Installed route table.\n"
        "# TYPE trellis_route_table_version_info gauge\n"
        "trellis_route_table_version_info{version=\"v1\"} 1\n");
  REQUIRE(info->set({"v2\"x"}).ok());
  CHECK(metrics::text_exposition(r) ==
        "# HELP trellis_route_table_version_info Installed route table.\n"
        "# TYPE trellis_route_table_version_info gauge\n"
        "trellis_route_table_version_info{version=\"v2\\\"x\"} 1\n");
  CHECK(metric_error(info->set({})) ==
        "trellis_route_table_version_info: expected 1 label values, got 0");
  CHECK(metric_error(info->set({"\xff"})) ==
        "trellis_route_table_version_info: value of label version is not valid UTF-8");
  CHECK(metrics::text_exposition(r).find("{version=\"v2\\\"x\"} 1\n") != std::string::npos);
  info->clear();
  CHECK(metrics::text_exposition(r) == "");
}

TEST_CASE("a scrape during info replacement sees exactly one series") {
  metrics::Registry r;
  auto info = r.info("version_info", "h", {"version"}).value();
  REQUIRE(info.set({"0"}).ok());
  std::thread writer([&] {
    for (int i = 1; i <= 2000; ++i) CHECK(info.set({std::to_string(i)}).ok());
  });
  for (int i = 0; i < 300; ++i) {
    auto families = r.collect();
    REQUIRE(families.size() == 1);
    CHECK(families[0].metric.size() == 1);
  }
  writer.join();
}

TEST_CASE("empty families and handles fail or do nothing instead of crashing") {
  metrics::CounterFamily family;
  CHECK(error_of(family.with_labels({})) == "metric family is not registered");
  CHECK(family.name().empty());
  metrics::InfoGauge info;
  CHECK(metric_error(info.set({"x"})) == "metric family is not registered");
  info.clear();
  metrics::Gauge gauge;
  gauge.set(1);
  gauge.inc();
  gauge.dec();
  CHECK(gauge.value() == 0);
  metrics::Histogram histogram;
  histogram.observe(1);
}

TEST_CASE("families and handles may outlive their registry") {
  metrics::Counter counter;
  metrics::HistogramFamily family;
  {
    metrics::Registry r;
    counter = r.counter("c", "h").value().with_labels({}).value();
    family = r.histogram("h", "h", {}, {1}).value();
  }
  counter.inc();
  CHECK(counter.value() == 1);
  auto histogram = family.with_labels({}).value();
  histogram.observe(0.5);
}
