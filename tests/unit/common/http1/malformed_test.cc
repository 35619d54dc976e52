// Malformed input: every case must fail with the exact status and message,
// fed in one piece and byte by byte, with no event after the error.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/http1/decoder.h"
#include "tests/unit/common/http1/harness.h"

using namespace trellis;
using namespace trellis::http1;
using namespace trellis::http1::testing;

namespace {

struct Case {
  std::string name;
  std::string input;
  int status;
  const char* message;
};

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

const std::string kPost = "POST / HTTP/1.1\r\nHost: a\r\n";
const std::string kChunked = kPost + "Transfer-Encoding: chunked\r\n\r\n";

void check_error(const Run<http::RequestHead>& r, int status, const std::string& message) {
  REQUIRE_FALSE(r.events.empty());
  CHECK(r.events.back() == "error " + std::to_string(status) + " " + message);
  CHECK(r.state == DecoderState::failed);
}

}  // namespace

TEST_CASE("malformed requests fail with the exact status and message") {
  const std::vector<Case> cases = {
      {"garbage (a TLS ClientHello)", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 9), 400,
       "invalid method"},
      {"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"},
      {"unknown method", "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"},
      {"space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "malformed request line"},
      {"control character in the target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "invalid request target"},
      {"raw UTF-8 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "invalid request target"},
      {"fragment in the target", "GET /a#top HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "invalid request target"},
      {"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},
      {"unsupported scheme", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "unsupported request target"},
      {"userinfo in absolute-form", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "invalid request target"},
      {"CONNECT without a port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
       "invalid CONNECT target"},
      {"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505,
       "unsupported HTTP version 2.0"},
      {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version 1.2"},
      {"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505, "unsupported HTTP version 0.9"},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported HTTP version 2.0"},
      {"letters in the version", "GET / HTTP/x.1\r\nHost: a\r\n\r\n", 400,
       "malformed HTTP version"},
      {"RTSP request line", "GET / RTSP/1.0\r\n\r\n", 400, "malformed request line"},
      {"space after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400,
       "malformed request line"},
      {"space in a header name", "GET / HTTP/1.1\r\nHost: a\r\nFoo Bar: x\r\n\r\n", 400,
       "invalid character in header name"},
      {"space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400,
       "invalid character in header name"},
      {"separator in a header name", "GET / HTTP/1.1\r\nHost: a\r\nX@Y: b\r\n\r\n", 400,
       "invalid character in header name"},
      {"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400, "empty header name"},
      {"NUL in a header value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35),
       400, "invalid character in header value"},
      {"DEL in a header value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400,
       "invalid character in header value"},
      {"bare CR in a header value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400,
       "malformed line ending"},
      {"bare LF after a header value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n", 400,
       "malformed line ending"},
      {"CR + any byte after an empty value", "GET / HTTP/1.1\r\nHost: a\r\nX:\rY: z\r\n\r\n", 400,
       "malformed line ending"},
      {"CR + any byte ending the head (smuggling)",
       "GET / HTTP/1.1\r\nHost: a\r\n\rXGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "malformed line ending"},
      {"whitespace before the first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400,
       "whitespace before the first header field"},
      {"missing Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing Host header"},
      {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "multiple Host headers"},
      {"Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host header"},
      {"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid Host header"},
      {"Content-Length with Transfer-Encoding",
       kPost + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
       "Content-Length and Transfer-Encoding both present"},
      {"Transfer-Encoding with Content-Length",
       kPost + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400,
       "Content-Length and Transfer-Encoding both present"},
      {"duplicate differing Content-Length",
       kPost + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
       "multiple Content-Length headers"},
      {"duplicate equal Content-Length", kPost + "Content-Length: 5\r\ncontent-length: 5\r\n\r\n",
       400, "multiple Content-Length headers"},
      {"Content-Length list", kPost + "Content-Length: 5, 5\r\n\r\nhello", 400,
       "invalid Content-Length"},
      {"signed Content-Length", kPost + "Content-Length: +5\r\n\r\nhello", 400,
       "invalid Content-Length"},
      {"Content-Length overflow", kPost + "Content-Length: 99999999999999999999999\r\n\r\n", 400,
       "invalid Content-Length"},
      {"Transfer-Encoding: gzip", kPost + "Transfer-Encoding: gzip\r\n\r\n", 501,
       "unsupported Transfer-Encoding"},
      {"chunked then gzip", kPost + "Transfer-Encoding: chunked, gzip\r\n\r\n", 501,
       "unsupported Transfer-Encoding"},
      {"gzip then chunked", kPost + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
       "unsupported Transfer-Encoding"},
      {"chunked twice", kPost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
       501, "unsupported Transfer-Encoding"},
      {"Transfer-Encoding in HTTP/1.0",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
       "Transfer-Encoding in an HTTP/1.0 message"},
      {"bad chunk size", kChunked + "zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
      {"negative chunk size", kChunked + "-5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"},
      {"chunk size overflow", kChunked + "10000000000000000\r\n", 400, "invalid chunk size"},
      {"bare LF after the chunk size", kChunked + "5\nhello\r\n0\r\n\r\n", 400,
       "invalid chunk size"},
      {"CR + any byte after the chunk size", kChunked + "5\rXhello\r\n0\r\n\r\n", 400,
       "malformed line ending"},
      {"chunk data not followed by CRLF (smuggling)", kChunked + "5\r\nhelloXX0\r\n\r\n", 400,
       "malformed line ending"},
      {"CR + any byte ending the trailers", kChunked + "0\r\n\rX", 400, "malformed line ending"},
      {"control character in a chunk extension", kChunked + "5;a\x01\r\nhello\r\n0\r\n\r\n", 400,
       "invalid chunk extension"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto r = decode_requests(c.input);
    check_error(r, c.status, c.message);
  }
}

TEST_CASE("no event follows an error, and nothing before it is lost") {
  auto r = decode_requests(kChunked + "3\r\nabc\r\nzz\r\n");
  CHECK(r.events == std::vector<std::string>{
                        "head POST / HTTP/1.1 authority=a [Transfer-Encoding: chunked] "
                        "{chunked keep-alive}",
                        "body abc", "error 400 invalid chunk size"});
}

TEST_CASE("header limits") {
  SUBCASE("too many headers → 431") {
    std::string in = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 100; ++i) in += "X-" + std::to_string(i) + ": v\r\n";
    auto r = decode_requests(in + "\r\n");
    check_error(r, 431, "more than 100 header fields");
  }
  SUBCASE("100 headers are fine") {
    std::string in = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 99; ++i) in += "X-" + std::to_string(i) + ": v\r\n";
    auto r = decode_requests(in + "\r\n");
    CHECK(r.events.back() == "complete");
  }
  SUBCASE("many small headers over the byte limit → 431") {
    std::string in = "GET / HTTP/1.1\r\nHost: a\r\n" +
                     repeat("X-Filler: " + std::string(1000, 'f') + "\r\n", 70) + "\r\n";
    RunOptions options;
    options.decoder.limits.max_header_count = 1000;
    auto r = decode_requests(in, options);
    check_error(r, 431, "header section exceeds 65536 bytes");
  }
  SUBCASE("too many trailers → 431") {
    RunOptions options;
    options.decoder.limits.max_header_count = 3;
    auto r = decode_requests(kChunked + "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", options);
    check_error(r, 431, "more than 3 trailer fields");
  }
  SUBCASE("trailers over the byte limit → 431") {
    RunOptions options;
    options.decoder.limits.max_header_bytes = 100;
    auto r = decode_requests(kChunked + "0\r\nX: " + std::string(100, 'v') + "\r\n\r\n", options);
    check_error(r, 431, "trailer section exceeds 100 bytes");
  }
  SUBCASE("a target over the limit → 414") {
    std::string target = "/" + std::string(16 * 1024, 'a');
    auto r = decode_requests("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n");
    check_error(r, 414, "request target exceeds 16384 bytes");
  }
  SUBCASE("chunk extensions over the limit → 400") {
    auto r = decode_requests(kChunked + "5;x=" + std::string(16 * 1024, 'e') + "\r\nhello\r\n");
    check_error(r, 400, "chunk extensions exceed 16384 bytes");
  }
}

TEST_CASE("an endless header is refused as soon as it passes the limit, byte by byte") {
  // One header value that never ends, streamed a byte at a time: the decoder
  // must fail once the section passes 64 KiB, long before the input ends, and
  // it must not have kept more than the limit.
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(1024 * 1024, 'x');
  RequestRecorder rec;
  RequestDecoder decoder(rec);
  size_t failed_at = in.size();
  for (size_t i = 0; i < in.size(); ++i) {
    char byte = in[i];
    decoder.feed(&byte, 1);
    if (!rec.events.empty()) {
      failed_at = i;
      break;
    }
  }
  CHECK(rec.events == std::vector<std::string>{"error 431 header section exceeds 65536 bytes"});
  CHECK(decoder.state() == DecoderState::failed);
  // Counted: "Host" + "a" + "X-Big" + the value so far; the byte that takes
  // the count past 65536 is the one that fails.
  size_t value_start = std::string("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ").size();
  CHECK(failed_at == value_start + 65536 - (4 + 1 + 5));
}

TEST_CASE("malformed responses fail with 502 and the exact message") {
  const std::vector<Case> cases = {
      {"garbage", "hello world\r\n\r\n", 502, "malformed status line"},
      {"letters in the status", "HTTP/1.1 abc OK\r\n\r\n", 502, "invalid status code"},
      {"status below 100", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", 502,
       "invalid status code"},
      {"status above 599", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", 502,
       "invalid status code"},
      {"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", 502, "invalid status code"},
      {"HTTP/2.0 status line", "HTTP/2.0 200 OK\r\n\r\n", 502, "unsupported HTTP version 2.0"},
      {"RTSP status line", "RTSP/1.0 200 OK\r\n\r\n", 502, "malformed status line"},
      {"CR + any byte ending the status line", "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", 502,
       "malformed line ending"},
      {"CR + any byte ending the head", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\rXa", 502,
       "malformed line ending"},
      {"space in a header name", "HTTP/1.1 200 OK\r\nContent Length: 1\r\n\r\na", 502,
       "invalid character in header name"},
      {"Content-Length with Transfer-Encoding",
       "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502,
       "Content-Length and Transfer-Encoding both present"},
      {"duplicate Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
       502, "multiple Content-Length headers"},
      {"Transfer-Encoding: gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", 502,
       "unsupported Transfer-Encoding"},
      {"Transfer-Encoding in HTTP/1.0",
       "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502,
       "Transfer-Encoding in an HTTP/1.0 message"},
      {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 502,
       "invalid chunk size"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto r = decode_responses(c.input, {"GET"});
    REQUIRE_FALSE(r.events.empty());
    CHECK(r.events.back() == "error " + std::to_string(c.status) + " " + c.message);
    CHECK(r.state == DecoderState::failed);
  }
}

TEST_CASE("a response body over the limit fails with 502") {
  RunOptions options;
  options.decoder.limits.max_body_bytes = 3;
  auto r = decode_responses("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", {"GET"}, options);
  CHECK(r.events == std::vector<std::string>{"error 502 body exceeds 3 bytes"});
}
