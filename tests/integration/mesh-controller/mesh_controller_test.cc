// trellis-controller against a real API server, as a child process, with its
// route-table stream consumed by the proxy's own client (ControllerStream)
// and by a real trellis-proxy.
//
// The cases run on a private sandbox (own etcd, kube-apiserver and
// kube-controller-manager in a network namespace of its own, started in
// seconds from the cached binaries): one case restarts the apiserver and
// compacts etcd, and a controller writes route status for every route in the
// cluster, which would disturb other suites' routes in the shared sandbox.
//
// The world is the Gateway API v1.6.1 mesh conformance base
// (conformance/mesh/manifests.yaml from the sigs.k8s.io/gateway-api
// conformance module, applied unchanged). There is no kubelet: the test binds
// the echo Pods to a Node object of its own and reports them Running and
// Ready with addresses, so that the real kube-controller-manager builds their
// EndpointSlices, and marks them meshed (trellis.dev/proxy-version) as the
// injector would.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/event/timer.h"
#include "common/json/json.h"
#include "common/kube/client.h"
#include "common/kube/errors.h"
#include "common/log/log.h"
#include "common/routes/route_table.h"
#include "proxy/app/controller_stream.h"
#include "tests/integration/mesh-controller/support.h"
#include "tests/integration/support/sandbox.h"
#include "tests/unit/common/event/loop_test_util.h"

namespace kube = trellis::kube;
namespace json = trellis::json;
namespace routes = trellis::routes;
namespace ti = trellis::integration;
namespace mesh = trellis::integration::mesh;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using trellis::Result;

namespace {

constexpr char kMesh[] = "gateway-conformance-mesh";
constexpr char kConsumer[] = "gateway-conformance-mesh-consumer";
constexpr char kNode[] = "trellis-it-node";
constexpr milliseconds kWait{30000};
const kube::Resource kBindings{"", "v1", "bindings", true};
const kube::Resource kNodes{"", "v1", "nodes", false};

double ms_since(steady_clock::time_point start, steady_clock::time_point end = steady_clock::now()) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

// ---------------------------------------------------------------- sandbox

// The private sandbox of this process, entered before any thread exists and
// stopped (sandbox/down) when the process exits.
struct PrivateSandbox {
  PrivateSandbox() {
    dir = "/tmp/trellis-mc-it-" + std::to_string(getpid());
    ::mkdir(dir.c_str(), 0700);
    ::setenv("TRELLIS_SANDBOX_DIR", (dir + "/state").c_str(), 1);
    ::setenv("TRELLIS_SANDBOX_NETNS", ("trellis-mc-" + std::to_string(getpid())).c_str(), 1);
    host_netns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    auto sb = ti::ensure_sandbox();
    if (sb.ok()) {
      auto entered = ti::enter_sandbox_network(*sb);
      if (!entered.ok()) sb = Result<ti::Sandbox>(entered.error());
    }
    sandbox = std::move(sb);
  }
  ~PrivateSandbox() {
    // sandbox/down stops every process inside the namespace: leave it first.
    if (host_netns >= 0) {
      (void)::setns(host_netns, CLONE_NEWNET);
      ::close(host_netns);
    }
    (void)ti::run_command({std::string(TRELLIS_SOURCE_ROOT) + "/sandbox/down"});
    (void)ti::run_command({"rm", "-rf", dir});
  }

  std::string dir;
  int host_netns = -1;
  Result<ti::Sandbox> sandbox = trellis::make_error("not started");
};

PrivateSandbox& private_sandbox() {
  static PrivateSandbox sb;
  return sb;
}

const ti::Sandbox& sandbox() {
  const auto& sb = private_sandbox().sandbox;
  REQUIRE_MESSAGE(sb.ok(), (sb.ok() ? "" : sb.error().message));
  return *sb;
}

std::string log_path(const std::string& name) {
  static int counter = 0;
  return private_sandbox().dir + "/" + name + "-" + std::to_string(++counter) + ".log";
}

// ---------------------------------------------------------------- API access

// One loop and one admin client for the whole process; stream clients live
// on the same loop.
struct Kube {
  Kube() {
    (void)sandbox();
    auto config = kube::load_kubeconfig(sandbox().kubeconfig);
    REQUIRE_MESSAGE(config.ok(), (config.ok() ? "" : config.error().message));
    loop = trellis::event::testing::make_loop();
    REQUIRE(loop);
    auto c = kube::Client::from_config(*loop, *config);
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
    client = std::move(*c);
  }

  Result<json::Document> call(const std::function<kube::RequestId(kube::Client::Callback)>& start) {
    std::optional<Result<json::Document>> answer;
    start([&](Result<json::Document> doc) { answer.emplace(std::move(doc)); });
    REQUIRE(trellis::event::testing::run_until(*loop, [&] { return answer.has_value(); }, kWait));
    return std::move(*answer);
  }

  json::Document ok(const std::function<kube::RequestId(kube::Client::Callback)>& start) {
    auto answer = call(start);
    REQUIRE_MESSAGE(answer.ok(), (answer.ok() ? "" : answer.error().message));
    return std::move(answer).value();
  }

  // Checks done() every `step` of loop time until it holds. done() runs
  // outside the loop, so it may make API calls (which run the loop) and
  // poll other processes.
  bool eventually(const std::function<bool()>& done, milliseconds limit = kWait,
                  milliseconds step = milliseconds(10)) {
    auto deadline = steady_clock::now() + limit;
    for (;;) {
      if (done()) return true;
      if (steady_clock::now() >= deadline) return false;
      run_for(step);
    }
  }
  void run_for(milliseconds d) { trellis::event::testing::run_for(*loop, d); }

  std::unique_ptr<trellis::event::EventLoop> loop;
  std::unique_ptr<kube::Client> client;
};

Kube& kube_api() {
  static Kube k;
  return k;
}

void create(const kube::Resource& resource, const std::string& ns, const std::string& body) {
  kube_api().ok([&](auto done) { return kube_api().client->create(resource, ns, body, done); });
}

void merge_patch(const kube::Resource& resource, const std::string& ns, const std::string& name,
                 const std::string& body) {
  kube_api().ok([&](auto done) {
    return kube_api().client->patch(resource, ns, name, kube::PatchType::merge, body, done);
  });
}

void remove(const kube::Resource& resource, const std::string& ns, const std::string& name) {
  kube_api().ok([&](auto done) { return kube_api().client->remove(resource, ns, name, done); });
}

std::string kubectl(const std::vector<std::string>& args) {
  auto out = ti::run_kubectl(sandbox(), args);
  REQUIRE_MESSAGE(out.ok(), (out.ok() ? "" : out.error().message));
  return *out;
}

// The string at a dotted path ("metadata.name"), or "".
std::string field(const json::Value& object, const std::string& dotted) {
  std::optional<json::Value> v = object;
  size_t start = 0;
  while (v) {
    size_t dot = dotted.find('.', start);
    auto o = v->object();
    if (!o.ok()) return "";
    v = o->find(dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (!v) return "";
  if (v->is_string()) return std::string(*v->string());
  if (v->is_number()) return std::to_string(*v->integer());
  return "";
}

std::string http_route(const std::string& ns, const std::string& name, const std::string& parent,
                       int port, const std::string& rule) {
  return R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":")" +
         name + R"(","namespace":")" + ns +
         R"("},"spec":{"parentRefs":[{"group":"","kind":"Service","name":")" + parent +
         R"(","port":)" + std::to_string(port) + R"(}],"rules":[)" + rule + "]}}";
}

std::string backend_rule(const std::string& service, int port = 80) {
  return R"({"backendRefs":[{"name":")" + service + R"(","port":)" + std::to_string(port) + "}]}";
}

std::string service(const std::string& ns, const std::string& name, const std::string& ports) {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"name":")" + name + R"(","namespace":")" +
         ns + R"("},"spec":{"ports":)" + ports + "}}";
}

void create_namespace(const std::string& ns) {
  create(kube::resources::kNamespaces, "",
         R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + ns + R"("}})");
}

// Deletes a namespace and waits until it is gone, so that the next case
// starts from a quiet world.
void delete_namespace(const std::string& ns) {
  remove(kube::resources::kNamespaces, "", ns);
  CHECK(kube_api().eventually(
      [&] {
        auto got = kube_api().call([&](auto done) {
          return kube_api().client->get(kube::resources::kNamespaces, "", ns, done);
        });
        return !got.ok() && kube::is_not_found(got.error());
      },
      milliseconds(60000), milliseconds(200)));
}

// ---------------------------------------------------------------- the world

// The conformance base applied, its Pods bound, Running, Ready and meshed,
// and kube-controller-manager's EndpointSlices listing them.
struct World {
  World() {
    auto dir = mesh::conformance_module_dir();
    REQUIRE_MESSAGE(dir.ok(), (dir.ok() ? "" : dir.error().message));
    conformance = *dir;
    kubectl({"apply", "-f", conformance + "/mesh/manifests.yaml"});
    create(kNodes, "", R"({"apiVersion":"v1","kind":"Node","metadata":{"name":")" + std::string(kNode) +
                           R"("}})");
    struct Want {
      const char* ns;
      const char* version;
      const char* ip;
    };
    for (const Want& w : {Want{kMesh, "v1", "10.78.10.1"}, Want{kMesh, "v2", "10.78.10.2"},
                          Want{kConsumer, "v1", "10.78.10.3"}}) {
      std::string pod;
      REQUIRE(kube_api().eventually([&] {
        kube::ListOptions o;
        o.label_selector = std::string("app=echo,version=") + w.version;
        auto list = kube_api().call([&](auto done) {
          return kube_api().client->list(kube::resources::kPods, w.ns, o, done);
        });
        if (!list.ok()) return false;
        auto items = list->root().object()->required_array("items");
        if (!items.ok() || items->size() != 1) return false;
        pod = field((*items)[0], "metadata.name");
        return !pod.empty();
      }));
      pods[std::string(w.ns) + "/" + w.version] = pod;
      merge_patch(kube::resources::kPods, w.ns, pod,
                  R"({"metadata":{"annotations":{"trellis.dev/proxy-version":"it"}}})");
      create(kBindings, w.ns,
             R"({"apiVersion":"v1","kind":"Binding","metadata":{"name":")" + pod +
                 R"("},"target":{"apiVersion":"v1","kind":"Node","name":")" + kNode + R"("}})");
      set_ready(w.ns, pod, w.ip, true);
    }
    // kube-controller-manager publishes the ready Pods.
    for (const char* svc : {"echo", "echo-v1", "echo-v2"}) {
      size_t want = std::string(svc) == "echo" ? 2 : 1;
      REQUIRE_MESSAGE(kube_api().eventually([&] { return ready_endpoints(kMesh, svc) == want; }),
                      "EndpointSlices of " << svc);
    }
  }

  static void set_ready(const std::string& ns, const std::string& pod, const std::string& ip,
                        bool ready) {
    std::string status = ready ? "True" : "False";
    kube_api().ok([&](auto done) {
      return kube_api().client->patch_status(
          kube::resources::kPods, ns, pod, kube::PatchType::merge,
          R"({"status":{"phase":"Running","podIP":")" + ip + R"(","podIPs":[{"ip":")" + ip +
              R"("}],"conditions":[{"type":"PodScheduled","status":"True"},{"type":"Initialized","status":"True"},)"
              R"({"type":"ContainersReady","status":")" + status + R"("},{"type":"Ready","status":")" +
              status + R"("}]}})",
          done);
    });
  }

  // Ready addresses over the Service's EndpointSlices.
  static size_t ready_endpoints(const std::string& ns, const std::string& svc) {
    kube::ListOptions o;
    o.label_selector = "kubernetes.io/service-name=" + svc;
    auto list = kube_api().call([&](auto done) {
      return kube_api().client->list(kube::resources::kEndpointSlices, ns, o, done);
    });
    if (!list.ok()) return 0;
    size_t n = 0;
    auto items = list->root().object()->required_array("items");
    for (size_t i = 0; items.ok() && i < items->size(); ++i) {
      auto endpoints = (*items)[i].object()->optional_array("endpoints");
      if (!endpoints.ok() || !*endpoints) continue;
      for (size_t k = 0; k < (*endpoints)->size(); ++k) {
        auto conditions = (**endpoints)[k].object()->optional_object("conditions");
        if (!conditions.ok() || !*conditions) continue;
        auto ready = (*conditions)->optional_bool("ready");
        if (ready.ok() && ready->value_or(true)) ++n;
      }
    }
    return n;
  }

  std::string conformance;
  std::map<std::string, std::string> pods;  // "ns/v1" -> pod name
};

World& world() {
  static World w;
  return w;
}

// ---------------------------------------------------------------- processes

// A trellis-controller child process on free ports.
struct Controller {
  explicit Controller(const std::string& lease, const std::string& identity = "replica",
                      uint16_t listen_port = 0) {
    port = listen_port != 0 ? listen_port : mesh::free_port();
    admin = mesh::free_port();
    std::vector<std::string> argv = {TRELLIS_CONTROLLER_BIN,
                                     "--kubeconfig", sandbox().kubeconfig,
                                     "--listen", "127.0.0.1:" + std::to_string(port),
                                     "--admin-port", std::to_string(admin),
                                     "--insecure-namespace-from-query",
                                     "--leader-election-namespace", "default",
                                     "--lease-name", lease,
                                     "--identity", identity,
                                     "--lease-duration", "4s",
                                     "--renew-deadline", "3s",
                                     "--retry-period", "1s"};
    auto p = mesh::ChildProcess::spawn(argv, log_path("controller-" + identity));
    REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
    process = std::move(*p);
  }

  bool wait_ready(milliseconds limit = kWait) {
    bool ready = kube_api().eventually(
        [&] {
          auto r = mesh::http_get("127.0.0.1", admin, "/ready");
          return !process->running() || (r.ok() && r->status == 200);
        },
        limit);
    return ready && process->running();
  }

  std::string metrics() const {
    auto r = mesh::http_get("127.0.0.1", admin, "/metrics");
    return r.ok() ? r->body : "";
  }
  double metric(const std::string& series) const {
    return mesh::metric(metrics(), series).value_or(-1);
  }

  uint16_t port = 0;
  uint16_t admin = 0;
  std::unique_ptr<mesh::ChildProcess> process;
};

// Every table a namespace's stream delivers, through the proxy's own client.
struct Tables {
  Tables(uint16_t port, const std::string& ns) {
    trellis::proxy::app::ControllerStreamOptions o;
    o.controller.host = "127.0.0.1";
    o.controller.port = port;
    o.ns = ns;
    o.initial_backoff = milliseconds(50);
    o.max_backoff = milliseconds(1000);
    auto s = trellis::proxy::app::ControllerStream::start(
        *kube_api().loop, o, registry, [this](trellis::proxy::app::LoadedTable t) {
          seen.push_back({t.routes, steady_clock::now()});
        });
    REQUIRE(s.ok());
    stream = std::move(*s);
  }

  struct Seen {
    std::shared_ptr<const routes::RouteTable> table;
    steady_clock::time_point at;
  };
  const routes::RouteTable* latest() const { return seen.empty() ? nullptr : seen.back().table.get(); }

  trellis::metrics::Registry registry;
  std::unique_ptr<trellis::proxy::app::ControllerStream> stream;
  std::vector<Seen> seen;
};

// ---------------------------------------------------------------- tables

const routes::Service* find_service(const routes::RouteTable& t, const std::string& ns,
                                    const std::string& name) {
  for (const auto& s : t.services) {
    if (s.ns == ns && s.name == name) return &s;
  }
  return nullptr;
}

const routes::Endpoints* find_endpoints(const routes::RouteTable& t, const std::string& ns,
                                        const std::string& svc, uint16_t port) {
  for (const auto& e : t.endpoints) {
    if (e.ns == ns && e.service == svc && e.port == port) return &e;
  }
  return nullptr;
}

bool has_route(const routes::RouteTable& t, const std::string& ns, const std::string& name) {
  for (const auto& s : t.services) {
    for (const auto& r : s.routes) {
      if (r.ns == ns && r.name == name) return true;
    }
  }
  return false;
}

// A table reduced to what the mesh namespaces' Services look like to the
// sidecar, without what differs between clusters: versions, client
// namespace, cluster IPs, creation times, pod IPs and names.
std::string normalize(const routes::RouteTable& t) {
  const std::set<std::string> ours = {kMesh, kConsumer};
  routes::RouteTable n;
  for (const auto& s : t.services) {
    if (ours.count(s.ns) == 0) continue;
    routes::Service c = s;
    c.cluster_ips.clear();
    for (auto& r : c.routes) {
      r.creation_timestamp.clear();
      r.creation_time_ns = 0;
    }
    std::sort(c.routes.begin(), c.routes.end(), [](const routes::Route& a, const routes::Route& b) {
      return std::tie(a.ns, a.name, a.port) < std::tie(b.ns, b.name, b.port);
    });
    n.services.push_back(std::move(c));
  }
  for (const auto& e : t.endpoints) {
    if (ours.count(e.ns) == 0) continue;
    routes::Endpoints c = e;
    for (auto& a : c.addresses) {
      a.ip.clear();
      a.pod.reset();
    }
    std::sort(c.addresses.begin(), c.addresses.end(),
              [](const routes::EndpointAddress& a, const routes::EndpointAddress& b) {
                return std::tie(a.port, a.identity, a.ready) < std::tie(b.port, b.identity, b.ready);
              });
    n.endpoints.push_back(std::move(c));
  }
  return routes::serialize(n);
}

std::string expected(const std::string& file) {
  auto text = mesh::read_text(std::string(TRELLIS_SOURCE_ROOT) + "/tests/unit/proxy/router/data/" + file);
  REQUIRE_MESSAGE(text.ok(), (text.ok() ? "" : text.error().message));
  auto t = routes::parse(*text);
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
  return normalize(**t);
}

// Waits until the namespace's latest table looks like `want`.
bool converges(const Tables& tables, const std::string& want, milliseconds limit = kWait) {
  bool ok = kube_api().eventually(
      [&] { return tables.latest() != nullptr && normalize(*tables.latest()) == want; }, limit);
  if (!ok) {
    MESSAGE("expected: " << want);
    MESSAGE("actual:   " << (tables.latest() ? normalize(*tables.latest()) : std::string("(no table)")));
  }
  return ok;
}

// Waits for the first table after index `after` satisfying `done`; its arrival time.
std::optional<steady_clock::time_point> arrival(const Tables& tables, size_t after,
                                                const std::function<bool(const routes::RouteTable&)>& done,
                                                milliseconds limit = milliseconds(10000)) {
  std::optional<steady_clock::time_point> at;
  (void)kube_api().eventually(
      [&] {
        for (size_t i = after; i < tables.seen.size() && !at; ++i) {
          if (done(*tables.seen[i].table)) at = tables.seen[i].at;
        }
        return at.has_value();
      },
      limit);
  return at;
}

// This controller's entry in a route's status.parents, as JSON values.
std::optional<json::Value> our_parent(const json::Document& route) {
  auto status = route.root().object()->optional_object("status");
  if (!status.ok() || !*status) return std::nullopt;
  auto parents = (*status)->optional_array("parents");
  if (!parents.ok() || !*parents) return std::nullopt;
  for (size_t i = 0; i < (*parents)->size(); ++i) {
    if (field((**parents)[i], "controllerName") == "trellis.dev/mesh-controller") return (**parents)[i];
  }
  return std::nullopt;
}

struct ConditionView {
  std::string status, reason, message, generation, time;
};
std::optional<ConditionView> condition(const json::Value& parent, const std::string& type) {
  auto conditions = parent.object()->optional_array("conditions");
  if (!conditions.ok() || !*conditions) return std::nullopt;
  for (size_t i = 0; i < (*conditions)->size(); ++i) {
    const json::Value c = (**conditions)[i];
    if (field(c, "type") != type) continue;
    return ConditionView{field(c, "status"), field(c, "reason"), field(c, "message"),
                         field(c, "observedGeneration"), field(c, "lastTransitionTime")};
  }
  return std::nullopt;
}

json::Document get_route(const std::string& ns, const std::string& name) {
  return kube_api().ok([&](auto done) {
    return kube_api().client->get(kube::resources::kHttpRoutes, ns, name, done);
  });
}

// Waits until the route's status has our entry with `accepted` reason.
bool status_reason(const std::string& ns, const std::string& name, const std::string& type,
                   const std::string& reason, milliseconds limit = kWait) {
  return kube_api().eventually(
      [&] {
        auto doc = get_route(ns, name);
        auto ours = our_parent(doc);
        if (!ours) return false;
        auto c = condition(*ours, type);
        return c && c->reason == reason;
      },
      limit);
}

}  // namespace

TEST_CASE("each mesh conformance manifest streams the expected tables to producer and consumer") {
  World& w = world();
  Controller ctl("conformance");
  REQUIRE_MESSAGE(ctl.wait_ready(), ctl.process->log_tail());
  Tables producer(ctl.port, kMesh), consumer(ctl.port, kConsumer);
  const std::string basic = expected("mesh-basic.json");
  REQUIRE(converges(producer, basic));
  REQUIRE(converges(consumer, basic));
  CHECK(producer.latest()->ns == kMesh);
  CHECK(consumer.latest()->ns == kConsumer);

  struct Case {
    const char* manifest;
    const char* producer;
    const char* consumer;
  };
  const Case cases[] = {
      {"mesh-split", "mesh-split.json", "mesh-split.json"},
      {"httproute-simple-same-namespace", "httproute-simple-same-namespace.json", nullptr},
      {"httproute-matching", "httproute-matching.json", nullptr},
      {"httproute-query-param-matching", "httproute-query-param-matching.json", nullptr},
      {"httproute-redirect-host-and-status", "httproute-redirect-host-and-status.json", nullptr},
      {"httproute-redirect-path", "httproute-redirect-path.json", nullptr},
      {"httproute-redirect-port", "httproute-redirect-port.json", nullptr},
      {"httproute-redirect-scheme", "httproute-redirect-scheme.json", nullptr},
      {"httproute-303-redirect", "httproute-303-redirect.json", nullptr},
      {"httproute-307-redirect", "httproute-307-redirect.json", nullptr},
      {"httproute-308-redirect", "httproute-308-redirect.json", nullptr},
      {"httproute-request-header-modifier", "httproute-request-header-modifier.json", nullptr},
      {"httproute-request-header-modifier-backend", "httproute-request-header-modifier-backend.json",
       nullptr},
      {"httproute-rewrite-path", "httproute-rewrite-path.json", nullptr},
      {"httproute-named-rule", "httproute-named-rule.json", nullptr},
      {"httproute-weight", "httproute-weight.json", nullptr},
      {"grpcroute-weight", "grpcroute-weight.json", nullptr},
      {"mesh-frontend", "mesh-frontend.json", nullptr},
      {"mesh-ports", "mesh-ports.json", nullptr},
      {"mesh-consumer-route", "mesh-consumer-route-producer.json", "mesh-consumer-route-consumer.json"},
  };
  for (const Case& c : cases) {
    std::string manifest = w.conformance + "/tests/mesh/" + c.manifest + ".yaml";
    CAPTURE(manifest);
    kubectl({"apply", "-f", manifest});
    // Producer routes apply to every client namespace alike.
    std::string want_producer = expected(c.producer);
    std::string want_consumer = c.consumer ? expected(c.consumer) : want_producer;
    CHECK(converges(producer, want_producer));
    CHECK(converges(consumer, want_consumer));
    kubectl({"delete", "-f", manifest});
    CHECK(converges(producer, basic));
    CHECK(converges(consumer, basic));
  }
  CHECK(ctl.metric("trellis_controller_streams") == 2);
  CHECK(ctl.metric("trellis_controller_namespace_streams{namespace=\"gateway-conformance-mesh\"}") == 1);
  CHECK(producer.stream->connected());
  double sent = ctl.metric("trellis_controller_tables_sent_total");
  CHECK(sent >= 2 * 2 * 20);
  MESSAGE("tables sent: " << sent << ", push latency sum/count: "
                          << ctl.metric("trellis_controller_push_latency_seconds_sum") << "/"
                          << ctl.metric("trellis_controller_push_latency_seconds_count"));
}

TEST_CASE("deletes, Service and EndpointSlice changes reach the stream within 1 s") {
  (void)world();
  Controller ctl("changes");
  REQUIRE_MESSAGE(ctl.wait_ready(), ctl.process->log_tail());
  Tables tables(ctl.port, kMesh);
  REQUIRE(kube_api().eventually([&] { return tables.latest() != nullptr; }));

  auto measure = [&](const std::string& what, const std::function<void()>& change,
                     const std::function<bool(const routes::RouteTable&)>& done) {
    size_t before = tables.seen.size();
    auto start = steady_clock::now();
    change();
    auto at = arrival(tables, before, done);
    REQUIRE_MESSAGE(at.has_value(), what);
    double ms = ms_since(start, *at);
    MESSAGE(what << ": " << ms << " ms");
    CHECK_MESSAGE(ms < 1000, what);
    return ms;
  };

  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "it-a", "echo", 80, backend_rule("echo-v1")));
  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "it-b", "echo", 80, backend_rule("echo-v2")));
  REQUIRE(kube_api().eventually([&] {
    return tables.latest() && has_route(*tables.latest(), kMesh, "it-a") && has_route(*tables.latest(), kMesh, "it-b");
  }));

  // The very next version lacks the deleted route, and only it.
  size_t before = tables.seen.size();
  measure("route deleted", [&] { remove(kube::resources::kHttpRoutes, kMesh, "it-a"); },
          [&](const routes::RouteTable& t) { return !has_route(t, kMesh, "it-a"); });
  REQUIRE(tables.seen.size() > before);
  CHECK_FALSE(has_route(*tables.seen[before].table, kMesh, "it-a"));
  CHECK(has_route(*tables.seen[before].table, kMesh, "it-b"));
  remove(kube::resources::kHttpRoutes, kMesh, "it-b");

  measure("Service created",
          [&] {
            create(kube::resources::kServices, kMesh,
                   service(kMesh, "it-extra", R"([{"name":"http","port":80,"targetPort":8080}])"));
          },
          [&](const routes::RouteTable& t) { return find_service(t, kMesh, "it-extra") != nullptr; });
  measure("Service port added",
          [&] {
            merge_patch(kube::resources::kServices, kMesh, "it-extra",
                        R"({"spec":{"ports":[{"name":"http","port":80,"targetPort":8080},)"
                        R"({"name":"admin","port":9901,"targetPort":9901}]}})");
          },
          [&](const routes::RouteTable& t) { return find_endpoints(t, kMesh, "it-extra", 9901) != nullptr; });
  auto slice = [&](const std::string& ips) {
    return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"it-extra-manual",)"
           R"("labels":{"kubernetes.io/service-name":"it-extra",)"
           R"("endpointslice.kubernetes.io/managed-by":"trellis-integration-test"}},)"
           R"("addressType":"IPv4","endpoints":[)" + ips + R"(],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]})";
  };
  auto addresses = [&](const routes::RouteTable& t) {
    const routes::Endpoints* e = find_endpoints(t, kMesh, "it-extra", 80);
    return e == nullptr ? size_t{0} : e->addresses.size();
  };
  measure("EndpointSlice created",
          [&] { create(kube::resources::kEndpointSlices, kMesh, slice(R"({"addresses":["10.78.20.1"]})")); },
          [&](const routes::RouteTable& t) { return addresses(t) == 1; });
  measure("EndpointSlice address added",
          [&] {
            merge_patch(kube::resources::kEndpointSlices, kMesh, "it-extra-manual",
                        R"({"endpoints":[{"addresses":["10.78.20.1"]},{"addresses":["10.78.20.2"]}]})");
          },
          [&](const routes::RouteTable& t) { return addresses(t) == 2; });
  // Through kube-controller-manager: a Pod that stops being Ready leaves echo-v2.
  const std::string pod = world().pods[std::string(kMesh) + "/v2"];
  auto v2_addresses = [&](const routes::RouteTable& t) {
    const routes::Endpoints* e = find_endpoints(t, kMesh, "echo-v2", 80);
    return e == nullptr ? size_t{99} : e->addresses.size();
  };
  measure("Pod not ready (via kube-controller-manager)",
          [&] { World::set_ready(kMesh, pod, "10.78.10.2", false); },
          [&](const routes::RouteTable& t) { return v2_addresses(t) == 0; });
  measure("Pod ready again (via kube-controller-manager)",
          [&] { World::set_ready(kMesh, pod, "10.78.10.2", true); },
          [&](const routes::RouteTable& t) { return v2_addresses(t) == 1; });
  remove(kube::resources::kEndpointSlices, kMesh, "it-extra-manual");
  remove(kube::resources::kServices, kMesh, "it-extra");
  CHECK(kube_api().eventually(
      [&] { return find_service(*tables.latest(), kMesh, "it-extra") == nullptr; }));
}

TEST_CASE("route status: conditions on valid and broken routes, observedGeneration, others' entries kept") {
  (void)world();
  const std::string ns = "status-it";
  create_namespace(ns);
  create(kube::resources::kServices, ns, service(ns, "web", R"([{"name":"http","port":80,"targetPort":8080}])"));
  Controller ctl("status");
  REQUIRE_MESSAGE(ctl.wait_ready(), ctl.process->log_tail());
  Tables tables(ctl.port, ns);

  create(kube::resources::kHttpRoutes, ns, http_route(ns, "good", "web", 80, backend_rule("web")));
  create(kube::resources::kHttpRoutes, ns, http_route(ns, "wrong-port", "web", 81, backend_rule("web")));
  create(kube::resources::kHttpRoutes, ns, http_route(ns, "no-backend", "web", 80, backend_rule("missing")));
  create(kube::resources::kHttpRoutes, ns,
         http_route(ns, "bad-regex", "web", 80,
                    R"({"matches":[{"path":{"type":"RegularExpression","value":"/(unclosed"}}],)"
                    R"("backendRefs":[{"name":"web","port":80}]})"));

  REQUIRE(status_reason(ns, "good", "Accepted", "Accepted"));
  auto good = get_route(ns, "good");
  auto ours = our_parent(good);
  REQUIRE(ours);
  CHECK(field(*ours, "parentRef.kind") == "Service");
  CHECK(field(*ours, "parentRef.name") == "web");
  CHECK(field(*ours, "parentRef.port") == "80");
  auto accepted = condition(*ours, "Accepted");
  REQUIRE(accepted);
  CHECK(accepted->status == "True");
  CHECK(accepted->generation == field(good.root(), "metadata.generation"));
  CHECK_FALSE(accepted->time.empty());
  auto refs = condition(*ours, "ResolvedRefs");
  REQUIRE(refs);
  CHECK(refs->status == "True");
  CHECK(refs->reason == "ResolvedRefs");

  REQUIRE(status_reason(ns, "wrong-port", "Accepted", "NoMatchingParent"));
  CHECK(condition(*our_parent(get_route(ns, "wrong-port")), "Accepted")->status == "False");
  REQUIRE(status_reason(ns, "no-backend", "ResolvedRefs", "BackendNotFound"));
  auto no_backend_doc = get_route(ns, "no-backend");
  auto no_backend = our_parent(no_backend_doc);
  REQUIRE(no_backend);
  CHECK(condition(*no_backend, "ResolvedRefs")->status == "False");
  CHECK(condition(*no_backend, "ResolvedRefs")->message ==
        "spec.rules[0].backendRefs[0]: Service status-it/missing not found");
  CHECK(condition(*no_backend, "Accepted")->status == "True");
  REQUIRE(status_reason(ns, "bad-regex", "Accepted", "UnsupportedValue"));
  auto bad = condition(*our_parent(get_route(ns, "bad-regex")), "Accepted");
  CHECK(bad->status == "False");
  MESSAGE("bad-regex: " << bad->message);

  // The broken routes never empty the table: the others are in it.
  REQUIRE(kube_api().eventually([&] {
    const routes::RouteTable* t = tables.latest();
    return t && has_route(*t, ns, "good") && has_route(*t, ns, "no-backend");
  }));
  CHECK_FALSE(has_route(*tables.latest(), ns, "wrong-port"));
  CHECK_FALSE(has_route(*tables.latest(), ns, "bad-regex"));

  // Another controller's entry survives our writes, also after a spec change.
  std::string other =
      R"({"parentRef":{"group":"","kind":"Service","name":"web","port":80},"controllerName":"example.com/other",)"
      R"("conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"theirs",)"
      R"("observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z"}]})";
  // Replace the list with the other controller's entry only: ours must come back next to it.
  kube_api().ok([&](auto done) {
    return kube_api().client->patch_status(kube::resources::kHttpRoutes, ns, "good", kube::PatchType::merge,
                                           R"({"status":{"parents":[)" + other + "]}}", done);
  });
  merge_patch(kube::resources::kHttpRoutes, ns, "good",
              R"({"spec":{"rules":[{"matches":[{"path":{"type":"PathPrefix","value":"/v2"}}],)"
              R"("backendRefs":[{"name":"web","port":80}]}]}})");
  REQUIRE(kube_api().eventually([&] {
    auto doc = get_route(ns, "good");
    auto o = our_parent(doc);
    if (!o) return false;
    auto c = condition(*o, "Accepted");
    return c && c->generation == "2";
  }));
  auto final_doc = get_route(ns, "good");
  auto parents = final_doc.root().object()->required_object("status")->required_array("parents");
  REQUIRE(parents.ok());
  REQUIRE(parents->size() == 2);
  CHECK(field((*parents)[0], "controllerName") == "example.com/other");
  CHECK(field((*parents)[1], "controllerName") == "trellis.dev/mesh-controller");
  CHECK(ctl.metric("trellis_controller_status_writes_total{result=\"ok\"}") >= 5);
  delete_namespace(ns);
}

TEST_CASE("two replicas serve sidecars, one writes status; the other takes over when the leader is killed") {
  (void)world();
  const std::string ns = "handover-it";
  create_namespace(ns);
  create(kube::resources::kServices, ns, service(ns, "web", R"([{"name":"http","port":80,"targetPort":8080}])"));
  create(kube::resources::kHttpRoutes, ns, http_route(ns, "before", "web", 80, backend_rule("web")));
  Controller a("handover", "replica-a"), b("handover", "replica-b");
  REQUIRE_MESSAGE(a.wait_ready(), a.process->log_tail());
  REQUIRE_MESSAGE(b.wait_ready(), b.process->log_tail());
  Tables ta(a.port, ns), tb(b.port, ns);
  REQUIRE(kube_api().eventually([&] {
    return ta.latest() && tb.latest() && has_route(*ta.latest(), ns, "before") &&
           ta.latest()->version == tb.latest()->version;
  }));

  Controller* leader = nullptr;
  Controller* follower = nullptr;
  REQUIRE(kube_api().eventually([&] {
    double la = a.metric("trellis_controller_leader"), lb = b.metric("trellis_controller_leader");
    if (la == 1 && lb == 0) leader = &a, follower = &b;
    if (lb == 1 && la == 0) leader = &b, follower = &a;
    return leader != nullptr;
  }));
  REQUIRE(status_reason(ns, "before", "Accepted", "Accepted"));
  CHECK(leader->metric("trellis_controller_status_writes_total{result=\"ok\"}") >= 1);
  CHECK(follower->metric("trellis_controller_status_writes_total{result=\"ok\"}") == 0);

  auto killed = steady_clock::now();
  leader->process->signal(SIGKILL);
  REQUIRE(leader->process->wait_for(milliseconds(5000)).has_value());
  create(kube::resources::kHttpRoutes, ns, http_route(ns, "after", "web", 80, backend_rule("web")));
  REQUIRE(status_reason(ns, "after", "Accepted", "Accepted", milliseconds(30000)));
  double took = ms_since(killed);
  MESSAGE("status written by the new leader " << took << " ms after the old one was killed (lease 4 s)");
  CHECK(took < 12000);  // the lease (4 s) expires, then the next attempt (1 s), with room for a loaded machine
  CHECK(follower->metric("trellis_controller_leader") == 1);
  CHECK(follower->metric("trellis_controller_status_writes_total{result=\"ok\"}") >= 1);
  // The survivor kept serving its sidecars throughout.
  Tables* survivor = follower == &a ? &ta : &tb;
  REQUIRE(kube_api().eventually([&] { return has_route(*survivor->latest(), ns, "after"); }));
  delete_namespace(ns);
}

TEST_CASE("trellis-proxy --controller installs the table, follows changes within 1 s, keeps it across a restart") {
  (void)world();
  auto ctl = std::make_unique<Controller>("proxy-e2e");
  REQUIRE_MESSAGE(ctl->wait_ready(), ctl->process->log_tail());
  Tables tables(ctl->port, kMesh);
  REQUIRE(kube_api().eventually([&] { return tables.latest() != nullptr; }));

  uint16_t out = mesh::free_port(), in = mesh::free_port(), admin = mesh::free_port();
  auto proxy = mesh::ChildProcess::spawn(
      {TRELLIS_PROXY_BIN, "--controller", "127.0.0.1:" + std::to_string(ctl->port), "--namespace", kMesh,
       "--outbound-port", std::to_string(out), "--inbound-port", std::to_string(in), "--admin-port",
       std::to_string(admin), "--workers", "1"},
      log_path("proxy"));
  REQUIRE(proxy.ok());
  auto config_version = [&]() -> std::string {
    auto r = mesh::http_get("127.0.0.1", admin, "/config");
    if (!r.ok() || r->status != 200) return "";
    auto doc = json::Document::parse(r->body, json::Limits{});
    return doc.ok() ? field(doc->root(), "version") : "";
  };
  REQUIRE_MESSAGE(kube_api().eventually([&] { return config_version() == tables.latest()->version; }),
                  (*proxy)->log_tail());

  std::string before = config_version();
  auto start = steady_clock::now();
  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "e2e", "echo", 80, backend_rule("echo-v1")));
  REQUIRE(kube_api().eventually([&] { return config_version() != before; }, milliseconds(10000)));
  double ms = ms_since(start);
  MESSAGE("route created -> proxy /config shows the new version: " << ms << " ms");
  CHECK(ms < 1000);
  auto r = mesh::http_get("127.0.0.1", admin, "/config");
  REQUIRE(r.ok());
  CHECK(r->body.find(R"("name":"e2e")") != std::string::npos);
  std::string installed = config_version();

  // SIGTERM: streams end with GOAWAY, the Lease is released, exit 0.
  uint16_t port = ctl->port;
  ctl->process->signal(SIGTERM);
  auto code = ctl->process->wait_for(milliseconds(15000));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  std::string log = ctl->process->log();
  CHECK(log.find("\"msg\":\"route-table service shutting down\"") != std::string::npos);
  CHECK(log.find("\"msg\":\"stopped\"") != std::string::npos);
  auto lease = kube_api().ok([&](auto done) {
    return kube_api().client->get(kube::resources::kLeases, "default", "proxy-e2e", done);
  });
  CHECK(field(lease.root(), "spec.holderIdentity").empty());

  // The proxy keeps its table while the controller is away...
  REQUIRE(kube_api().eventually([&] {
    auto m = mesh::http_get("127.0.0.1", admin, "/metrics");
    return m.ok() && mesh::metric(m->body, "trellis_route_table_stream_connected") == 0.0;
  }));
  CHECK(config_version() == installed);
  kube_api().run_for(milliseconds(500));
  CHECK(config_version() == installed);
  // ...and picks the stream up again when it is back.
  ctl = std::make_unique<Controller>("proxy-e2e", "replica", port);
  REQUIRE_MESSAGE(ctl->wait_ready(), ctl->process->log_tail());
  REQUIRE(kube_api().eventually([&] {
    auto m = mesh::http_get("127.0.0.1", admin, "/metrics");
    return m.ok() && mesh::metric(m->body, "trellis_route_table_stream_connected") == 1.0;
  }));
  CHECK(config_version() == installed);
  remove(kube::resources::kHttpRoutes, kMesh, "e2e");
  REQUIRE(kube_api().eventually([&] { return config_version() != installed; }));
  (*proxy)->signal(SIGTERM);
  CHECK((*proxy)->wait_for(milliseconds(15000)).has_value());
}

TEST_CASE("apiserver restarted, etcd compacted: informers relist after 410 Gone, nothing is "
          "spuriously deleted, tables converge") {
  (void)world();
  Controller ctl("restart");
  REQUIRE_MESSAGE(ctl.wait_ready(), ctl.process->log_tail());
  Tables tables(ctl.port, kMesh);
  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "keep", "echo", 80, backend_rule("echo-v1")));
  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "drop", "echo", 80, backend_rule("echo-v2")));
  REQUIRE(kube_api().eventually([&] {
    return tables.latest() && has_route(*tables.latest(), kMesh, "keep") && has_route(*tables.latest(), kMesh, "drop");
  }));
  size_t first = tables.seen.size() - 1;
  double relists_before = ctl.metric("trellis_kube_relists_total{resource=\"httproutes.gateway.networking.k8s.io\"}");
  // A write after every informer's last event: their resourceVersions are
  // older than what the restarted apiserver's watch cache starts from.
  create(kube::resources::kConfigMaps, "default",
         R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"it-advance"},"data":{"k":"v"}})");

  // Stop the apiserver, compact etcd to its head, start it again and wait for /readyz.
  std::string script = R"SH(set -e
source "$0/lib/common.sh"; source "$0/lib/pki.sh"; source "$0/lib/process.sh"; source "$0/lib/control-plane.sh"
sandbox_process_stop 20 kube-apiserver
rev=$(sandbox_in_netns curl -sf -X POST http://127.0.0.1:2379/v3/kv/range -d '{"key":"AA=="}' | sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
sandbox_in_netns curl -sf -X POST http://127.0.0.1:2379/v3/kv/compaction -d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null
echo "compacted at $rev"
sandbox_apiserver_start)SH";
  auto restarted = ti::run_command({"bash", "-c", script, std::string(TRELLIS_SOURCE_ROOT) + "/sandbox"});
  REQUIRE(restarted.ok());
  REQUIRE_MESSAGE(restarted->exit_code == 0, restarted->err);
  MESSAGE(restarted->out);
  auto back = steady_clock::now();

  // Changes right after the restart reach the tables whether the informers
  // see them in their relist or their new watch.
  remove(kube::resources::kHttpRoutes, kMesh, "drop");
  create(kube::resources::kHttpRoutes, kMesh, http_route(kMesh, "added", "echo", 80, backend_rule("echo")));
  REQUIRE_MESSAGE(kube_api().eventually(
                      [&] {
                        const routes::RouteTable* t = tables.latest();
                        return t && has_route(*t, kMesh, "added") && !has_route(*t, kMesh, "drop");
                      },
                      milliseconds(90000)),
                  ctl.process->log_tail());
  MESSAGE("tables converged " << ms_since(back) << " ms after the apiserver was ready again");
  REQUIRE(kube_api().eventually([&] {
    return ctl.metric("trellis_kube_relists_total{resource=\"httproutes.gateway.networking.k8s.io\"}") >
           relists_before;
  }));
  std::string log = ctl.process->log();
  CHECK(log.find("resourceVersion too old, listing again") != std::string::npos);
  // No version in between lost the route that was never deleted.
  for (size_t i = first; i < tables.seen.size(); ++i) {
    CAPTURE(i);
    CHECK(has_route(*tables.seen[i].table, kMesh, "keep"));
    CHECK(find_service(*tables.seen[i].table, kMesh, "echo") != nullptr);
  }
  // Informers whose resourceVersion was still in the new watch cache resume
  // without relisting, as they should; report which did.
  for (std::string resource : {"namespaces", "services", "pods", "endpointslices.discovery.k8s.io",
                               "grpcroutes.gateway.networking.k8s.io"}) {
    MESSAGE(resource << " relists: "
                     << ctl.metric("trellis_kube_relists_total{resource=\"" + resource + "\"}"));
  }
  auto ready = mesh::http_get("127.0.0.1", ctl.admin, "/ready");
  CHECK((ready.ok() && ready->status == 200));
}
