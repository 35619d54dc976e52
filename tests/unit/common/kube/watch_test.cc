#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/kube/errors.h"
#include "common/kube/watch.h"

namespace kube = trellis::kube;

namespace {

const std::string kStream =
    R"({"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"10"}}})"
    "\n"
    R"({"type":"MODIFIED","object":{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"11"},"data":{"k":"línea"}}})"
    "\n"
    R"({"type":"BOOKMARK","object":{"kind":"ConfigMap","metadata":{"resourceVersion":"15"}}})"
    "\n"
    R"({"type":"DELETED","object":{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"16"}}})"
    "\n"
    R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (16)","reason":"Expired","code":410}})j"
    "\n";

// "TYPE rv" per event, "error: ..." per bad line.
std::vector<std::string> describe_all(kube::WatchDecoder& decoder,
                                      const std::vector<std::string>& chunks) {
  std::vector<std::string> out;
  for (const auto& chunk : chunks) {
    bool more = decoder.feed(chunk, [&](trellis::Result<kube::WatchEvent> e) {
      if (!e.ok()) {
        out.push_back("error: " + e.error().message);
        return true;
      }
      std::string line(kube::watch_event_type_name(e->type));
      if (e->type == kube::WatchEventType::error) {
        line += " " + kube::status_error(e->object()).message;
      } else {
        auto meta = e->object().object()->find("metadata");
        auto rv = meta ? meta->object()->find("resourceVersion") : std::nullopt;
        line += " " + (rv ? std::string(*rv->string()) : std::string());
      }
      out.push_back(line);
      return true;
    });
    REQUIRE(more);
  }
  return out;
}

const std::vector<std::string> kExpected = {
    "ADDED 10", "MODIFIED 11", "BOOKMARK 15", "DELETED 16",
    "ERROR Expired (410): too old resource version: 1 (16)"};

}  // namespace

TEST_CASE("a whole stream in one chunk") {
  kube::WatchDecoder decoder;
  CHECK(describe_all(decoder, {kStream}) == kExpected);
  CHECK(decoder.pending_bytes() == 0);
}

TEST_CASE("every split of the stream into two chunks gives the same events") {
  for (size_t cut = 0; cut <= kStream.size(); ++cut) {
    CAPTURE(cut);
    kube::WatchDecoder decoder;
    CHECK(describe_all(decoder, {kStream.substr(0, cut), kStream.substr(cut)}) == kExpected);
  }
}

TEST_CASE("one byte at a time, and in chunks of 7") {
  std::vector<std::string> bytes, sevens;
  for (char c : kStream) bytes.emplace_back(1, c);
  for (size_t i = 0; i < kStream.size(); i += 7) sevens.push_back(kStream.substr(i, 7));
  kube::WatchDecoder a, b;
  CHECK(describe_all(a, bytes) == kExpected);
  CHECK(describe_all(b, sevens) == kExpected);
}

TEST_CASE("an incomplete line waits for its newline") {
  kube::WatchDecoder decoder;
  std::string first = kStream.substr(0, kStream.find('\n'));
  CHECK(describe_all(decoder, {first}).empty());
  CHECK(decoder.pending_bytes() == first.size());
  CHECK(describe_all(decoder, {"\n"}) == std::vector<std::string>{"ADDED 10"});
}

TEST_CASE("blank lines and CRLF are tolerated") {
  kube::WatchDecoder decoder;
  CHECK(describe_all(decoder, {"\n\r\n  \n" +
                               std::string(R"({"type":"ADDED","object":{"metadata":{"resourceVersion":"1"}}})") +
                               "\r\n"}) == std::vector<std::string>{"ADDED 1"});
}

TEST_CASE("malformed lines are reported and skipped; the stream goes on") {
  kube::WatchDecoder decoder;
  auto out = describe_all(
      decoder,
      {"not json\n",
       R"({"object":{}})" "\n",
       R"({"type":"EXPLODED","object":{}})" "\n",
       R"({"type":"ADDED","object":[1]})" "\n",
       R"({"type":"ADDED"})" "\n",
       R"({"type":"ADDED","object":{"metadata":{"resourceVersion":"2"}}})" "\n"});
  CHECK(out == std::vector<std::string>{
                   "error: watch event: invalid JSON at offset 1: Invalid value.",
                   "error: watch event: (root): missing required field 'type'",
                   "error: watch event: type: unknown event type 'EXPLODED'",
                   "error: watch event: object: expected an object, got array",
                   "error: watch event: (root): missing required field 'object'",
                   "ADDED 2"});
}

TEST_CASE("an over-long line is skipped up to its newline") {
  kube::WatchDecoder decoder(kube::WatchLimits{64, 16});
  std::string huge(100, 'x');
  auto out = describe_all(decoder, {huge.substr(0, 50), huge.substr(50) + "\n" +
                                        R"({"type":"ADDED","object":{}})" + "\n"});
  CHECK(out == std::vector<std::string>{"error: watch event exceeds 64 bytes", "ADDED "});
}

TEST_CASE("the sink can stop delivery") {
  kube::WatchDecoder decoder;
  int seen = 0;
  bool finished = decoder.feed(kStream, [&](trellis::Result<kube::WatchEvent>) {
    ++seen;
    return seen < 2;
  });
  CHECK_FALSE(finished);
  CHECK(seen == 2);
}
