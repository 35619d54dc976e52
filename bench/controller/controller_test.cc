// The controller scale bench's pure parts: the world's plan and bodies, the
// stream line scanner, the /proc and Prometheus parsers, the percentiles and
// the load tool's options. Nothing here needs an API server.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "bench/controller/line_scanner.h"
#include "bench/controller/measure.h"
#include "bench/controller/options.h"
#include "bench/controller/world.h"
#include "common/json/json.h"

using namespace trellis;
using namespace trellis::bench::controller;

namespace {

Scale small() {
  Scale s;
  s.namespaces = 4;
  s.services = 40;
  s.endpoints_per_service = 3;
  s.routes = 10;
  s.consumer_routes = 2;
  s.streams = 8;
  return s;
}

std::string invalid(const Scale& s) {
  Status st = validate(s);
  REQUIRE_FALSE(st.ok());
  return st.error().message;
}

json::Document parse_json(const std::string& text) {
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE_MESSAGE(doc.ok(), (doc.ok() ? "" : doc.error().message));
  return std::move(*doc);
}

// Feeds `body` to a scanner in chunks of `chunk` bytes; returns the lines.
std::vector<ScannedLine> scan(LineScanner& scanner, const std::string& body, size_t chunk) {
  std::vector<ScannedLine> lines;
  for (size_t i = 0; i < body.size(); i += chunk) {
    scanner.feed(std::string_view(body).substr(i, chunk),
                 [&](const ScannedLine& line) { lines.push_back(line); });
  }
  return lines;
}

std::string parse_error(std::vector<std::string> args) {
  auto parsed = parse_load_options(args);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error().message;
}

}  // namespace

TEST_CASE("world: the full-scale defaults are valid, bad scales get exact errors") {
  CHECK(validate(Scale{}).ok());
  CHECK(validate(small()).ok());
  Scale s = small();
  s.services = 3;
  CHECK(invalid(s) == "--services: must be at least --namespaces (4), got 3");
  s = small();
  s.namespaces = 101;
  s.services = 200;
  CHECK(invalid(s) == "--namespaces: must be at most 100, got 101");
  s = small();
  s.routes = 41;
  CHECK(invalid(s) == "--routes: must not exceed --services (40), got 41");
  s = small();
  s.consumer_routes = 10;
  CHECK(invalid(s) == "--consumer-routes: must be less than --routes (10), got 10");
  s = small();
  s.streams = 0;
  CHECK(invalid(s) == "--streams: must be at least 1, got 0");
  s = small();
  s.services = 60001;
  CHECK(invalid(s) == "--services: must be at most 60000, got 60001");
}

TEST_CASE("world: names and addresses") {
  CHECK(namespace_name(7) == "bench-07");
  CHECK(service_name(42) == "svc-00042");
  CHECK(service_namespace(small(), 13) == 1);
  CHECK(endpoint_ip(0) == "10.100.0.0");
  CHECK(endpoint_ip(257) == "10.100.1.1");
  CHECK(endpoint_ip(65536 + 5) == "10.101.0.5");
  // 50 000 endpoints fit without repeating an address.
  CHECK(endpoint_ip(49999) == "10.100.195.79");
}

TEST_CASE("world: producer routes live with their Service, consumer routes elsewhere") {
  const Scale s = small();
  std::vector<RoutePlan> routes = all_routes(s);
  REQUIRE(routes.size() == 10);
  std::set<std::string> names;
  for (const RoutePlan& r : routes) {
    names.insert(r.ns + "/" + r.name);
    std::string parent_ns = namespace_name(service_namespace(s, r.parent));
    if (r.consumer) {
      CHECK(r.ns != parent_ns);
    } else {
      CHECK(r.ns == parent_ns);
    }
  }
  CHECK(names.size() == routes.size());
  CHECK(routes[0].name == "route-p-00000");
  CHECK(routes[8].name == "route-c-00000");
  CHECK(routes[8].consumer);
  CHECK(routes[8].ns == "bench-00");
  CHECK(routes[8].parent == 39);  // the top of the index range, namespace 3
}

TEST_CASE("world: bodies are the JSON the API server expects") {
  const Scale s = small();
  auto ns = parse_json(namespace_body(3));
  CHECK(*(*(*ns.root().object()).required_object("metadata")).required_string("name") ==
        "bench-03");

  auto svc = parse_json(service_body(s, 5));
  auto svc_meta = *(*svc.root().object()).required_object("metadata");
  CHECK(*svc_meta.required_string("name") == "svc-00005");
  CHECK(*svc_meta.required_string("namespace") == "bench-01");

  auto slice = parse_json(endpoint_slice_body(s, 5));
  auto slice_root = *slice.root().object();
  CHECK(*(*slice_root.required_object("metadata")).required_string("name") == "svc-00005-bench");
  auto endpoints = *slice_root.required_array("endpoints");
  CHECK(endpoints.size() == 3);
  // Service 5's first address is endpoint 15 overall.
  CHECK(endpoint_slice_body(s, 5).find("\"10.100.0.15\"") != std::string::npos);
  CHECK(endpoint_slice_body(s, 5).find(kManagedBy) != std::string::npos);

  auto route = parse_json(route_body(s, producer_route(s, 2)));
  auto rules = *(*(*route.root().object()).required_object("spec")).required_array("rules");
  CHECK(rules.size() == 2);
  CHECK(route_body(s, producer_route(s, 2)).find(R"("value":"r0")") != std::string::npos);

  CHECK(revision_patch("tbench-x-u00001z") ==
        R"([{"op":"replace","path":"/spec/rules/0/filters/0/requestHeaderModifier/set/0/value",)"
        R"("value":"tbench-x-u00001z"}])");
  (void)parse_json(revision_patch("v"));
}

TEST_CASE("world: updates alternate producer and consumer routes with unique markers") {
  const Scale s = small();
  std::set<std::string> markers;
  for (int n = 0; n < 20; ++n) {
    Update u = plan_update(s, n, 5, "abc1");
    markers.insert(u.marker);
    if ((n + 1) % 5 == 0) {
      REQUIRE(u.route.consumer);
      // The consumer route's namespace's streams only: stream i reads i % 4.
      REQUIRE(u.streams.size() == 2);
      int client = u.route.index % s.namespaces;
      for (int i : u.streams) CHECK(i % s.namespaces == client);
    } else {
      CHECK_FALSE(u.route.consumer);
      CHECK(u.streams.size() == 8);
    }
  }
  CHECK(markers.size() == 20);
  CHECK(plan_update(s, 3, 5, "abc1").marker == "tbench-abc1-u00003z");
  // No marker is a prefix of another: the trailing 'z'.
  CHECK(plan_update(s, 1, 5, "r").marker.find(plan_update(s, 10, 5, "r").marker) ==
        std::string::npos);
  CHECK_FALSE(plan_update(s, 4, 0, "r").route.consumer);
  Scale no_consumers = s;
  no_consumers.consumer_routes = 0;
  CHECK_FALSE(plan_update(no_consumers, 4, 5, "r").route.consumer);
}

TEST_CASE("world: a consumer update picks a namespace that has streams") {
  Scale s = small();
  s.streams = 1;  // only bench-00 has a stream
  for (int n = 4; n < 40; n += 5) {
    Update u = plan_update(s, n, 5, "r");
    REQUIRE(u.route.consumer);
    CHECK(u.route.ns == "bench-00");
    CHECK(u.streams == std::vector<int>{0});
  }
}

TEST_CASE("line scanner: tables, heartbeats and markers across every chunk split") {
  const std::string t1 = R"({"version":"v1","namespace":"bench-01","services":[{"x":"abc"}]})";
  const std::string t2 = R"({"version":"v2","namespace":"bench-01","services":[{"x":"MARKER"}]})";
  const std::string body = t1 + "\n\n" + t2 + "\n\n";
  for (size_t chunk = 1; chunk <= body.size(); ++chunk) {
    CAPTURE(chunk);
    LineScanner scanner;
    scanner.set_marker("MARKER");
    auto lines = scan(scanner, body, chunk);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].version == "v1");
    CHECK(lines[0].ns == "bench-01");
    CHECK(lines[0].bytes == t1.size());
    CHECK_FALSE(lines[0].has_marker);
    CHECK(lines[1].version == "v2");
    CHECK(lines[1].has_marker);
    CHECK(scanner.heartbeats() == 2);
    CHECK(scanner.partial_bytes() == 0);
  }
}

TEST_CASE("line scanner: malformed lines, no marker, a broken connection") {
  LineScanner scanner;
  auto lines = scan(scanner, "{\"namespace\":\"a\",\"version\":\"1\"}\nnot json\n", 7);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].version.empty());
  CHECK(lines[1].version.empty());
  CHECK_FALSE(lines[0].has_marker);

  // A partial line from a broken connection is not glued to the next one.
  scanner.set_marker("zz");
  (void)scan(scanner, R"({"version":"old","namespace":"a","x":"z)", 100);
  CHECK(scanner.partial_bytes() > 0);
  scanner.discard_partial();
  lines = scan(scanner, "z\"}\n" + std::string(R"({"version":"new","namespace":"a"})") + "\n", 1);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].version.empty());
  CHECK_FALSE(lines[0].has_marker);  // "z" + "z" straddled the discarded part
  CHECK(lines[1].version == "new");
}

TEST_CASE("line scanner: line heads") {
  std::string version, ns;
  CHECK(parse_line_head(R"({"version":"abc","namespace":"shop","x":1})", version, ns));
  CHECK(version == "abc");
  CHECK(ns == "shop");
  CHECK_FALSE(parse_line_head(R"({"version":"","namespace":"shop"})", version, ns));
  CHECK_FALSE(parse_line_head(R"({"version":"a\"b","namespace":"shop"})", version, ns));
  CHECK_FALSE(parse_line_head(R"({"version":"abc"})", version, ns));
  CHECK_FALSE(parse_line_head(R"({"version":"abc)", version, ns));
  CHECK(version == "abc");  // untouched by the failures
}

TEST_CASE("measure: /proc/<pid>/status") {
  auto m = parse_status(
      "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 1000 kB\nRssFile:\t 24 kB\n");
  REQUIRE(m.ok());
  CHECK(m->vm_rss_kib == 1024);
  CHECK(m->vm_hwm_kib == 2048);
  CHECK(m->rss_anon_kib == 1000);
  CHECK(m->rss_file_kib == 24);
  auto missing = parse_status("VmRSS:\t1 kB\nRssAnon:\t1 kB\nRssFile:\t1 kB\n");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "status: missing field 'VmHWM'");
  auto bad = parse_status("VmHWM:\tx kB\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "status: field 'VmHWM': invalid value 'x kB'");
}

TEST_CASE("measure: /proc/<pid>/stat CPU time") {
  // utime 150, stime 50 ticks; a command with spaces and ')'.
  std::string stat = "123 (a) b) S 1 1 1 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 5 0 0\n";
  auto cpu = parse_stat_cpu_seconds(stat, 100);
  REQUIRE(cpu.ok());
  CHECK(*cpu == doctest::Approx(2.0));
  auto no_paren = parse_stat_cpu_seconds("123 (a S 1", 100);
  REQUIRE_FALSE(no_paren.ok());
  CHECK(no_paren.error().message == "stat: no ')' after the command");
  auto short_stat = parse_stat_cpu_seconds("1 (a) S 1 2", 100);
  REQUIRE_FALSE(short_stat.ok());
  CHECK(short_stat.error().message == "stat: expected at least 13 fields after the command, got 3");
  auto bad = parse_stat_cpu_seconds("1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 50", 100);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "stat: field utime: invalid value 'x'");
}

TEST_CASE("measure: schedstat run-queue wait") {
  auto wait = parse_schedstat_wait_seconds("1000 2500000000 7\n");
  REQUIRE(wait.ok());
  CHECK(*wait == doctest::Approx(2.5));
  auto bad = parse_schedstat_wait_seconds("1 x 3");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "schedstat: expected 3 numbers, got '1 x 3'");
}

TEST_CASE("measure: Prometheus histograms, values and quantiles") {
  const std::string text =
      "# TYPE h histogram\n"
      "h_bucket{le=\"0.1\"} 10\n"
      "h_bucket{le=\"1\"} 30\n"
      "h_bucket{le=\"+Inf\"} 40\n"
      "h_sum 25.5\n"
      "h_count 40\n"
      "g 7\n"
      "c{result=\"ok\"} 3\n"
      "c{result=\"conflict\"} 2\n"
      "cc 100\n";
  auto h = find_histogram(text, "h");
  REQUIRE(h.ok());
  REQUIRE(h->buckets.size() == 3);
  CHECK(h->sum == doctest::Approx(25.5));
  CHECK(h->count == 40);
  CHECK(quantile(*h, 0.25) == doctest::Approx(0.1));
  CHECK(quantile(*h, 0.5) == doctest::Approx(0.1 + 0.9 * 10.0 / 20.0));
  CHECK(quantile(*h, 0.99) == doctest::Approx(1.0));  // in +Inf: the highest finite bound
  CHECK(quantile(Histogram{}, 0.5) == 0);
  CHECK(find_value(text, "g") == 7);
  CHECK_FALSE(find_value(text, "missing").has_value());
  CHECK(sum_values(text, "c") == 5);  // not "cc"

  Histogram before = *h;
  before.buckets[0].second = 4;
  before.sum = 20.5;
  before.count = 30;
  Histogram d = difference(*h, before);
  CHECK(d.buckets[0].second == 6);
  CHECK(d.count == 10);
  CHECK(d.sum == doctest::Approx(5.0));

  auto none = find_histogram(text, "x");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "histogram 'x': no buckets");
  auto no_sum = find_histogram("x_bucket{le=\"1\"} 1\nx_count 1\n", "x");
  REQUIRE_FALSE(no_sum.ok());
  CHECK(no_sum.error().message == "histogram 'x': missing x_sum");
  auto bad_bound = find_histogram("x_bucket{le=\"a\"} 1\n", "x");
  REQUIRE_FALSE(bad_bound.ok());
  CHECK(bad_bound.error().message == "histogram 'x': line 'x_bucket{le=\"a\"} 1': invalid bound 'a'");
}

TEST_CASE("measure: log times and percentiles") {
  const std::string log =
      "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"msg\":\"starting\"}\n"
      "{\"ts\":\"2026-01-02T03:04:06.001Z\",\"level\":\"info\",\"msg\":\"synced\"}\n"
      "{\"ts\":\"bad\",\"level\":\"info\",\"msg\":\"broken\"}\n";
  auto synced = log_time(log, "synced");
  REQUIRE(synced.ok());
  auto started = log_time(log, "starting");
  REQUIRE(started.ok());
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(*synced - *started).count() == 323);
  auto missing = log_time(log, "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "no log line with msg 'nope'");
  auto bad = log_time(log, "broken");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "log line 3: invalid ts 'bad\",\"level\":\"info\",\"msg'");

  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  CHECK(percentile(v, 50) == 50);
  CHECK(percentile(v, 99) == 99);
  CHECK(percentile(v, 100) == 100);
  CHECK(percentile({3, 1, 2}, 50) == 2);
  CHECK(percentile({}, 50) == 0);
  CHECK(percentile({5}, 99) == 5);
}

TEST_CASE("options: defaults are the issue's scale; errors name the flag") {
  auto parsed = parse_load_options({"--kubeconfig", "/k", "--controller-bin", "/c"});
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? "" : parsed.error().message));
  const LoadOptions& o = parsed->options;
  CHECK(o.scale.services == 10000);
  CHECK(o.scale.services * o.scale.endpoints_per_service == 50000);
  CHECK(o.scale.routes == 2000);
  CHECK(o.scale.streams == 200);
  CHECK(o.scale.namespaces == 50);
  CHECK(o.phases == LoadOptions::Phases::all);
  CHECK(o.verify_sidecar);

  auto quick = parse_load_options({"--kubeconfig", "/k", "--phases", "populate", "--services",
                                   "100", "--routes", "20", "--consumer-routes", "4",
                                   "--verify-sidecar=false"});
  REQUIRE_MESSAGE(quick.ok(), (quick.ok() ? "" : quick.error().message));
  CHECK(quick->options.scale.services == 100);
  CHECK_FALSE(quick->options.verify_sidecar);

  CHECK(parse_error({"--kubeconfig", "/k"}) == "--controller-bin is required to measure");
  CHECK(parse_error({"--kubeconfig", "/k", "--controller-bin", "/c", "--stream-port", "9",
                     "--admin-port", "9"}) == "--stream-port and --admin-port must differ");
  CHECK(parse_error({"--kubeconfig", "/k", "--phases", "populate", "--services", "10",
                     "--namespaces", "50"}) ==
        "--services: must be at least --namespaces (50), got 10");
  CHECK(parse_error({"--kubeconfig", "/k", "--phases", "populate", "--streams", "x"})
            .find("--streams") != std::string::npos);
}
