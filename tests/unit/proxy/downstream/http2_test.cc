// Http2ServerConnection over real sockets with a common/http2 client:
// concurrent streams, trailers, client resets, request flow control tied to
// the exchange, response back-pressure, graceful drain, malformed streams
// and connections, early responses, EOF and idle.
#include <doctest/doctest.h>

#include <string>

#include "tests/unit/proxy/downstream/support.h"

using namespace trellis::proxy::downstream;
using namespace trellis::proxy::downstream::testing;
using namespace std::chrono_literals;
namespace http = trellis::proxy::http;
namespace h2 = trellis::http2;

namespace {

struct H2Rig {
  std::unique_ptr<trellis::event::EventLoop> loop = make_loop();
  trellis::metrics::Registry registry;
  std::unique_ptr<Server> server;

  H2Rig() {
    REQUIRE(loop);
    server = std::make_unique<Server>(*loop);
    server->use_http2 = true;
    server->metrics = DownstreamMetricFamilies::create(registry)->resolve(http::Direction::outbound).value();
  }
  ~H2Rig() { server.reset(); }
  TestFactory& factory() { return server->factory; }
  double malformed(MalformedReason r) const {
    return server->metrics.malformed[static_cast<size_t>(r)].value();
  }
};

}  // namespace

TEST_CASE("many concurrent streams, one exchange each, answered independently") {
  H2Rig rig;
  rig.factory().behavior = Behavior::manual;
  H2Client client(*rig.loop, rig.server->address());
  constexpr int kStreams = 50;
  std::vector<int32_t> ids;
  for (int i = 0; i < kStreams; ++i) {
    ids.push_back(client.request(request_head("POST", "/s" + std::to_string(i)),
                                 "body-" + std::to_string(i)));
  }
  REQUIRE(run_until(*rig.loop, [&] {
    if (rig.factory().records.size() != kStreams) return false;
    for (const auto& r : rig.factory().records) {
      if (!r->request_ended) return false;
    }
    return true;
  }));
  // All open at once; answered last first, each with its own request body.
  for (int i = kStreams - 1; i >= 0; --i) {
    Record& r = *rig.factory().records[i];
    CHECK_FALSE(r.destroyed);
    trellis::http::ResponseHead head;
    head.headers.add("x-target", r.head.target);
    r.s().send_response_head(std::move(head), false);
    r.s().send_response_data(r.body, true);
  }
  REQUIRE(run_until(*rig.loop, [&] {
    for (int32_t id : ids) {
      if (!client.streams[id].closed) return false;
    }
    return true;
  }));
  for (int i = 0; i < kStreams; ++i) {
    CAPTURE(i);
    ClientStream& s = client.streams[ids[i]];
    CHECK(*s.closed == h2::error_code::no_error);
    REQUIRE(s.head.has_value());
    CHECK(s.head->status == 200);
    CHECK(*s.head->headers.get("x-target") == "/s" + std::to_string(i));
    CHECK(s.body == "body-" + std::to_string(i));
  }
  const Record& r = *rig.factory().records[0];
  CHECK(r.info.protocol == trellis::http::Version::http2);
  CHECK(r.info.direction == http::Direction::inbound);
  CHECK(r.head.authority == "echo.shop:8080");
  CHECK(rig.server->metrics.requests_http2.value() == kStreams);
  run_for(*rig.loop, 5ms);
  for (const auto& rec : rig.factory().records) {
    CHECK(rec->destroyed);
    CHECK_FALSE(rec->reset);
  }
  CHECK(client.session_error.empty());
}

TEST_CASE("an echo exchange streams request bodies back as they arrive") {
  H2Rig rig;
  rig.factory().behavior = Behavior::echo;
  H2Client client(*rig.loop, rig.server->address());
  int32_t id = client.request(request_head("POST", "/echo"), "ping", false);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].body == "ping"; }));
  CHECK_FALSE(client.streams[id].ended);
  require_ok(client.session->send_data(id, "pong", true));
  client.flush();
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].closed.has_value(); }));
  CHECK(client.streams[id].body == "pingpong");
  CHECK(*client.streams[id].closed == h2::error_code::no_error);
}

TEST_CASE("request and response trailers travel (gRPC)") {
  H2Rig rig;
  rig.factory().behavior = Behavior::echo;
  H2Client client(*rig.loop, rig.server->address());
  auto id = client.session->submit_request(request_head("POST", "/pkg.Svc/Call"), true);
  REQUIRE(id.ok());
  require_ok(client.session->send_data(id.value(), "frame", false));
  trellis::http::HeaderMap trailers;
  trailers.add("grpc-status", "0");
  trailers.add("grpc-message", "ok");
  require_ok(client.session->submit_trailers(id.value(), trailers));
  client.flush();
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id.value()].closed.has_value(); }));
  ClientStream& s = client.streams[id.value()];
  CHECK(s.body == "frame");
  REQUIRE(s.trailers.has_value());
  CHECK(*s.trailers->get("grpc-status") == "0");
  CHECK(*s.trailers->get("grpc-message") == "ok");
  REQUIRE(rig.factory().last().trailers.has_value());
  CHECK(*rig.factory().last().trailers->get("grpc-status") == "0");

  // Trailers-only: the status in a head that ends the stream.
  rig.factory().behavior = Behavior::manual;
  int32_t only = client.request(request_head("POST", "/pkg.Svc/Fail"), "x");
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records.size() == 2; }));
  trellis::http::ResponseHead head;
  head.headers.add("content-type", "application/grpc");
  head.headers.add("grpc-status", "14");
  rig.factory().last().s().send_response_head(std::move(head), true);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[only].closed.has_value(); }));
  CHECK(*client.streams[only].head->headers.get("grpc-status") == "14");
  CHECK(client.streams[only].ended);
}

TEST_CASE("RST_STREAM from the client cancels its exchange only") {
  H2Rig rig;
  rig.factory().behavior = Behavior::stall;
  H2Client client(*rig.loop, rig.server->address());
  int32_t doomed = client.request(request_head("POST", "/slow"), "part", false);
  REQUIRE(run_until(*rig.loop, [&] { return !rig.factory().records.empty() && rig.factory().last().body == "part"; }));
  require_ok(client.session->reset_stream(doomed, h2::error_code::cancel));
  client.flush();
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records[0]->destroyed; }));
  CHECK(rig.factory().records[0]->reset);

  rig.factory().behavior = Behavior::local_reply;
  int32_t next = client.request(request_head("GET", "/fine"));
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[next].closed.has_value(); }));
  CHECK(client.streams[next].body == "hello");
  CHECK(rig.server->manager.size() == 1);
}

TEST_CASE("a paused exchange withholds flow-control credit: the client stalls, memory stays bounded") {
  H2Rig rig;
  rig.factory().behavior = Behavior::stall;
  rig.factory().pause_on_create = true;
  H2Client client(*rig.loop, rig.server->address());
  const std::string upload(1024 * 1024, 'u');
  int32_t id = client.request(request_head("POST", "/upload"), upload);
  REQUIRE(run_until(*rig.loop, [&] { return !rig.factory().records.empty() && !rig.factory().last().body.empty(); }));
  run_for(*rig.loop, 100ms);
  Record& r = rig.factory().last();
  // At most one window reached the exchange; the rest waits in the client.
  CHECK(r.body.size() <= 65535);
  CHECK(client.session->queued_bytes(id) >= upload.size() - 65535);
  size_t stalled = r.body.size();
  run_for(*rig.loop, 50ms);
  CHECK(r.body.size() == stalled);

  r.s().resume_request_body();
  REQUIRE(run_until(*rig.loop, [&] { return r.request_ended; }));
  CHECK(r.body == upload);
}

TEST_CASE("a client that does not read congests the exchange until it consumes") {
  H2Rig rig;
  rig.factory().behavior = Behavior::manual;
  H2Client client(*rig.loop, rig.server->address());
  client.auto_consume = false;
  int32_t id = client.request(request_head("GET", "/big"));
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records.size() == 1; }));
  Record& r = rig.factory().last();
  r.s().send_response_head({}, false);
  const std::string chunk(256 * 1024, 'd');
  r.s().send_response_data(chunk, false);
  REQUIRE(run_until(*rig.loop, [&] { return r.congested == 1; }));
  CHECK(r.writable == 0);
  run_for(*rig.loop, 20ms);
  CHECK(client.streams[id].body.size() <= 65535);

  client.auto_consume = true;
  client.consume(id);
  REQUIRE(run_until(*rig.loop, [&] { return r.writable == 1; }));
  r.s().send_response_data("end", true);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].closed.has_value(); }));
  CHECK(client.streams[id].body == chunk + "end");
}

TEST_CASE("drain: GOAWAY, the stream in flight completes, then the connection closes") {
  H2Rig rig;
  rig.factory().behavior = Behavior::manual;
  H2Client client(*rig.loop, rig.server->address());
  int32_t id = client.request(request_head("GET", "/inflight"));
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records.size() == 1; }));
  bool drained = false;
  rig.server->manager.set_drained_callback([&] { drained = true; });
  rig.server->manager.drain();
  // The final GOAWAY names the stream in flight.
  REQUIRE(run_until(*rig.loop, [&] {
    return !client.goaways.empty() && client.goaways.back().first == id;
  }));
  CHECK(client.goaways.back().second == h2::error_code::no_error);
  CHECK_FALSE(client.eof);
  CHECK_FALSE(client.session->submit_request(request_head("GET", "/late"), false).ok());

  Record& r = rig.factory().last();
  r.s().send_response_head({}, false);
  r.s().send_response_data("finished", true);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].closed.has_value(); }));
  CHECK(*client.streams[id].closed == h2::error_code::no_error);
  CHECK(client.streams[id].body == "finished");
  REQUIRE(run_until(*rig.loop, [&] { return client.eof; }));
  REQUIRE(client.conn->shutdown_write().ok());
  REQUIRE(run_until(*rig.loop, [&] { return drained; }));
  CHECK_FALSE(r.reset);
}

TEST_CASE("a malformed stream is reset alone; a garbage preface closes the connection") {
  H2Rig rig;
  rig.factory().behavior = Behavior::stall;
  H2Client client(*rig.loop, rig.server->address());
  trellis::http::RequestHead lying = request_head("POST", "/lie");
  lying.headers.add("content-length", "10");
  int32_t bad = client.request(lying, "short");
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[bad].closed.has_value(); }));
  CHECK(*client.streams[bad].closed == h2::error_code::protocol_error);
  CHECK(rig.malformed(MalformedReason::stream_error) == 1);
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().last().destroyed; }));
  CHECK(rig.factory().last().reset);

  rig.factory().behavior = Behavior::local_reply;
  int32_t good = client.request(request_head("GET", "/ok"));
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[good].closed.has_value(); }));
  CHECK(*client.streams[good].closed == h2::error_code::no_error);
  CHECK(client.streams[good].body == "hello");

  RawClient garbage(*rig.loop, rig.server->address());
  garbage.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(*rig.loop, [&] { return garbage.closed(); }));
  CHECK(rig.malformed(MalformedReason::connection_error) == 1);
  CHECK(rig.factory().records.size() == 2);
  REQUIRE(run_until(*rig.loop, [&] { return rig.server->manager.size() == 1; }));
}

TEST_CASE("an early response ends the upload with RST_STREAM NO_ERROR") {
  H2Rig rig;
  rig.factory().behavior = Behavior::local_reply;
  rig.factory().status = 413;
  rig.factory().body = "too big";
  H2Client client(*rig.loop, rig.server->address());
  int32_t id = client.request(request_head("POST", "/upload"), "first part", false);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].closed.has_value(); }));
  ClientStream& s = client.streams[id];
  CHECK(s.head->status == 413);
  CHECK(s.body == "too big");
  CHECK(s.ended);
  CHECK(*s.closed == h2::error_code::no_error);
  CHECK(rig.factory().last().body.empty());
  CHECK_FALSE(rig.factory().last().reset);
}

TEST_CASE("the exchange's reset is RST_STREAM INTERNAL_ERROR; misuse resets the stream") {
  H2Rig rig;
  rig.factory().behavior = Behavior::manual;
  H2Client client(*rig.loop, rig.server->address());
  int32_t a = client.request(request_head("GET", "/a"));
  int32_t b = client.request(request_head("GET", "/b"));
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records.size() == 2; }));
  rig.factory().records[0]->s().send_response_head({}, false);
  rig.factory().records[0]->s().reset();
  rig.factory().records[1]->s().send_response_data("no head", true);
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[a].closed && client.streams[b].closed; }));
  CHECK(*client.streams[a].closed == h2::error_code::internal_error);
  CHECK(*client.streams[b].closed == h2::error_code::internal_error);
  run_for(*rig.loop, 5ms);
  CHECK_FALSE(rig.factory().records[0]->reset);
  CHECK_FALSE(rig.factory().records[1]->reset);
  CHECK(rig.factory().records[0]->destroyed);
}

TEST_CASE("the client's EOF resets the streams it left open") {
  H2Rig rig;
  rig.factory().behavior = Behavior::stall;
  H2Client client(*rig.loop, rig.server->address());
  client.request(request_head("GET", "/wait"));
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().records.size() == 1; }));
  REQUIRE(client.conn->shutdown_write().ok());
  REQUIRE(run_until(*rig.loop, [&] { return rig.factory().last().destroyed && client.eof; }));
  CHECK(rig.factory().last().reset);
  REQUIRE(run_until(*rig.loop, [&] { return rig.server->manager.size() == 0; }));
}

TEST_CASE("an idle HTTP/2 connection gets GOAWAY and is closed") {
  H2Rig rig;
  rig.server->http2.idle_timeout = 100ms;
  rig.factory().behavior = Behavior::local_reply;
  H2Client client(*rig.loop, rig.server->address());
  int32_t id = client.request(request_head("GET", "/once"));
  REQUIRE(run_until(*rig.loop, [&] { return client.streams[id].closed.has_value(); }));
  REQUIRE(run_until(*rig.loop, [&] { return client.eof; }));
  REQUIRE_FALSE(client.goaways.empty());
  CHECK(client.goaways.back() == std::make_pair(id, h2::error_code::no_error));
}

TEST_CASE("HTTP/2 options are validated") {
  Http2Options o;
  o.idle_timeout = 0ms;
  CHECK(validate(o).error().message == "http2: idle_timeout must be positive, got 0 ms");
  o = {};
  o.stream_high_water = 5;
  o.stream_low_water = 10;
  CHECK(validate(o).error().message == "http2: stream_low_water (10) must not exceed stream_high_water (5)");
  o = {};
  o.stream_high_water = 0;
  o.stream_low_water = 0;
  CHECK(validate(o).error().message == "http2: stream_high_water must be positive");
  o = {};
  o.session.max_frame_size = 1000;
  CHECK(validate(o).error().message == "http2 config: max_frame_size: 1000 is outside [16384, 16777215]");
}
