#include "proxy/app/controller_stream.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "common/log/log.h"
#include "common/metrics/exposition.h"
#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/proxy/app/fake_controller.h"

using namespace trellis;
namespace app = trellis::proxy::app;
using std::chrono::milliseconds;

namespace {

std::string table(const std::string& version, const std::string& ns = "shop") {
  return R"({"version":")" + version + R"(","namespace":")" + ns +
         R"(","services":[{"namespace":"shop","name":"echo","clusterIPs":["10.96.0.10"],)"
         R"("ports":[{"name":"http","port":80}]}],"endpoints":[]})";
}

struct Harness {
  Harness() {
    loop = event::testing::make_loop();
    REQUIRE(loop);
    server = std::make_unique<app::testing::FakeController>(*loop);
  }

  app::ControllerStreamOptions options() {
    app::ControllerStreamOptions o;
    o.controller.host = "127.0.0.1";
    o.controller.port = server->port();
    o.ns = "shop";
    o.initial_backoff = milliseconds(10);
    o.max_backoff = milliseconds(40);
    o.random = [] { return 0.5; };
    return o;
  }

  void start(app::ControllerStreamOptions o) {
    auto s = app::ControllerStream::start(*loop, std::move(o), registry, [this](app::LoadedTable t) {
      REQUIRE(t.routes.get() != nullptr);
      REQUIRE(t.compiled.get() != nullptr);
      installed.push_back(t.routes->version);
    });
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
    stream = std::move(*s);
  }

  bool run_until(const std::function<bool()>& done, milliseconds limit = milliseconds(10000)) {
    return event::testing::run_until(*loop, done, limit);
  }
  std::string metrics() { return metrics::text_exposition(registry); }

  std::unique_ptr<event::EventLoop> loop;
  metrics::Registry registry;
  std::unique_ptr<app::testing::FakeController> server;
  std::unique_ptr<app::ControllerStream> stream;
  std::vector<std::string> installed;
};

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// The log lines written while it lives.
struct LogLines {
  LogLines() {
    log::reset_for_test();
    log::set_sink([this](std::string_view line) { lines.emplace_back(line); });
  }
  ~LogLines() { log::reset_for_test(); }
  bool has(const std::string& what) const {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& line) { return contains(line, what); });
  }
  std::vector<std::string> lines;
};

}  // namespace

TEST_CASE("options are validated") {
  app::ControllerStreamOptions o;
  CHECK(app::validate(o).error().message == "controller: port must be set");
  o.controller.port = 1;
  CHECK(app::validate(o).error().message == "namespace must not be empty");
  o.ns = "shop";
  o.max_backoff = milliseconds(10);
  CHECK(app::validate(o).error().message == "max_backoff must not be less than initial_backoff");
  o.max_backoff = milliseconds(10000);
  o.idle_timeout = milliseconds(0);
  CHECK(app::validate(o).error().message == "idle_timeout must be positive");
}

TEST_CASE("reconnect delays double up to the cap, scaled by a jitter in [0.5, 1]") {
  app::ControllerStreamOptions o;  // 100 ms .. 10 s
  CHECK(app::reconnect_delay(o, 1, 0.0).count() == 50);
  CHECK(app::reconnect_delay(o, 1, 0.999).count() == 99);
  CHECK(app::reconnect_delay(o, 2, 0.0).count() == 100);
  CHECK(app::reconnect_delay(o, 4, 0.5).count() == 600);
  CHECK(app::reconnect_delay(o, 8, 0.0).count() == 5000);
  CHECK(app::reconnect_delay(o, 100, 0.0).count() == 5000);
  CHECK(app::reconnect_delay(o, 100, 1.0).count() == 10000);
}

TEST_CASE("tables arrive one per line, split anywhere; each new version is installed once") {
  Harness h;
  h.start(h.options());
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  REQUIRE(h.server->requests.size() == 1);
  CHECK(h.server->requests[0].method == "GET");
  CHECK(h.server->requests[0].target == "/v1/route-table?namespace=shop");
  CHECK(h.server->requests[0].authority == "127.0.0.1:" + std::to_string(h.server->port()));

  std::string v1 = table("v1") + "\n";
  h.server->send(v1.substr(0, 10));
  h.server->send(v1.substr(10, 30));
  REQUIRE(h.run_until([&] { return h.stream->connected(); }));
  event::testing::run_for(*h.loop, milliseconds(20));
  CHECK(h.installed.empty());  // half a line
  h.server->send(v1.substr(40));
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));
  CHECK(h.stream->version() == "v1");

  h.server->send("\n" + table("v1") + "\n\n" + table("v2") + "\n");  // heartbeats, v1 again, v2
  REQUIRE(h.run_until([&] { return h.installed.size() == 2; }));
  CHECK(h.installed == std::vector<std::string>{"v1", "v2"});
  std::string m = h.metrics();
  CHECK(contains(m, "trellis_route_table_received_total 2\n"));
  CHECK(contains(m, "trellis_route_table_stream_connected 1\n"));
  CHECK(contains(m, "trellis_route_table_stream_connects_total{result=\"ok\"} 1\n"));
  CHECK(contains(m, "trellis_route_table_errors_total{reason=\"invalid\"} 0\n"));
}

TEST_CASE("invalid tables, another namespace's table and over-long lines are counted and skipped") {
  Harness h;
  app::ControllerStreamOptions o = h.options();
  o.limits.max_bytes = 1024;
  h.start(o);
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  h.server->send(table("v1") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));

  h.server->send(R"({"version":"v2","namespace":"shop","services":[{"name":1}],"endpoints":[]})" "\n");
  h.server->send(table("v3", "bank") + "\n");
  h.server->send(std::string(3000, 'x'));  // over the limit, across writes
  h.server->send(std::string(3000, 'x') + "\n");
  h.server->send("{not json\n");
  h.server->send(table("v4") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 2; }));
  CHECK(h.installed == std::vector<std::string>{"v1", "v4"});
  CHECK(contains(h.metrics(), "trellis_route_table_errors_total{reason=\"invalid\"} 4\n"));
  CHECK(h.stream->connected());  // bad tables do not break the stream
}

TEST_CASE("when the stream breaks the table stays, and the stream comes back") {
  Harness h;
  h.start(h.options());
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  h.server->send(table("v1") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));

  h.server->drop_all();
  REQUIRE(h.run_until([&] { return !h.stream->connected(); }));
  CHECK(h.stream->version() == "v1");
  CHECK(contains(h.metrics(), "trellis_route_table_stream_connected 0\n"));
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  CHECK(h.server->accepted() == 2);
  h.server->send(table("v1") + "\n" + table("v2") + "\n");  // the full table first, as after any reconnect
  REQUIRE(h.run_until([&] { return h.installed.size() == 2; }));
  CHECK(h.installed == std::vector<std::string>{"v1", "v2"});
  CHECK(h.stream->failures() == 0);

  // A controller shutting down ends the stream and sends GOAWAY.
  h.server->goaway_all();
  REQUIRE(h.run_until([&] { return h.server->accepted() == 3 && h.server->open_streams() == 1; }));
  CHECK(h.stream->version() == "v2");
}

TEST_CASE("a refused request and a dead controller are retried with back-off") {
  Harness h;
  LogLines logs;
  h.server->status = 403;
  h.start(h.options());
  REQUIRE(h.run_until([&] { return h.server->requests.size() >= 3; }));
  CHECK(logs.has(R"("error":"controller 127.0.0.1:)" + std::to_string(h.server->port()) +
                R"(: request refused: 403: go away: no table for you")"));
  CHECK(h.server->requests[0].headers.joined("user-agent") == "trellis-proxy");
  CHECK(h.installed.empty());
  CHECK_FALSE(h.stream->connected());
  CHECK(h.stream->failures() >= 2);
  CHECK(contains(h.metrics(), "trellis_route_table_stream_connects_total{result=\"ok\"} 0\n"));
  h.server->status = 200;
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  h.server->send(table("v1") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));

  // Nothing listening at all.
  Harness dead;
  app::ControllerStreamOptions o = dead.options();
  dead.server.reset();  // closes the port
  dead.start(o);
  REQUIRE(dead.run_until([&] { return dead.stream->failures() >= 3; }));
  CHECK(contains(dead.metrics(), "trellis_route_table_stream_connects_total{result=\"error\"} "));
}

TEST_CASE("a stream silent for idle_timeout is reconnected") {
  Harness h;
  app::ControllerStreamOptions o = h.options();
  o.idle_timeout = milliseconds(150);
  h.start(o);
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  h.server->send(table("v1") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));
  REQUIRE(h.run_until([&] { return h.server->requests.size() == 2; }));
  CHECK(h.stream->version() == "v1");
}

TEST_CASE("a controller given by name is resolved") {
  Harness h;
  app::ControllerStreamOptions o = h.options();
  o.controller.host = "localhost";
  LogLines logs;
  h.start(o);
  REQUIRE(h.run_until([&] { return h.server->open_streams() == 1; }));
  std::string port = std::to_string(h.server->port());
  CHECK(h.server->requests[0].authority == "localhost:" + port);
  h.server->send(table("v1") + "\n");
  REQUIRE(h.run_until([&] { return h.installed.size() == 1; }));
  h.server->goaway_all();
  REQUIRE(h.run_until([&] { return !h.stream->connected(); }));
  CHECK(logs.has(R"("error":"controller localhost:)" + port + " (127.0.0.1:" + port +
                R"(): the controller ended the stream")"));

  Harness unknown;
  o = unknown.options();
  o.controller.host = "no-such-host.invalid";
  unknown.start(o);
  REQUIRE(unknown.run_until([&] { return unknown.stream->failures() >= 1; }));
}
