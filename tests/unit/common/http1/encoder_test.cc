#include "common/http1/encoder.h"

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/unit/common/http1/harness.h"

using namespace trellis;
using namespace trellis::http1;
using namespace trellis::http1::testing;

namespace {

http::RequestHead request(std::string method, std::string target, std::string authority) {
  http::RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  h.authority = std::move(authority);
  return h;
}

http::ResponseHead response(int status, std::string reason = "") {
  http::ResponseHead h;
  h.status = status;
  h.reason = std::move(reason);
  return h;
}

bool same_fields(const http::HeaderMap& a, const http::HeaderMap& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("encode_request_head writes the request line, Host first, then fields and framing") {
  http::RequestHead h = request("POST", "/api/v1/items?x=1", "api.example:8443");
  h.headers.add("Content-Type", "application/json");
  h.headers.add("X-Trace", "abc");
  std::string out = "previous bytes|";
  REQUIRE(encode_request_head(h, Framing::content_length(42), out).ok());
  CHECK(out ==
        "previous bytes|POST /api/v1/items?x=1 HTTP/1.1\r\nHost: api.example:8443\r\n"
        "Content-Type: application/json\r\nX-Trace: abc\r\nContent-Length: 42\r\n\r\n");
}

TEST_CASE("encode_request_head framing variants") {
  http::RequestHead h = request("GET", "/", "a");
  std::string out;
  SUBCASE("no body") {
    REQUIRE(encode_request_head(h, Framing::no_body(), out).ok());
    CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  SUBCASE("chunked") {
    REQUIRE(encode_request_head(h, Framing::chunked(), out).ok());
    CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  }
  SUBCASE("the head's own framing fields and Host are never copied") {
    h.headers.add("content-length", "999");
    h.headers.add("Transfer-Encoding", "gzip, chunked");
    h.headers.add("Host", "evil");
    h.headers.add("Accept", "*/*");
    REQUIRE(encode_request_head(h, Framing::content_length(3), out).ok());
    CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 3\r\n\r\n");
  }
  SUBCASE("HTTP/1.0 without authority writes no Host") {
    h.authority.clear();
    h.version = http::Version::http10;
    REQUIRE(encode_request_head(h, Framing::no_body(), out).ok());
    CHECK(out == "GET / HTTP/1.0\r\n\r\n");
  }
  SUBCASE("HTTP/1.1 without authority writes an empty Host") {
    h.authority.clear();
    REQUIRE(encode_request_head(h, Framing::no_body(), out).ok());
    CHECK(out == "GET / HTTP/1.1\r\nHost: \r\n\r\n");
  }
  SUBCASE("an HTTP/2 head goes out as HTTP/1.1") {
    h.version = http::Version::http2;
    REQUIRE(encode_request_head(h, Framing::no_body(), out).ok());
    CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  SUBCASE("CONNECT writes the authority as its target") {
    http::RequestHead c = request("CONNECT", "", "db:5432");
    REQUIRE(encode_request_head(c, Framing::no_body(), out).ok());
    CHECK(out == "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n");
  }
}

TEST_CASE("encode_response_head") {
  std::string out;
  SUBCASE("standard reason phrase and Content-Length") {
    http::ResponseHead h = response(404);
    h.headers.add("Content-Type", "text/plain");
    REQUIRE(encode_response_head(h, Framing::content_length(9), out).ok());
    CHECK(out ==
          "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n");
  }
  SUBCASE("custom reason, HTTP/1.0") {
    http::ResponseHead h = response(200, "Fine Thanks");
    h.version = http::Version::http10;
    REQUIRE(encode_response_head(h, Framing::content_length(0), out).ok());
    CHECK(out == "HTTP/1.0 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n");
  }
  SUBCASE("close-delimited announces Connection: close once") {
    REQUIRE(encode_response_head(response(200), Framing::close_delimited(), out).ok());
    CHECK(out == "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    out.clear();
    http::ResponseHead h = response(200);
    h.headers.add("Connection", "Close");
    REQUIRE(encode_response_head(h, Framing::close_delimited(), out).ok());
    CHECK(out == "HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n");
  }
  SUBCASE("chunked") {
    REQUIRE(encode_response_head(response(200), Framing::chunked(), out).ok());
    CHECK(out == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  }
  SUBCASE("204 and 1xx without framing; 304 with the representation's length") {
    REQUIRE(encode_response_head(response(204), Framing::no_body(), out).ok());
    REQUIRE(encode_response_head(response(101), Framing::no_body(), out).ok());
    REQUIRE(encode_response_head(response(304), Framing::content_length(77), out).ok());
    CHECK(out ==
          "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n"
          "HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n");
  }
  SUBCASE("unknown status") {
    REQUIRE(encode_response_head(response(599), Framing::no_body(), out).ok());
    CHECK(out == "HTTP/1.1 599 Unknown\r\n\r\n");
  }
}

TEST_CASE("encode_continue, chunks and the last chunk") {
  std::string out;
  encode_continue(out);
  CHECK(out == "HTTP/1.1 100 Continue\r\n\r\n");

  out.clear();
  encode_chunk("hello", out);
  encode_chunk("", out);
  encode_chunk(std::string(300, 'z'), out);
  CHECK(out == "5\r\nhello\r\n12c\r\n" + std::string(300, 'z') + "\r\n");

  out.clear();
  encode_chunk_header(0xabcdef, out);
  CHECK(out == "abcdef\r\n");

  out.clear();
  REQUIRE(encode_last_chunk(nullptr, out).ok());
  CHECK(out == "0\r\n\r\n");

  out.clear();
  http::HeaderMap trailers;
  trailers.add("grpc-status", "0");
  trailers.add("grpc-message", "");
  REQUIRE(encode_last_chunk(&trailers, out).ok());
  CHECK(out == "0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n");
}

TEST_CASE("the encoders refuse injection and invalid syntax, leaving out unchanged") {
  struct Case {
    std::string name;
    std::function<Status(std::string&)> encode;
    const char* message;
  };
  auto with_header = [](std::string name, std::string value) {
    http::RequestHead h = request("GET", "/", "a");
    h.headers.add("Accept", "*/*");
    h.headers.add(name, value);
    return h;
  };
  auto req = [](http::RequestHead h, Framing f = Framing::no_body()) {
    return [h, f](std::string& out) { return encode_request_head(h, f, out); };
  };
  auto resp = [](http::ResponseHead h, Framing f = Framing::no_body()) {
    return [h, f](std::string& out) { return encode_response_head(h, f, out); };
  };
  http::ResponseHead split = response(200);
  split.headers.add("Location", "/x\r\n\r\nHTTP/1.1 200 OK");
  http::ResponseHead lf_reason = response(200, "OK\nSet-Cookie: a=b");
  http::ResponseHead bad_name = response(200);
  bad_name.headers.add("X-Good", "1");
  bad_name.headers.add("X Bad", "2");
  http::HeaderMap bad_trailers;
  bad_trailers.add("grpc-status", "0\r\nX: y");

  const std::vector<Case> cases = {
      {"CRLF in a value", req(with_header("X-User", "bob\r\nX-Admin: true")),
       "headers[1].value: invalid character"},
      {"LF in a value", req(with_header("X-User", "bob\nX-Admin: true")),
       "headers[1].value: invalid character"},
      {"CR in a value", req(with_header("X-User", "bob\r")), "headers[1].value: invalid character"},
      {"NUL in a value", req(with_header("X-User", std::string("a\0b", 3))),
       "headers[1].value: invalid character"},
      {"colon in a name", req(with_header("X-User: evil", "x")), "headers[1].name: not a token"},
      {"CRLF in a name", req(with_header("X\r\nEvil", "x")), "headers[1].name: not a token"},
      {"empty name", req(with_header("", "x")), "headers[1].name: not a token"},
      {"space in the method", req(request("GET /x", "/", "a")), "method: not a token"},
      {"empty method", req(request("", "/", "a")), "method: not a token"},
      {"CRLF in the target", req(request("GET", "/\r\nHost: evil", "a")),
       "target: invalid character"},
      {"space in the target", req(request("GET", "/a b", "a")), "target: invalid character"},
      {"relative target", req(request("GET", "a/b", "a")), "target: not origin-form or '*'"},
      {"empty target", req(request("GET", "", "a")), "target: empty"},
      {"asterisk for GET", req(request("GET", "*", "a")), "target: '*' is for OPTIONS only"},

      {"CRLF in the authority", req(request("GET", "/", "a\r\nX: y")),
       "authority: not host[:port]"},
      {"CONNECT without authority", req(request("CONNECT", "", "")), "authority: not host[:port]"},
      {"request delimited by close", req(request("POST", "/", "a"), Framing::close_delimited()),
       "framing: a request body cannot be delimited by close"},
      {"chunked HTTP/1.0 request",
       [](std::string& out) {
         http::RequestHead h = request("POST", "/", "a");
         h.version = http::Version::http10;
         return encode_request_head(h, Framing::chunked(), out);
       },
       "framing: chunked needs HTTP/1.1"},
      {"response splitting through a value", resp(split), "headers[0].value: invalid character"},
      {"LF in the reason", resp(lf_reason), "reason: invalid character"},
      {"space in a response header name", resp(bad_name), "headers[1].name: not a token"},
      {"status 42", resp(response(42)), "status: 42 is not in 100..599"},
      {"status 1000", resp(response(1000)), "status: 1000 is not in 100..599"},
      {"Content-Length on 204", resp(response(204), Framing::content_length(0)),
       "framing: status 204 has no body"},
      {"chunked on 100", resp(response(100), Framing::chunked()),
       "framing: status 100 has no body"},
      {"chunked on 304", resp(response(304), Framing::chunked()),
       "framing: status 304 has no body"},
      {"CRLF in a trailer",
       [&](std::string& out) { return encode_last_chunk(&bad_trailers, out); },
       "trailers[0].value: invalid character"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::string out = "kept";
    Status s = c.encode(out);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message == c.message);
    CHECK(s.error().code == 500);
    CHECK(out == "kept");
  }
}

TEST_CASE("round trip: encoded requests decode to the same head and body") {
  http::RequestHead h = request("PUT", "/objects/a%20b?versionId=3&x", "store.svc:9000");
  h.headers.add("Content-Type", "application/octet-stream");
  h.headers.add("X-Meta", "a, b; c=\"d\"");
  h.headers.add("x-meta", "second");
  h.headers.add("X-Empty", "");
  h.headers.add("X-Obs-Text", "caf\xc3\xa9");
  std::string body = std::string("binary\0\r\n\r\nbody", 16);

  SUBCASE("with Content-Length") {
    std::string wire;
    REQUIRE(encode_request_head(h, Framing::content_length(body.size()), wire).ok());
    wire += body;
    auto r = decode_requests(wire);
    REQUIRE(r.heads.size() == 1);
    const http::RequestHead& d = r.heads[0];
    CHECK(d.method == h.method);
    CHECK(d.target == h.target);
    CHECK(d.authority == h.authority);
    CHECK(d.version == h.version);
    http::HeaderMap expected = h.headers;
    expected.add("Content-Length", std::to_string(body.size()));
    CHECK(same_fields(d.headers, expected));
    CHECK(r.events.at(1) == "body " + body);
    CHECK(r.events.back() == "complete");
  }
  SUBCASE("chunked, with trailers") {
    std::string wire;
    REQUIRE(encode_request_head(h, Framing::chunked(), wire).ok());
    encode_chunk(body.substr(0, 5), wire);
    encode_chunk(body.substr(5), wire);
    http::HeaderMap trailers;
    trailers.add("X-Digest", "sha-256=abc");
    REQUIRE(encode_last_chunk(&trailers, wire).ok());
    auto r = decode_requests(wire);
    REQUIRE(r.heads.size() == 1);
    CHECK(r.infos[0].chunked());
    CHECK(r.events.at(1) == "body " + body);
    REQUIRE(r.trailers.size() == 1);
    CHECK(same_fields(r.trailers[0], trailers));
    CHECK(r.consumed == wire.size());
  }
}

TEST_CASE("round trip: encoded responses decode to the same head and body") {
  http::ResponseHead h = response(503, "Slow Down");
  h.headers.add("Retry-After", "5");
  h.headers.add("Set-Cookie", "a=1; Path=/");
  h.headers.add("Set-Cookie", "b=2");
  std::string wire;
  REQUIRE(encode_response_head(h, Framing::content_length(4), wire).ok());
  wire += "busy";
  auto r = decode_responses(wire, {"GET"});
  REQUIRE(r.heads.size() == 1);
  CHECK(r.heads[0].status == 503);
  CHECK(r.heads[0].reason == "Slow Down");
  http::HeaderMap expected = h.headers;
  expected.add("Content-Length", "4");
  CHECK(same_fields(r.heads[0].headers, expected));
  CHECK(r.events.at(1) == "body busy");
}

TEST_CASE("relay: decode, re-encode with Framing::of, decode again gives the same message") {
  // What the proxy does: strip nothing here, just re-frame from MessageInfo.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"},
      {"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
      {"GET", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"},
      {"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"},
  };
  for (const auto& [method, wire] : cases) {
    CAPTURE(wire);
    auto first = decode_responses(wire, {method});
    REQUIRE(first.heads.size() == 1);
    std::string again;
    REQUIRE(encode_response_head(first.heads[0], Framing::of(first.infos[0]), again).ok());
    if (first.infos[0].chunked()) {
      encode_chunk("abc", again);
      REQUIRE(encode_last_chunk(nullptr, again).ok());
    }
    auto second = decode_responses(again, {method});
    CHECK(second.infos.at(0).body == first.infos[0].body);
    CHECK(second.infos.at(0).content_length == first.infos[0].content_length);
    CHECK(second.events.size() == first.events.size());
  }
  SUBCASE("a close-delimited body becomes close-delimited again") {
    RunOptions options;
    options.finish = true;
    auto first = decode_responses("HTTP/1.1 200 OK\r\n\r\nxyz", {"GET"}, options);
    std::string again;
    REQUIRE(encode_response_head(first.heads.at(0), Framing::of(first.infos.at(0)), again).ok());
    CHECK(again == "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  }
}
