#include "bench/controller/bench.h"

#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/controller/creator.h"
#include "bench/controller/line_scanner.h"
#include "bench/controller/measure.h"
#include "bench/controller/process.h"
#include "bench/controller/table_stream.h"
#include "bench/controller/world.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/json/json.h"
#include "common/kube/client.h"
#include "common/kube/client_config.h"
#include "common/kube/errors.h"
#include "common/metrics/metrics.h"
#include "proxy/app/controller_stream.h"

namespace trellis::bench::controller {
namespace {

constexpr char kLoopback[] = "127.0.0.1";
constexpr char kResolution[] = "trellis_controller_resolution_seconds";
constexpr char kPushLatency[] = "trellis_controller_push_latency_seconds";
constexpr char kTablesSent[] = "trellis_controller_tables_sent_total";
constexpr char kStatusWrites[] = "trellis_controller_status_writes_total";
constexpr char kSyncedMessage[] = "informers synced; serving route tables";
// No status write for this long ends the settle phase.
constexpr std::chrono::seconds kStatusQuiet{5};

void say(const char* format, ...) __attribute__((format(printf, 1, 2)));
void say(const char* format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  std::time_t now = std::time(nullptr);
  char when[16];
  std::strftime(when, sizeof when, "%H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "[controller-bench %s] %s\n", when, line);
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string fixed(double v, int decimals) {
  if (std::isnan(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string mib(uint64_t kib) { return fixed(static_cast<double>(kib) / 1024.0, 1); }

std::string thousands(uint64_t v) {
  std::string digits = std::to_string(v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ' ';
    out += digits[i];
  }
  return out;
}

// What the bench watches of other processes' CPU time.
struct Cpu {
  double controller = NAN;
  double controller_wait = NAN;  // runnable, waiting for a CPU
  double self = NAN;
  double apiserver = NAN;
  double etcd = NAN;
  Clock::time_point at;
};

double cpu_of(int pid) {
  if (pid <= 0) return NAN;
  auto s = read_cpu_seconds(pid);
  return s.ok() ? *s : NAN;
}

double wait_of(int pid) {
  auto s = read_runqueue_wait_seconds(pid);
  return s.ok() ? *s : NAN;
}

// The controller's metrics that the report uses.
struct Scrape {
  Histogram resolution;
  Histogram push;
  double tables_sent = 0;
  double status_writes = 0;
};

struct StreamState {
  std::optional<Clock::time_point> first_table;
  std::optional<Clock::time_point> got_marker;  // of the current update
  // Tables of the current update not yet known to carry its marker.
  std::vector<std::pair<std::string, Clock::time_point>> arrivals;
  uint64_t tables_at_update_start = 0;
  uint64_t malformed = 0;
  uint64_t wrong_namespace = 0;
};

struct UpdateResult {
  Update plan;
  std::string error;  // the PATCH failed
  double ack_ms = NAN;
  double watch_ms = NAN;
  double first_ms = NAN;
  double median_ms = NAN;
  double all_ms = NAN;  // NAN: some affected stream never got it
  size_t missing = 0;
  double controller_cpu_ms = NAN;      // from the PATCH to the last stream
  double controller_cpu_gap_ms = NAN;  // from the PATCH to the end of the gap
  double controller_wait_ms = NAN;     // runnable but not running, PATCH to the last stream
  uint64_t unaffected_tables = 0;      // tables the other streams received meanwhile
  Histogram resolution;                // deltas over the update and its gap
  Histogram push;
  double tables_sent = 0;
};

struct Summary {
  size_t n = 0;
  double p50 = NAN, p90 = NAN, p99 = NAN, max = NAN, mean = NAN;
};

Summary summarize(const std::vector<double>& values) {
  Summary s;
  s.n = values.size();
  if (values.empty()) return s;
  s.p50 = percentile(values, 50);
  s.p90 = percentile(values, 90);
  s.p99 = percentile(values, 99);
  s.max = *std::max_element(values.begin(), values.end());
  double total = 0;
  for (double v : values) total += v;
  s.mean = total / static_cast<double>(values.size());
  return s;
}

// HTTPRoute events as a watcher of the API server sees them: when the first
// event for the route being updated arrives (the controller's informer
// receives the same event at about the same time).
class RouteWatch final : private kube::WatchHandler {
 public:
  explicit RouteWatch(kube::Client& client) : client_(client) {}

  void start() {
    kube::ListOptions list;
    list.limit = 1;
    client_.list(kube::resources::kHttpRoutes, "", list, [this](Result<json::Document> doc) {
      if (!doc.ok()) {
        error_ = "list httproutes: " + doc.error().message;
        return;
      }
      auto root = doc->root().object();
      auto meta = root.ok() ? root->required_object("metadata") : Result<json::Object>(root.error());
      auto rv = meta.ok() ? meta->required_string("resourceVersion")
                          : Result<std::string_view>(meta.error());
      if (!rv.ok()) {
        error_ = "list httproutes: " + rv.error().message;
        return;
      }
      open(std::string(*rv));
    });
  }

  // Records the first event for ns/name from now on.
  void expect(const std::string& ns, const std::string& name) {
    expected_ = ns + "/" + name;
    seen_at_.reset();
  }
  std::optional<Clock::time_point> seen_at() const { return seen_at_; }
  const std::string& error() const { return error_; }

 private:
  void open(const std::string& resource_version) {
    kube::ListOptions options;
    options.resource_version = resource_version;
    options.allow_watch_bookmarks = true;
    resource_version_ = resource_version;
    watch_ = client_.watch(kube::resources::kHttpRoutes, "", options, *this);
  }

  void on_event(kube::WatchEvent&& event) override {
    auto at = Clock::now();
    auto object = event.object().object();
    if (!object.ok()) return;
    auto meta = object->required_object("metadata");
    if (!meta.ok()) return;
    auto rv = meta->optional_string("resourceVersion");
    if (rv.ok() && rv->has_value()) resource_version_ = std::string(**rv);
    if (event.type == kube::WatchEventType::bookmark) return;
    auto ns = meta->optional_string("namespace");
    auto name = meta->optional_string("name");
    if (!ns.ok() || !name.ok() || !ns->has_value() || !name->has_value()) return;
    if (!seen_at_ && expected_ == std::string(**ns) + "/" + std::string(**name)) seen_at_ = at;
  }
  void on_malformed(const Error&) override {}
  void on_end(const Status& status) override {
    // The server ends watches now and then: resume where we were, or list
    // again when that is too old (410).
    gone_ = !status.ok() && kube::is_gone(status.error());
    reopen_.start(std::chrono::milliseconds(status.ok() ? 0 : 1000));
  }

  kube::Client& client_;
  event::Timer reopen_{client_.loop(), [this] {
                         if (gone_) {
                           start();
                         } else {
                           open(resource_version_);
                         }
                       }};
  bool gone_ = false;
  std::unique_ptr<kube::Watch> watch_;
  std::string resource_version_;
  std::string expected_;
  std::optional<Clock::time_point> seen_at_;
  std::string error_;
};

class Bench final : private TableStream::Observer {
 public:
  explicit Bench(const LoadOptions& options) : o_(options) {
    // Markers unique to this run (world.h): base 36 of the time.
    const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (auto t = static_cast<uint64_t>(std::time(nullptr)); t > 0; t /= 36) run_ = digits[t % 36] + run_;
  }

  Result<int> run() {
    auto loop = event::EventLoop::create();
    if (!loop.ok()) return loop.error();
    loop_ = std::move(*loop);
    auto config = kube::load_kubeconfig(o_.kubeconfig);
    if (!config.ok()) return config.error();
    kube::ClientOptions client_options;
    client_options.transport.max_connections = static_cast<size_t>(o_.inflight);
    client_options.transport.request_timeout = std::chrono::milliseconds(60000);
    auto client = kube::Client::from_config(*loop_, *config, client_options);
    if (!client.ok()) return client.error();
    client_ = std::move(*client);

    bool populate = o_.phases != LoadOptions::Phases::measure;
    bool measure = o_.phases != LoadOptions::Phases::populate;
    if (populate) {
      if (Status s = run_populate(); !s.ok()) return s.error();
    }
    if (measure) {
      if (Status s = run_measure(); !s.ok()) {
        teardown();
        return s.error();
      }
    }
    teardown();
    if (Status s = write_outputs(); !s.ok()) return s.error();
    size_t failed = 0;
    for (const auto& [ok, name] : checks_) failed += ok ? 0 : 1;
    say("%zu checks, %zu failed", checks_.size(), failed);
    return failed == 0 ? 0 : 1;
  }

 private:
  // ------------------------------------------------------------ helpers

  void check(bool ok, const std::string& name) {
    checks_.emplace_back(ok, name);
    say("%s: %s", ok ? "check passed" : "CHECK FAILED", name.c_str());
  }

  // Runs the loop until done() holds; false after `limit`, or once the
  // controller has exited.
  bool run_until(const std::function<bool()>& done, Clock::duration limit) {
    auto deadline = Clock::now() + limit;
    event::Timer tick(*loop_, [] {});
    tick.start(std::chrono::milliseconds(10), std::chrono::milliseconds(10));
    auto next_alive_check = Clock::now();
    while (!done()) {
      auto now = Clock::now();
      if (now >= deadline) return false;
      if (controller_ && now >= next_alive_check) {
        if (!controller_->running()) return false;
        next_alive_check = now + std::chrono::milliseconds(100);
      }
      uv_run(loop_->uv(), UV_RUN_ONCE);
    }
    return true;
  }

  void run_for(Clock::duration d) {
    (void)run_until([] { return false; }, d);
  }

  Cpu cpu_now() const {
    Cpu c;
    c.at = Clock::now();
    c.controller = controller_ ? cpu_of(controller_->pid()) : NAN;
    c.controller_wait = controller_ ? wait_of(controller_->pid()) : NAN;
    c.self = cpu_of(::getpid());
    c.apiserver = cpu_of(o_.apiserver_pid);
    c.etcd = cpu_of(o_.etcd_pid);
    return c;
  }

  Memory memory_now() const {
    if (!controller_) return {};
    auto m = read_memory(controller_->pid());
    return m.ok() ? *m : Memory{};
  }

  Result<Scrape> scrape() const {
    auto answer = http_get(kLoopback, o_.admin_port, "/metrics", std::chrono::milliseconds(30000));
    if (!answer.ok()) return answer.error();
    if (answer->status != 200) {
      return make_error("GET /metrics: status " + std::to_string(answer->status));
    }
    Scrape s;
    auto resolution = find_histogram(answer->body, kResolution);
    if (!resolution.ok()) return resolution.error();
    auto push = find_histogram(answer->body, kPushLatency);
    if (!push.ok()) return push.error();
    s.resolution = std::move(*resolution);
    s.push = std::move(*push);
    s.tables_sent = find_value(answer->body, kTablesSent).value_or(0);
    s.status_writes = sum_values(answer->body, kStatusWrites);
    return s;
  }

  // ------------------------------------------------------------ populate

  Status run_populate() {
    const Scale& sc = o_.scale;
    say("populating: %d namespaces, %d Services, %d EndpointSlices (%d addresses), %d HTTPRoutes "
        "(%d consumer), %d in flight",
        sc.namespaces, sc.services, sc.services, sc.services * sc.endpoints_per_service, sc.routes,
        sc.consumer_routes, o_.inflight);
    Creator creator(*client_, CreatorOptions{static_cast<size_t>(o_.inflight)});
    auto step = [&](const char* what, size_t count,
                    const std::function<CreateJob(size_t)>& job) -> Status {
      auto stats = creator.run(what, count, job);
      if (!stats.ok()) return stats.error();
      say("%s: %zu created, %zu already there, %zu retries, %.1f s (%.0f/s)", what, stats->created,
          stats->existed, stats->retries, stats->seconds,
          static_cast<double>(count) / std::max(stats->seconds, 1e-3));
      populate_.emplace_back(what, *stats);
      return ok_status();
    };
    const auto& ns = kube::resources::kNamespaces;
    const auto& svc = kube::resources::kServices;
    const auto& eps = kube::resources::kEndpointSlices;
    const auto& rt = kube::resources::kHttpRoutes;
    if (Status s = step("namespaces", static_cast<size_t>(sc.namespaces), [&](size_t i) {
          return CreateJob{&ns, "", namespace_body(static_cast<int>(i))};
        });
        !s.ok()) {
      return s;
    }
    if (Status s = step("services", static_cast<size_t>(sc.services), [&](size_t i) {
          int k = static_cast<int>(i);
          return CreateJob{&svc, namespace_name(service_namespace(sc, k)), service_body(sc, k)};
        });
        !s.ok()) {
      return s;
    }
    if (Status s = step("endpointslices", static_cast<size_t>(sc.services), [&](size_t i) {
          int k = static_cast<int>(i);
          return CreateJob{&eps, namespace_name(service_namespace(sc, k)),
                           endpoint_slice_body(sc, k)};
        });
        !s.ok()) {
      return s;
    }
    std::vector<RoutePlan> routes = all_routes(sc);
    return step("httproutes", routes.size(), [&](size_t i) {
      return CreateJob{&rt, routes[i].ns, route_body(sc, routes[i])};
    });
  }

  // ------------------------------------------------------------ measure

  Status run_measure() {
    watch_ = std::make_unique<RouteWatch>(*client_);
    watch_->start();
    if (Status s = start_controller_and_streams(); !s.ok()) return s;
    if (Status s = wait_for_sync(); !s.ok()) return s;
    settle();
    idle();
    updates();
    if (o_.verify_sidecar) verify_sidecar();
    stream_checks();
    stop_controller();
    return ok_status();
  }

  Status start_controller_and_streams() {
    std::vector<std::string> argv = {o_.controller_bin,
                                     "--kubeconfig", o_.kubeconfig,
                                     "--listen", std::string(kLoopback) + ":" + std::to_string(o_.stream_port),
                                     "--admin-port", std::to_string(o_.admin_port),
                                     "--insecure-namespace-from-query",
                                     "--identity", "trellis-bench-controller",
                                     "--log-level", "info"};
    std::string log = o_.controller_log.empty() ? "/dev/null" : o_.controller_log;
    say("starting %s (streams: %d over %d namespaces)", o_.controller_bin.c_str(), o_.scale.streams,
        std::min(o_.scale.streams, o_.scale.namespaces));
    started_wall_ = std::chrono::system_clock::now();
    started_ = Clock::now();
    auto controller = ControllerProcess::spawn(argv, log, o_.controller_cpu);
    if (!controller.ok()) return controller.error();
    controller_ = std::move(*controller);
    probe_ = std::make_unique<ReadyProbe>(kLoopback, o_.admin_port, std::chrono::milliseconds(20));
    auto address = net::Address::from_ip(kLoopback, o_.stream_port);
    if (!address.ok()) return address.error();
    states_.resize(static_cast<size_t>(o_.scale.streams));
    TableStream::Observer& observer = *this;
    for (int i = 0; i < o_.scale.streams; ++i) {
      streams_by_ns_[namespace_name(i % o_.scale.namespaces)].push_back(static_cast<size_t>(i));
      streams_.push_back(std::make_unique<TableStream>(
          *loop_, *address, namespace_name(i % o_.scale.namespaces), i, observer,
          std::chrono::milliseconds(20)));
      streams_.back()->start();
    }
    return ok_status();
  }

  Status wait_for_sync() {
    bool all = run_until(
        [&] {
          for (const auto& s : states_) {
            if (!s.first_table) return false;
          }
          return true;
        },
        std::chrono::seconds(o_.sync_timeout_s));
    if (!all) {
      size_t waiting = 0;
      std::string why;
      for (size_t i = 0; i < states_.size(); ++i) {
        if (states_[i].first_table) continue;
        ++waiting;
        if (why.empty()) why = streams_[i]->last_error();
      }
      if (!controller_->running()) {
        return make_error("trellis-controller exited with status " +
                          std::to_string(controller_->exit_code().value_or(-1)) +
                          " before every stream had a table (log: " + o_.controller_log + ")");
      }
      return make_error(std::to_string(waiting) + " streams had no table " +
                        std::to_string(o_.sync_timeout_s) + " s after the controller started (" +
                        "/ready: " + probe_->last_answer() + "; a stream's last error: " + why + ")");
    }
    for (const auto& s : states_) {
      if (!sync_.first_any || *s.first_table < *sync_.first_any) sync_.first_any = s.first_table;
      if (!sync_.last || *s.first_table > *sync_.last) sync_.last = s.first_table;
    }
    sync_.cpu = cpu_now();
    sync_.memory = memory_now();
    // The probe's thread may not have seen /ready yet (the first tables follow it closely).
    (void)run_until([&] { return probe_->ready_at().has_value(); }, std::chrono::seconds(30));
    sync_.ready = probe_->ready_at();
    auto scraped = scrape();
    if (!scraped.ok()) return scraped.error();
    sync_.metrics = *scraped;
    for (const auto& s : streams_) sync_.table_bytes = std::max<uint64_t>(sync_.table_bytes, s->table_bytes());
    say("every stream has its first table %.2f s after the controller started (/ready at %s s); "
        "table %s bytes; controller VmRSS %s MiB",
        ms_between(started_, *sync_.last) / 1000,
        sync_.ready ? fixed(ms_between(started_, *sync_.ready) / 1000, 2).c_str() : "?",
        thousands(sync_.table_bytes).c_str(), mib(sync_.memory.vm_rss_kib).c_str());
    return ok_status();
  }

  // The leader writes every route's status once after it syncs, rate-limited:
  // wait until those writes stop before measuring anything else.
  void settle() {
    say("waiting for the initial route-status writes to finish");
    uint64_t tables_before = total_tables();
    double writes = -1;
    auto last_change = Clock::now();
    auto deadline = Clock::now() + std::chrono::seconds(o_.settle_timeout_s);
    while (Clock::now() < deadline && controller_->running()) {
      auto s = scrape();
      double now_writes = s.ok() ? s->status_writes : writes;
      if (now_writes != writes) {
        writes = now_writes;
        last_change = Clock::now();
        settle_.writes = writes;
        settle_.last_write = last_change;
      } else if (Clock::now() - last_change >= kStatusQuiet) {
        settle_.done = true;
        break;
      }
      run_for(std::chrono::milliseconds(500));
    }
    settle_.tables_during = total_tables() - tables_before;
    settle_.memory = memory_now();
    say("route-status writes: %.0f, the last %.1f s after the controller started", settle_.writes,
        ms_between(started_, settle_.last_write) / 1000);
    check(settle_.done, "the initial route-status writes finished within " +
                            std::to_string(o_.settle_timeout_s) + " s");
    check(settle_.tables_during == 0, "route-status writes send no tables (" +
                                          std::to_string(settle_.tables_during) + " sent)");
  }

  void idle() {
    say("idle for %d s", o_.idle_s);
    idle_.before = cpu_now();
    run_for(std::chrono::seconds(o_.idle_s));
    idle_.after = cpu_now();
    idle_.memory = memory_now();
    say("idle: controller CPU %.2f %%, VmRSS %s MiB",
        100 * (idle_.after.controller - idle_.before.controller) /
            std::chrono::duration<double>(idle_.after.at - idle_.before.at).count(),
        mib(idle_.memory.vm_rss_kib).c_str());
  }

  void updates() {
    if (o_.updates == 0) return;
    say("%d HTTPRoute updates, one at a time", o_.updates);
    auto before = scrape();
    phase_.before = cpu_now();
    Scrape previous = before.ok() ? *before : Scrape{};
    for (int j = 0; j < o_.updates && controller_->running(); ++j) {
      UpdateResult r = update(j);
      auto after = scrape();
      if (after.ok()) {
        r.resolution = difference(after->resolution, previous.resolution);
        r.push = difference(after->push, previous.push);
        r.tables_sent = after->tables_sent - previous.tables_sent;
        previous = *after;
      }
      say("update %d/%d %s %s/%s → %zu streams: every stream %s ms (first %s, PATCH %s, watch %s); "
          "controller CPU %s ms",
          j + 1, o_.updates, r.plan.route.consumer ? "consumer" : "producer", r.plan.route.ns.c_str(),
          r.plan.route.name.c_str(), r.plan.streams.size(), fixed(r.all_ms, 0).c_str(),
          fixed(r.first_ms, 0).c_str(), fixed(r.ack_ms, 0).c_str(), fixed(r.watch_ms, 0).c_str(),
          fixed(r.controller_cpu_ms, 0).c_str());
      results_.push_back(std::move(r));
    }
    phase_.after = cpu_now();
    phase_.memory = memory_now();
    auto after = scrape();
    if (before.ok() && after.ok()) {
      phase_.resolution = difference(after->resolution, before->resolution);
      phase_.push = difference(after->push, before->push);
      phase_.tables_sent = after->tables_sent - before->tables_sent;
      phase_.scraped = true;
    }
    size_t complete = 0, clean = 0;
    for (const auto& r : results_) {
      complete += r.missing == 0 && r.error.empty() ? 1 : 0;
      clean += r.unaffected_tables == 0 ? 1 : 0;
    }
    check(results_.size() == static_cast<size_t>(o_.updates) && complete == results_.size(),
          "every affected stream received every update (" + std::to_string(complete) + "/" +
              std::to_string(o_.updates) + " updates complete)");
    check(clean == results_.size(), "no stream received a table for another namespace's consumer "
                                    "route (" + std::to_string(results_.size() - clean) +
                                        " updates leaked)");
  }

  UpdateResult update(int number) {
    UpdateResult r;
    r.plan = plan_update(o_.scale, number, o_.consumer_every, run_);
    std::vector<bool> affected(streams_.size(), false);
    for (int i : r.plan.streams) affected[static_cast<size_t>(i)] = true;
    marker_versions_.clear();
    for (size_t i = 0; i < streams_.size(); ++i) {
      streams_[i]->set_marker(scans(i) ? r.plan.marker : "");
      states_[i].got_marker.reset();
      states_[i].arrivals.clear();
      states_[i].tables_at_update_start = streams_[i]->tables();
    }
    awaiting_ = r.plan.streams.size();
    collecting_ = true;
    affected_ = affected;
    watch_->expect(r.plan.route.ns, r.plan.route.name);
    // Shared with the PATCH's callback, which may outlive this call.
    struct Patch {
      std::optional<Clock::time_point> acked;
      std::string error;
    };
    auto patch = std::make_shared<Patch>();
    double cpu_before = cpu_of(controller_->pid());
    double wait_before = wait_of(controller_->pid());
    const auto t0 = Clock::now();
    client_->patch(kube::resources::kHttpRoutes, r.plan.route.ns, r.plan.route.name,
                   kube::PatchType::json, revision_patch(r.plan.marker),
                   [patch](Result<json::Document> answer) {
                     patch->acked = Clock::now();
                     if (!answer.ok()) patch->error = answer.error().message;
                   });
    bool done = run_until(
        [&] { return (awaiting_ == 0 && patch->acked) || !patch->error.empty(); },
        std::chrono::seconds(o_.update_timeout_s));
    double cpu_done = cpu_of(controller_->pid());
    double wait_done = wait_of(controller_->pid());
    collecting_ = false;
    run_for(std::chrono::milliseconds(o_.update_gap_ms));
    double cpu_gap = cpu_of(controller_->pid());
    // The PATCH may still be out when a stream timed out.
    (void)run_until([&] { return patch->acked.has_value(); }, std::chrono::seconds(60));
    r.error = patch->error;
    if (patch->acked) r.ack_ms = ms_between(t0, *patch->acked);
    if (auto seen = watch_->seen_at()) r.watch_ms = ms_between(t0, *seen);
    std::vector<double> arrivals;
    for (size_t i = 0; i < streams_.size(); ++i) {
      uint64_t got = streams_[i]->tables() - states_[i].tables_at_update_start;
      if (!affected[i]) {
        r.unaffected_tables += got;
        continue;
      }
      if (states_[i].got_marker) {
        arrivals.push_back(ms_between(t0, *states_[i].got_marker));
      } else {
        ++r.missing;
      }
    }
    if (!arrivals.empty()) {
      r.first_ms = *std::min_element(arrivals.begin(), arrivals.end());
      r.median_ms = percentile(arrivals, 50);
    }
    if (done && r.missing == 0 && r.error.empty()) {
      r.all_ms = *std::max_element(arrivals.begin(), arrivals.end());
    }
    r.controller_cpu_ms = 1000 * (cpu_done - cpu_before);
    r.controller_cpu_gap_ms = 1000 * (cpu_gap - cpu_before);
    r.controller_wait_ms = 1000 * (wait_done - wait_before);
    return r;
  }

  // The sidecar's own client: receives, parses (routes::parse) and compiles
  // (router::Table) the namespace's current table, as trellis-proxy does.
  void verify_sidecar() {
    const TableStream& reference = *streams_.front();
    say("the sidecar's stream client (proxy/app ControllerStream) for namespace %s",
        reference.ns().c_str());
    metrics::Registry registry;
    proxy::app::ControllerStreamOptions options;
    options.controller.host = kLoopback;
    options.controller.port = o_.stream_port;
    options.ns = reference.ns();
    std::optional<Clock::time_point> installed;
    std::string version;
    size_t services = 0;
    const auto started = Clock::now();
    auto stream = proxy::app::ControllerStream::start(
        *loop_, options, registry, [&](proxy::app::LoadedTable table) {
          installed = Clock::now();
          version = table.routes->version;
          services = table.routes->services.size();
        });
    if (!stream.ok()) {
      check(false, "the sidecar's client starts: " + stream.error().message);
      return;
    }
    bool got = run_until([&] { return installed.has_value(); }, std::chrono::seconds(120));
    verify_.ms = got ? ms_between(started, *installed) : NAN;
    verify_.services = services;
    verify_.ran = true;
    check(got && version == reference.version(),
          "the sidecar's client installs the table the bench streams saw last (version " +
              (version.empty() ? std::string("none") : version) + ", streams: " +
              reference.version() + ", " + std::to_string(services) + " Services)");
    stream->reset();
  }

  void stop_controller() {
    final_memory_ = memory_now();
    final_cpu_ = cpu_now();
    // The log's "informers synced" line dates the sync from inside the controller.
    if (!o_.controller_log.empty()) {
      std::ifstream in(o_.controller_log);
      std::stringstream text;
      text << in.rdbuf();
      auto synced = log_time(text.str(), kSyncedMessage);
      if (synced.ok()) {
        sync_.synced_ms = std::chrono::duration<double, std::milli>(*synced - started_wall_).count();
      }
    }
    bool was_running = controller_->running();
    controller_stopping_ = true;
    // Our streams go first: the controller's shutdown would otherwise wait
    // for connections that this thread, blocked below, cannot close.
    streams_.clear();
    run_for(std::chrono::milliseconds(100));
    int code = controller_->stop(std::chrono::milliseconds(15000));
    check(was_running, "trellis-controller ran until the end");
    check(code == 0, "trellis-controller exited 0 on SIGTERM (got " + std::to_string(code) + ")");
  }

  void stream_checks() {
    uint64_t malformed = 0, wrong = 0;
    for (size_t i = 0; i < streams_.size(); ++i) {
      malformed += states_[i].malformed;
      wrong += states_[i].wrong_namespace;
    }
    // The controller's SIGTERM ends every stream: not a break.
    check(broken_before_stop_ == 0,
          "no stream broke while the controller ran (" + std::to_string(broken_before_stop_) + ")");
    check(malformed == 0, "every table line starts with its version and namespace (" +
                              std::to_string(malformed) + " did not)");
    check(wrong == 0, "every table is for the stream's namespace (" + std::to_string(wrong) +
                          " were not)");
  }

  void teardown() {
    stopping_ = true;
    streams_.clear();
    watch_.reset();
    probe_.reset();
    controller_.reset();
    if (loop_) run_for(std::chrono::milliseconds(50));  // deferred deletions
  }

  uint64_t total_tables() const {
    uint64_t n = 0;
    for (const auto& s : streams_) n += s->tables();
    return n;
  }

  // ------------------------------------------------------------ TableStream::Observer

  void on_table(TableStream& stream, const ScannedLine& line, Clock::time_point at) override {
    StreamState& s = states_[static_cast<size_t>(stream.index())];
    if (line.version.empty()) {
      ++s.malformed;
      return;
    }
    if (line.ns != stream.ns()) ++s.wrong_namespace;
    if (!s.first_table) s.first_table = at;
    const auto i = static_cast<size_t>(stream.index());
    if (!collecting_ || !affected_[i] || s.got_marker) return;
    std::set<std::string>& confirmed = marker_versions_[stream.ns()];
    if (line.has_marker && confirmed.insert(line.version).second) {
      // Equal versions are equal contents: the namespace's other streams
      // have the change as soon as they have this version.
      for (size_t j : streams_by_ns_[stream.ns()]) {
        StreamState& other = states_[j];
        if (j == i || other.got_marker) continue;
        for (const auto& [version, when] : other.arrivals) {
          if (version == line.version) {
            got(other, when);
            break;
          }
        }
      }
    }
    if (confirmed.count(line.version) > 0) {
      got(s, at);
    } else {
      s.arrivals.emplace_back(line.version, at);
    }
  }

  void got(StreamState& s, Clock::time_point at) {
    s.got_marker = at;
    s.arrivals.clear();
    --awaiting_;
  }

  // Whether stream i looks for the marker itself: the first stream of each
  // namespace does; the others are matched by version (see on_table), which
  // saves the load tool three quarters of its scanning.
  bool scans(size_t i) const { return i < static_cast<size_t>(o_.scale.namespaces); }

  void on_stream_broken(TableStream& stream, const std::string& why) override {
    if (stopping_ || (controller_ && !controller_->running()) || controller_stopping_) return;
    ++broken_before_stop_;
    say("stream %d (%s) broke: %s", stream.index(), stream.ns().c_str(), why.c_str());
  }

  // ------------------------------------------------------------ report

  Status write_outputs();
  std::string report() const;

  const LoadOptions& o_;
  std::unique_ptr<event::EventLoop> loop_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<ControllerProcess> controller_;
  std::unique_ptr<ReadyProbe> probe_;
  std::unique_ptr<RouteWatch> watch_;
  std::vector<std::unique_ptr<TableStream>> streams_;
  std::vector<StreamState> states_;
  std::vector<std::pair<bool, std::string>> checks_;
  std::vector<std::pair<std::string, CreateStats>> populate_;

  std::chrono::system_clock::time_point started_wall_;
  Clock::time_point started_;
  struct {
    std::optional<Clock::time_point> ready, first_any, last;
    double synced_ms = NAN;
    Cpu cpu;
    Memory memory;
    Scrape metrics;
    uint64_t table_bytes = 0;
  } sync_;
  struct {
    bool done = false;
    double writes = 0;
    Clock::time_point last_write;
    uint64_t tables_during = 0;
    Memory memory;
  } settle_;
  struct {
    Cpu before, after;
    Memory memory;
  } idle_;
  struct {
    Cpu before, after;
    Memory memory;
    Histogram resolution, push;
    double tables_sent = 0;
    bool scraped = false;
  } phase_;
  struct {
    bool ran = false;
    double ms = NAN;
    size_t services = 0;
  } verify_;
  Memory final_memory_;
  Cpu final_cpu_;
  std::vector<UpdateResult> results_;
  std::vector<bool> affected_;
  std::map<std::string, std::vector<size_t>> streams_by_ns_;
  // Per namespace, the versions of the current update seen to carry its marker.
  std::map<std::string, std::set<std::string>> marker_versions_;
  std::string run_;
  size_t awaiting_ = 0;
  bool collecting_ = false;
  bool stopping_ = false;
  bool controller_stopping_ = false;
  uint64_t broken_before_stop_ = 0;
};

Status write_file(const std::string& path, const std::string& text) {
  if (path.empty()) return ok_status();
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return make_error(path + ": could not be written");
  return ok_status();
}

Status Bench::write_outputs() {
  if (Status s = write_file(o_.report, report()); !s.ok()) return s;
  std::ostringstream tsv;
  tsv << "update\tkind\troute\tstreams\tpatch_ms\twatch_ms\tfirst_ms\tmedian_ms\tall_ms\tmissing\t"
         "controller_cpu_ms\tcontroller_cpu_with_gap_ms\tcontroller_runqueue_wait_ms\ttables_computed\tresolution_ms\t"
         "tables_sent\tpush_mean_ms\tunaffected_tables\terror\n";
  for (const auto& r : results_) {
    tsv << r.plan.number + 1 << '\t' << (r.plan.route.consumer ? "consumer" : "producer") << '\t'
        << r.plan.route.ns << '/' << r.plan.route.name << '\t' << r.plan.streams.size() << '\t'
        << fixed(r.ack_ms, 1) << '\t' << fixed(r.watch_ms, 1) << '\t' << fixed(r.first_ms, 1) << '\t'
        << fixed(r.median_ms, 1) << '\t' << fixed(r.all_ms, 1) << '\t' << r.missing << '\t'
        << fixed(r.controller_cpu_ms, 0) << '\t' << fixed(r.controller_cpu_gap_ms, 0) << '\t'
        << fixed(r.controller_wait_ms, 0) << '\t'
        << r.resolution.count << '\t' << fixed(1000 * r.resolution.sum, 1) << '\t' << r.tables_sent
        << '\t' << fixed(r.push.count > 0 ? 1000 * r.push.sum / r.push.count : NAN, 1) << '\t'
        << r.unaffected_tables << '\t' << r.error << '\n';
  }
  if (Status s = write_file(o_.tsv, tsv.str()); !s.ok()) return s;
  std::ostringstream checks;
  for (const auto& [ok, name] : checks_) checks << (ok ? "ok" : "FAILED") << '\t' << name << '\n';
  return write_file(o_.checks, checks.str());
}

std::string Bench::report() const {
  std::ostringstream md;
  const Scale& sc = o_.scale;
  md << "### World\n\n"
     << "| objects | count | created in | rate |\n|---|---|---|---|\n";
  for (const auto& [what, stats] : populate_) {
    size_t n = stats.created + stats.existed;
    md << "| " << what << " | " << thousands(n)
       << (stats.existed > 0 ? " (" + thousands(stats.existed) + " already there)" : "") << " | "
       << fixed(stats.seconds, 1) << " s | " << fixed(static_cast<double>(n) / std::max(stats.seconds, 1e-3), 0)
       << "/s |\n";
  }
  if (populate_.empty()) md << "| (populated by an earlier run) | | | |\n";
  md << "\n" << thousands(static_cast<uint64_t>(sc.services)) << " Services in " << sc.namespaces
     << " namespaces, " << thousands(static_cast<uint64_t>(sc.services) * sc.endpoints_per_service)
     << " endpoint addresses, " << thousands(static_cast<uint64_t>(sc.routes)) << " HTTPRoutes ("
     << sc.consumer_routes << " consumer routes), " << sc.streams << " streams over "
     << std::min(sc.streams, sc.namespaces) << " namespaces.";
  if (o_.phases == LoadOptions::Phases::populate) return md.str() + "\n";
  md << " One route table is " << thousands(sync_.table_bytes) << " bytes of JSON.\n\n";

  auto since_start = [&](std::optional<Clock::time_point> t) {
    return t ? fixed(ms_between(started_, *t) / 1000, 2) + " s" : std::string("–");
  };
  md << "### Initial sync (controller start → …)\n\n| milestone | time |\n|---|---|\n"
     << "| /ready (every informer synced; polled every 20 ms) | " << since_start(sync_.ready) << " |\n"
     << "| informers synced (the controller's log line) | "
     << (std::isnan(sync_.synced_ms) ? "–" : fixed(sync_.synced_ms / 1000, 2) + " s") << " |\n"
     << "| first table on the first stream | " << since_start(sync_.first_any) << " |\n"
     << "| first table on every stream | " << since_start(sync_.last) << " |\n"
     << "| initial route-status writes done (" << fixed(settle_.writes, 0) << " writes) | "
     << since_start(settle_.writes > 0 ? std::optional<Clock::time_point>(settle_.last_write)
                                       : std::nullopt)
     << " |\n\n"
     << "At the first table on every stream: controller CPU "
     << fixed(sync_.cpu.controller, 2) << " s since start, VmRSS " << mib(sync_.memory.vm_rss_kib)
     << " MiB, VmHWM " << mib(sync_.memory.vm_hwm_kib) << " MiB; " << sync_.metrics.resolution.count
     << " tables computed in " << fixed(1000 * sync_.metrics.resolution.sum, 0) << " ms in all.\n\n";

  double idle_s = std::chrono::duration<double>(idle_.after.at - idle_.before.at).count();
  double phase_s = std::chrono::duration<double>(phase_.after.at - phase_.before.at).count();
  auto pct = [](double cpu, double seconds) {
    return std::isnan(cpu) || seconds <= 0 ? std::string("–") : fixed(100 * cpu / seconds, 1) + " %";
  };
  md << "### Controller memory and CPU\n\n| when | VmRSS MiB | RssAnon MiB | VmHWM MiB | CPU |\n"
     << "|---|---|---|---|---|\n"
     << "| first table on every stream | " << mib(sync_.memory.vm_rss_kib) << " | "
     << mib(sync_.memory.rss_anon_kib) << " | " << mib(sync_.memory.vm_hwm_kib) << " | "
     << fixed(sync_.cpu.controller, 2) << " s since start |\n"
     << "| after the route-status writes | " << mib(settle_.memory.vm_rss_kib) << " | "
     << mib(settle_.memory.rss_anon_kib) << " | " << mib(settle_.memory.vm_hwm_kib) << " | |\n"
     << "| idle (" << fixed(idle_s, 0) << " s) | " << mib(idle_.memory.vm_rss_kib) << " | "
     << mib(idle_.memory.rss_anon_kib) << " | " << mib(idle_.memory.vm_hwm_kib) << " | "
     << pct(idle_.after.controller - idle_.before.controller, idle_s) << " of a core |\n";
  if (!results_.empty()) {
    md << "| after " << results_.size() << " updates (" << fixed(phase_s, 0) << " s) | "
       << mib(phase_.memory.vm_rss_kib) << " | " << mib(phase_.memory.rss_anon_kib) << " | "
       << mib(phase_.memory.vm_hwm_kib) << " | "
       << pct(phase_.after.controller - phase_.before.controller, phase_s) << " of a core, "
       << fixed(phase_.after.controller - phase_.before.controller, 1) << " s |\n";
  }
  md << "\n";
  if (results_.empty()) return md.str();

  std::vector<double> all, producer, consumer, first_p, first_c, ack, watch, cpu_p, cpu_c, wait_p;
  for (const auto& r : results_) {
    double v = std::isnan(r.all_ms) ? INFINITY : r.all_ms;
    all.push_back(v);
    (r.plan.route.consumer ? consumer : producer).push_back(v);
    if (!std::isnan(r.first_ms)) (r.plan.route.consumer ? first_c : first_p).push_back(r.first_ms);
    if (!std::isnan(r.ack_ms)) ack.push_back(r.ack_ms);
    if (!std::isnan(r.watch_ms)) watch.push_back(r.watch_ms);
    (r.plan.route.consumer ? cpu_c : cpu_p).push_back(r.controller_cpu_ms);
    if (!r.plan.route.consumer && !std::isnan(r.controller_wait_ms)) wait_p.push_back(r.controller_wait_ms);
  }
  auto row = [&](const std::string& name, const std::vector<double>& values) {
    Summary s = summarize(values);
    md << "| " << name << " | " << s.n << " | " << fixed(s.p50, 0) << " | " << fixed(s.p90, 0)
       << " | " << fixed(s.p99, 0) << " | " << fixed(s.max, 0) << " | " << fixed(s.mean, 0) << " |\n";
  };
  md << "### HTTPRoute update → every affected stream has the new table (ms)\n\n"
     << "From sending the PATCH to the newline of the first table containing the change on the "
        "last affected stream (∞: some stream never got it).\n\n"
     << "| updates | n | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|\n";
  row("all", all);
  row("producer route → all " + std::to_string(sc.streams) + " streams", producer);
  row("consumer route → its namespace's streams", consumer);
  row("(producer: first stream has it)", first_p);
  row("(consumer: first stream has it)", first_c);
  row("(PATCH answered by the API server)", ack);
  row("(the bench's own HTTPRoute watch sees the event)", watch);
  row("(controller CPU ms per producer update)", cpu_p);
  row("(controller CPU ms per consumer update)", cpu_c);
  row("(controller ms runnable but waiting for a CPU, per producer update)", wait_p);
  md << "\n";

  double phase_cpu = phase_.after.controller - phase_.before.controller;
  md << "CPU over the update phase (" << fixed(phase_s, 1) << " s, including "
     << fixed(o_.update_gap_ms / 1000.0 * static_cast<double>(results_.size()), 0)
     << " s of gaps): controller " << fixed(phase_cpu, 1) << " s (and "
     << fixed(phase_.after.controller_wait - phase_.before.controller_wait, 1)
     << " s waiting for a CPU), this load tool "
     << fixed(phase_.after.self - phase_.before.self, 1) << " s, kube-apiserver "
     << fixed(phase_.after.apiserver - phase_.before.apiserver, 1) << " s, etcd "
     << fixed(phase_.after.etcd - phase_.before.etcd, 1) << " s.\n\n";
  if (phase_.scraped) {
    md << "The controller's own histograms over the update phase (bucket bounds 1, 5, 10, 25, 50, "
          "100, 250, 500 ms, 1, 2.5, 5 s…; quantiles interpolated within a bucket):\n\n"
       << "| histogram | count | sum | mean | p50 | p99 |\n|---|---|---|---|---|---|\n";
    auto hist_row = [&](const char* name, const Histogram& h) {
      md << "| " << name << " | " << fixed(h.count, 0) << " | " << fixed(h.sum, 2) << " s | "
         << fixed(h.count > 0 ? 1000 * h.sum / h.count : NAN, 1) << " ms | "
         << fixed(1000 * quantile(h, 0.5), 1) << " ms | " << fixed(1000 * quantile(h, 0.99), 1)
         << " ms |\n";
    };
    hist_row("resolution_seconds (compute one namespace's table)", phase_.resolution);
    hist_row("push_latency_seconds (change seen → table handed to a stream's socket)", phase_.push);
    md << "\ntrellis_controller_tables_sent_total grew by " << fixed(phase_.tables_sent, 0) << ".\n\n";
  }
  if (verify_.ran) {
    md << "The sidecar's own client (proxy/app ControllerStream: h2c, routes::parse, "
          "router::Table::compile) took "
       << fixed(verify_.ms, 0) << " ms from connecting to installing the " << verify_.services
       << "-Service table.\n\n";
  }
  return md.str();
}

}  // namespace

Result<int> run_bench(const LoadOptions& options) {
  Bench bench(options);
  return bench.run();
}

}  // namespace trellis::bench::controller
