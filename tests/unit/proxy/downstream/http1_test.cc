// Http1ServerConnection over real sockets: keep-alive, pipelining in order,
// chunked bodies both ways, 100-continue, malformed input (exact status,
// connection closed, other connections unaffected), slowloris, HTTP/1.0,
// early responses, back-pressure, drain, Upgrade and resets.
#include <doctest/doctest.h>

#include <string>

#include "common/metrics/exposition.h"
#include "tests/unit/proxy/downstream/support.h"

using namespace trellis::proxy::downstream;
using namespace trellis::proxy::downstream::testing;
using namespace std::chrono_literals;
namespace http = trellis::proxy::http;

namespace {

const std::string kGet = "GET /a HTTP/1.1\r\nHost: echo.shop\r\n\r\n";

std::string get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: echo.shop\r\n\r\n";
}

}  // namespace

TEST_CASE("keep-alive: several requests on one connection, each its own exchange") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::local_reply;
  RawClient client(*loop, server.address());

  for (int i = 0; i < 3; ++i) {
    client.send(get("/r" + std::to_string(i)));
    REQUIRE(run_until(*loop, [&] {
      return complete_responses(parse_responses(client.data(), {"GET", "GET", "GET"})) ==
             static_cast<size_t>(i + 1);
    }));
  }
  Parsed p = parse_responses(client.data(), {"GET", "GET", "GET"});
  REQUIRE(p.responses.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(p.responses[i].status == 200);
    CHECK(p.responses[i].body == "hello");
    CHECK(*p.responses[i].headers.get("x-target") == "/r" + std::to_string(i));
    CHECK_FALSE(p.responses[i].headers.contains("connection"));
  }
  CHECK(client.data().rfind("HTTP/1.1 200 OK\r\nx-target: /r0\r\nContent-Length: 5\r\n\r\nhello", 0) == 0);
  REQUIRE(server.factory.records.size() == 3);
  const Record& r = *server.factory.records[0];
  CHECK(r.head.method == "GET");
  CHECK(r.head.authority == "echo.shop");
  CHECK(r.end_in_head);
  CHECK(r.info.protocol == trellis::http::Version::http11);
  CHECK(r.info.direction == http::Direction::inbound);
  CHECK(r.info.peer == client.conn->local_address().value());
  CHECK(r.info.original_destination == server.address());
  CHECK_FALSE(client.closed());
  CHECK(server.manager.size() == 1);
  run_for(*loop, 5ms);
  for (const auto& rec : server.factory.records) CHECK(rec->destroyed);
}

TEST_CASE("pipelined requests are taken one at a time and answered in order") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  RawClient client(*loop, server.address());
  client.send(get("/1") + "POST /2 HTTP/1.1\r\nHost: echo.shop\r\nContent-Length: 3\r\n\r\nabc" + get("/3"));
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
  run_for(*loop, 20ms);
  // The next head is not decoded while the first response is pending.
  REQUIRE(server.factory.records.size() == 1);
  CHECK(server.factory.records[0]->head.target == "/1");

  trellis::http::ResponseHead ok;
  server.factory.records[0]->s().send_response_head(trellis::http::ResponseHead(ok), false);
  server.factory.records[0]->s().send_response_data("one", true);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 2; }));
  Record& second = *server.factory.records[1];
  REQUIRE(run_until(*loop, [&] { return second.request_ended; }));
  CHECK(second.head.target == "/2");
  CHECK(second.body == "abc");
  run_for(*loop, 20ms);
  CHECK(server.factory.records.size() == 2);

  second.s().send_response_head(trellis::http::ResponseHead(ok), false);
  second.s().send_response_data("two", true);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 3; }));
  server.factory.records[2]->s().send_response_head(trellis::http::ResponseHead(ok), false);
  server.factory.records[2]->s().send_response_data("three", true);
  REQUIRE(run_until(*loop, [&] {
    return complete_responses(parse_responses(client.data(), {"GET", "POST", "GET"})) == 3;
  }));
  Parsed p = parse_responses(client.data(), {"GET", "POST", "GET"});
  CHECK(p.responses[0].body == "one");
  CHECK(p.responses[1].body == "two");
  CHECK(p.responses[2].body == "three");
}

TEST_CASE("chunked request bodies stream to the exchange; unknown lengths go out chunked") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::echo;
  RawClient client(*loop, server.address());
  client.send("POST /up HTTP/1.1\r\nHost: echo.shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  REQUIRE(run_until(*loop, [&] { return !server.factory.records.empty() && server.factory.last().body == "hello"; }));
  CHECK_FALSE(server.factory.last().request_ended);
  // The echo is on the wire before the request has ended.
  REQUIRE(run_until(*loop, [&] { return client.data().find("5\r\nhello\r\n") != std::string::npos; }));
  CHECK(client.data().rfind("HTTP/1.1 200 OK\r\nx-target: /up\r\nTransfer-Encoding: chunked\r\n\r\n", 0) == 0);

  client.send("6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"POST"})) == 1; }));
  Record& r = server.factory.last();
  CHECK(r.body == "hello world");
  REQUIRE(r.trailers.has_value());
  CHECK(*r.trailers->get("x-checksum") == "abc");
  Parsed p = parse_responses(client.data(), {"POST"});
  CHECK(p.responses[0].body == "hello world");
  REQUIRE(p.responses[0].trailers.has_value());
  CHECK(*p.responses[0].trailers->get("x-checksum") == "abc");
  CHECK(client.data().find("0\r\nx-checksum: abc\r\n\r\n") != std::string::npos);

  // A request with no body and an unknown-length answer.
  server.factory.behavior = Behavior::manual;
  client.send(kGet);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 2; }));
  server.factory.last().s().send_response_head({}, false);
  server.factory.last().s().send_response_data("abc", false);
  server.factory.last().s().send_response_data("", true);
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"POST", "GET"})) == 2; }));
  CHECK(client.data().find("3\r\nabc\r\n0\r\n\r\n") != std::string::npos);
}

TEST_CASE("Expect: 100-continue is answered when the exchange is ready for the body") {
  auto loop = make_loop();
  Server server(*loop);
  const std::string head =
      "POST /x HTTP/1.1\r\nHost: echo.shop\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";

  SUBCASE("at once") {
    server.factory.behavior = Behavior::manual;
    RawClient client(*loop, server.address());
    client.send(head);
    REQUIRE(run_until(*loop, [&] { return client.data() == "HTTP/1.1 100 Continue\r\n\r\n"; }));
    client.send("hello");
    REQUIRE(run_until(*loop, [&] { return server.factory.last().request_ended; }));
    CHECK(server.factory.last().body == "hello");
    // One 100 only, even if the exchange relays the upstream's.
    trellis::http::ResponseHead interim;
    interim.status = 100;
    server.factory.last().s().send_response_head(std::move(interim), false);
    trellis::http::ResponseHead hints;
    hints.status = 103;
    hints.headers.add("Link", "</style.css>; rel=preload");
    server.factory.last().s().send_response_head(std::move(hints), false);
    server.factory.last().s().send_response_head({}, false);
    server.factory.last().s().send_response_data("done", true);
    REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"POST"})) == 1; }));
    Parsed p = parse_responses(client.data(), {"POST"});
    CHECK(p.responses[0].interim == std::vector<int>{100, 103});
    CHECK(p.responses[0].body == "done");
    CHECK_FALSE(p.responses[0].headers.contains("connection"));
  }
  SUBCASE("after the exchange resumes the body") {
    server.factory.behavior = Behavior::manual;
    server.factory.pause_on_create = true;
    RawClient client(*loop, server.address());
    client.send(head);
    REQUIRE(run_until(*loop, [&] { return !server.factory.records.empty(); }));
    run_for(*loop, 20ms);
    CHECK(client.data().empty());
    server.factory.last().s().resume_request_body();
    REQUIRE(run_until(*loop, [&] { return client.data() == "HTTP/1.1 100 Continue\r\n\r\n"; }));
    client.send("hello");
    REQUIRE(run_until(*loop, [&] { return server.factory.last().request_ended; }));
    CHECK(server.factory.last().body == "hello");
  }
  SUBCASE("a final answer first closes the connection after it") {
    server.factory.behavior = Behavior::local_reply;
    server.factory.status = 417;
    server.factory.body = "no";
    RawClient client(*loop, server.address());
    client.send(head);
    REQUIRE(run_until(*loop, [&] { return client.closed(); }));
    Parsed p = parse_responses(client.data(), {"POST"});
    REQUIRE(p.responses.size() == 1);
    CHECK(p.responses[0].status == 417);
    CHECK(p.responses[0].interim.empty());
    CHECK(*p.responses[0].headers.get("connection") == "close");
  }
}

TEST_CASE("malformed requests get their exact status and close only their own connection") {
  auto loop = make_loop();
  trellis::metrics::Registry registry;
  auto families = DownstreamMetricFamilies::create(registry);
  REQUIRE(families.ok());
  Server server(*loop);
  server.metrics = families->resolve(http::Direction::outbound).value();
  server.factory.behavior = Behavior::local_reply;
  server.http1.limits.max_header_bytes = 1024;
  server.http1.limits.max_target_bytes = 256;
  server.http1.limits.max_body_bytes = 10;

  struct Case {
    std::string name;
    std::string request;
    int status;
    std::string message;
    std::string reason;
  };
  const Case cases[] = {
      {"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing Host header", "bad_request"},
      {"space in a name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400,
       "invalid character in header name", "bad_request"},
      {"two lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       400, "multiple Content-Length headers", "bad_request"},
      {"CR smuggling", "GET / HTTP/1.1\r\nHost: a\r\n\rXGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "malformed line ending", "bad_request"},
      {"header section", "GET / HTTP/1.1\r\nHost: a\r\nx-big: " + std::string(2000, 'a') + "\r\n\r\n",
       431, "header section exceeds 1024 bytes", "header_too_large"},
      {"long target", "GET /" + std::string(300, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414,
       "request target exceeds 256 bytes", "uri_too_long"},
      {"large body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", 413,
       "body exceeds 10 bytes", "body_too_large"},
      {"gzip coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
       "unsupported Transfer-Encoding", "not_implemented"},
      {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501,
       "CONNECT is not supported", "not_implemented"},
      {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version 1.2",
       "version_not_supported"},
  };

  RawClient good(*loop, server.address());
  size_t good_responses = 0;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    RawClient bad(*loop, server.address());
    bad.send(c.request);
    REQUIRE(run_until(*loop, [&] { return bad.closed(); }));
    Parsed p = parse_responses(bad.data(), {"GET"}, true);
    REQUIRE(p.responses.size() == 1);
    CHECK(p.responses[0].status == c.status);
    CHECK(p.responses[0].body == c.message + "\n");
    CHECK(*p.responses[0].headers.get("connection") == "close");
    CHECK(*p.responses[0].headers.get("content-type") == "text/plain; charset=utf-8");
    CHECK(bad.recorder.saw("eof"));

    // The well-behaved connection next to it carries on.
    good.send(kGet);
    ++good_responses;
    REQUIRE(run_until(*loop, [&] {
      return complete_responses(parse_responses(good.data(), std::vector<std::string>(good_responses, "GET"))) ==
             good_responses;
    }));
    CHECK_FALSE(good.closed());
  }
  std::string text = trellis::metrics::text_exposition(registry);
  CHECK(text.find("trellis_http_malformed_requests_total{direction=\"outbound\",reason=\"bad_request\"} 4") !=
        std::string::npos);
  CHECK(text.find("trellis_http_malformed_requests_total{direction=\"outbound\",reason=\"not_implemented\"} 2") !=
        std::string::npos);
  CHECK(text.find("trellis_http_malformed_requests_total{direction=\"outbound\",reason=\"header_too_large\"} 1") !=
        std::string::npos);
  CHECK(text.find("trellis_http_malformed_requests_total{direction=\"outbound\",reason=\"version_not_supported\"} 1") !=
        std::string::npos);
  CHECK(server.metrics.requests_http11.value() == static_cast<double>(good_responses) + 1);  // + CONNECT
}

TEST_CASE("a malformed body after the head resets the exchange") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::stall;
  RawClient client(*loop, server.address());
  client.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
  REQUIRE(run_until(*loop, [&] { return client.closed(); }));
  REQUIRE(server.factory.records.size() == 1);
  CHECK(server.factory.last().body == "hello");
  CHECK(server.factory.last().reset);
  Parsed p = parse_responses(client.data(), {"POST"}, true);
  REQUIRE(p.responses.size() == 1);
  CHECK(p.responses[0].status == 400);
  CHECK(p.responses[0].body == "invalid chunk size\n");
}

TEST_CASE("slowloris: a head that does not complete in time gets 408; idle connections close") {
  auto loop = make_loop();
  Server server(*loop);
  server.http1.header_timeout = 100ms;
  server.http1.idle_timeout = 150ms;
  server.factory.behavior = Behavior::local_reply;
  trellis::metrics::Registry registry;
  server.metrics = DownstreamMetricFamilies::create(registry)->resolve(http::Direction::inbound).value();

  RawClient slow(*loop, server.address());
  slow.send("GET / HTTP/1.1\r\nHo");
  run_for(*loop, 50ms);
  slow.send("st: a\r\n");  // trickling does not reset the clock
  REQUIRE(run_until(*loop, [&] { return slow.closed(); }));
  Parsed p = parse_responses(slow.data(), {"GET"}, true);
  REQUIRE(p.responses.size() == 1);
  CHECK(p.responses[0].status == 408);
  CHECK(p.responses[0].body == "request head not complete within 100 ms\n");
  CHECK(server.metrics.malformed[static_cast<size_t>(MalformedReason::header_timeout)].value() == 1);
  CHECK(server.factory.records.empty());

  RawClient idle(*loop, server.address());
  idle.send(kGet);
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(idle.data(), {"GET"})) == 1; }));
  size_t before = idle.data().size();
  REQUIRE(run_until(*loop, [&] { return idle.closed(); }));
  CHECK(idle.recorder.saw("eof"));
  CHECK(idle.data().size() == before);  // closed without a word
}

TEST_CASE("HTTP/1.0 clients: close by default, keep-alive on request, close-delimited bodies") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::local_reply;

  RawClient plain(*loop, server.address());
  plain.send("GET /old HTTP/1.0\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return plain.closed(); }));
  CHECK(plain.data() == "HTTP/1.1 200 OK\r\nx-target: /old\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(server.factory.last().info.protocol == trellis::http::Version::http10);

  RawClient kept(*loop, server.address());
  kept.send("GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(kept.data(), {"GET"})) == 1; }));
  CHECK(*parse_responses(kept.data(), {"GET"}).responses[0].headers.get("connection") == "keep-alive");
  kept.send("GET /2 HTTP/1.0\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return kept.closed(); }));
  CHECK(complete_responses(parse_responses(kept.data(), {"GET", "GET"}, true)) == 2);

  server.factory.with_content_length = false;
  RawClient unknown(*loop, server.address());
  unknown.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return unknown.closed(); }));
  CHECK(unknown.data() == "HTTP/1.1 200 OK\r\nx-target: /stream\r\nConnection: close\r\n\r\nhello");
}

TEST_CASE("an early response: the rest of the body is read and dropped, or the connection closes") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::local_reply;
  server.factory.status = 403;
  server.factory.body = "denied";
  server.http1.max_discard_bytes = 100;

  RawClient client(*loop, server.address());
  client.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n0123");
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"POST"})) == 1; }));
  CHECK_FALSE(parse_responses(client.data(), {"POST"}).responses[0].headers.contains("connection"));
  client.send("4567890123456789" + kGet);
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"POST", "GET"})) == 2; }));
  REQUIRE(server.factory.records.size() == 2);
  CHECK(server.factory.records[0]->body.empty());  // it got nothing after its answer
  CHECK(server.factory.records[1]->head.target == "/a");
  CHECK_FALSE(client.closed());

  RawClient big(*loop, server.address());
  big.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return big.closed(); }));
  Parsed p = parse_responses(big.data(), {"POST"}, true);
  REQUIRE(p.responses.size() == 1);
  CHECK(p.responses[0].status == 403);
  CHECK(*p.responses[0].headers.get("connection") == "close");
}

TEST_CASE("a slow reader makes the exchange pause the request body; memory stays bounded") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::echo;
  trellis::net::ConnectionOptions small;
  small.high_water = 64 * 1024;
  small.low_water = 16 * 1024;
  RawClient client(*loop, server.address(), small);
  client.conn->pause_reading();  // the client uploads but does not read the echo

  constexpr size_t kTotal = 16 * 1024 * 1024;
  client.send("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(kTotal) + "\r\n\r\n");
  size_t sent = 0;
  bool blocked = false;
  client.recorder.after_high = [&] { blocked = true; };
  auto pump = [&] {
    while (!blocked && sent < kTotal) {
      size_t n = std::min<size_t>(64 * 1024, kTotal - sent);
      client.send(std::string(n, 'x'));
      sent += n;
    }
  };
  client.recorder.after_drained = [&] {
    blocked = false;
    pump();
  };
  pump();
  REQUIRE(run_until(*loop, [&] { return !server.factory.records.empty() && server.factory.last().congested > 0; }));
  run_for(*loop, 100ms);
  // The upload stalls: the proxy holds at most its buffers, not the upload.
  size_t delivered = server.factory.last().body.size();
  CHECK(delivered < kTotal / 2);
  run_for(*loop, 50ms);
  CHECK(server.factory.last().body.size() == delivered);
  CHECK(blocked);

  client.conn->resume_reading();
  REQUIRE(run_until(*loop, [&] { return server.factory.last().request_ended; }, 60s));
  REQUIRE(run_until(*loop, [&] {
    return client.data().size() > kTotal && client.data().find("0\r\n\r\n", client.data().size() - 5) != std::string::npos;
  }, 60s));
  CHECK(server.factory.last().writable > 0);
  Parsed p = parse_responses(client.data(), {"POST"});
  REQUIRE(p.responses.size() == 1);
  CHECK(p.responses[0].body.size() == kTotal);
}

TEST_CASE("drain: the request in progress ends with Connection: close; idle connections close at once") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  RawClient busy(*loop, server.address());
  RawClient idle(*loop, server.address());
  busy.send(kGet);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1 && server.manager.size() == 2; }));
  bool drained = false;
  server.manager.set_drained_callback([&] { drained = true; });
  server.manager.drain();
  REQUIRE(run_until(*loop, [&] { return idle.closed(); }));
  CHECK(idle.data().empty());
  CHECK_FALSE(busy.closed());
  server.factory.last().s().send_response_head({}, false);
  server.factory.last().s().send_response_data("bye", true);
  REQUIRE(run_until(*loop, [&] { return busy.closed() && drained; }));
  Parsed p = parse_responses(busy.data(), {"GET"});
  REQUIRE(complete_responses(p) == 1);
  CHECK(*p.responses[0].headers.get("connection") == "close");
  CHECK(p.responses[0].body == "bye");
  CHECK(server.manager.size() == 0);
}

TEST_CASE("Upgrade: a 101 turns the connection into a tunnel; any other answer refuses") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  const std::string upgrade =
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

  SUBCASE("accepted") {
    RawClient client(*loop, server.address());
    client.send(upgrade + "early");
    REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
    Record& r = server.factory.last();
    CHECK_FALSE(r.end_in_head);
    CHECK(*r.head.headers.get("upgrade") == "websocket");
    trellis::http::ResponseHead switching;
    switching.status = 101;
    switching.headers.add("Connection", "Upgrade");
    switching.headers.add("Upgrade", "websocket");
    r.s().send_response_head(std::move(switching), false);
    REQUIRE(run_until(*loop, [&] { return r.body == "early"; }));
    client.send("ping");
    REQUIRE(run_until(*loop, [&] { return r.body == "earlyping"; }));
    r.s().send_response_data("pong", false);
    REQUIRE(run_until(*loop, [&] {
      return client.data() == "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\npong";
    }));
    REQUIRE(client.conn->shutdown_write().ok());
    REQUIRE(run_until(*loop, [&] { return r.request_ended; }));
    r.s().send_response_data("bye", true);
    REQUIRE(run_until(*loop, [&] { return client.recorder.saw("eof"); }));
    CHECK(client.data().substr(client.data().size() - 7) == "pongbye");
    CHECK_FALSE(r.reset);
  }
  SUBCASE("refused") {
    RawClient client(*loop, server.address());
    client.send(upgrade);
    REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
    server.factory.last().s().send_response_head({}, false);
    server.factory.last().s().send_response_data("plain", true);
    client.send(kGet);
    REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 2; }));
    CHECK(server.factory.last().head.target == "/a");
    CHECK_FALSE(client.closed());
  }
}

TEST_CASE("resets: the client's reaches the exchange, the exchange's aborts the connection") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::stall;

  RawClient leaving(*loop, server.address());
  leaving.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
  REQUIRE(run_until(*loop, [&] { return !server.factory.records.empty() && server.factory.last().body == "12345"; }));
  leaving.conn->abort();
  REQUIRE(run_until(*loop, [&] { return server.factory.last().destroyed; }));
  CHECK(server.factory.last().reset);

  RawClient aborted(*loop, server.address());
  aborted.send(kGet);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 2; }));
  Record& r = server.factory.last();
  trellis::http::ResponseHead head;
  head.headers.add("Content-Length", "10");
  r.s().send_response_head(std::move(head), false);
  r.s().send_response_data("12345", false);
  r.s().reset();
  REQUIRE(run_until(*loop, [&] { return aborted.recorder.saw_error(); }));
  CHECK(aborted.recorder.last_error.message == "read: connection reset by peer");
  CHECK_FALSE(r.reset);  // it asked for it
  REQUIRE(run_until(*loop, [&] { return server.manager.size() == 0; }));
}

TEST_CASE("a response body that breaks its Content-Length resets the connection") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  RawClient client(*loop, server.address());
  client.send(kGet);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
  trellis::http::ResponseHead head;
  head.headers.add("Content-Length", "3");
  server.factory.last().s().send_response_head(std::move(head), false);
  server.factory.last().s().send_response_data("toolong", true);
  REQUIRE(run_until(*loop, [&] { return client.recorder.saw_error(); }));
  CHECK(client.data() == "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
}

TEST_CASE("a client EOF after a complete request still gets the response") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  RawClient client(*loop, server.address());
  client.send(kGet);
  REQUIRE(client.conn->shutdown_write().ok());
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
  run_for(*loop, 20ms);
  server.factory.last().s().send_response_head({}, false);
  server.factory.last().s().send_response_data("late", true);
  REQUIRE(run_until(*loop, [&] { return client.recorder.saw("eof"); }));
  CHECK(parse_responses(client.data(), {"GET"}).responses[0].body == "late");
  CHECK_FALSE(server.factory.last().reset);
}

TEST_CASE("HEAD, 204 and 304 answers carry no body") {
  auto loop = make_loop();
  Server server(*loop);
  server.factory.behavior = Behavior::manual;
  RawClient client(*loop, server.address());
  client.send("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 1; }));
  trellis::http::ResponseHead head;
  head.headers.add("Content-Length", "1234");
  server.factory.last().s().send_response_head(std::move(head), false);
  server.factory.last().s().send_response_data("ignored", true);
  client.send(kGet);
  REQUIRE(run_until(*loop, [&] { return server.factory.records.size() == 2; }));
  trellis::http::ResponseHead no_content;
  no_content.status = 204;
  server.factory.last().s().send_response_head(std::move(no_content), true);
  REQUIRE(run_until(*loop, [&] { return complete_responses(parse_responses(client.data(), {"HEAD", "GET"})) == 2; }));
  CHECK(client.data() ==
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        "HTTP/1.1 204 No Content\r\n\r\n");
}

TEST_CASE("HTTP/1 options are validated") {
  Http1Options o;
  o.header_timeout = 0ms;
  CHECK(validate(o).error().message == "http1: header_timeout must be positive, got 0 ms");
  o = {};
  o.idle_timeout = -5ms;
  CHECK(validate(o).error().message == "http1: idle_timeout must be positive, got -5 ms");
  o = {};
  o.max_read_ahead_bytes = 0;
  CHECK(validate(o).error().message == "http1: max_read_ahead_bytes must be positive");
}
