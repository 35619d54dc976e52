// Test doubles for the exchange: a manual scheduler (time moves only when a
// test says so), a downstream stream that records what the exchange sends, a
// scripted upstream pool, route tables written inline, and metric reading
// through the registry's text exposition.
#pragma once

// Before stream.h: see proxy/exchange/installed_table.h.
#include "proxy/exchange/exchange.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics/exposition.h"
#include "common/routes/route_table.h"
#include "proxy/exchange/local_reply.h"
#include "proxy/router/table.h"

namespace exchange_test {

namespace ex = trellis::proxy::exchange;
namespace ph = trellis::proxy::http;
namespace hm = trellis::http;
namespace balancer = trellis::proxy::balancer;
namespace retry = trellis::proxy::retry;
namespace router = trellis::proxy::router;
using std::chrono::milliseconds;

// --- time ----------------------------------------------------------------------

class FakeScheduler final : public ex::Scheduler {
 public:
  class FakeAlarm final : public ex::Alarm {
   public:
    FakeAlarm(FakeScheduler& s, std::function<void()> fire) : s_(s), fire_(std::move(fire)) {
      s_.alarms_.push_back(this);
    }
    ~FakeAlarm() override {
      s_.alarms_.erase(std::find(s_.alarms_.begin(), s_.alarms_.end(), this));
    }
    void arm(milliseconds after) override {
      armed_ = true;
      deadline_ = s_.now_ + std::max(after, milliseconds(0));
      order_ = ++s_.order_;
    }
    void disarm() override { armed_ = false; }

   private:
    friend class FakeScheduler;
    FakeScheduler& s_;
    std::function<void()> fire_;
    bool armed_ = false;
    ex::TimePoint deadline_;
    uint64_t order_ = 0;
  };

  ex::TimePoint now() override { return now_; }
  std::unique_ptr<ex::Alarm> alarm(std::function<void()> fire) override {
    return std::make_unique<FakeAlarm>(*this, std::move(fire));
  }
  void defer(std::function<void()> task) override { deferred_.push_back(std::move(task)); }

  // Runs deferred tasks and the alarms due now, until none is left.
  void run() { run_until(now_); }
  // Moves time forward, firing alarms in deadline order (ties: arming order).
  void advance(milliseconds d) {
    ex::TimePoint target = now_ + d;
    run_until(target);
    now_ = target;
    run_until(now_);
  }
  size_t armed() const {
    return static_cast<size_t>(
        std::count_if(alarms_.begin(), alarms_.end(), [](FakeAlarm* a) { return a->armed_; }));
  }
  size_t alarms() const { return alarms_.size(); }

 private:
  void run_until(ex::TimePoint limit) {
    for (;;) {
      while (!deferred_.empty()) {
        auto task = std::move(deferred_.front());
        deferred_.pop_front();
        task();
      }
      FakeAlarm* next = nullptr;
      for (FakeAlarm* a : alarms_) {
        if (!a->armed_ || a->deadline_ > limit) continue;
        if (next == nullptr || a->deadline_ < next->deadline_ ||
            (a->deadline_ == next->deadline_ && a->order_ < next->order_)) {
          next = a;
        }
      }
      if (next == nullptr) return;
      now_ = std::max(now_, next->deadline_);
      next->armed_ = false;
      auto fire = next->fire_;  // the alarm may die during the call
      fire();
    }
  }

  ex::TimePoint now_{std::chrono::seconds(1000)};
  uint64_t order_ = 0;
  std::vector<FakeAlarm*> alarms_;
  std::deque<std::function<void()>> deferred_;
};

// splitmix64: deterministic, uniform enough for weights and jitter.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t operator()() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// --- downstream --------------------------------------------------------------

class FakeDownstream final : public ph::DownstreamStream {
 public:
  explicit FakeDownstream(ph::DownstreamInfo info) : info_(std::move(info)) {}

  const ph::DownstreamInfo& info() const override { return info_; }
  void send_response_head(hm::ResponseHead&& h, bool end_stream) override {
    if (closed() || head) {
      ++misuse;
      return;
    }
    head = std::move(h);
    ended = end_stream;
    if (reset_on_head && exchange != nullptr) {
      was_reset = true;
      exchange->on_downstream_reset();
    }
  }
  void send_response_data(std::string_view data, bool end_stream) override {
    if (closed() || !head) {
      ++misuse;
      return;
    }
    body.append(data.data(), data.size());
    ended = end_stream;
    if (congest_on_data && exchange != nullptr && !end_stream) {
      congest_on_data = false;
      exchange->on_response_congested();
    }
  }
  void send_response_trailers(hm::HeaderMap&& t) override {
    if (closed() || !head) {
      ++misuse;
      return;
    }
    trailers = std::move(t);
    ended = true;
  }
  void reset() override {
    if (closed()) return;
    was_reset = true;
  }
  void pause_request_body() override {
    ++pauses;
    paused = true;
  }
  void resume_request_body() override {
    ++resumes;
    paused = false;
  }

  bool closed() const { return ended || was_reset; }
  int status() const { return head ? head->status : 0; }
  std::string header(std::string_view name) const {
    const std::string* v = head ? head->headers.get(name) : nullptr;
    return v ? *v : std::string("<absent>");
  }

  ph::DownstreamCallbacks* exchange = nullptr;
  std::optional<hm::ResponseHead> head;
  std::string body;
  std::optional<hm::HeaderMap> trailers;
  bool ended = false;
  bool was_reset = false;
  int misuse = 0;  // calls the contract forbids (a second head, data after the end, ...)
  int pauses = 0;
  int resumes = 0;
  bool paused = false;
  bool congest_on_data = false;  // report congestion from inside the next send_response_data
  bool reset_on_head = false;    // the write of the head fails: reset from inside the send

 private:
  ph::DownstreamInfo info_;
};

// One request as the client sees it: the stream and the exchange on it.
struct Client {
  std::unique_ptr<FakeDownstream> stream;
  std::unique_ptr<ph::DownstreamCallbacks> exchange;

  FakeDownstream& operator*() { return *stream; }
  FakeDownstream* operator->() { return stream.get(); }
  void data(std::string_view d, bool end) { exchange->on_request_data(d, end); }
  void trailers(hm::HeaderMap t) { exchange->on_request_trailers(std::move(t)); }
  // The connection resets the stream, then destroys the exchange.
  void reset() {
    exchange->on_downstream_reset();
    exchange.reset();
    stream->exchange = nullptr;
  }
  void congested() { exchange->on_response_congested(); }
  void writable() { exchange->on_response_writable(); }
};

// --- upstream -------------------------------------------------------------------

// What one upstream stream received, and the script to answer it.
struct Upstream {
  ph::UpstreamTarget target;
  ph::UpstreamCallbacks* callbacks = nullptr;
  std::optional<hm::RequestHead> head;
  std::string body;
  std::optional<hm::HeaderMap> trailers;
  bool request_ended = false;
  bool destroyed = false;  // the exchange destroyed (cancelled) the stream
  bool finished = false;   // the response ended or a failure was delivered
  int pauses = 0;
  int resumes = 0;
  bool paused = false;
  int misuse = 0;

  bool live() const { return !destroyed && !finished; }
  std::string header(std::string_view name) const {
    return head && head->headers.contains(name) ? head->headers.joined(name)
                                                : std::string("<absent>");
  }

  void respond(int status, std::initializer_list<std::pair<const char*, const char*>> headers = {},
               bool end = true) {
    if (!live()) return;
    hm::ResponseHead h;
    h.status = status;
    for (const auto& [n, v] : headers) h.headers.add(n, v);
    if (end) finished = true;
    callbacks->on_response_head(std::move(h), end);
  }
  void data(std::string_view d, bool end) {
    if (!live()) return;
    if (end) finished = true;
    callbacks->on_response_data(d, end);
  }
  void send_trailers(std::initializer_list<std::pair<const char*, const char*>> fields) {
    if (!live()) return;
    hm::HeaderMap t;
    for (const auto& [n, v] : fields) t.add(n, v);
    finished = true;
    callbacks->on_response_trailers(std::move(t));
  }
  void fail(ph::UpstreamFailure f) {
    if (!live()) return;
    finished = true;
    callbacks->on_upstream_failure(f, trellis::make_error("scripted " +
                                                          std::string(ph::failure_name(f))));
  }
  void congested() {
    if (live()) callbacks->on_request_congested();
  }
  void writable() {
    if (live()) callbacks->on_request_writable();
  }
};

class FakePool final : public ph::UpstreamPool {
 public:
  using Responder = std::function<void(Upstream&)>;

  explicit FakePool(FakeScheduler& scheduler) : scheduler_(scheduler) {}

  std::unique_ptr<ph::UpstreamStream> new_stream(const ph::UpstreamTarget& target,
                                                 ph::UpstreamCallbacks& callbacks) override {
    auto record = std::make_shared<Upstream>();
    record->target = target;
    record->callbacks = &callbacks;
    streams.push_back(record);
    return std::make_unique<Stream>(*this, record);
  }

  // Called (on a later turn, like the real pool) once a stream's request has
  // ended; may answer, fail, or do nothing (stall).
  Responder responder;
  std::vector<std::shared_ptr<Upstream>> streams;

  Upstream& last() {
    REQUIRE(!streams.empty());
    return *streams.back();
  }
  size_t live() const {
    return static_cast<size_t>(std::count_if(streams.begin(), streams.end(),
                                             [](const auto& s) { return !s->destroyed; }));
  }

 private:
  class Stream final : public ph::UpstreamStream {
   public:
    Stream(FakePool& pool, std::shared_ptr<Upstream> record)
        : pool_(pool), record_(std::move(record)) {}
    ~Stream() override { record_->destroyed = true; }
    void send_request_head(hm::RequestHead&& head, bool end_stream) override {
      if (record_->head || record_->request_ended) ++record_->misuse;
      record_->head = std::move(head);
      if (end_stream) ended();
    }
    void send_request_data(std::string_view data, bool end_stream) override {
      if (!record_->head || record_->request_ended) ++record_->misuse;
      record_->body.append(data.data(), data.size());
      if (end_stream) ended();
    }
    void send_request_trailers(hm::HeaderMap&& trailers) override {
      if (!record_->head || record_->request_ended) ++record_->misuse;
      record_->trailers = std::move(trailers);
      ended();
    }
    void pause_response_body() override {
      ++record_->pauses;
      record_->paused = true;
    }
    void resume_response_body() override {
      ++record_->resumes;
      record_->paused = false;
    }

   private:
    void ended() {
      record_->request_ended = true;
      if (!pool_.responder) return;
      std::weak_ptr<Upstream> weak = record_;
      FakePool* pool = &pool_;
      pool_.scheduler_.defer([weak, pool] {
        auto r = weak.lock();
        if (r && r->live() && pool->responder) pool->responder(*r);
      });
    }
    FakePool& pool_;
    std::shared_ptr<Upstream> record_;
  };

  FakeScheduler& scheduler_;
};

// --- route tables ---------------------------------------------------------------------

// ClusterIPs: echo 10.96.0.10 (ports 80, and 7070 for gRPC), echo-v1 .11,
// echo-v2 .12, empty .13 (an endpoints entry without addresses). Endpoints:
//   echo:80     10.244.0.1:8080, 10.244.0.2:8080 (plaintext)
//   echo-v1:80  10.244.1.1:8080, 10.244.1.2:8080 (meshed, identity kV1Identity)
//   echo-v2:80  10.244.2.1:8080 (plaintext)
//   echo-v1:7070, echo-v2:7070  10.244.1.1:7070, 10.244.2.1:7070
//   empty:80    none
constexpr char kEcho[] = "10.96.0.10";
constexpr char kEchoV1[] = "10.96.0.11";
constexpr char kEmpty[] = "10.96.0.13";
constexpr char kV1Identity[] = "spiffe://cluster.local/ns/shop/sa/v1";

inline std::string table_json(std::string_view echo_routes, std::string_view version = "t1") {
  return std::string(R"({"version":")") + std::string(version) +
         R"(","namespace":"shop","services":[
      {"namespace":"shop","name":"echo","clusterIPs":["10.96.0.10"],
       "ports":[{"name":"http","port":80,"targetPort":8080},{"name":"grpc","port":7070}],
       "routes":)" + std::string(echo_routes) + R"(},
      {"namespace":"shop","name":"echo-v1","clusterIPs":["10.96.0.11"],"ports":[{"port":80}]},
      {"namespace":"shop","name":"echo-v2","clusterIPs":["10.96.0.12"],"ports":[{"port":80}]},
      {"namespace":"shop","name":"empty","clusterIPs":["10.96.0.13"],"ports":[{"port":80}]}],
    "endpoints":[
      {"namespace":"shop","service":"echo","port":80,"addresses":[
        {"ip":"10.244.0.1","port":8080},{"ip":"10.244.0.2","port":8080}]},
      {"namespace":"shop","service":"echo-v1","port":80,"addresses":[
        {"ip":"10.244.1.1","port":8080,"identity":"spiffe://cluster.local/ns/shop/sa/v1"},
        {"ip":"10.244.1.2","port":8080,"identity":"spiffe://cluster.local/ns/shop/sa/v1"}]},
      {"namespace":"shop","service":"echo-v2","port":80,"addresses":[{"ip":"10.244.2.1","port":8080}]},
      {"namespace":"shop","service":"echo-v1","port":7070,"addresses":[{"ip":"10.244.1.1","port":7070}]},
      {"namespace":"shop","service":"echo-v2","port":7070,"addresses":[{"ip":"10.244.2.1","port":7070}]},
      {"namespace":"shop","service":"empty","port":80,"addresses":[]}]})";
}

// One HTTPRoute "r" on echo:80 with `rules`, as a routes array.
inline std::string http_route(std::string_view rules, std::string_view name = "r") {
  return std::string(R"([{"kind":"HTTPRoute","namespace":"shop","name":")") + std::string(name) +
         R"(","creationTimestamp":"2026-01-02T03:04:05Z","port":80,"rules":)" +
         std::string(rules) + "}]";
}

inline std::shared_ptr<const router::Table> compile(std::string_view json) {
  auto parsed = trellis::routes::parse(json);
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? std::string() : parsed.error().message));
  return router::Table::compile(*parsed);
}

// --- metrics ----------------------------------------------------------------------------

// The sum of the samples of `name` whose labels include `labels`, read from
// the text exposition (as Prometheus would).
inline double metric(const trellis::metrics::Registry& registry, std::string_view name,
                     const std::map<std::string, std::string>& labels = {}) {
  std::istringstream text(trellis::metrics::text_exposition(registry));
  std::string line;
  double sum = 0;
  while (std::getline(text, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t end = line.find_first_of("{ ");
    if (line.substr(0, end) != name) continue;
    std::map<std::string, std::string> have;
    size_t value_at = end + 1;
    if (line[end] == '{') {
      size_t close = line.find("} ", end);
      std::string inner = line.substr(end + 1, close - end - 1);
      size_t i = 0;
      while (i < inner.size()) {
        size_t eq = inner.find("=\"", i);
        size_t q = inner.find('"', eq + 2);
        have[inner.substr(i, eq - i)] = inner.substr(eq + 2, q - eq - 2);
        i = q + 2;  // past '",'
      }
      value_at = close + 2;
    }
    bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
      auto it = have.find(kv.first);
      return it != have.end() && it->second == kv.second;
    });
    if (match) sum += std::stod(line.substr(value_at));
  }
  return sum;
}

// --- the harness ----------------------------------------------------------------------------

using Fields = std::initializer_list<std::pair<const char*, const char*>>;

inline hm::RequestHead get(std::string target, Fields headers = {}, std::string method = "GET") {
  hm::RequestHead r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.authority = "echo";
  for (const auto& [n, v] : headers) r.headers.add(n, v);
  return r;
}

inline hm::RequestHead grpc_call(std::string path = "/pkg.Echo/Say") {
  hm::RequestHead r =
      get(std::move(path), {{"content-type", "application/grpc"}, {"te", "trailers"}}, "POST");
  r.version = hm::Version::http2;
  r.authority = "echo:7070";
  return r;
}

inline ex::ExchangeConfig default_config() {
  ex::ExchangeConfig c;
  c.retry.budget.min_per_second = 100;  // the reserve: 1000 retries in the 10 s window
  return c;
}

// One worker: scheduler, balancer, pool, outbound and inbound factories.
struct Harness {
  explicit Harness(std::string_view routes = "[]", ex::ExchangeConfig config = default_config())
      : pool(scheduler) {
    auto m = ex::ExchangeMetrics::create(registry);
    REQUIRE(m.ok());
    metrics = *m;
    auto clock = [this] { return scheduler.now(); };
    auto b =
        balancer::Balancer::create(balancer::Config{}, clock, [this] { return balancer_rng(); });
    REQUIRE(b.ok());
    balancer = std::move(*b);
    auto budgets_or = ex::BudgetRegistry::create(config.retry.budget, clock);
    REQUIRE(budgets_or.ok());
    budgets = std::move(*budgets_or);
    retry_config = config.retry;
    ex::WorkerContext context;
    context.pool = &pool;
    context.scheduler = &scheduler;
    context.balancer = balancer.get();
    context.random = [this] { return rng(); };
    auto unrouted = retry::Budget::create(config.retry.budget, clock);
    REQUIRE(unrouted.ok());
    auto out = ex::OutboundFactory::create(config, context, metrics, std::move(*unrouted));
    REQUIRE_MESSAGE(out.ok(), (out.ok() ? std::string() : out.error().message));
    outbound = std::move(*out);
    auto inbound_budget = retry::Budget::create(config.retry.budget, clock);
    REQUIRE(inbound_budget.ok());
    auto in = ex::InboundFactory::create(config, context, metrics, std::move(*inbound_budget));
    REQUIRE(in.ok());
    inbound = std::move(*in);
    install(table_json(routes));
  }
  ~Harness() {
    // Exchanges first: they hold upstream streams and alarms.
    clients.clear();
  }

  std::shared_ptr<const ex::InstalledTable> install(std::string_view json) {
    auto installed = ex::InstalledTable::create(compile(json), retry_config, *budgets);
    REQUIRE_MESSAGE(installed.ok(), (installed.ok() ? std::string() : installed.error().message));
    outbound->install(*installed);
    return *installed;
  }

  // A request from the app to ip:port.
  Client& send(hm::RequestHead head, bool end_stream = true, const char* ip = kEcho,
               uint16_t port = 80) {
    ph::DownstreamInfo info;
    info.direction = ph::Direction::outbound;
    info.original_destination = *trellis::net::Address::from_ip(ip, port);
    info.peer = *trellis::net::Address::parse("10.244.9.9:40000");
    info.protocol = head.version;
    return start(*outbound, std::move(info), std::move(head), end_stream);
  }

  // A request from a peer to the local app's port.
  Client& receive(hm::RequestHead head, bool end_stream = true, uint16_t port = 8080,
                  std::string peer_identity = "spiffe://cluster.local/ns/web/sa/client") {
    ph::DownstreamInfo info;
    info.direction = ph::Direction::inbound;
    info.original_destination = *trellis::net::Address::from_ip("10.244.9.1", port);
    info.peer = *trellis::net::Address::parse("10.244.9.9:40000");
    info.protocol = head.version;
    info.peer_identity = std::move(peer_identity);
    return start(*inbound, std::move(info), std::move(head), end_stream);
  }

  Client& start(ph::ExchangeFactory& factory, ph::DownstreamInfo info, hm::RequestHead head,
                bool end_stream) {
    auto c = std::make_unique<Client>();
    c->stream = std::make_unique<FakeDownstream>(std::move(info));
    c->exchange = factory.create(*c->stream, std::move(head), end_stream);
    REQUIRE(c->exchange != nullptr);
    c->stream->exchange = c->exchange.get();
    clients.push_back(std::move(c));
    return *clients.back();
  }

  // The balancer's state of an endpoint of the current table.
  const balancer::Endpoint* endpoint(const char* address) {
    return outbound->current()->endpoint_sets().find(*trellis::net::Address::parse(address));
  }

  double value(std::string_view name, const std::map<std::string, std::string>& labels = {}) {
    return metric(registry, name, labels);
  }

  FakeScheduler scheduler;
  trellis::metrics::Registry registry;
  ex::ExchangeMetrics metrics;
  Rng rng{42};
  Rng balancer_rng{7};
  std::unique_ptr<balancer::Balancer> balancer;
  FakePool pool;
  std::unique_ptr<ex::BudgetRegistry> budgets;
  retry::Config retry_config;
  std::unique_ptr<ex::OutboundFactory> outbound;
  std::unique_ptr<ex::InboundFactory> inbound;
  std::vector<std::unique_ptr<Client>> clients;
};

}  // namespace exchange_test
