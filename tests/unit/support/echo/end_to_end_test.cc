// The echo server (on its own thread, ephemeral ports) against the echo
// client and against raw sockets: what the conformance suite and our
// integration tests rely on.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>

#include "common/event/event_loop.h"
#include "tests/support/echo/client.h"
#include "tests/support/echo/wire.h"
#include "tests/unit/support/echo/echo_parse.h"
#include "tests/unit/support/echo/echo_test_util.h"

using namespace trellis::support::echo;
using namespace trellis::support::echo::testing;
using namespace std::chrono_literals;
using Kind = EchoServer::PortKind;

namespace {

constexpr const char* kHostname = "echo-v1-5d8f9-abcde";

ClientOptions client(std::string url) {
  ClientOptions o;
  o.url = std::move(url);
  o.timeout = 20s;  // generous: tests assert outcomes, never speed
  return o;
}

std::string prefixed(const std::string& prefix, const std::string& lines) {
  std::string out;
  size_t at = 0;
  while (at < lines.size()) {
    size_t nl = lines.find('\n', at);
    out += prefix + lines.substr(at, nl - at + 1);
    at = nl + 1;
  }
  return out;
}

ClientResult must_succeed(const ClientOptions& o) {
  ClientResult r = run_client(o);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  return r;
}

// libuv's loop clock has millisecond granularity, so a timer may fire up to
// a millisecond before the real clock says it is due: bounds allow for that.
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("HTTP/1.1: the client prints the Istio client's block, headers echoed in canonical form") {
  TestServer server;
  ClientOptions o = client(server.http_url("/v2?x=1"));
  o.headers = {{"x-header-add", "a"}, {"Version", "two"}, {"X-HEADER-ADD", "b"}};
  ClientResult r = must_succeed(o);
  std::string port = std::to_string(server.http_port);
  std::string body =
      "ServiceVersion=v1\n"
      "ServicePort=" + port + "\n"
      "Host=127.0.0.1:" + port + "\n"
      "URL=/v2?x=1\n"
      "Method=GET\n"
      "Proto=HTTP/1.1\n"
      "IP=127.0.0.1\n"
      "BodyLength=0\n"
      "RequestHeader=Connection:close\n"
      "RequestHeader=User-Agent:trellis-echo\n"
      "RequestHeader=Version:two\n"
      "RequestHeader=X-Header-Add:a\n"
      "RequestHeader=X-Header-Add:b\n"
      "Hostname=echo-v1-5d8f9-abcde\n";
  std::string expected = "[0] Url=" + o.url + "\n"
                         "[0] Header=X-Header-Add:a\n"
                         "[0] Header=Version:two\n"
                         "[0] Header=X-Header-Add:b\n"
                         "[0] StatusCode=200\n"
                         "[0] ResponseHeader=Connection:close\n"
                         "[0] ResponseHeader=Content-Length:" + std::to_string(body.size()) + "\n"
                         "[0] ResponseHeader=Content-Type:application/text\n" +
                         prefixed("[0 body] ", body) + "\n";
  CHECK(r.out == expected);

  ParsedResponse p = parse_response(r.out);
  CHECK(p.code == "200");
  CHECK(p.hostname == kHostname);
  CHECK(p.host == "127.0.0.1:" + port);
  CHECK(p.url == "/v2?x=1");
  CHECK(p.method == "GET");
  CHECK(p.protocol == "HTTP/1.1");
  CHECK(p.request_header("x-header-add") == "a,b");
  CHECK(p.request_header("version") == "two");
  CHECK(!p.has_request_header("x-header-remove"));
  CHECK(p.response_header("content-type") == "application/text");
}

TEST_CASE("HTTP/1.1: -H Host overrides the Host header; --connect-to overrides the dial address") {
  TestServer server;
  ClientOptions o = client(server.http_url("/"));
  o.headers = {{"Host", "echo-v1"}};
  ClientResult r = must_succeed(o);
  CHECK(r.out.find("[0] Header=Host:echo-v1\n") != std::string::npos);
  CHECK(parse_response(r.out).host == "echo-v1");
  CHECK(!parse_response(r.out).has_request_header("host"));  // Host is not a header in Go either

  ClientOptions via = client("http://echo-v2.invalid:" + std::to_string(server.http_port) + "/x");
  via.connect_to = "127.0.0.1:" + std::to_string(server.http_port);
  ClientResult v = must_succeed(via);
  CHECK(parse_response(v.out).host == "echo-v2.invalid:" + std::to_string(server.http_port));
  CHECK(parse_response(v.out).url == "/x");
}

TEST_CASE("HTTP/1.1: a new connection per request; h2c and gRPC share one") {
  TestServer server;
  ClientOptions h1 = client(server.http_url("/"));
  h1.count = 4;
  h1.concurrency = 2;
  must_succeed(h1);
  CHECK(server.accepted(Kind::http) == 4);

  ClientOptions h2 = client(server.http_url("/"));
  h2.count = 6;
  h2.http2 = true;
  ClientResult r = must_succeed(h2);
  CHECK(server.accepted(Kind::http) == 5);
  auto responses = parse_multiple_responses(r.out);
  REQUIRE(responses.size() == 6);
  for (const auto& p : responses) {
    CHECK(p.protocol == "HTTP/2.0");
    CHECK(p.code == "200");
  }

  ClientOptions grpc = client("grpc://127.0.0.1:" + std::to_string(server.grpc_port));
  grpc.count = 7;
  CHECK(parse_multiple_responses(must_succeed(grpc).out).size() == 7);
  CHECK(server.accepted(Kind::grpc) == 1);
}

TEST_CASE("h2c prior knowledge on the HTTP port: POST body length and knobs") {
  TestServer server;
  ClientOptions o = client(server.http_url("/post?headers=x-header-set:set"));
  o.http2 = true;
  o.method = "POST";
  o.body = "hello world";
  ClientResult r = must_succeed(o);
  ParsedResponse p = parse_response(r.out);
  CHECK(p.method == "POST");
  CHECK(p.protocol == "HTTP/2.0");
  CHECK(r.out.find("[0 body] BodyLength=11\n") != std::string::npos);
  CHECK(r.out.find("[0] ResponseHeader=X-Header-Set:set\n") != std::string::npos);  // lowercase on the wire
  CHECK(p.response_header("X-Header-Set") == "set");
}

TEST_CASE("HTTP/1.1 POST: the request body is read fully and its length reported") {
  TestServer server;
  ClientOptions o = client(server.http_url("/upload"));
  o.method = "POST";
  o.body = std::string(200000, 'b');
  ClientResult r = must_succeed(o);
  CHECK(parse_response(r.out).method == "POST");
  CHECK(r.out.find("[0 body] BodyLength=200000\n") != std::string::npos);
  CHECK(parse_response(r.out).request_header("content-length") == "200000");
}

TEST_CASE("?delay holds the answer; the batch timeout fails what is still pending") {
  TestServer server;
  auto start = std::chrono::steady_clock::now();
  must_succeed(client(server.http_url("/?delay=300ms")));
  CHECK(seconds_since(start) >= 0.29);

  ClientOptions h2 = client(server.http_url("/?delay=200ms"));
  h2.http2 = true;
  h2.count = 3;
  start = std::chrono::steady_clock::now();
  CHECK(parse_multiple_responses(must_succeed(h2).out).size() == 3);
  CHECK(seconds_since(start) >= 0.19);

  ClientOptions late = client(server.http_url("/?delay=3s"));
  late.timeout = 200ms;
  ClientResult r = run_client(late);
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err ==
        "[0 error] timeout: the batch did not finish within 200ms\n"
        "trellis-echo client: 1 of 1 requests failed\n");
}

TEST_CASE("?codes cycles through the codes by weight") {
  TestServer server;
  ClientOptions o = client(server.http_url("/?codes=503:1,200:2"));
  o.count = 6;
  o.concurrency = 1;  // in order, so the cycle is visible
  ClientResult r = must_succeed(o);  // a 503 is an answer, not a request error
  auto responses = parse_multiple_responses(r.out);
  REQUIRE(responses.size() == 6);
  std::vector<std::string> codes;
  for (const auto& p : responses) codes.push_back(p.code);
  CHECK(codes == std::vector<std::string>{"503", "200", "200", "503", "200", "200"});
}

TEST_CASE("?headers sets response headers, printed sorted and canonical") {
  TestServer server;
  ClientResult r = must_succeed(client(server.http_url("/?headers=x-header-set:set,A-First:1")));
  CHECK(r.out.find("[0] ResponseHeader=A-First:1\n"
                   "[0] ResponseHeader=Connection:close\n") != std::string::npos);
  ParsedResponse p = parse_response(r.out);
  CHECK(p.response_header("x-header-set") == "set");
  CHECK(!p.has_response_header("x-header-remove"));
}

TEST_CASE("HEAD, /healthz and ?size") {
  TestServer server;
  ClientOptions head = client(server.http_url("/"));
  head.method = "HEAD";
  ClientResult h = must_succeed(head);
  CHECK(parse_response(h.out).code == "200");
  CHECK(h.out.find("[0] ResponseHeader=Content-Length:") != std::string::npos);
  CHECK(h.out.find("body]") == std::string::npos);

  ClientResult health = must_succeed(client(server.http_url("/healthz")));
  CHECK(health.out.find("[0 body] ok\n") != std::string::npos);

  for (bool http2 : {false, true}) {
    ClientOptions big = client(server.http_url("/?size=3000000"));
    big.http2 = http2;
    ClientResult b = must_succeed(big);
    CHECK(b.out.find("[0 body] " + std::string(2999999, 'x') + "\n") != std::string::npos);
  }
}

TEST_CASE("gRPC Echo: metadata echo, message and status lines") {
  TestServer server;
  std::string port = std::to_string(server.grpc_port);
  ClientOptions o = client("grpc://127.0.0.1:" + port);
  o.headers = {{"x-test-case", "multi"}, {"X-Header-Add", "a"}, {"x-trace-bin", "AAEC"}, {"Host", "echo"}};
  o.body = "hi";
  ClientResult r = must_succeed(o);
  std::string message =
      "Host=echo\n"
      "RequestHeader=content-type:application/grpc\n"
      "RequestHeader=user-agent:trellis-echo\n"
      "RequestHeader=x-header-add:a\n"
      "RequestHeader=x-test-case:multi\n"
      "StatusCode=200\n"
      "ServiceVersion=v1\n"
      "ServicePort=" + port + "\n"
      "IP=127.0.0.1\n"
      "Proto=GRPC\n"
      "Echo=hi\n"
      "Hostname=echo-v1-5d8f9-abcde\n";
  CHECK(r.out == "[0] Url=" + o.url + "\n"
                 "[0] Header=x-test-case:multi\n"
                 "[0] Header=x-header-add:a\n"
                 "[0] Header=x-trace-bin:AAEC\n"
                 "[0] Header=host:echo\n" +
                 prefixed("[0 body] ", message) +
                 "[0] ResponseHeader=content-type:application/grpc\n"
                 "\n");
  ParsedResponse p = parse_response(r.out);
  CHECK(p.code == "200");
  CHECK(p.hostname == kHostname);
  CHECK(p.request_header("x-test-case") == "multi");
  CHECK(!p.has_request_header("x-trace-bin"));
}

TEST_CASE("gRPC Echo ends with trailers grpc-status 0") {
  TestServer server;
  H2Outcome out = h2_call(server.grpc_port, grpc_head("/proto.EchoTestService/Echo", server.grpc_port),
                          grpc_frame(encode_echo_message("ping")));
  REQUIRE(out.have_head);
  CHECK(out.head.status == 200);
  CHECK(*out.head.headers.get("content-type") == "application/grpc");
  CHECK(!out.head.headers.contains("grpc-status"));
  REQUIRE(out.have_trailers);
  CHECK(*out.trailers.get("grpc-status") == "0");
  CHECK(out.close_code == 0);
  auto frames = split_grpc_frames(out.body);
  REQUIRE(frames.ok());
  REQUIRE(frames->size() == 1);
  CHECK(decode_echo_message(frames->front())->find("Echo=ping\n") != std::string::npos);
}

TEST_CASE("unknown gRPC method: grpc-status 12, and the client fails") {
  TestServer server;
  H2Outcome out = h2_call(server.grpc_port, grpc_head("/proto.EchoTestService/Nope", server.grpc_port),
                          grpc_frame(""));
  REQUIRE(out.have_head);
  CHECK(out.head.status == 200);
  CHECK(*out.head.headers.get("grpc-status") == "12");  // Trailers-Only
  CHECK(*out.head.headers.get("grpc-message") == "unknown method Nope for service proto.EchoTestService");
  CHECK(!out.have_trailers);
  CHECK(out.body.empty());

  ClientResult r = run_client(client("grpc://127.0.0.1:" + std::to_string(server.grpc_port) +
                                     "/proto.EchoTestService/Nope"));
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err ==
        "[0 error] rpc error: code = Unimplemented desc = unknown method Nope for service "
        "proto.EchoTestService\n"
        "trellis-echo client: 1 of 1 requests failed\n");
}

TEST_CASE("gRPC port: a non-gRPC request gets 415; gRPC also works on the HTTP port") {
  TestServer server;
  trellis::http::RequestHead head = grpc_head("/", server.grpc_port);
  head.method = "GET";
  head.headers.set("content-type", "text/plain");
  H2Outcome out = h2_call(server.grpc_port, head);
  REQUIRE(out.have_head);
  CHECK(out.head.status == 415);
  CHECK(out.body == "gRPC requires content-type application/grpc\n");

  ClientResult r = must_succeed(client("grpc://127.0.0.1:" + std::to_string(server.http_port)));
  CHECK(parse_response(r.out).port == std::to_string(server.http_port));
  CHECK(parse_response(r.out).code == "200");
}

TEST_CASE("TCP: bytes are echoed exactly") {
  TestServer server;
  RawSocket socket(server.tcp_port);
  std::string payload;
  for (size_t i = 0; i < 1024 * 1024; ++i) payload += static_cast<char>(i * 7 % 256);
  socket.send(payload);
  socket.shutdown_write();
  CHECK(socket.read_to_eof() == payload);

  ClientOptions o = client("tcp://127.0.0.1:" + std::to_string(server.tcp_port));
  o.body = "ping\npong";
  ClientResult r = must_succeed(o);
  CHECK(r.out == "[0] Url=" + o.url + "\n[0 body] ping\n[0 body] pong\n\n");
}

TEST_CASE("TCP greeting: the server speaks first") {
  ServerOptions options = test_server_options();
  options.tcp_greeting = "HELLO\n";
  TestServer server(options);
  RawSocket socket(server.tcp_port);
  CHECK(socket.read_at_least(6) == "HELLO\n");  // without sending a byte
  socket.send("abc");
  socket.shutdown_write();
  CHECK(socket.read_to_eof() == "abc");

  ClientOptions waits = client("tcp://127.0.0.1:" + std::to_string(server.tcp_port));
  CHECK(must_succeed(waits).out == "[0] Url=" + waits.url + "\n[0 body] HELLO\n\n");
  ClientOptions sends = waits;
  sends.body = "abc";
  CHECK(must_succeed(sends).out == "[0] Url=" + waits.url + "\n[0 body] HELLO\n[0 body] abc\n\n");
}

TEST_CASE("batch: --count 50 parses into 50 responses, then the summary") {
  TestServer server;
  ClientOptions o = client(server.http_url("/"));
  o.count = 50;
  o.summary = true;
  ClientResult r = must_succeed(o);
  auto responses = parse_multiple_responses(r.out);
  REQUIRE(responses.size() == 50);
  for (const auto& p : responses) {
    CHECK(p.code == "200");
    CHECK(backend_name(p.hostname) == "echo-v1");
  }
  for (int i = 0; i < 50; ++i) {
    CHECK(r.out.find("[" + std::to_string(i) + "] StatusCode=200\n") != std::string::npos);
  }
  std::string summary = std::string("[summary] hostname=") + kHostname + " count=50\n"
                        "[summary] code=200 count=50\n"
                        "[summary] errors=0\n";
  REQUIRE(r.out.size() > summary.size());
  CHECK(r.out.substr(r.out.size() - summary.size()) == summary);

  ClientOptions grpc = client("grpc://127.0.0.1:" + std::to_string(server.grpc_port));
  grpc.count = 50;
  grpc.concurrency = 20;
  auto grpc_responses = parse_multiple_responses(must_succeed(grpc).out);
  REQUIRE(grpc_responses.size() == 50);
  for (const auto& p : grpc_responses) CHECK(p.code == "200");
}

TEST_CASE("--qps paces the starts") {
  TestServer server;
  ClientOptions o = client(server.http_url("/"));
  o.count = 3;
  o.qps = 10;
  auto start = std::chrono::steady_clock::now();
  CHECK(parse_multiple_responses(must_succeed(o).out).size() == 3);
  CHECK(seconds_since(start) >= 0.19);
}

TEST_CASE("malformed HTTP gets its status and a close; other connections carry on") {
  TestServer server;
  RawSocket slow(server.http_port);
  slow.send("GET /slow HTTP/1.1\r\nHost: a\r\n");  // incomplete for now

  RawSocket bad(server.http_port);
  bad.send("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n");
  CHECK(bad.read_to_eof() ==
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        "Content-Length: 33\r\n\r\ninvalid character in header name\n");

  RawSocket tls(server.http_port);
  tls.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));  // a TLS ClientHello
  CHECK(tls.read_to_eof().rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);

  RawSocket crowded(server.http_port);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  crowded.send(many + "\r\n");
  CHECK(crowded.read_to_eof().rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);

  RawSocket cut(server.http_port);
  cut.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
  cut.shutdown_write();
  CHECK(cut.read_to_eof().rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);

  RawSocket h2_garbage(server.http_port);
  h2_garbage.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nnot a settings frame at all");
  std::string goaway = h2_garbage.read_to_eof();  // our SETTINGS, then a GOAWAY, then close
  CHECK(goaway.find(std::string("\x07\x00\x00\x00\x00\x00", 6)) != std::string::npos);

  slow.send("\r\n");
  slow.shutdown_write();
  std::string answer = slow.read_to_eof();
  CHECK(answer.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(answer.find("URL=/slow\n") != std::string::npos);

  must_succeed(client(server.http_url("/")));
  CHECK(server.accepted(Kind::http) == 7);
}

TEST_CASE("HTTP/1.1 keep-alive: pipelined requests are answered in order") {
  TestServer server;
  RawSocket socket(server.http_port);
  socket.send(
      "GET /a?delay=50ms HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n");
  std::string all = socket.read_to_eof();
  size_t a = all.find("URL=/a?delay=50ms\n");
  size_t b = all.find("URL=/b\n");
  size_t c = all.find("URL=/c\n");
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(c != std::string::npos);
  CHECK(a < b);
  CHECK(b < c);
  CHECK(all.find("BodyLength=5\n") != std::string::npos);
  CHECK(server.accepted(Kind::http) == 1);
}

TEST_CASE("client errors: refused connections and unresolvable names") {
  uint16_t closed_port;
  {
    TestServer gone;
    closed_port = gone.http_port;
  }
  ClientResult r = run_client(client("http://127.0.0.1:" + std::to_string(closed_port) + "/"));
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err == "[0 error] connect to 127.0.0.1:" + std::to_string(closed_port) +
                     ": connection refused\ntrellis-echo client: 1 of 1 requests failed\n");

  ClientOptions grpc = client("grpc://127.0.0.1:" + std::to_string(closed_port));
  grpc.count = 3;
  ClientResult g = run_client(grpc);
  CHECK(g.exit_code == 1);
  CHECK(g.err.find("[2 error] connect to 127.0.0.1:" + std::to_string(closed_port) + ": connection refused\n") !=
        std::string::npos);
  CHECK(g.err.find("trellis-echo client: 3 of 3 requests failed\n") != std::string::npos);

  ClientResult n = run_client(client("http://nohost.invalid/"));
  CHECK(n.exit_code == 1);
  CHECK(n.err.rfind("trellis-echo client: resolve 'nohost.invalid': ", 0) == 0);
  CHECK(resolve("localhost", 80).ok());
  CHECK(resolve("127.0.0.1", 8080)->to_string() == "127.0.0.1:8080");
}

TEST_CASE("a port in use is reported with the listener it belongs to") {
  TestServer server;
  auto loop = trellis::event::EventLoop::create();
  REQUIRE(loop.ok());
  ServerOptions options = test_server_options();
  options.grpc_ports = {server.http_port};
  auto second = EchoServer::start(**loop, options);
  REQUIRE(!second.ok());
  CHECK(second.error().message ==
        "grpc listener: bind 127.0.0.1:" + std::to_string(server.http_port) + ": address already in use");
}

TEST_CASE("the listening line names every bound address") {
  auto loop = trellis::event::EventLoop::create();
  REQUIRE(loop.ok());
  ServerOptions options = test_server_options();
  options.http_ports = {0, 0};
  auto server = EchoServer::start(**loop, options);
  REQUIRE(server.ok());
  auto http = (*server)->addresses(Kind::http);
  REQUIRE(http.size() == 2);
  CHECK((*server)->listening_line() ==
        "listening http=" + http[0].to_string() + "," + http[1].to_string() +
            " grpc=" + (*server)->addresses(Kind::grpc)[0].to_string() +
            " tcp=" + (*server)->addresses(Kind::tcp)[0].to_string());
  server.value().reset();
}

TEST_CASE("a client on the server's own loop; a dual-stack server reports IPv4 peers as Go does") {
  auto loop = trellis::event::EventLoop::create();
  REQUIRE(loop.ok());
  ServerOptions options = test_server_options();
  options.bind = "::";
  auto server = EchoServer::start(**loop, options);
  if (!server.ok() && (server.error().code == EAFNOSUPPORT || server.error().code == EADDRNOTAVAIL)) {
    MESSAGE("this machine has no IPv6: " << server.error().message);
    return;
  }
  REQUIRE(server.ok());
  uint16_t port = (*server)->addresses(Kind::http).front().port();
  std::optional<ClientResult> result;
  auto c = Client::start(**loop, client("http://127.0.0.1:" + std::to_string(port) + "/"), [&](ClientResult r) {
    result = std::move(r);
    (*loop)->stop();
  });
  REQUIRE(c.ok());
  (*loop)->run();
  REQUIRE(result.has_value());
  CHECK(result->exit_code == 0);
  CHECK(parse_response(result->out).ip == "127.0.0.1");
  CHECK((*server)->listening_line().rfind("listening http=[::]:", 0) == 0);
  c.value().reset();
  server.value().reset();
}
