// The HTTP/1.1 keep-alive pool against real servers on 127.0.0.1.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/event/timer.h"
#include "tests/unit/proxy/pool/backends.h"

using namespace trellis::proxy::pool;
using namespace trellis::proxy::pool::testing;
using namespace std::chrono_literals;
using trellis::Error;
using trellis::Status;
using trellis::event::Timer;
using trellis::net::Address;
using trellis::net::TcpConnection;
using trellis::proxy::http::UpstreamProtocol;
using trellis::proxy::http::UpstreamStream;

namespace {

// Sends a bodiless GET and waits for the stream to finish one way or another.
struct Exchange {
  Recorder recorder;
  std::unique_ptr<UpstreamStream> stream;

  void start(Pool& pool, const Address& to, msg::RequestHead head = get("/"), bool end = true) {
    recorder.inside_call = true;
    stream = pool.new_stream(target(to), recorder);
    stream->send_request_head(std::move(head), end);
    recorder.inside_call = false;
  }
};

bool finish(trellis::event::EventLoop& loop, Exchange& e) {
  return run_until(loop, [&] { return e.recorder.done(); });
}

}  // namespace

TEST_CASE("http1: two sequential requests share one keep-alive connection") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);

  for (int i = 0; i < 2; ++i) {
    Exchange e;
    e.start(*pool, backend.address(), get("/r" + std::to_string(i)));
    REQUIRE(finish(*loop, e));
    REQUIRE(e.recorder.ended);
    CHECK(e.recorder.head->status == 200);
    CHECK(e.recorder.body == "hello");
    CHECK(e.recorder.after_done == 0);
  }
  CHECK(backend.accepted() == 1);
  REQUIRE(backend.requests.size() == 2);
  CHECK(backend.requests[1].connection == 0);
  CHECK(backend.requests[1].head.target == "/r1");
  CHECK(pool->stats().connections_opened == 1);
  CHECK(pool->stats().open_http1 == 1);
  CHECK(pool->stats().requests_http1 == 2);
}

TEST_CASE("http1: the request is re-encoded: hop-by-hop fields go, Host comes from the authority") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);

  SUBCASE("known length keeps Content-Length") {
    msg::RequestHead head = get("/upload?x=1", "svc.shop:8080");
    head.method = "POST";
    head.headers.add("Connection", "keep-alive, X-Hop");
    head.headers.add("X-Hop", "secret");
    head.headers.add("Keep-Alive", "timeout=5");
    head.headers.add("TE", "trailers");
    head.headers.add("X-End", "kept");
    head.headers.add("Content-Length", "5");
    Exchange e;
    e.start(*pool, backend.address(), std::move(head), false);
    e.stream->send_request_data("he", false);
    e.stream->send_request_data("llo", true);
    REQUIRE(finish(*loop, e));
    REQUIRE(backend.requests.size() == 1);
    const auto& r = backend.requests[0];
    CHECK(r.head.method == "POST");
    CHECK(r.head.target == "/upload?x=1");
    CHECK(r.head.authority == "svc.shop:8080");
    CHECK(r.head.version == msg::Version::http11);
    CHECK_FALSE(r.head.headers.contains("Connection"));
    CHECK_FALSE(r.head.headers.contains("X-Hop"));
    CHECK_FALSE(r.head.headers.contains("Keep-Alive"));
    CHECK(*r.head.headers.get("TE") == "trailers");
    CHECK(*r.head.headers.get("X-End") == "kept");
    CHECK(r.info.body == trellis::http1::BodyFraming::content_length);
    CHECK(r.body == "hello");
  }
  SUBCASE("unknown length is chunked, and request trailers travel") {
    msg::RequestHead head = get("/stream");
    head.method = "POST";
    head.version = msg::Version::http10;  // the upstream still gets HTTP/1.1
    Exchange e;
    e.start(*pool, backend.address(), std::move(head), false);
    e.stream->send_request_data("abc", false);
    e.stream->send_request_data("def", false);
    msg::HeaderMap trailers;
    trailers.add("x-checksum", "42");
    e.stream->send_request_trailers(std::move(trailers));
    REQUIRE(finish(*loop, e));
    REQUIRE(backend.requests.size() == 1);
    const auto& r = backend.requests[0];
    CHECK(r.head.version == msg::Version::http11);
    CHECK(r.info.body == trellis::http1::BodyFraming::chunked);
    CHECK(r.body == "abcdef");
    CHECK(*r.trailers.get("x-checksum") == "42");
  }
  SUBCASE("an empty POST says Content-Length: 0") {
    msg::RequestHead head = get("/empty");
    head.method = "POST";
    Exchange e;
    e.start(*pool, backend.address(), std::move(head), true);
    REQUIRE(finish(*loop, e));
    REQUIRE(backend.requests.size() == 1);
    CHECK(backend.requests[0].info.content_length == 0u);
  }
}

TEST_CASE("http1: the request is buffered until the connection is up, and sent whole") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  msg::RequestHead head = get("/late");
  head.method = "PUT";
  head.headers.add("content-length", "6");
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  e.stream->send_request_data("123", false);
  e.stream->send_request_data("456", true);
  REQUIRE(finish(*loop, e));
  REQUIRE(backend.requests.size() == 1);
  CHECK(backend.requests[0].body == "123456");
  CHECK(e.recorder.ended);
}

TEST_CASE("http1: connections open up to the cap, then streams queue") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  std::vector<Http1Backend::Connection*> held;
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    held.push_back(&c);
  };
  PoolConfig config;
  config.max_connections_per_endpoint = 3;
  auto pool = make_pool(*loop, config);

  std::vector<std::unique_ptr<Exchange>> exchanges;
  for (int i = 0; i < 5; ++i) {
    exchanges.push_back(std::make_unique<Exchange>());
    exchanges.back()->start(*pool, backend.address(), get("/q" + std::to_string(i)));
  }
  REQUIRE(run_until(*loop, [&] { return held.size() == 3; }));
  run_for(*loop, 50ms);
  CHECK(backend.accepted() == 3);
  CHECK(held.size() == 3);
  CHECK(pool->stats().pending == 2);

  // Each answer frees a connection for the next waiting stream.
  size_t answered = 0;
  while (answered < 5) {
    REQUIRE(run_until(*loop, [&] { return held.size() > answered; }));
    held[answered++]->write(Http1Backend::response(200, "ok"));
  }
  for (auto& e : exchanges) REQUIRE(finish(*loop, *e));
  for (auto& e : exchanges) {
    CHECK(e->recorder.ended);
    CHECK(e->recorder.body == "ok");
  }
  CHECK(backend.accepted() == 3);
  CHECK(pool->stats().pending == 0);
}

TEST_CASE("http1: a full pending queue fails the stream with connect_failed, later") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection&, const Http1Backend::Request&) {};
  PoolConfig config;
  config.max_connections_per_endpoint = 1;
  config.max_pending_per_endpoint = 1;
  auto pool = make_pool(*loop, config);
  Exchange a, b, c;
  a.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return backend.requests.size() == 1; }));
  b.start(*pool, backend.address());
  c.start(*pool, backend.address());
  CHECK_FALSE(c.recorder.failure.has_value());  // never from inside new_stream
  REQUIRE(finish(*loop, c));
  CHECK(c.recorder.failure == UpstreamFailure::connect_failed);
  CHECK(c.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() + ": 1 requests already wait for a connection");
  CHECK(c.recorder.failures_inside_call == 0);
  CHECK_FALSE(b.recorder.done());
}

TEST_CASE("http1: an idle connection the server closes leaves the pool quietly") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  Exchange first;
  first.start(*pool, backend.address());
  REQUIRE(finish(*loop, first));
  REQUIRE(pool->stats().open_http1 == 1);

  backend.connections[0]->close();
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_http1 == 0; }));

  Exchange second;
  second.start(*pool, backend.address());
  REQUIRE(finish(*loop, second));
  CHECK(second.recorder.ended);
  CHECK(second.recorder.body == "hello");
  CHECK(backend.accepted() == 2);
  CHECK(backend.requests[1].connection == 1);
}

TEST_CASE("http1: a reused connection that dies before any response byte is refused_stream") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  bool reset = false;
  SUBCASE("closed") { reset = false; }
  SUBCASE("reset") { reset = true; }
  // The second request on a connection meets a server that just gave up on
  // it: the close races the request, which was never processed.
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    if (backend.requests.size() == 1) {
      c.write(Http1Backend::response(200, "first"));
    } else if (reset) {
      c.abort();
    } else {
      c.close();
    }
  };
  auto pool = make_pool(*loop);
  Exchange first;
  first.start(*pool, backend.address());
  REQUIRE(finish(*loop, first));
  Exchange second;
  second.start(*pool, backend.address());
  REQUIRE(finish(*loop, second));
  REQUIRE(second.recorder.failure.has_value());
  CHECK(*second.recorder.failure == UpstreamFailure::refused_stream);
  CHECK(second.recorder.failure_detail.message.find("reused connection, no response byte") !=
        std::string::npos);
  CHECK(backend.accepted() == 1);
}

TEST_CASE("http1: a fresh connection reset after the request was written is reset") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) { c.abort(); };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  REQUIRE(e.recorder.failure.has_value());
  CHECK(*e.recorder.failure == UpstreamFailure::reset);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() + ": read: connection reset by peer");
  CHECK(pool->stats().open_http1 == 0);
}

TEST_CASE("http1: a response cut short by the close is reset") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    c.close();
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.head.has_value());
  CHECK(e.recorder.body == "abc");
  REQUIRE(e.recorder.failure.has_value());
  CHECK(*e.recorder.failure == UpstreamFailure::reset);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": connection closed before the response was complete");
}

TEST_CASE("http1: connection refused is connect_failed, reported on a later turn") {
  auto loop = make_loop();
  // A port nobody listens on: bind one, then close it.
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
  Exchange a, b;
  a.start(*pool, closed);
  b.start(*pool, closed);
  CHECK_FALSE(a.recorder.done());
  REQUIRE(finish(*loop, a));
  REQUIRE(finish(*loop, b));
  CHECK(a.recorder.failure == UpstreamFailure::connect_failed);
  CHECK(b.recorder.failure == UpstreamFailure::connect_failed);
  CHECK(a.recorder.failure_detail.message ==
        "connect to " + closed.to_string() + ": connection refused");
  CHECK(a.recorder.failures_inside_call == 0);
  CHECK(pool->stats().connect_failures == 2);
  CHECK(pool->stats().pending == 0);
  CHECK(pool->idle());
}

TEST_CASE("http1: a black-holed endpoint times out after connect_timeout") {
  auto loop = make_loop();
  // A listener with backlog 0 that never accepts: once its queue is full the
  // kernel drops further SYNs and connects hang (as in common/net's tests).
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  Address any = loopback();
  REQUIRE(bind(fd, any.sockaddr_ptr(), any.sockaddr_length()) == 0);
  REQUIRE(listen(fd, 0) == 0);
  sockaddr_storage bound;
  socklen_t length = sizeof(bound);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0);
  Address hole = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&bound), length).value();

  std::vector<std::unique_ptr<TcpConnection>> fillers;
  bool full = false;
  for (int attempt = 0; attempt < 16 && !full; ++attempt) {
    bool done = false;
    Status outcome;
    auto c = TcpConnection::connect(*loop, hole, 300ms, [&](const Status& s) {
      outcome = s;
      done = true;
    });
    REQUIRE(c.ok());
    REQUIRE(run_until(*loop, [&] { return done; }));
    if (outcome.ok()) {
      fillers.push_back(std::move(c).value());
    } else {
      full = true;
    }
  }
  REQUIRE(full);

  PoolConfig config;
  config.connect_timeout = 300ms;
  auto pool = make_pool(*loop, config);
  Exchange e;
  e.start(*pool, hole);
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.failure == UpstreamFailure::connect_failed);
  CHECK(e.recorder.failure_detail.message ==
        "connect to " + hole.to_string() + ": timed out after 300 ms");
  CHECK(pool->stats().connect_failures == 1);
  fillers.clear();
  close(fd);
}

TEST_CASE("http1: Connection: close and HTTP/1.0 responses are not reused") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  std::string answer;
  SUBCASE("Connection: close") {
    answer = Http1Backend::response(200, "bye", "Connection: close\r\n");
  }
  SUBCASE("HTTP/1.0 without keep-alive") { answer = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye"; }
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write(answer);
  };
  auto pool = make_pool(*loop);
  for (int i = 0; i < 2; ++i) {
    Exchange e;
    e.start(*pool, backend.address());
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.ended);
    CHECK(e.recorder.body == "bye");
    // Hop-by-hop fields of the upstream hop stay there.
    CHECK_FALSE(e.recorder.head->headers.contains("Connection"));
  }
  CHECK(backend.accepted() == 2);
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_http1 == 0; }));
}

TEST_CASE("http1: content-length and chunked responses are streamed as they arrive") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  Http1Backend::Connection* server = nullptr;
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) { server = &c; };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return server != nullptr; }));

  SUBCASE("content-length") {
    server->write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nfirst");
    REQUIRE(run_until(*loop, [&] { return e.recorder.body == "first"; }));
    CHECK_FALSE(e.recorder.ended);  // the stream sees bytes before the body is complete
    CHECK_FALSE(e.recorder.head_end);
    server->write("end");
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.body == "firstend");
    CHECK(e.recorder.data_calls == 2);  // the last slice carries the end
    CHECK(*e.recorder.head->headers.get("content-length") == "8");
  }
  SUBCASE("chunked with trailers") {
    server->write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    REQUIRE(run_until(*loop, [&] { return e.recorder.body == "first"; }));
    CHECK_FALSE(e.recorder.ended);
    server->write("3\r\nend\r\n0\r\ngrpc-status: 0\r\n\r\n");
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.body == "firstend");
    REQUIRE(e.recorder.trailers.has_value());
    CHECK(*e.recorder.trailers->get("grpc-status") == "0");
    CHECK_FALSE(e.recorder.head->headers.contains("transfer-encoding"));
  }
  CHECK(e.recorder.after_done == 0);
  // Either way the connection goes back to the pool.
  Exchange again;
  again.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return backend.requests.size() == 2; }));
  CHECK(backend.accepted() == 1);
}

TEST_CASE("http1: a response delimited by the close is complete at EOF") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    c.close();
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(e.recorder.body == "until the end");
  CHECK_FALSE(e.recorder.failure.has_value());
}

TEST_CASE("http1: HEAD responses have no body and keep the connection") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request& r) {
    if (r.head.method == "HEAD") {
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    } else {
      c.write(Http1Backend::response(200, "body"));
    }
  };
  auto pool = make_pool(*loop);
  msg::RequestHead head = get("/");
  head.method = "HEAD";
  Exchange e;
  e.start(*pool, backend.address(), std::move(head));
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(e.recorder.head_end);
  CHECK(e.recorder.data_calls == 0);
  CHECK(*e.recorder.head->headers.get("content-length") == "100");

  Exchange next;
  next.start(*pool, backend.address());
  REQUIRE(finish(*loop, next));
  CHECK(next.recorder.body == "body");
  CHECK(backend.accepted() == 1);
}

TEST_CASE("http1: 100 Continue stays here; only the final head reaches the exchange") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.on_head = [](Http1Backend::Connection& c, const Http1Backend::Request& r) {
    if (r.info.expect_continue) c.write("HTTP/1.1 100 Continue\r\n\r\n");
  };
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request& r) {
    c.write(Http1Backend::response(201, "got " + r.body));
  };
  auto pool = make_pool(*loop);
  msg::RequestHead head = get("/upload");
  head.method = "POST";
  head.headers.add("Expect", "100-continue");
  head.headers.add("Content-Length", "4");
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  e.stream->send_request_data("data", true);
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.heads == 1);
  CHECK(e.recorder.head->status == 201);
  CHECK(e.recorder.body == "got data");
}

TEST_CASE("http1: a malformed response is protocol_error and its connection is closed") {
  LogCapture logs;
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    if (backend.requests.size() == 1) {
      c.write("HTTP/1.1 2x0 OK\r\n\r\n");
    } else {
      c.write(Http1Backend::response(200, "fine"));
    }
  };
  auto pool = make_pool(*loop);
  Exchange bad;
  bad.start(*pool, backend.address());
  REQUIRE(finish(*loop, bad));
  REQUIRE(bad.recorder.failure.has_value());
  CHECK(*bad.recorder.failure == UpstreamFailure::protocol_error);
  CHECK(bad.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() + ": malformed response: invalid status code");
  CHECK(pool->stats().malformed_responses == 1);
  CHECK(logs.count("\"level\":\"warn\",\"msg\":\"malformed upstream response\"") == 1);
  CHECK(logs.count("\"error\":\"invalid status code\"") == 1);
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));

  Exchange good;
  good.start(*pool, backend.address());
  REQUIRE(finish(*loop, good));
  CHECK(good.recorder.body == "fine");
  CHECK(backend.accepted() == 2);
}

TEST_CASE("http1: bytes after a complete response make the connection unusable") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write(Http1Backend::response(200, "ok") + "HTTP/1.1 200 OK\r\n");
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(e.recorder.body == "ok");
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_http1 == 0; }));
  CHECK(pool->stats().malformed_responses == 0);
}

TEST_CASE("http1: a 101 answer to a request that asked for no upgrade is protocol_error") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.failure == UpstreamFailure::protocol_error);
  CHECK(e.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": unexpected 101 Switching Protocols: pooled connections carry no upgrades");
}

TEST_CASE("http1: destroying an unfinished stream resets its connection") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  Http1Backend::Connection* server = nullptr;
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    if (server == nullptr) {
      server = &c;
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    } else {
      c.write(Http1Backend::response(200, "next"));
    }
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return e.recorder.body == "partial"; }));
  e.stream.reset();
  REQUIRE(run_until(*loop, [&] { return server->ended(); }));
  CHECK(pool->stats().open_http1 == 0);

  Exchange next;
  next.start(*pool, backend.address());
  REQUIRE(finish(*loop, next));
  CHECK(next.recorder.body == "next");
  CHECK(backend.accepted() == 2);
}

TEST_CASE("http1: a stream destroyed inside its own callbacks is safe") {
  LogCapture logs;
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  SUBCASE("on the final head (HEAD): the connection is reused") {
    backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
      c.write("HTTP/1.1 204 No Content\r\n\r\n");
    };
    Exchange e;
    e.recorder.after_head = [&] { e.stream.reset(); };
    e.start(*pool, backend.address());
    REQUIRE(run_until(*loop, [&] { return e.stream == nullptr; }));
    Exchange next;
    next.start(*pool, backend.address());
    REQUIRE(finish(*loop, next));
    CHECK(backend.accepted() == 1);
  }
  SUBCASE("mid-body: the connection is reset") {
    backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    };
    Exchange e;
    e.recorder.after_data = [&] { e.stream.reset(); };
    e.start(*pool, backend.address());
    REQUIRE(run_until(*loop, [&] { return e.stream == nullptr; }));
    REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));
  }
  SUBCASE("on the failure") {
    backend.respond = [](Http1Backend::Connection& c, const Http1Backend::Request&) {
      c.write("garbage\r\n\r\n");
    };
    Exchange e;
    e.recorder.after_failure = [&] { e.stream.reset(); };
    e.start(*pool, backend.address());
    REQUIRE(run_until(*loop, [&] { return e.stream == nullptr; }));
    CHECK(e.recorder.failure == UpstreamFailure::protocol_error);
  }
}

TEST_CASE("http1: a stream destroyed before its head gives the connection back") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  Exchange first;
  first.start(*pool, backend.address());
  REQUIRE(finish(*loop, first));
  Recorder idle;
  auto unused = pool->new_stream(target(backend.address()), idle);  // takes the idle connection
  unused.reset();
  Exchange second;
  second.start(*pool, backend.address());
  REQUIRE(finish(*loop, second));
  CHECK(second.recorder.ended);
  CHECK(backend.accepted() == 1);
}

TEST_CASE("http1: pausing the response stops reading; resuming delivers the rest") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  const std::string big = pattern(8 * 1024 * 1024);
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    c.write(Http1Backend::response(200, big));
  };
  auto pool = make_pool(*loop);
  Exchange e;
  e.recorder.after_data = [&] {
    if (e.recorder.data_calls == 1) e.stream->pause_response_body();
  };
  e.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return e.recorder.data_calls >= 1; }));
  run_for(*loop, 200ms);
  size_t while_paused = e.recorder.body.size();
  // At most the rest of the read that was in progress (64 KiB).
  CHECK(while_paused <= 64 * 1024);
  run_for(*loop, 100ms);
  CHECK(e.recorder.body.size() == while_paused);
  CHECK(backend.connections[0]->queued_bytes() > 0);  // the server is held back
  e.stream->resume_response_body();
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.ended);
  CHECK(e.recorder.body == big);
}

TEST_CASE("http1: the request side reports congestion and writability") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.paused_at_accept = true;  // the server does not read at first
  PoolConfig config;
  config.high_water = 256 * 1024;
  config.low_water = 64 * 1024;
  auto pool = make_pool(*loop, config);
  msg::RequestHead head = get("/upload");
  head.method = "POST";
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  const std::string chunk = pattern(64 * 1024);
  size_t sent = 0;
  // Write until the pool says stop (the kernel buffers take a few MiB first).
  while (e.recorder.congested == 0 && sent < 64 * 1024 * 1024) {
    e.stream->send_request_data(chunk, false);
    sent += chunk.size();
    run_for(*loop, 1ms);
  }
  REQUIRE(e.recorder.congested == 1);
  CHECK(e.recorder.writable == 0);
  REQUIRE(run_until(*loop, [&] { return backend.accepted() == 1; }));
  backend.connections[0]->resume_reading();
  REQUIRE(run_until(*loop, [&] { return e.recorder.writable == 1; }));
  e.stream->send_request_data({}, true);
  REQUIRE(finish(*loop, e));
  REQUIRE(backend.requests.size() == 1);
  CHECK(backend.requests[0].body.size() == sent);
}

TEST_CASE("http1: a buffered request over high water is congested before any connection") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  PoolConfig config;
  config.high_water = 1024;
  config.low_water = 512;
  auto pool = make_pool(*loop, config);
  msg::RequestHead head = get("/upload");
  head.method = "POST";
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  e.stream->send_request_data(pattern(2000), false);
  CHECK(e.recorder.congested == 1);
  e.stream->send_request_data({}, true);
  REQUIRE(finish(*loop, e));
  CHECK(e.recorder.writable == 1);
  CHECK(backend.requests[0].body == pattern(2000));
}

TEST_CASE("http1: request bodies that contradict Content-Length are reset") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  msg::RequestHead head = get("/upload");
  head.method = "POST";
  head.headers.add("Content-Length", "3");
  Exchange e;
  e.start(*pool, backend.address(), std::move(head), false);
  REQUIRE(run_until(*loop, [&] { return backend.accepted() == 1; }));
  e.recorder.inside_call = true;
  SUBCASE("too long") {
    e.stream->send_request_data("abcd", true);
    e.recorder.inside_call = false;
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.failure_detail.message ==
          "upstream " + backend.address().to_string() +
              ": request body exceeds its Content-Length of 3 bytes");
  }
  SUBCASE("too short") {
    e.stream->send_request_data("ab", true);
    e.recorder.inside_call = false;
    REQUIRE(finish(*loop, e));
    CHECK(e.recorder.failure_detail.message ==
          "upstream " + backend.address().to_string() +
              ": request body ended 1 bytes short of its Content-Length of 3");
  }
  CHECK(e.recorder.failure == UpstreamFailure::reset);
  CHECK(e.recorder.failures_inside_call == 0);
}

TEST_CASE("http1: a request that cannot be encoded fails and leaves the connection usable") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  auto pool = make_pool(*loop);
  Exchange first;
  first.start(*pool, backend.address());
  REQUIRE(finish(*loop, first));
  msg::RequestHead head = get("/x");
  head.headers.add("X-Bad", "line\r\nbreak");
  Exchange bad;
  bad.start(*pool, backend.address(), std::move(head));
  REQUIRE(finish(*loop, bad));
  CHECK(bad.recorder.failure == UpstreamFailure::reset);
  CHECK(bad.recorder.failure_detail.message ==
        "upstream " + backend.address().to_string() +
            ": cannot encode the request: headers[0].value: invalid character");
  Exchange after;
  after.start(*pool, backend.address());
  REQUIRE(finish(*loop, after));
  CHECK(after.recorder.ended);
  CHECK(backend.accepted() == 1);
}

TEST_CASE("http1: idle connections close after idle_timeout") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  PoolConfig config;
  config.idle_timeout = 200ms;
  auto pool = make_pool(*loop, config);
  Exchange e;
  e.start(*pool, backend.address());
  REQUIRE(finish(*loop, e));
  CHECK(pool->stats().open_http1 == 1);
  REQUIRE(run_until(*loop, [&] { return backend.connections[0]->ended(); }));
  CHECK(pool->stats().open_http1 == 0);
  CHECK(pool->idle());
}

TEST_CASE("http1: max_idle_per_endpoint caps the connections kept") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  std::vector<Http1Backend::Connection*> held;
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request&) {
    held.push_back(&c);
  };
  PoolConfig config;
  config.max_idle_per_endpoint = 1;
  auto pool = make_pool(*loop, config);
  Exchange a, b;
  a.start(*pool, backend.address());
  b.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return held.size() == 2; }));
  for (auto* c : held) c->write(Http1Backend::response(200, "x"));
  REQUIRE(finish(*loop, a));
  REQUIRE(finish(*loop, b));
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_http1 == 1; }));
  CHECK(backend.ended() == 1);
}

TEST_CASE("http1: drain closes idle connections and does not pool busy ones") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  Http1Backend::Connection* held = nullptr;
  backend.respond = [&](Http1Backend::Connection& c, const Http1Backend::Request& r) {
    if (r.head.target == "/slow") {
      held = &c;
    } else {
      c.write(Http1Backend::response(200, "x"));
    }
  };
  auto pool = make_pool(*loop);
  Exchange quick;
  quick.start(*pool, backend.address());
  REQUIRE(finish(*loop, quick));
  Exchange slow;
  slow.start(*pool, backend.address(), get("/slow"));
  Exchange other;
  other.start(*pool, backend.address(), get("/other"));
  REQUIRE(finish(*loop, other));
  REQUIRE(held != nullptr);
  REQUIRE(pool->stats().open_http1 == 2);

  pool->drain();
  REQUIRE(run_until(*loop, [&] { return pool->stats().open_http1 == 1; }));
  CHECK_FALSE(pool->idle());
  held->write(Http1Backend::response(200, "done"));
  REQUIRE(finish(*loop, slow));
  CHECK(slow.recorder.body == "done");
  REQUIRE(run_until(*loop, [&] { return pool->idle(); }));
}

TEST_CASE("http1: streams outliving their pool are inert") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  backend.respond = [](Http1Backend::Connection&, const Http1Backend::Request&) {};
  auto pool = make_pool(*loop);
  Exchange attached, waiting;
  attached.start(*pool, backend.address());
  REQUIRE(run_until(*loop, [&] { return backend.requests.size() == 1; }));
  waiting.start(*pool, backend.address());
  pool.reset();
  attached.stream->send_request_data("x", true);
  attached.stream->pause_response_body();
  waiting.stream->send_request_head(get("/"), true);
  run_for(*loop, 50ms);
  CHECK_FALSE(attached.recorder.done());
  CHECK_FALSE(waiting.recorder.done());
  attached.stream.reset();
  waiting.stream.reset();
}
