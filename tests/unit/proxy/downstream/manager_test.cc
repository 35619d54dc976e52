// The pieces together: detection hands connections (and the bytes it read)
// to HTTP/1 and HTTP/2 server connections owned by a ConnectionManager;
// metrics families; destroying connections with exchanges in flight.
#include <doctest/doctest.h>

#include <string>

#include "common/metrics/exposition.h"
#include "proxy/detect/detect.h"
#include "tests/unit/proxy/downstream/support.h"

using namespace trellis::proxy::downstream;
using namespace trellis::proxy::downstream::testing;
using namespace std::chrono_literals;
namespace http = trellis::proxy::http;
namespace detect = trellis::proxy::detect;

namespace {

// A listener whose connections go through detection, then to the server
// connection for the protocol found.
struct DetectingServer {
  trellis::event::EventLoop& loop;
  TestFactory factory;
  DownstreamMetrics metrics;
  ConnectionManager manager;
  std::vector<std::unique_ptr<detect::Detector>> detectors;
  std::vector<detect::Protocol> detected;
  std::unique_ptr<trellis::net::Listener> listener;

  DetectingServer(trellis::event::EventLoop& l, DownstreamMetrics m) : loop(l), metrics(std::move(m)), manager(l) {
    auto listened = trellis::net::Listener::listen(loop, loopback(), [this](std::unique_ptr<trellis::net::TcpConnection> c) {
      auto d = detect::Detector::start(std::move(c), {}, [this](trellis::Result<detect::Detection> r) {
        REQUIRE(r.ok());
        on_detected(std::move(r).value());
      });
      REQUIRE(d.ok());
      detectors.push_back(std::move(d).value());
    });
    REQUIRE(listened.ok());
    listener = std::move(listened).value();
  }
  ~DetectingServer() {
    manager.close_all();
    run_for(loop, 5ms);
  }

  void on_detected(detect::Detection d) {
    detected.push_back(d.protocol);
    http::DownstreamInfo info;
    info.peer = d.connection->peer_address().value();
    if (d.protocol == detect::Protocol::http2) {
      auto c = Http2ServerConnection::create(std::move(d.connection), factory, info, {}, metrics);
      REQUIRE(c.ok());
      manager.add(std::move(c).value(), std::move(d.bytes), d.eof);
    } else {
      REQUIRE(d.protocol == detect::Protocol::http1);
      auto c = Http1ServerConnection::create(std::move(d.connection), factory, info, {}, metrics);
      REQUIRE(c.ok());
      manager.add(std::move(c).value(), std::move(d.bytes), d.eof);
    }
  }
};

}  // namespace

TEST_CASE("detected connections are served with the bytes detection read") {
  auto loop = make_loop();
  trellis::metrics::Registry registry;
  auto families = DownstreamMetricFamilies::create(registry);
  REQUIRE(families.ok());
  DetectingServer server(*loop, families->resolve(http::Direction::outbound).value());
  server.factory.behavior = Behavior::echo;

  RawClient h1(*loop, server.listener->local_address());
  h1.send("PO");  // undecided: detection waits
  run_for(*loop, 10ms);
  CHECK(server.detected.empty());
  h1.send("ST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(h1.data(), {"POST"})) == 1; }));
  CHECK(parse_responses(h1.data(), {"POST"}).responses[0].body == "abc");

  H2Client h2(*loop, server.listener->local_address());
  int32_t id = h2.request(request_head("POST", "/two"), "xyz");
  REQUIRE(run_until(*loop, [&] { return h2.streams[id].closed.has_value(); }));
  CHECK(h2.streams[id].body == "xyz");
  CHECK(server.detected == std::vector<detect::Protocol>{detect::Protocol::http1, detect::Protocol::http2});
  CHECK(server.manager.size() == 2);

  std::string text = trellis::metrics::text_exposition(registry);
  CHECK(text.find("trellis_tcp_connections_open{direction=\"outbound\"} 2") != std::string::npos);
  CHECK(text.find("trellis_downstream_requests_total{direction=\"outbound\",protocol=\"HTTP/1.1\"} 1") !=
        std::string::npos);
  CHECK(text.find("trellis_downstream_requests_total{direction=\"outbound\",protocol=\"HTTP/2\"} 1") !=
        std::string::npos);

  REQUIRE(h1.conn->shutdown_write().ok());
  REQUIRE(h2.conn->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return server.manager.size() == 0; }));
  run_for(*loop, 5ms);
  CHECK(server.metrics.connections_open.value() == 0);
}

TEST_CASE("a client that sent its request and half-closed during detection is answered") {
  auto loop = make_loop();
  TestFactory factory;
  factory.behavior = Behavior::local_reply;
  DownstreamMetrics metrics;
  ConnectionManager manager(*loop);
  Recorder client;
  auto pair = trellis::net::testing::connect_pair(*loop, client);
  REQUIRE(pair.client->shutdown_write().ok());
  run_for(*loop, 5ms);
  auto c = Http1ServerConnection::create(std::move(pair.server), factory, {}, {}, metrics);
  REQUIRE(c.ok());
  manager.add(std::move(c).value(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true);
  REQUIRE(run_until(*loop, [&] { return client.saw("eof"); }));
  CHECK(client.data == "HTTP/1.1 200 OK\r\nx-target: /\r\nContent-Length: 5\r\n\r\nhello");
  REQUIRE(run_until(*loop, [&] { return manager.size() == 0; }));
  run_for(*loop, 5ms);
}

TEST_CASE("destroying connections with exchanges in flight resets the exchanges") {
  auto loop = make_loop();
  Server h1_server(*loop);
  h1_server.factory.behavior = Behavior::stall;
  Server h2_server(*loop);
  h2_server.use_http2 = true;
  h2_server.factory.behavior = Behavior::stall;

  RawClient h1(*loop, h1_server.address());
  h1.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc");
  H2Client h2(*loop, h2_server.address());
  h2.request(request_head("GET", "/a"));
  h2.request(request_head("GET", "/b"));
  REQUIRE(run_until(*loop, [&] {
    return h1_server.factory.records.size() == 1 && h2_server.factory.records.size() == 2;
  }));
  h1_server.manager.close_all();
  h2_server.manager.close_all();
  CHECK(h1_server.factory.last().reset);
  CHECK(h1_server.factory.last().destroyed);
  for (const auto& r : h2_server.factory.records) {
    CHECK(r->reset);
    CHECK(r->destroyed);
  }
  REQUIRE(run_until(*loop, [&] { return h1.closed() && (h2.eof || !h2.socket_error.empty()); }));
}

TEST_CASE("drain with nothing open reports drained at once; metric families register once") {
  auto loop = make_loop();
  ConnectionManager manager(*loop);
  bool drained = false;
  manager.set_drained_callback([&] { drained = true; });
  manager.drain();
  CHECK(drained);
  CHECK(manager.draining());

  trellis::metrics::Registry registry;
  REQUIRE(DownstreamMetricFamilies::create(registry).ok());
  auto again = DownstreamMetricFamilies::create(registry);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == "metric trellis_tcp_connections_open is already registered as a gauge");

  CHECK(malformed_reason_name(MalformedReason::header_timeout) == "header_timeout");
  CHECK(malformed_reason_for_status(431) == MalformedReason::header_too_large);
  CHECK(malformed_reason_for_status(418) == MalformedReason::bad_request);
  CHECK(http::direction_name(http::Direction::inbound) == "inbound");
}
