// h2c and mesh connections against a real HTTP/2 server on 127.0.0.1.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/proxy/pool/backends.h"

using namespace trellis::proxy::pool;
using namespace trellis::proxy::pool::testing;
using namespace std::chrono_literals;
namespace h2 = trellis::http2;
using trellis::net::Address;
using trellis::proxy::http::UpstreamProtocol;
using trellis::proxy::http::UpstreamStream;

namespace {

struct Exchange {
  Recorder recorder;
  std::unique_ptr<UpstreamStream> stream;

  void start(Pool& pool, const Address& to, msg::RequestHead head = get("/"), bool end = true,
             UpstreamProtocol protocol = UpstreamProtocol::h2c) {
    recorder.inside_call = true;
    stream = pool.new_stream(target(to, protocol), recorder);
    stream->send_request_head(std::move(head), end);
    recorder.inside_call = false;
  }
};

bool finish(trellis::event::EventLoop& loop, Exchange& e) {
  return run_until(loop, [&] { return e.recorder.done(); });
}

msg::RequestHead h2_get(std::string_view path) {
  msg::RequestHead head = get(path);
  head.version = msg::Version::http2;
  return head;
}

}  // namespace

TEST_CASE("h2c: 100 concurrent streams share one connection") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  auto pool = make_pool(*loop);
  std::vector<std::unique_ptr<Exchange>> exchanges;
  for (int i = 0; i < 100; ++i) {
    exchanges.push_back(std::make_unique<Exchange>());
    exchanges.back()->start(*pool, backend.address(), h2_get("/s" + std::to_string(i)));
  }
  for (auto& e : exchanges) REQUIRE(finish(*loop, *e));
  for (auto& e : exchanges) {
    CHECK(e->recorder.ended);
    CHECK(e->recorder.head->status == 200);
    CHECK(e->recorder.head->version == msg::Version::http2);
    CHECK(e->recorder.body == "hello");
    CHECK(e->recorder.after_done == 0);
  }
  CHECK(backend.accepted() == 1);
  CHECK(backend.streams.size() == 100);
  CHECK(pool->stats().connections_opened == 1);
  CHECK(pool->stats().open_h2c == 1);
  CHECK(pool->stats().requests_h2c == 100);
  CHECK(backend.connections[0]->session().stats().refused_streams == 0);
}

TEST_CASE("h2c: the peer's max concurrent streams is respected; the rest wait") {
  auto loop = make_loop();
  h2::SessionConfig config = H2Backend::server_config();
  config.max_concurrent_streams = 2;
  H2Backend backend(*loop, config);
  std::vector<std::pair<H2Backend::Connection*, int32_t>> held;
  backend.respond = [&](H2Backend::Connection& c, H2Backend::Stream& s) {
    held.emplace_back(&c, s.id);
  };
  auto pool = make_pool(*loop);
  std::vector<std::unique_ptr<Exchange>> exchanges;
  for (int i = 0; i < 6; ++i) {
    exchanges.push_back(std::make_unique<Exchange>());
    exchanges.back()->start(*pool, backend.address(), h2_get("/m" + std::to_string(i)));
  }
  size_t answered = 0;
  while (answered < 6) {
    REQUIRE(run_until(*loop, [&] { return held.size() > answered; }));
    run_for(*loop, 20ms);  // give a third stream the chance to (wrongly) arrive
    CHECK(backend.open <= 2);
    auto [c, id] = held[answered++];
    c->respond(id, 200, "ok");
  }
  for (auto& e : exchanges) REQUIRE(finish(*loop, *e));
  for (auto& e : exchanges) CHECK(e->recorder.body == "ok");
  CHECK(backend.peak_open == 2);
  CHECK(backend.accepted() == 1);
  CHECK(backend.connections[0]->session().stats().refused_streams == 0);
}

TEST_CASE("h2c: GOAWAY drains: in-flight streams finish, new ones use a new connection") {
  LogCapture logs;
  auto loop = make_loop();
  H2Backend backend(*loop);
  std::vector<std::pair<H2Backend::Connection*, int32_t>> held;
  backend.respond = [&](H2Backend::Connection& c, H2Backend::Stream& s) {
    if (s.connection == 0) {
      held.emplace_back(&c, s.id);
    } else {
      c.respond(s.id, 200, "new");
    }
  };
  auto pool = make_pool(*loop);
  std::vector<std::unique_ptr<Exchange>> inflight;
  for (int i = 0; i < 3; ++i) {
    inflight.push_back(std::make_unique<Exchange>());
    inflight.back()->start(*pool, backend.address(), h2_get("/old"));
  }
  REQUIRE(run_until(*loop, [&] { return held.size() == 3; }));
  backend.connections[0]->shutdown_gracefully();
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->session().open_streams() == 3 &&
                                        pool->stats().pending == 0; }));
  run_for(*loop, 50ms);  // the GOAWAY (and the PING round trip) reach the client

  Exchange later;
  later.start(*pool, backend.address(), h2_get("/new"));
  REQUIRE(finish(*loop, later));
  CHECK(later.recorder.body == "new");
  CHECK(backend.accepted() == 2);

  for (auto [c, id] : held) c->respond(id, 200, "old");
  for (auto& e : inflight) REQUIRE(finish(*loop, *e));
  for (auto& e : inflight) {
    CHECK(e->recorder.ended);
    CHECK(e->recorder.body == "old");
  }
  CHECK(logs.count("\"msg\":\"upstream sent GOAWAY\"") >= 1);
  // The drained connection closes once its streams are done.
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_h2c == 1; }));
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));
}

TEST_CASE("h2c: streams above a GOAWAY's last_stream_id are refused_stream") {
  LogCapture logs;
  auto loop = make_loop();
  H2Backend backend(*loop);
  // The server stops at /three: the stream after it was never processed.
  backend.on_head = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    if (s.head.target == "/three") REQUIRE(c.session().terminate(h2::error_code::no_error).ok());
  };
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    if (s.head.target == "/one") c.respond(s.id, 200, "one");
  };
  auto pool = make_pool(*loop);
  Exchange warm;
  warm.start(*pool, backend.address(), h2_get("/one"));
  REQUIRE(finish(*loop, warm));  // the peer's SETTINGS are known: both next streams go at once
  Exchange three, five;
  three.start(*pool, backend.address(), h2_get("/three"));
  five.start(*pool, backend.address(), h2_get("/five"));
  REQUIRE(finish(*loop, three));
  REQUIRE(finish(*loop, five));
  CHECK(five.recorder.failure == UpstreamFailure::refused_stream);
  CHECK(three.recorder.failure == UpstreamFailure::reset);
  CHECK(three.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": connection lost: connection closed by the peer");
  CHECK(logs.count("\"last_stream_id\":3") == 1);
}

TEST_CASE("h2c: REFUSED_STREAM is refused_stream") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.on_head = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    c.reset(s.id, h2::error_code::refused_stream);
  };
  backend.respond = [](H2Backend::Connection&, H2Backend::Stream&) {};
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(finish(*loop, e));
  REQUIRE(e.recorder.failure.has_value());
  CHECK(*e.recorder.failure == UpstreamFailure::refused_stream);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": stream refused by the peer (REFUSED_STREAM or GOAWAY): not processed");
  CHECK(e.recorder.failures_inside_call == 0);
}

TEST_CASE("h2c: other resets are reset") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    c.reset(s.id, h2::error_code::internal_error);
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.failure == UpstreamFailure::reset);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() + ": stream reset (INTERNAL_ERROR)");
}

TEST_CASE("mesh: HTTP/1 requests carry trellis-orig-proto; HTTP/2 ones do not") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  auto pool = make_pool(*loop);

  struct Case {
    msg::Version version;
    UpstreamProtocol protocol;
    const char* expected;  // nullptr: no header
  };
  std::vector<Case> cases = {
      {msg::Version::http11, UpstreamProtocol::mesh, "HTTP/1.1"},
      {msg::Version::http10, UpstreamProtocol::mesh, "HTTP/1.0"},
      {msg::Version::http2, UpstreamProtocol::mesh, nullptr},
      {msg::Version::http11, UpstreamProtocol::h2c, nullptr},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    msg::RequestHead head = get("/p");
    head.version = cases[i].version;
    // A client cannot smuggle its own marker to the peer sidecar.
    if (cases[i].protocol == UpstreamProtocol::mesh) head.headers.add("Trellis-Orig-Proto", "HTTP/1.0");
    head.headers.add("Connection", "keep-alive");
    Exchange e;
    e.start(*pool, backend.address(), std::move(head), true, cases[i].protocol);
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.ended);
    REQUIRE(backend.streams.size() == i + 1);
    const msg::HeaderMap& seen = backend.at(i).head.headers;
    if (cases[i].expected == nullptr) {
      CHECK_FALSE(seen.contains("trellis-orig-proto"));
    } else {
      CHECK(seen.count("trellis-orig-proto") == 1);
      CHECK(*seen.get("trellis-orig-proto") == cases[i].expected);
    }
    CHECK_FALSE(seen.contains("connection"));
  }
  // mesh and h2c to the same address are separate connections
  CHECK(backend.accepted() == 2);
  CHECK(pool->stats().open_mesh == 1);
  CHECK(pool->stats().open_h2c == 1);
  CHECK(pool->stats().requests_mesh == 3);
}

TEST_CASE("h2c: a request without authority gets the endpoint's address") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  auto pool = make_pool(*loop);
  msg::RequestHead head = get("/", "");
  head.version = msg::Version::http10;
  Exchange e;
  e.start(*pool, backend.address(), std::move(head));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(backend.at(0).head.authority == backend.address().to_string());
}

TEST_CASE("h2c: request bodies and trailers are sent; gRPC trailers come back") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    msg::HeaderMap headers;
    headers.add("content-type", "application/grpc");
    msg::HeaderMap trailers;
    trailers.add("grpc-status", "0");
    trailers.add("grpc-message", "ok");
    c.respond(s.id, 200, "reply:" + s.body, &trailers, &headers);
  };
  auto pool = make_pool(*loop);
  msg::RequestHead head = h2_get("/pkg.Service/Call");
  head.method = "POST";
  head.headers.add("content-type", "application/grpc");
  head.headers.add("te", "trailers");
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  e.stream->send_request_data("abc", false);
  msg::HeaderMap request_trailers;
  request_trailers.add("x-end", "1");
  e.stream->send_request_trailers(std::move(request_trailers));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.head->status == 200);
  CHECK(*e.recorder.head->headers.get("content-type") == "application/grpc");
  CHECK(e.recorder.body == "reply:abc");
  REQUIRE(e.recorder.trailers.has_value());
  CHECK(*e.recorder.trailers->get("grpc-status") == "0");
  CHECK(*e.recorder.trailers->get("grpc-message") == "ok");
  CHECK(*backend.at(0).head.headers.get("te") == "trailers");
  REQUIRE(backend.at(0).trailers.has_value());
  CHECK(*backend.at(0).trailers->get("x-end") == "1");
}

TEST_CASE("h2c: interim heads stay here") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    msg::ResponseHead interim;
    interim.status = 103;
    interim.headers.add("link", "</style.css>; rel=preload");
    REQUIRE(c.session().submit_response(s.id, interim, false).ok());
    c.respond(s.id, 200, "final");
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.heads == 1);
  CHECK(e.recorder.head->status == 200);
  CHECK(e.recorder.body == "final");
}

TEST_CASE("h2c: a slow consumer holds back the sender by flow control") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  const std::string big = pattern(4 * 1024 * 1024);
  backend.respond = [&](H2Backend::Connection& c, H2Backend::Stream& s) { c.respond(s.id, 200, big); };
  PoolConfig config;
  config.h2_stream_window = 64 * 1024;
  auto pool = make_pool(*loop, config);
  Exchange e;
  e.recorder.after_data = [&] {
    if (e.recorder.data_calls == 1) e.stream->pause_response_body();
  };
  e.start(*pool, backend.address(), h2_get("/big"));
  REQUIRE(run_until(*loop, [&] { return e.recorder.data_calls >= 1; }));
  run_for(*loop, 300ms);
  // Memory stays bounded: at most one stream window arrived while paused.
  CHECK(e.recorder.body.size() <= 64 * 1024);
  CHECK(backend.connections[0]->session().queued_bytes() >= big.size() - 64 * 1024);
  e.stream->resume_response_body();
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(e.recorder.body == big);
}

TEST_CASE("h2c: a paused stream does not stall the others on its connection") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  const std::string big = pattern(1024 * 1024);
  backend.respond = [&](H2Backend::Connection& c, H2Backend::Stream& s) {
    c.respond(s.id, 200, s.head.target == "/big" ? big : "small");
  };
  PoolConfig config;
  config.h2_stream_window = 64 * 1024;
  auto pool = make_pool(*loop, config);
  Exchange slow;
  slow.recorder.after_head = [&] { slow.stream->pause_response_body(); };
  slow.start(*pool, backend.address(), h2_get("/big"));
  REQUIRE(run_until(*loop, [&] { return slow.recorder.head.has_value(); }));
  for (int i = 0; i < 5; ++i) {
    Exchange quick;
    quick.start(*pool, backend.address(), h2_get("/small"));
    REQUIRE(finish(*loop, quick));
    CHECK(quick.recorder.body == "small");
  }
  CHECK_FALSE(slow.recorder.ended);
  slow.stream->resume_response_body();
  REQUIRE(finish(*loop, slow));
  CHECK(slow.recorder.body == big);
  CHECK(backend.accepted() == 1);
}

TEST_CASE("h2c: the request side reports congestion from the session's stream queue") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.auto_consume = false;  // the server grants no credit at first
  PoolConfig config;
  config.high_water = 128 * 1024;
  config.low_water = 32 * 1024;
  auto pool = make_pool(*loop, config);
  msg::RequestHead head = h2_get("/upload");
  head.method = "POST";
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  REQUIRE(run_until(*loop, [&] { return backend.streams.size() == 1; }));
  const std::string chunk = pattern(32 * 1024);
  size_t sent = 0;
  while (e.recorder.congested == 0 && sent < 16 * 1024 * 1024) {
    e.stream->send_request_data(chunk, false);
    sent += chunk.size();
    run_for(*loop, 1ms);
  }
  REQUIRE(e.recorder.congested == 1);
  // The server's window (64 KiB) let part out; the rest waits in the session.
  CHECK(sent > config.high_water);
  backend.auto_consume = true;
  H2Backend::Stream& s = backend.at(0);
  backend.connections[0]->consume(s.id, s.body.size());
  REQUIRE(run_until(*loop, [&] { return e.recorder.writable == 1; }));
  e.stream->send_request_data({}, true);
  REQUIRE(finish(*loop, e));
  CHECK(backend.at(0).body.size() == sent);
}

TEST_CASE("h2c: destroying a stream resets it with CANCEL; the connection stays") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    if (s.head.target == "/hang") {
      REQUIRE(c.session().submit_response(s.id, msg::ResponseHead{}, true).ok());
      REQUIRE(c.session().send_data(s.id, "partial", false).ok());
      c.flush();
    } else {
      c.respond(s.id, 200, "fine");
    }
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/hang"));
  REQUIRE(run_until(*loop, [&] { return e.recorder.body == "partial"; }));
  e.stream.reset();
  REQUIRE(run_until(*loop, [&] { return backend.at(0).closed.has_value(); }));
  CHECK(*backend.at(0).closed == h2::error_code::cancel);
  CHECK(backend.frames_received(FrameCounter::kRstStream) == 1);

  Exchange next;
  next.start(*pool, backend.address(), h2_get("/next"));
  REQUIRE(finish(*loop, next));
  CHECK(next.recorder.body == "fine");
  CHECK(backend.accepted() == 1);
}

TEST_CASE("h2c: a stream whose response and request are complete is never reset") {
  // The exchange lets go of its stream inside the callback that ends the
  // response, usually before the session has seen the stream close. nghttp2
  // peers count resets (rapid-reset limit) and answer GOAWAY after about a
  // thousand of them.
  auto loop = make_loop();
  h2::SessionConfig config = H2Backend::server_config();
  config.max_concurrent_streams = 4;  // a stream left open would soon block the connection
  H2Backend backend(*loop, config);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    if (s.head.target == "/trailers") {
      msg::HeaderMap trailers;
      trailers.add("grpc-status", "0");
      c.respond(s.id, 200, "t", &trailers);
    } else if (s.head.target == "/empty") {
      c.respond(s.id, 204, "");
    } else {
      c.respond(s.id, 200, "hello");
    }
  };
  auto pool = make_pool(*loop);
  const std::vector<std::string> targets = {"/data", "/trailers", "/empty", "/body", "/later"};
  for (int round = 0; round < 4; ++round) {
    for (const std::string& path : targets) {
      CAPTURE(path);
      Exchange e;
      auto let_go = [&e] {
        if (e.recorder.ended) e.stream.reset();
      };
      if (path != "/later") {
        e.recorder.after_head = let_go;
        e.recorder.after_data = let_go;
        e.recorder.after_trailers = let_go;
      }
      if (path == "/body") {
        msg::RequestHead head = h2_get(path);
        head.method = "POST";
        e.start(*pool, backend.address(), std::move(head), false);
        e.stream->send_request_data("payload", true);
      } else {
        e.start(*pool, backend.address(), h2_get(path));
      }
      REQUIRE(finish(*loop, e));
      CHECK_FALSE(e.recorder.failure.has_value());
      e.stream.reset();  // "/later": on a later turn, once the session has closed it
    }
  }
  REQUIRE(run_until(*loop, [&] { return backend.open == 0; }));
  run_for(*loop, 20ms);  // any reset would have arrived by now
  CHECK(backend.streams.size() == 20);
  CHECK(backend.accepted() == 1);
  CHECK(backend.frames_received(FrameCounter::kRstStream) == 0);
  for (const auto& s : backend.streams) CHECK(s->closed == h2::error_code::no_error);
}

TEST_CASE("h2c: a complete response to an unfinished request resets the stream with CANCEL") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.on_head = [](H2Backend::Connection& c, H2Backend::Stream& s) {
    c.respond(s.id, 200, "early");  // before the request body
  };
  backend.respond = [](H2Backend::Connection&, H2Backend::Stream&) {};
  auto pool = make_pool(*loop);
  msg::RequestHead head = h2_get("/upload");
  head.method = "POST";
  Exchange e;
  e.recorder.after_data = [&e] {
    if (e.recorder.ended) e.stream.reset();
  };
  e.start(*pool, backend.address(), std::move(head), false);
  e.stream->send_request_data("part of it", false);
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.body == "early");
  REQUIRE(run_until(*loop, [&] { return backend.at(0).closed.has_value(); }));
  CHECK(*backend.at(0).closed == h2::error_code::cancel);
  CHECK(backend.frames_received(FrameCounter::kRstStream) == 1);
}

TEST_CASE("h2c: a stream destroyed before its head never reaches the server") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  auto pool = make_pool(*loop);
  Recorder r;
  auto stream = pool->new_stream(target(backend.address(), UpstreamProtocol::h2c), r);
  stream.reset();
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/after"));
  REQUIRE(finish(*loop, e));
  CHECK(backend.streams.size() == 1);
  CHECK(pool->stats().pending == 0);
}

TEST_CASE("h2c: connect failure fails every waiting stream with connect_failed") {
  auto loop = make_loop();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  Address any = loopback();
  REQUIRE(bind(fd, any.sockaddr_ptr(), any.sockaddr_length()) == 0);
  sockaddr_storage bound;
  socklen_t length = sizeof(bound);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0);
  Address closed = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&bound), length).value();
  close(fd);

  auto pool = make_pool(*loop);
  std::vector<std::unique_ptr<Exchange>> exchanges;
  for (int i = 0; i < 3; ++i) {
    exchanges.push_back(std::make_unique<Exchange>());
    exchanges.back()->start(*pool, closed, h2_get("/"));
  }
  for (auto& e : exchanges) REQUIRE(finish(*loop, *e));
  for (auto& e : exchanges) {
    CHECK(e->recorder.failure == UpstreamFailure::connect_failed);
    CHECK(e->recorder.failure_detail.message ==
          "connect to " + closed.to_string() + ": connection refused");
    CHECK(e->recorder.failures_inside_call == 0);
  }
  CHECK(pool->stats().connect_failures == 1);
  CHECK(pool->stats().pending == 0);
}

TEST_CASE("h2c: a lost connection resets the streams on it") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection& c, H2Backend::Stream&) { c.close(); };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.failure == UpstreamFailure::reset);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": connection lost: connection closed by the peer");
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_h2c == 0; }));
}

TEST_CASE("h2c: a server that does not speak HTTP/2 is protocol_error") {
  LogCapture logs;
  auto loop = make_loop();
  Http1Backend backend(*loop);  // answers the preface with an HTTP/1 error
  backend.respond = [](Http1Backend::Connection&, const Http1Backend::Request&) {};
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(run_until(*loop, [&] { return backend.accepted() == 1; }));
  REQUIRE(run_until(*loop, [&] { return !backend.connections[0]->decode_error.empty(); }));
  backend.connections[0]->write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(finish(*loop, e));
  REQUIRE(e.recorder.failure.has_value());
  CHECK(*e.recorder.failure == UpstreamFailure::protocol_error);
  CHECK(e.recorder.failure_detail.message.rfind("upstream " + backend.address().to_string() + ": http2: ",
                                                0) == 0);
  CHECK(pool->stats().malformed_responses == 1);
  CHECK(logs.count("\"msg\":\"upstream http2 connection error\"") == 1);
}

TEST_CASE("h2c: idle connections send GOAWAY and close after idle_timeout") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  PoolConfig config;
  config.idle_timeout = 200ms;
  auto pool = make_pool(*loop, config);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(finish(*loop, e));
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));
  CHECK(backend.connections[0]->goaways.size() == 1);
  CHECK(pool->stats().open_h2c == 0);
  CHECK(pool->idle());
}

TEST_CASE("h2c: drain sends GOAWAY; in-flight streams finish, then the connection closes") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  std::vector<std::pair<H2Backend::Connection*, int32_t>> held;
  backend.respond = [&](H2Backend::Connection& c, H2Backend::Stream& s) { held.emplace_back(&c, s.id); };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(run_until(*loop, [&] { return held.size() == 1; }));
  pool->drain();
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->goaways.size() == 1; }));
  CHECK_FALSE(backend.connections[0]->ended());
  held[0].first->respond(held[0].second, 200, "last");
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.body == "last");
  REQUIRE(run_until(*loop, [&] { return pool->idle(); }));
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));
}

TEST_CASE("h2c: the pending queue is bounded") {
  auto loop = make_loop();
  h2::SessionConfig server = H2Backend::server_config();
  server.max_concurrent_streams = 1;
  H2Backend backend(*loop, server);
  backend.respond = [](H2Backend::Connection&, H2Backend::Stream&) {};
  PoolConfig config;
  config.max_pending_per_endpoint = 2;
  auto pool = make_pool(*loop, config);
  Exchange a, b, c, d;
  a.start(*pool, backend.address(), h2_get("/a"));
  REQUIRE(run_until(*loop, [&] { return backend.streams.size() == 1; }));
  b.start(*pool, backend.address(), h2_get("/b"));
  c.start(*pool, backend.address(), h2_get("/c"));
  d.start(*pool, backend.address(), h2_get("/d"));
  REQUIRE(finish(*loop, d));
  CHECK(d.recorder.failure == UpstreamFailure::connect_failed);
  CHECK(d.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() + ": 2 requests already wait for a stream");
  CHECK(pool->stats().pending == 2);
  CHECK_FALSE(b.recorder.done());
}

TEST_CASE("h2c: streams outliving their pool are inert") {
  auto loop = make_loop();
  H2Backend backend(*loop);
  backend.respond = [](H2Backend::Connection&, H2Backend::Stream&) {};
  auto pool = make_pool(*loop);
  Exchange open, waiting;
  open.start(*pool, backend.address(), h2_get("/"));
  REQUIRE(run_until(*loop, [&] { return backend.streams.size() == 1; }));
  waiting.stream = pool->new_stream(target(backend.address(), UpstreamProtocol::h2c), waiting.recorder);
  pool.reset();
  open.stream->send_request_data("x", true);
  open.stream->resume_response_body();
  waiting.stream->send_request_head(h2_get("/"), true);
  run_for(*loop, 50ms);
  CHECK_FALSE(open.recorder.done());
  CHECK_FALSE(waiting.recorder.done());
}
