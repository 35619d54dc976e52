// Test doubles and clients for the downstream connection tests.
//
// TestFactory is a small ExchangeFactory whose exchanges answer locally,
// echo the request body back as it streams (pausing the request body while
// the response is congested, as a real relay does), stall, or wait for the
// test to drive them (manual). Every exchange leaves a Record the test can
// inspect after the exchange is gone.
//
// The clients speak over real sockets on 127.0.0.1: RawClient writes bytes
// and collects what comes back (parse_responses() decodes HTTP/1 responses
// with common/http1); H2Client runs a common/http2 client Session.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/http1/decoder.h"
#include "common/http2/session.h"
#include "common/net/listener.h"
#include "proxy/downstream/connection_manager.h"
#include "proxy/downstream/http1_connection.h"
#include "proxy/downstream/http2_connection.h"
#include "proxy/downstream/metrics.h"
#include "proxy/http/stream.h"
#include "tests/unit/common/net/net_test_util.h"

namespace trellis::proxy::downstream::testing {

namespace h = trellis::http;
using net::testing::loopback;
using net::testing::make_loop;
using net::testing::Recorder;
using net::testing::run_for;
using net::testing::run_until;

inline void require_ok(const Status& s) {
  if (!s.ok()) FAIL(s.error().message);
}

// What one exchange saw; outlives the exchange.
struct Record {
  h::RequestHead head;
  bool end_in_head = false;
  std::string body;
  bool request_ended = false;
  std::optional<h::HeaderMap> trailers;
  bool reset = false;
  int congested = 0;
  int writable = 0;
  bool destroyed = false;
  http::DownstreamInfo info;
  http::DownstreamStream* stream = nullptr;  // valid while !destroyed

  http::DownstreamStream& s() {
    REQUIRE_FALSE(destroyed);
    return *stream;
  }
};

enum class Behavior { local_reply, echo, stall, manual };

class TestFactory;

class TestExchange final : public http::DownstreamCallbacks {
 public:
  TestExchange(TestFactory& factory, std::shared_ptr<Record> record)
      : factory_(factory), record_(std::move(record)) {}
  ~TestExchange() override { record_->destroyed = true; }

  void on_request_data(std::string_view data, bool end_stream) override;
  void on_request_trailers(h::HeaderMap&& trailers) override;
  void on_downstream_reset() override { record_->reset = true; }
  void on_response_congested() override;
  void on_response_writable() override;

 private:
  TestFactory& factory_;
  std::shared_ptr<Record> record_;
};

class TestFactory final : public http::ExchangeFactory {
 public:
  Behavior behavior = Behavior::echo;
  // local_reply: the answer.
  int status = 200;
  std::string body = "hello";
  bool with_content_length = true;
  // Pause the request body right in create() (stalls the client).
  bool pause_on_create = false;
  std::vector<std::shared_ptr<Record>> records;

  std::unique_ptr<http::DownstreamCallbacks> create(http::DownstreamStream& stream,
                                                    h::RequestHead&& head,
                                                    bool end_stream) override {
    auto r = std::make_shared<Record>();
    r->head = head;
    r->end_in_head = end_stream;
    r->request_ended = end_stream;
    r->stream = &stream;
    r->info = stream.info();
    records.push_back(r);
    auto exchange = std::make_unique<TestExchange>(*this, r);
    if (pause_on_create) stream.pause_request_body();
    switch (behavior) {
      case Behavior::local_reply: {
        h::ResponseHead response;
        response.status = status;
        if (with_content_length) response.headers.add("Content-Length", std::to_string(body.size()));
        response.headers.add("x-target", head.target);
        stream.send_response_head(std::move(response), body.empty());
        if (!body.empty()) stream.send_response_data(body, true);
        break;
      }
      case Behavior::echo: {
        h::ResponseHead response;
        response.headers.add("x-target", head.target);
        stream.send_response_head(std::move(response), false);
        if (end_stream) stream.send_response_data({}, true);
        break;
      }
      case Behavior::stall:
      case Behavior::manual:
        break;
    }
    return exchange;
  }

  Record& last() {
    REQUIRE_FALSE(records.empty());
    return *records.back();
  }
};

inline void TestExchange::on_request_data(std::string_view data, bool end_stream) {
  record_->body.append(data.data(), data.size());
  if (end_stream) record_->request_ended = true;
  if (factory_.behavior == Behavior::echo) record_->stream->send_response_data(data, end_stream);
}

inline void TestExchange::on_request_trailers(h::HeaderMap&& trailers) {
  record_->trailers = trailers;
  record_->request_ended = true;
  if (factory_.behavior == Behavior::echo) {
    record_->stream->send_response_trailers(std::move(trailers));
  }
}

inline void TestExchange::on_response_congested() {
  ++record_->congested;
  if (factory_.behavior == Behavior::echo) record_->stream->pause_request_body();
}

inline void TestExchange::on_response_writable() {
  ++record_->writable;
  if (factory_.behavior == Behavior::echo) record_->stream->resume_request_body();
}

// A response as a client decodes it.
struct Response {
  std::vector<int> interim;  // 1xx statuses before it
  int status = 0;
  h::HeaderMap headers;
  std::string body;
  std::optional<h::HeaderMap> trailers;
  bool complete = false;
};

struct Parsed {
  std::vector<Response> responses;
  std::string error;            // a malformed response stream
  std::string tunnel_bytes;     // bytes after a 101
};

// Decodes HTTP/1 responses to `methods` (one per request, in order) from
// `raw`; `eof`: the server closed, which ends a close-delimited body.
inline Parsed parse_responses(const std::string& raw, const std::vector<std::string>& methods,
                              bool eof = false) {
  struct Handler : http1::ResponseHandler {
    Parsed* out = nullptr;
    std::vector<int> interim;
    void on_interim(h::ResponseHead&& head) override { interim.push_back(head.status); }
    void on_head(h::ResponseHead&& head, const http1::MessageInfo&) override {
      Response r;
      r.interim = std::move(interim);
      interim.clear();
      r.status = head.status;
      r.headers = std::move(head.headers);
      out->responses.push_back(std::move(r));
    }
    void on_body(const char* data, size_t len) override { out->responses.back().body.append(data, len); }
    void on_trailers(h::HeaderMap&& t) override { out->responses.back().trailers = std::move(t); }
    void on_message_complete() override { out->responses.back().complete = true; }
    void on_error(const Error& e) override { out->error = e.message; }
  } handler;
  Parsed parsed;
  handler.out = &parsed;
  http1::ResponseDecoder decoder(handler);
  for (const std::string& m : methods) decoder.expect_response(m);
  size_t used = decoder.feed(raw);
  if (decoder.state() == http1::DecoderState::upgraded) parsed.tunnel_bytes = raw.substr(used);
  if (eof) decoder.finish();
  return parsed;
}

inline size_t complete_responses(const Parsed& p) {
  size_t n = 0;
  for (const Response& r : p.responses) n += r.complete ? 1 : 0;
  return n;
}

// The test's end of a connection: a listener hands the accepted socket to
// `accept`, which builds the server connection under test.
struct Server {
  event::EventLoop& loop;
  TestFactory factory;
  DownstreamMetrics metrics;
  std::unique_ptr<net::Listener> listener;
  ConnectionManager manager;
  Http1Options http1;
  Http2Options http2;
  bool use_http2 = false;

  explicit Server(event::EventLoop& l) : loop(l), manager(l) {
    auto listened = net::Listener::listen(loop, loopback(), [this](std::unique_ptr<net::TcpConnection> c) {
      accept(std::move(c));
    });
    REQUIRE(listened.ok());
    listener = std::move(listened).value();
  }

  // Connections that closed are deleted on a later loop turn and use the
  // metrics: let those turns run while everything is still here.
  ~Server() {
    manager.close_all();
    run_for(loop, std::chrono::milliseconds(5));
  }

  void accept(std::unique_ptr<net::TcpConnection> c) {
    http::DownstreamInfo info;
    info.direction = http::Direction::inbound;
    info.peer = c->peer_address().value();
    info.original_destination = c->local_address().value();
    if (use_http2) {
      auto made = Http2ServerConnection::create(std::move(c), factory, info, http2, metrics);
      REQUIRE(made.ok());
      manager.add(std::move(made).value(), "", false);
    } else {
      auto made = Http1ServerConnection::create(std::move(c), factory, info, http1, metrics);
      REQUIRE(made.ok());
      manager.add(std::move(made).value(), "", false);
    }
  }
  net::Address address() const { return listener->local_address(); }
};

// A plain socket client.
struct RawClient {
  Recorder recorder;
  std::unique_ptr<net::TcpConnection> conn;

  RawClient(event::EventLoop& loop, const net::Address& to, const net::ConnectionOptions& options = {}) {
    bool connected = false;
    auto c = net::TcpConnection::connect(
        loop, to, std::chrono::seconds(10),
        [&](const Status& s) {
          REQUIRE(s.ok());
          connected = true;
        },
        options);
    REQUIRE(c.ok());
    conn = std::move(c).value();
    REQUIRE(run_until(loop, [&] { return connected; }));
    REQUIRE(conn->start(recorder).ok());
    // Like most clients: when the server closes, close too.
    recorder.after_eof = [this] { (void)conn->shutdown_write(); };
  }
  void send(std::string_view bytes) { require_ok(conn->write(bytes)); }
  const std::string& data() const { return recorder.data; }
  bool closed() const { return recorder.saw("eof") || recorder.saw_error(); }
};

// What an HTTP/2 client saw on one stream.
struct ClientStream {
  std::optional<h::ResponseHead> head;
  std::vector<int> interim;
  std::string body;
  std::optional<h::HeaderMap> trailers;
  bool ended = false;
  std::optional<uint32_t> closed;  // error code
  size_t unconsumed = 0;
};

// An HTTP/2 client Session on a socket.
struct H2Client final : net::TcpConnection::Handler, http2::SessionHandler {
  std::unique_ptr<net::TcpConnection> conn;
  std::unique_ptr<http2::Session> session;
  std::map<int32_t, ClientStream> streams;
  std::vector<std::pair<int32_t, uint32_t>> goaways;
  bool auto_consume = true;
  bool eof = false;
  std::string socket_error;
  std::string session_error;

  H2Client(event::EventLoop& loop, const net::Address& to, http2::SessionConfig config = {}) {
    config.role = http2::Role::client;
    auto s = http2::Session::create(config, *this);
    REQUIRE(s.ok());
    session = std::move(s).value();
    bool connected = false;
    auto c = net::TcpConnection::connect(loop, to, std::chrono::seconds(10), [&](const Status& st) {
      REQUIRE(st.ok());
      connected = true;
    });
    REQUIRE(c.ok());
    conn = std::move(c).value();
    REQUIRE(run_until(loop, [&] { return connected; }));
    REQUIRE(conn->start(*this).ok());
    flush();
  }

  void flush() {
    std::string out;
    (void)session->produce(out);
    if (!out.empty() && conn->state() == net::TcpConnection::State::open) (void)conn->write(out);
  }
  int32_t request(const h::RequestHead& head, std::optional<std::string> body = std::nullopt,
                  bool end = true) {
    auto id = session->submit_request(head, body.has_value());
    REQUIRE(id.ok());
    streams[id.value()];
    if (body) require_ok(session->send_data(id.value(), *body, end));
    flush();
    return id.value();
  }
  void consume(int32_t id) {
    ClientStream& s = streams[id];
    require_ok(session->consume(id, s.unconsumed));
    s.unconsumed = 0;
    flush();
  }

  // net::TcpConnection::Handler
  void on_data(const char* data, size_t length) override {
    Status s = session->receive(data, length);
    if (!s.ok()) session_error = s.error().message;
    flush();
  }
  void on_eof() override { eof = true; }
  void on_error(const Error& e) override { socket_error = e.message; }

  // http2::SessionHandler
  void on_response_head(int32_t id, h::ResponseHead&& head, bool end_stream) override {
    ClientStream& s = streams[id];
    if (head.status < 200) {
      s.interim.push_back(head.status);
      return;
    }
    s.head = std::move(head);
    s.ended = s.ended || end_stream;
  }
  void on_data(int32_t id, const char* data, size_t len) override {
    ClientStream& s = streams[id];
    s.body.append(data, len);
    if (auto_consume) {
      require_ok(session->consume(id, len));
    } else {
      s.unconsumed += len;
    }
  }
  void on_trailers(int32_t id, h::HeaderMap&& trailers) override {
    streams[id].trailers = std::move(trailers);
    streams[id].ended = true;
  }
  void on_end_stream(int32_t id) override { streams[id].ended = true; }
  void on_stream_close(int32_t id, uint32_t code) override { streams[id].closed = code; }
  void on_goaway(int32_t last, uint32_t code) override { goaways.emplace_back(last, code); }
  void on_session_error(const Error& e) override { session_error = e.message; }
};

inline h::RequestHead request_head(std::string method, std::string target,
                                   std::string authority = "echo.shop:8080") {
  h::RequestHead head;
  head.method = std::move(method);
  head.target = std::move(target);
  head.authority = std::move(authority);
  return head;
}

}  // namespace trellis::proxy::downstream::testing
