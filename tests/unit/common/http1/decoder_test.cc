#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/http1/decoder.h"
#include "tests/unit/common/http1/harness.h"

using namespace trellis;
using namespace trellis::http1;
using namespace trellis::http1::testing;
using Events = std::vector<std::string>;

TEST_CASE("request: simple GET") {
  std::string in =
      "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
      "Accept: */*\r\n\r\n";
  auto r = decode_requests(in);
  CHECK(r.events == Events{"head GET /index.html?q=1 HTTP/1.1 authority=example.com "
                           "[User-Agent: t/1][Accept: */*] {none keep-alive}",
                           "complete"});
  CHECK(r.state == DecoderState::active);
  CHECK(r.consumed == in.size());
  REQUIRE(r.heads.size() == 1);
  CHECK(r.heads[0].path() == "/index.html");
  CHECK(r.heads[0].query() == "q=1");
  CHECK(r.heads[0].scheme == "http");
  CHECK_FALSE(r.heads[0].headers.contains("host"));
}

TEST_CASE("request: field values are trimmed, names keep their case, repeats keep order") {
  auto r = decode_requests(
      "GET / HTTP/1.1\r\nhOsT:  a.example:8080 \t\r\nX-Tag:\t one \r\nx-tag: two\r\n"
      "X-Empty:\r\nX-Spaces:    \r\nX-Inner: a  b\r\n\r\n");
  CHECK(r.events == Events{"head GET / HTTP/1.1 authority=a.example:8080 [X-Tag: one]"
                           "[x-tag: two][X-Empty: ][X-Spaces: ][X-Inner: a  b] {none keep-alive}",
                           "complete"});
  REQUIRE(r.heads.size() == 1);
  CHECK(r.heads[0].headers.joined("x-tag") == "one,two");
}

TEST_CASE("request: obs-fold is unfolded into the value (llhttp default)") {
  auto r = decode_requests("GET / HTTP/1.1\r\nHost: a\r\nX-Long: first\r\n  second\r\n\r\n");
  CHECK(r.events ==
        Events{"head GET / HTTP/1.1 authority=a [X-Long: first  second] {none keep-alive}",
               "complete"});
}

TEST_CASE("request: empty lines before a request are skipped (RFC 9112 §2.2)") {
  auto r = decode_requests("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(r.events == Events{"head GET / HTTP/1.1 authority=a  {none keep-alive}", "complete"});
}

TEST_CASE("request: POST with Content-Length") {
  std::string in =
      "POST /submit HTTP/1.1\r\nHost: api\r\nContent-Type: text/plain\r\n"
      "Content-Length: 11\r\n\r\nhello world";
  auto r = decode_requests(in);
  CHECK(r.events == Events{"head POST /submit HTTP/1.1 authority=api [Content-Type: text/plain]"
                           "[Content-Length: 11] {length content-length=11 keep-alive}",
                           "body hello world", "complete"});
  CHECK(r.consumed == in.size());
  REQUIRE(r.infos.size() == 1);
  CHECK(r.infos[0].has_body());
}

TEST_CASE("request: Content-Length: 0 has no body") {
  auto r = decode_requests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  CHECK(r.events == Events{"head POST / HTTP/1.1 authority=a [Content-Length: 0] "
                           "{length content-length=0 keep-alive}",
                           "complete"});
  CHECK_FALSE(r.infos.at(0).has_body());
}

TEST_CASE("request: chunked body with extensions and trailers") {
  std::string in =
      "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n"
      "6;flag\r\n world\r\n"
      "3;q=\"quoted; value\"\r\n!!!\r\n"
      "A\r\n0123456789\r\n"
      "0\r\nX-Checksum:  abc \r\nX-Count: 4\r\n\r\n";
  auto r = decode_requests(in);
  CHECK(r.events == Events{"head POST /upload HTTP/1.1 authority=a [Transfer-Encoding: chunked] "
                           "{chunked keep-alive}",
                           "body hello world!!!0123456789",
                           "trailers [X-Checksum: abc][X-Count: 4]", "complete"});
  CHECK(r.consumed == in.size());
  REQUIRE(r.trailers.size() == 1);
  CHECK(*r.trailers[0].get("x-checksum") == "abc");
}

TEST_CASE("request: chunked body without trailers reports none") {
  auto r = decode_requests(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
  CHECK(r.events == Events{"head POST / HTTP/1.1 authority=a [Transfer-Encoding: Chunked] "
                           "{chunked keep-alive}",
                           "body hi", "complete"});
}

TEST_CASE("request: framing fields in trailers are plain trailer fields") {
  auto r = decode_requests(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
      "Content-Length: 5\r\nHost: b\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(r.events == Events{"head POST / HTTP/1.1 authority=a [Transfer-Encoding: chunked] "
                           "{chunked keep-alive}",
                           "body x", "trailers [Content-Length: 5][Host: b]", "complete",
                           "head GET /next HTTP/1.1 authority=a  {none keep-alive}", "complete"});
}

TEST_CASE("request: keep-alive carries on, Connection: close stops after the message") {
  SUBCASE("keep-alive") {
    auto r = decode_requests(
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive"
        "\r\n\r\n");
    CHECK(r.events == Events{"head GET /1 HTTP/1.1 authority=a  {none keep-alive}", "complete",
                             "head GET /2 HTTP/1.1 authority=a [Connection: keep-alive] "
                             "{none keep-alive}",
                             "complete"});
    CHECK(r.state == DecoderState::active);
  }
  SUBCASE("close") {
    std::string first = "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    auto r = decode_requests(first + "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(r.events ==
          Events{"head GET /1 HTTP/1.1 authority=a [Connection: close] {none}", "complete"});
    CHECK(r.state == DecoderState::closed);
    CHECK(r.consumed == first.size());
    CHECK(r.rest == "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  SUBCASE("close among other tokens") {
    auto r = decode_requests("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n");
    CHECK(r.infos.at(0).keep_alive == false);
    CHECK(r.state == DecoderState::closed);
  }
}

TEST_CASE("request: HTTP/1.0 defaults") {
  SUBCASE("no Host needed, closes by default") {
    auto r = decode_requests("GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    CHECK(r.events ==
          Events{"head GET /old HTTP/1.0 authority= [User-Agent: x] {none}", "complete"});
    CHECK(r.state == DecoderState::closed);
  }
  SUBCASE("Connection: keep-alive keeps it open") {
    auto r = decode_requests(
        "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
    CHECK(r.events == Events{"head GET / HTTP/1.0 authority=a [Connection: keep-alive] "
                             "{none keep-alive}",
                             "complete", "head GET /b HTTP/1.0 authority=  {none}", "complete"});
  }
  SUBCASE("Expect: 100-continue is ignored for HTTP/1.0 (RFC 9110 §10.1.1)") {
    auto r = decode_requests(
        "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
    CHECK(r.infos.at(0).expect_continue == false);
  }
}

TEST_CASE("request: pipelined requests in one buffer") {
  std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string second = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz";
  std::string third = "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string in = first + second + third;
  Events all{"head GET /a HTTP/1.1 authority=h  {none keep-alive}",
             "complete",
             "head POST /b HTTP/1.1 authority=h [Content-Length: 3] "
             "{length content-length=3 keep-alive}",
             "body xyz",
             "complete",
             "head GET /c HTTP/1.1 authority=h  {none keep-alive}",
             "complete"};

  SUBCASE("without pausing all are decoded in one go") {
    auto r = decode_requests(in);
    CHECK(r.events == all);
    CHECK(r.consumed == in.size());
  }
  SUBCASE("pause_after_message stops after each one and leaves the rest to the caller") {
    RunOptions options;
    options.decoder.pause_after_message = true;
    auto r = decode_requests(in, options);
    CHECK(r.events == Events{all[0], all[1]});
    CHECK(r.state == DecoderState::paused);
    CHECK(r.consumed == first.size());
    CHECK(r.rest == second + third);
  }
  SUBCASE("resuming serves them one at a time") {
    RunOptions options;
    options.decoder.pause_after_message = true;
    options.resume_when_paused = true;
    auto r = decode_requests(in, options);
    std::string after_first = "paused@" + std::to_string(first.size());
    std::string after_second = "paused@" + std::to_string(first.size() + second.size());
    std::string after_third = "paused@" + std::to_string(in.size());
    CHECK(r.events == Events{all[0], all[1], after_first, all[2], all[3], all[4], after_second,
                             all[5], all[6], after_third});
  }
}

TEST_CASE("request: a handler can pause from on_head and resume for the body") {
  std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
  for (Feeding feeding : {Feeding::whole, Feeding::byte_by_byte}) {
    CAPTURE(std::string(feeding_name(feeding)));
    RequestRecorder rec;
    RequestDecoder decoder(rec);
    rec.pause_on_head = &decoder;
    RunOptions options;
    size_t consumed = feed_input(decoder, head + "data", feeding, options, rec);
    CHECK(consumed == head.size());
    CHECK(decoder.state() == DecoderState::paused);
    CHECK(rec.events.size() == 1);
    rec.pause_on_head = nullptr;
    decoder.resume();
    CHECK(feed_input(decoder, "data", feeding, options, rec) == 4);
    CHECK(rec.events.back() == "complete");
    CHECK(rec.events.at(1) == "body data");
  }
}

TEST_CASE("request: after a pause in on_head, feed() with no bytes completes the message") {
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestRecorder rec;
  RequestDecoder decoder(rec);
  rec.pause_on_head = &decoder;
  CHECK(decoder.feed(in) == in.size());
  CHECK(rec.events.size() == 1);
  CHECK(decoder.state() == DecoderState::paused);
  rec.pause_on_head = nullptr;
  decoder.resume();
  CHECK(decoder.feed(nullptr, 0) == 0);
  CHECK(rec.events.back() == "complete");
  CHECK(decoder.state() == DecoderState::active);
}

TEST_CASE("request: finish() while paused in on_head still completes the message") {
  RequestRecorder rec;
  RequestDecoder decoder(rec);
  rec.pause_on_head = &decoder;
  decoder.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  decoder.finish();
  CHECK(rec.events.back() == "complete");
  CHECK(decoder.state() == DecoderState::closed);
}

TEST_CASE("request: a handler pausing in on_body stops right after that slice") {
  struct Pauser : RequestRecorder {
    RequestDecoder* decoder = nullptr;
    void on_body(const char* data, size_t len) override {
      RequestRecorder::on_body(data, len);
      decoder->pause();
    }
  };
  std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n";
  Pauser rec;
  RequestDecoder decoder(rec);
  rec.decoder = &decoder;
  std::string in = head + "abcdef";
  size_t pos = decoder.feed(in.data(), head.size() + 2);
  CHECK(pos == head.size() + 2);
  CHECK(decoder.state() == DecoderState::paused);
  decoder.resume();
  pos += decoder.feed(in.data() + pos, in.size() - pos);
  CHECK(pos == in.size());
  decoder.resume();
  CHECK(decoder.feed(nullptr, 0) == 0);
  CHECK(rec.events == Events{"head POST / HTTP/1.1 authority=a [Content-Length: 6] "
                             "{length content-length=6 keep-alive}",
                             "body abcdef", "complete"});
}

TEST_CASE("request: pause() between feeds consumes nothing until resume()") {
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestRecorder rec;
  RequestDecoder decoder(rec);
  decoder.pause();
  CHECK(decoder.feed(in) == 0);
  CHECK(rec.events.empty());
  decoder.resume();
  CHECK(decoder.feed(in) == in.size());
  CHECK(rec.events.size() == 2);
}

TEST_CASE("request: Expect: 100-continue") {
  std::string in =
      "PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc";
  auto r = decode_requests(in);
  CHECK(r.events == Events{"head PUT /big HTTP/1.1 authority=a [Expect: 100-Continue]"
                           "[Content-Length: 3] {length content-length=3 keep-alive "
                           "expect-continue}",
                           "body abc", "complete"});
}

TEST_CASE("request: Upgrade: websocket stops after the head and hands back the rest") {
  std::string head =
      "GET /chat HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  std::string frames("\x81\x05hello\x00\x01\r\n", 11);
  auto r = decode_requests(head + frames);
  CHECK(r.events == Events{"head GET /chat HTTP/1.1 authority=ws [Upgrade: websocket]"
                           "[Connection: Upgrade][Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==]"
                           "[Sec-WebSocket-Version: 13] {none keep-alive upgrade}",
                           "complete"});
  CHECK(r.state == DecoderState::upgraded);
  CHECK(r.consumed == head.size());
  CHECK(r.rest == frames);
}

TEST_CASE("request: a refused upgrade resumes HTTP on the same connection") {
  std::string upgrade = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
  std::string next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  for (Feeding feeding : {Feeding::whole, Feeding::byte_by_byte}) {
    CAPTURE(std::string(feeding_name(feeding)));
    RequestRecorder rec;
    RequestDecoder decoder(rec);
    RunOptions options;
    CHECK(feed_input(decoder, upgrade + next, feeding, options, rec) == upgrade.size());
    CHECK(decoder.state() == DecoderState::upgraded);
    decoder.resume();
    CHECK(feed_input(decoder, next, feeding, options, rec) == next.size());
    CHECK(rec.events == Events{"head GET / HTTP/1.1 authority=a [Upgrade: h2c]"
                               "[Connection: Upgrade] {none keep-alive upgrade}",
                               "complete", "head GET /next HTTP/1.1 authority=a  {none keep-alive}",
                               "complete"});
  }
}

TEST_CASE("request: an Upgrade request with a body stops after the body") {
  std::string in =
      "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n"
      "\r\nokPRI";
  auto r = decode_requests(in);
  CHECK(r.events.at(1) == "body ok");
  CHECK(r.state == DecoderState::upgraded);
  CHECK(r.rest == "PRI");
}

TEST_CASE("request: CONNECT takes the authority from the target and hands back the rest") {
  std::string head = "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n";
  auto r = decode_requests(head + "\x16\x03\x01");
  CHECK(r.events ==
        Events{"head CONNECT  HTTP/1.1 authority=db.internal:5432  {none keep-alive upgrade}",
               "complete"});
  CHECK(r.state == DecoderState::upgraded);
  CHECK(r.consumed == head.size());
  CHECK(r.rest == "\x16\x03\x01");
}

TEST_CASE("request: absolute-form targets are split into scheme, authority and path") {
  SUBCASE("http with port and query; Host is overridden (RFC 9112 §3.2.2)") {
    auto r = decode_requests("GET http://Example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n");
    CHECK(r.events ==
          Events{"head GET /a/b?c=d HTTP/1.1 authority=Example.com:8080  {none keep-alive}",
                 "complete"});
  }
  SUBCASE("https without a path") {
    auto r = decode_requests("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK(r.events.at(0) ==
          "head GET / HTTP/1.1 authority=example.com scheme=https  {none keep-alive}");
  }
  SUBCASE("query without a path") {
    auto r = decode_requests("GET http://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK(r.heads.at(0).target == "/?x");
  }
}

TEST_CASE("request: OPTIONS * and IPv6 Host") {
  auto r = decode_requests("OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
  CHECK(r.events == Events{"head OPTIONS * HTTP/1.1 authority=[::1]:8080  {none keep-alive}",
                           "complete"});
}

TEST_CASE("request: an empty Host is allowed") {
  auto r = decode_requests("GET / HTTP/1.1\r\nHost:\r\n\r\n");
  CHECK(r.events == Events{"head GET / HTTP/1.1 authority=  {none keep-alive}", "complete"});
}

TEST_CASE("request: body limit") {
  RunOptions options;
  options.decoder.limits.max_body_bytes = 4;
  SUBCASE("a larger Content-Length is refused before the body") {
    auto r = decode_requests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                             options);
    CHECK(r.events == Events{"error 413 body exceeds 4 bytes"});
    CHECK(r.state == DecoderState::failed);
  }
  SUBCASE("a chunked body is refused once it grows past it") {
    auto r = decode_requests(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        options);
    CHECK(r.events == Events{"head POST / HTTP/1.1 authority=a [Transfer-Encoding: chunked] "
                             "{chunked keep-alive}",
                             "body abcd", "error 413 body exceeds 4 bytes"});
  }
  SUBCASE("exactly the limit passes") {
    auto r = decode_requests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
                             options);
    CHECK(r.events.back() == "complete");
  }
}

TEST_CASE("request: limits that are exactly met pass") {
  RunOptions options;
  options.decoder.limits.max_header_count = 2;
  options.decoder.limits.max_header_bytes = 4 + 1 + 5 + 5;  // "Host" "a" "X-One" "value"
  options.decoder.limits.max_target_bytes = 4;
  auto r = decode_requests("GET /abc HTTP/1.1\r\nHost: a\r\nX-One: value\r\n\r\n", options);
  CHECK(r.events.back() == "complete");
}

TEST_CASE("request: finish() on EOF") {
  RunOptions at_eof;
  at_eof.finish = true;
  SUBCASE("between messages closes quietly") {
    auto r = decode_requests("GET / HTTP/1.1\r\nHost: a\r\n\r\n", at_eof);
    CHECK(r.events.back() == "complete");
    CHECK(r.state == DecoderState::closed);
  }
  SUBCASE("in a head fails") {
    auto r = decode_requests("GET / HTTP/1.1\r\nHost: a\r\n", at_eof);
    CHECK(r.events == Events{"error 400 connection closed before the request was complete"});
  }
  SUBCASE("in a body fails") {
    auto r = decode_requests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", at_eof);
    CHECK(r.events.back() == "error 400 connection closed before the request was complete");
  }
}

TEST_CASE("request: decoder state after an error is final") {
  RequestRecorder rec;
  RequestDecoder decoder(rec);
  decoder.feed("BREW / HTTP/1.1\r\n");
  CHECK(decoder.state() == DecoderState::failed);
  CHECK(decoder.error().code == 400);
  CHECK(decoder.error().message == "invalid method");
  CHECK(decoder.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  decoder.finish();
  CHECK(rec.events == Events{"error 400 invalid method"});
}

TEST_CASE("request: many messages on one decoder") {
  std::string in;
  for (int i = 0; i < 50; ++i) {
    in += "POST /m" + std::to_string(i) + " HTTP/1.1\r\nHost: a\r\nX-I: " + std::to_string(i) +
          "\r\nContent-Length: 2\r\n\r\nok";
  }
  auto r = decode_requests(in);
  REQUIRE(r.heads.size() == 50);
  CHECK(r.heads[49].target == "/m49");
  CHECK(*r.heads[49].headers.get("x-i") == "49");
  CHECK(r.events.size() == 150);
  CHECK(r.consumed == in.size());
}

// ---------------------------------------------------------------- responses

TEST_CASE("response: Content-Length body") {
  std::string in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  auto r = decode_responses(in, {"GET"});
  CHECK(r.events == Events{"head HTTP/1.1 200 OK [Content-Type: text/plain][Content-Length: 5] "
                           "{length content-length=5 keep-alive}",
                           "body hello", "complete"});
  CHECK(r.consumed == in.size());
  CHECK(r.state == DecoderState::active);
}

TEST_CASE("response: reason phrases are kept as sent, and may be empty") {
  auto r = decode_responses(
      "HTTP/1.1 404 Nope Not Here\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 \r\n"
      "Content-Length: 0\r\n\r\nHTTP/1.1 204\r\n\r\n",
      {"GET", "GET", "GET"});
  REQUIRE(r.heads.size() == 3);
  CHECK(r.heads[0].reason == "Nope Not Here");
  CHECK(r.heads[1].reason == "");
  CHECK(r.heads[2].reason == "");
}

TEST_CASE("response: to HEAD has no body, whatever its Content-Length says") {
  std::string in =
      "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  auto r = decode_responses(in, {"HEAD", "HEAD", "GET"});
  CHECK(r.events == Events{"head HTTP/1.1 200 OK [Content-Length: 1234] "
                           "{none content-length=1234 keep-alive}",
                           "complete",
                           "head HTTP/1.1 200 OK [Transfer-Encoding: chunked] {none keep-alive}",
                           "complete",
                           "head HTTP/1.1 200 OK [Content-Length: 2] "
                           "{length content-length=2 keep-alive}",
                           "body hi", "complete"});
  CHECK(r.consumed == in.size());
}

TEST_CASE("response: 204 and 304 have no body") {
  std::string in =
      "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!";
  auto r = decode_responses(in, {"GET", "GET", "GET"});
  CHECK(r.events ==
        Events{"head HTTP/1.1 204 No Content [Content-Length: 7] {none keep-alive}", "complete",
               "head HTTP/1.1 304 Not Modified [ETag: \"x\"][Content-Length: 99] "
               "{none content-length=99 keep-alive}",
               "complete",
               "head HTTP/1.1 200 OK [Content-Length: 1] {length content-length=1 keep-alive}",
               "body !", "complete"});
  CHECK(r.state == DecoderState::active);
}

TEST_CASE("response: 100 Continue and 103 Early Hints are interim, then the final response") {
  std::string in =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  auto r = decode_responses(in, {"POST"});
  CHECK(r.events == Events{"interim HTTP/1.1 100 Continue ",
                           "interim HTTP/1.1 103 Early Hints [Link: </style.css>; rel=preload]",
                           "head HTTP/1.1 201 Created [Content-Length: 2] "
                           "{length content-length=2 keep-alive}",
                           "body ok", "complete"});
  CHECK(r.consumed == in.size());
}

TEST_CASE("response: a body delimited by EOF completes on finish()") {
  std::string in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this\r\n\r\nis body";
  RunOptions options;
  options.finish = true;
  auto r = decode_responses(in, {"GET"}, options);
  CHECK(r.events == Events{"head HTTP/1.1 200 OK [Content-Type: text/plain] {until-close}",
                           "body all of this\r\n\r\nis body", "complete"});
  CHECK(r.state == DecoderState::closed);
  CHECK(r.consumed == in.size());
}

TEST_CASE("response: finish() cuts a response short") {
  RunOptions options;
  options.finish = true;
  SUBCASE("mid body") {
    auto r = decode_responses("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", {"GET"},
                              options);
    CHECK(r.events.back() == "error 502 connection closed before the response was complete");
  }
  SUBCASE("mid chunked body") {
    auto r = decode_responses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                              {"GET"}, options);
    CHECK(r.events.back() == "error 502 connection closed before the response was complete");
  }
  SUBCASE("mid head") {
    auto r = decode_responses("HTTP/1.1 200 OK\r\nContent-Len", {"GET"}, options);
    CHECK(r.events == Events{"error 502 connection closed before the response was complete"});
  }
  SUBCASE("after an interim response") {
    auto r = decode_responses("HTTP/1.1 100 Continue\r\n\r\n", {"GET"}, options);
    CHECK(r.events == Events{"interim HTTP/1.1 100 Continue ",
                             "error 502 connection closed before the response arrived"});
  }
  SUBCASE("before any byte of an outstanding response") {
    auto r = decode_responses("", {"GET"}, options);
    CHECK(r.events == Events{"error 502 connection closed before the response arrived"});
  }
  SUBCASE("with nothing outstanding it just closes") {
    auto r = decode_responses("", {}, options);
    CHECK(r.events.empty());
    CHECK(r.state == DecoderState::closed);
  }
}

TEST_CASE("response: chunked with trailers") {
  std::string in =
      "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\n" + std::string(4, '\0') + "\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n";
  auto r = decode_responses(in, {"POST"});
  CHECK(r.events == Events{"head HTTP/1.1 200 OK [Content-Type: application/grpc]"
                           "[Transfer-Encoding: chunked] {chunked keep-alive}",
                           std::string("body \0\0\0\0", 9),
                           "trailers [grpc-status: 0][grpc-message: ]", "complete"});
}

TEST_CASE("response: Connection: close and HTTP/1.0 end the connection") {
  auto r = decode_responses(
      "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n", {"GET", "GET"});
  CHECK(r.events == Events{"head HTTP/1.0 200 OK [Content-Length: 2] {length content-length=2}",
                           "body ok", "complete"});
  CHECK(r.state == DecoderState::closed);
  CHECK(r.rest == "HTTP/1.1 200 OK\r\n\r\n");
}

TEST_CASE("response: 101 Switching Protocols hands back the rest") {
  std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  auto r = decode_responses(head + "\x81\x02hi", {"GET"});
  CHECK(r.events == Events{"head HTTP/1.1 101 Switching Protocols [Upgrade: websocket]"
                           "[Connection: Upgrade] {none keep-alive upgrade}",
                           "complete"});
  CHECK(r.state == DecoderState::upgraded);
  CHECK(r.rest == "\x81\x02hi");
}

TEST_CASE("response: to CONNECT") {
  SUBCASE("2xx opens the tunnel") {
    std::string head = "HTTP/1.1 200 Connection Established\r\n\r\n";
    auto r = decode_responses(head + "tunnel bytes", {"CONNECT"});
    CHECK(r.events == Events{"head HTTP/1.1 200 Connection Established  {none keep-alive upgrade}",
                             "complete"});
    CHECK(r.state == DecoderState::upgraded);
    CHECK(r.rest == "tunnel bytes");
  }
  SUBCASE("anything else is an ordinary response") {
    auto r = decode_responses("HTTP/1.1 407 Proxy Authentication Required\r\n"
                              "Content-Length: 4\r\n\r\ndeny",
                              {"CONNECT"});
    CHECK(r.events.at(1) == "body deny");
    CHECK(r.state == DecoderState::active);
  }
}

TEST_CASE("response: pipelined responses with pausing, and outstanding() tracking") {
  std::string a = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
  std::string b = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb";
  RunOptions options;
  options.decoder.pause_after_message = true;
  auto r = decode_responses(a + b, {"GET", "GET"}, options);
  CHECK(r.consumed == a.size());
  CHECK(r.state == DecoderState::paused);

  ResponseRecorder rec;
  ResponseDecoder decoder(rec);
  decoder.expect_response("GET");
  decoder.expect_response("GET");
  CHECK(decoder.outstanding() == 2);
  CHECK(decoder.feed(a + b) == a.size() + b.size());
  CHECK(decoder.outstanding() == 0);
}

TEST_CASE("response: bytes with no request outstanding are refused") {
  auto r = decode_responses("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                            {"GET"});
  CHECK(r.events.back() == "error 502 unexpected response: no request outstanding");
  CHECK(r.state == DecoderState::failed);
}
