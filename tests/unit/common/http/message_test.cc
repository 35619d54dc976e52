#include "common/http/message.h"

#include <doctest/doctest.h>

#include <iterator>
#include <string>

#include "tests/support/allocation/allocation_counter.h"

using trellis::http::HeaderMap;
using trellis::http::RequestHead;

TEST_CASE("header lookups are case-insensitive and keep the original case") {
  HeaderMap h;
  h.add("X-Header-Add", "a");
  h.add("content-type", "text/plain");
  h.add("x-header-add", "b");
  REQUIRE(h.get("x-HEADER-add") != nullptr);
  CHECK(*h.get("x-HEADER-add") == "a");
  CHECK(h.count("X-HEADER-ADD") == 2);
  CHECK(h.joined("x-header-add") == "a,b");
  CHECK(h.joined("missing").empty());
  CHECK(h.get("missing") == nullptr);
  CHECK(h[0].name == "X-Header-Add");
  CHECK(h.byte_size() == 12 + 1 + 12 + 10 + 12 + 1);
}

TEST_CASE("set replaces every entry with one, in the first one's place") {
  HeaderMap h;
  h.add("a", "1");
  h.add("X-Set", "old1");
  h.add("b", "2");
  h.add("x-set", "old2");
  h.set("X-SET", "new");
  REQUIRE(h.size() == 3);
  CHECK(h[0].name == "a");
  CHECK(h[1].name == "X-Set");
  CHECK(h[1].value == "new");
  CHECK(h[2].name == "b");
  h.set("fresh", "v");
  CHECK(h.size() == 4);
  CHECK(*h.get("FRESH") == "v");
}

TEST_CASE("remove deletes every entry and reports how many") {
  HeaderMap h;
  h.add("X-Remove", "1");
  h.add("keep", "k");
  h.add("x-remove", "2");
  CHECK(h.remove("x-REMOVE") == 2);
  CHECK(h.size() == 1);
  CHECK(h.remove("absent") == 0);
}

TEST_CASE("iequals compares ASCII case-insensitively and only equal lengths") {
  CHECK(trellis::http::iequals("Content-Length", "content-length"));
  CHECK_FALSE(trellis::http::iequals("content-length", "content-lengt"));
  CHECK_FALSE(trellis::http::iequals("a\xc3\xa9", "A\xc3\x89"));  // non-ASCII is compared exactly
  CHECK(trellis::http::iequals("", ""));
}

TEST_CASE("iequals folds only ASCII letters, at every length and position") {
  using trellis::http::iequals;
  // Lengths around the 4- and 8-byte steps of the word-wise compare.
  for (size_t n = 0; n <= 20; ++n) {
    std::string lower_case;
    for (size_t i = 0; i < n; ++i) lower_case.push_back(static_cast<char>('a' + i % 26));
    for (size_t i = 0; i < n; ++i) {
      std::string upper_case = lower_case;
      upper_case[i] = static_cast<char>(upper_case[i] - 'a' + 'A');
      CHECK(iequals(lower_case, upper_case));
      std::string other = lower_case;
      other[i] = '-';
      CHECK_FALSE(iequals(lower_case, other));
    }
  }
  // Every byte pair: equal exactly when equal after folding A-Z alone.
  auto fold = [](int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  for (int x = 0; x < 256; ++x) {
    for (int y = 0; y < 256; ++y) {
      std::string a = "xxxxxxxxx";
      std::string b = a;
      a[4] = static_cast<char>(x);
      b[4] = static_cast<char>(y);
      bool expected = fold(x) == fold(y);
      if (iequals(a, b) != expected || iequals(a.substr(2, 3), b.substr(2, 3)) != expected) {
        FAIL("bytes " << x << " and " << y);
      }
    }
  }
}

TEST_CASE("clear() resets a head to its defaults") {
  RequestHead r;
  r.method = "POST";
  r.target = "/a";
  r.authority = "a.example";
  r.scheme = "https";
  r.version = trellis::http::Version::http10;
  r.headers.add("X", "1");
  r.clear();
  CHECK(r.method.empty());
  CHECK(r.target.empty());
  CHECK(r.authority.empty());
  CHECK(r.scheme == "http");
  CHECK(r.version == trellis::http::Version::http11);
  CHECK(r.headers.empty());

  trellis::http::ResponseHead s;
  s.status = 404;
  s.reason = "Gone Fishing";
  s.version = trellis::http::Version::http10;
  s.headers.add("X", "1");
  s.clear();
  CHECK(s.status == 200);
  CHECK(s.reason.empty());
  CHECK(s.version == trellis::http::Version::http11);
  CHECK(s.headers.empty());
}

TEST_CASE("request target splits into path and query") {
  RequestHead r;
  r.target = "/path1?animal=whale&x=1";
  CHECK(r.path() == "/path1");
  CHECK(r.query() == "animal=whale&x=1");
  r.target = "/plain";
  CHECK(r.path() == "/plain");
  CHECK(r.query().empty());
  r.target = "/?";
  CHECK(r.path() == "/");
  CHECK(r.query().empty());
  r.target = "";
  CHECK(r.path().empty());
}

TEST_CASE("hop-by-hop fields are stripped, including those Connection names") {
  HeaderMap h;
  h.add("Connection", "keep-alive, X-Private , te");
  h.add("Keep-Alive", "timeout=5");
  h.add("X-Private", "secret");
  h.add("Transfer-Encoding", "chunked");
  h.add("Upgrade", "websocket");
  h.add("Proxy-Connection", "close");
  h.add("TE", "trailers");
  h.add("X-Keep", "yes");
  trellis::http::strip_hop_by_hop(h);
  CHECK(h.size() == 2);
  CHECK(*h.get("x-keep") == "yes");
  CHECK(*h.get("te") == "trailers");

  HeaderMap g;
  g.add("TE", "gzip, trailers");
  g.add("Connection", ",,, ,");  // malformed list: tolerated
  trellis::http::strip_hop_by_hop(g);
  CHECK(g.empty());
}

TEST_CASE("hop-by-hop stripping keeps the order, reads every Connection field, allocates nothing") {
  HeaderMap h;
  h.add("X-Named-Early", "1");  // named by a Connection field further down
  h.add("Content-Type", "text/plain");
  h.add("connection", "keep-alive");
  h.add("Keep-Alive", "timeout=5");
  h.add("Date", "Thu, 27 Nov 2026 10:00:00 GMT");
  h.add("CONNECTION", "x-named-early, X-Named-Late");
  h.add("x-named-late", "2");
  h.add("Server", "nginx/1.22.1");
  trellis::testing::start_counting_allocations();
  trellis::http::strip_hop_by_hop(h);
  CHECK(trellis::testing::stop_counting_allocations() == 0);
  REQUIRE(h.size() == 3);
  CHECK(h[0].name == "Content-Type");
  CHECK(h[1].name == "Date");
  CHECK(h[1].value == "Thu, 27 Nov 2026 10:00:00 GMT");
  CHECK(h[2].name == "Server");

  // TE: the first one decides; "trailers" survives as one field at the end.
  HeaderMap t;
  t.add("TE", " trailers ");
  t.add("X-A", "a");
  t.add("te", "gzip");
  trellis::testing::start_counting_allocations();
  trellis::http::strip_hop_by_hop(t);
  CHECK(trellis::testing::stop_counting_allocations() == 0);
  REQUIRE(t.size() == 2);
  CHECK(t[0].name == "X-A");
  CHECK(t[1].name == "te");
  CHECK(t[1].value == "trailers");

  HeaderMap none;
  none.add("Accept", "*/*");
  trellis::http::strip_hop_by_hop(none);
  CHECK(none.size() == 1);
}

TEST_CASE("hop-by-hop stripping copes with malformed Connection lists") {
  HeaderMap h;
  h.add("Connection", ",, ,x-a ,,  ");  // empty tokens and stray blanks around a name
  h.add("Connection", "");
  h.add("Connection", "te, connection");  // names TE (kept as "trailers") and itself
  h.add("X-A", "1");
  h.add("TE", "trailers");
  h.add("X-B", "2");
  trellis::testing::start_counting_allocations();
  trellis::http::strip_hop_by_hop(h);
  CHECK(trellis::testing::stop_counting_allocations() == 0);
  REQUIRE(h.size() == 2);
  CHECK(h[0].name == "X-B");
  CHECK(h[1].name == "te");
  CHECK(h[1].value == "trailers");
}

TEST_CASE("hop-by-hop classification: every name in any case, look-alikes kept") {
  for (const char* name : {"connection", "CONNECTION", "Connection", "keep-alive", "Keep-ALIVE",
                           "proxy-connection", "Proxy-Connection", "transfer-encoding",
                           "TRANSFER-ENCODING", "upgrade", "UpGrade", "te", "Te", "tE"}) {
    HeaderMap h;
    h.add(name, "x");
    trellis::http::strip_hop_by_hop(h);
    CHECK_MESSAGE(h.empty(), name);
  }
  // Same length or prefix as a hop-by-hop name, or one letter off.
  const char* kept[] = {"ts",         "tf",         "upgrader",         "upgradd",
                        "connectioN2", "connectiom", "keep-alivf",       "keep_alive",
                        "x-connection", "proxy-connectiox", "transfer-encodinf",
                        "content-encoding", "content-length", "t",   "proxy-authorization"};
  HeaderMap h;
  for (const char* name : kept) h.add(name, "v");
  trellis::testing::start_counting_allocations();
  trellis::http::strip_hop_by_hop(h);
  CHECK(trellis::testing::stop_counting_allocations() == 0);
  REQUIRE(h.size() == std::size(kept));
  for (size_t i = 0; i < h.size(); ++i) CHECK(h[i].name == kept[i]);
}

TEST_CASE("hop-by-hop: Connection names fields in any case; TE keeps only trailers") {
  HeaderMap h;
  h.add("X-Foo", "1");
  h.add("Connection", "x-FOO,X-Bar");
  h.add("x-bar", "2");
  h.add("X-Barr", "3");  // shares a prefix with a named field
  h.add("TE", "trailers");
  trellis::http::strip_hop_by_hop(h);
  REQUIRE(h.size() == 2);
  CHECK(h[0].name == "X-Barr");
  CHECK(h[1].name == "te");
  CHECK(h[1].value == "trailers");

  HeaderMap g;
  g.add("TE", "trailers, deflate");  // more than trailers: dropped entirely
  g.add("Connection", "te");
  trellis::http::strip_hop_by_hop(g);
  CHECK(g.empty());

  // Stripping twice (the proxy does, once per hop) changes nothing more.
  HeaderMap t;
  t.add("te", "\ttrailers");
  t.add("A", "1");
  trellis::http::strip_hop_by_hop(t);
  trellis::http::strip_hop_by_hop(t);
  REQUIRE(t.size() == 2);
  CHECK(t[0].name == "A");
  CHECK(t[1].name == "te");
  CHECK(t[1].value == "trailers");
}

TEST_CASE("reason phrases") {
  CHECK(trellis::http::reason_phrase(404) == "Not Found");
  CHECK(trellis::http::reason_phrase(431) == "Request Header Fields Too Large");
  CHECK(trellis::http::reason_phrase(799) == "Unknown");
}
