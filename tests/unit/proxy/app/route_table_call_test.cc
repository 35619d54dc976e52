#include "proxy/app/route_table_call.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/common/event/loop_test_util.h"
#include "tests/unit/proxy/app/fake_controller.h"

using namespace trellis;
namespace app = trellis::proxy::app;
using std::chrono::milliseconds;

namespace {

// Owns the call as ControllerStream and TableStream do: drops it on the
// next loop turn once it is over.
class Recorder final : public app::RouteTableCall::Handler {
 public:
  explicit Recorder(event::EventLoop& loop) : loop_(loop) {}

  void on_streaming() override { ++streaming; }
  void on_body(const char* data, size_t length) override { body.append(data, length); }
  void on_over(const std::string& why) override {
    over.push_back(why);
    loop_.delete_later(std::move(call));
  }

  std::unique_ptr<app::RouteTableCall> call;
  int streaming = 0;
  std::string body;
  std::vector<std::string> over;

 private:
  event::EventLoop& loop_;
};

struct Harness {
  Harness() {
    loop = event::testing::make_loop();
    REQUIRE(loop);
    server = std::make_unique<app::testing::FakeController>(*loop);
    server_port = server->port();
    recorder = std::make_unique<Recorder>(*loop);
  }

  app::RouteTableCallOptions options() const {
    app::RouteTableCallOptions o;
    o.ns = "shop";
    o.authority = "controller.test:15012";
    o.user_agent = "trellis-test";
    return o;
  }
  net::Address address() const {
    return net::Address::from_ip("127.0.0.1", server_port).value();
  }

  void start(app::RouteTableCallOptions o) {
    auto call = app::RouteTableCall::start(*loop, address(), std::move(o), *recorder);
    REQUIRE_MESSAGE(call.ok(), (call.ok() ? "" : call.error().message));
    recorder->call = std::move(*call);
  }
  bool run_until(const std::function<bool()>& done, milliseconds limit = milliseconds(10000)) {
    return event::testing::run_until(*loop, done, limit);
  }
  bool run_until_over() {
    return run_until([&] { return !recorder->over.empty(); });
  }
  bool run_until_streaming() {
    return run_until([&] { return server->open_streams() == 1 && recorder->streaming == 1; });
  }

  std::unique_ptr<event::EventLoop> loop;
  std::unique_ptr<app::testing::FakeController> server;
  uint16_t server_port = 0;  // kept when the server goes
  std::unique_ptr<Recorder> recorder;
};

}  // namespace

TEST_CASE("the request names the namespace; a 200 body is handed on as it arrives") {
  Harness h;
  h.start(h.options());
  REQUIRE(h.run_until_streaming());
  REQUIRE(h.server->requests.size() == 1);
  const http::RequestHead& request = h.server->requests[0];
  CHECK(request.method == "GET");
  CHECK(request.target == "/v1/route-table?namespace=shop");
  CHECK(request.authority == "controller.test:15012");
  CHECK(request.scheme == "http");
  REQUIRE(request.headers.get("accept") != nullptr);
  CHECK(*request.headers.get("accept") == "application/x-ndjson");
  REQUIRE(request.headers.get("user-agent") != nullptr);
  CHECK(*request.headers.get("user-agent") == "trellis-test");

  const std::string sent = "{\"version\":\"v1\"}\n\n";
  h.server->send(sent.substr(0, 5));
  h.server->send(sent.substr(5));
  REQUIRE(h.run_until([&] { return h.recorder->body.size() >= sent.size(); }));
  CHECK(h.recorder->body == sent);
  CHECK(h.recorder->streaming == 1);
  CHECK(h.recorder->over.empty());

  h.server->end_all();
  REQUIRE(h.run_until_over());
  CHECK(h.recorder->over == std::vector<std::string>{"the controller ended the stream"});
  CHECK(h.recorder->call == nullptr);
}

TEST_CASE("a refusal reports its status and the printable start of its body") {
  Harness h;
  h.server->status = 403;  // body "go away: no table for you\n"
  h.start(h.options());
  REQUIRE(h.run_until_over());
  CHECK(h.recorder->over ==
        std::vector<std::string>{"request refused: 403: go away: no table for you"});
  CHECK(h.recorder->streaming == 0);

  h.recorder->over.clear();
  h.server->status = 503;
  h.server->refusal_body.clear();  // the head ends the stream
  h.start(h.options());
  REQUIRE(h.run_until_over());
  CHECK(h.recorder->over == std::vector<std::string>{"request refused: 503"});

  h.recorder->over.clear();
  h.server->status = 500;
  h.server->refusal_body = "bad\r\n\ttable " + std::string(2000, 'x') + "\n";
  h.start(h.options());
  REQUIRE(h.run_until_over());
  // 512 bytes kept: "bad", three spaces, "table ", then 500 of the x's.
  CHECK(h.recorder->over ==
        std::vector<std::string>{"request refused: 500: bad   table " + std::string(500, 'x')});
  CHECK(h.recorder->body.empty());
}

TEST_CASE("the end of the connection or a reset of the stream is reported once") {
  Harness h;
  h.start(h.options());
  REQUIRE(h.run_until_streaming());
  h.server->close_all();
  REQUIRE(h.run_until_over());
  event::testing::run_for(*h.loop, milliseconds(20));
  CHECK(h.recorder->over == std::vector<std::string>{"the controller closed the connection"});

  Harness reset;
  reset.start(reset.options());
  REQUIRE(reset.run_until_streaming());
  reset.server->reset_all(http2::error_code::internal_error);
  REQUIRE(reset.run_until_over());
  event::testing::run_for(*reset.loop, milliseconds(20));
  CHECK(reset.recorder->over == std::vector<std::string>{"stream reset (INTERNAL_ERROR)"});
}

TEST_CASE("a call silent for idle_timeout is over; without one it stays") {
  Harness h;
  h.start(h.options());  // idle_timeout 0: never
  REQUIRE(h.run_until_streaming());
  event::testing::run_for(*h.loop, milliseconds(200));
  CHECK(h.recorder->over.empty());

  Harness idle;
  app::RouteTableCallOptions o = idle.options();
  o.idle_timeout = milliseconds(100);
  idle.start(o);
  REQUIRE(idle.run_until_streaming());
  REQUIRE(idle.run_until_over());
  CHECK(idle.recorder->over == std::vector<std::string>{"nothing received for 100 ms"});
}

TEST_CASE("connect failures are reported from the loop; bad arguments at once") {
  Harness h;
  h.server.reset();  // closes the port
  h.start(h.options());
  CHECK(h.recorder->over.empty());  // never from inside start()
  REQUIRE(h.run_until_over());
  CHECK(h.recorder->over == std::vector<std::string>{"connect to 127.0.0.1:" +
                                                     std::to_string(h.server_port) +
                                                     ": connection refused"});

  app::RouteTableCallOptions o = h.options();
  o.connect_timeout = milliseconds(0);
  auto call = app::RouteTableCall::start(*h.loop, h.address(), o, *h.recorder);
  REQUIRE_FALSE(call.ok());
  CHECK(call.error().message == "connect to 127.0.0.1:" + std::to_string(h.server_port) +
                                    ": timeout must be positive, got 0 ms");
}

TEST_CASE("a call destroyed by its owner reports nothing") {
  Harness h;
  h.start(h.options());
  REQUIRE(h.run_until_streaming());
  h.recorder->call.reset();
  h.server->send("too late\n");
  event::testing::run_for(*h.loop, milliseconds(50));
  CHECK(h.recorder->over.empty());
  CHECK(h.recorder->body.empty());
}
