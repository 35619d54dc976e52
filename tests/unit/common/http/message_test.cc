#include "common/http/message.h"

#include <doctest/doctest.h>

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

TEST_CASE("reason phrases") {
  CHECK(trellis::http::reason_phrase(404) == "Not Found");
  CHECK(trellis::http::reason_phrase(431) == "Request Header Fields Too Large");
  CHECK(trellis::http::reason_phrase(799) == "Unknown");
}
