// Counts heap allocations (operator new, replaced by tests/support/allocation,
// plus what nghttp2 takes from the heap through a session's allocator) and
// times each step of the per-request header, routing and HTTP/2 work the
// sidecar does, on realistic requests and a realistic route table. The proxy's design
// promises that header lookups and routing allocate nothing per request; the
// cases marked "target" check that, the others are reported for context (they
// own strings by design) and bench/run copies every "[alloc]" line into its
// report.
//
// Each stage first warms up (RE2 builds its DFA lazily, vectors reach their
// steady capacity), then runs `kRequests` times while counting.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/http/message.h"
#include "common/http1/decoder.h"
#include "common/http1/encoder.h"
#include "common/http2/session.h"
#include "common/routes/route_table.h"
#include "proxy/router/filters.h"
#include "proxy/router/table.h"
#include "tests/support/allocation/allocation_counter.h"

namespace {

namespace http = trellis::http;
namespace http1 = trellis::http1;
namespace http2 = trellis::http2;
namespace router = trellis::proxy::router;
namespace routes = trellis::routes;

constexpr size_t kRequests = 200000;
constexpr size_t kWarmUpRequests = 16;

// Keeps the optimizer from deleting a result nobody reads.
template <typename T>
void keep(const T& value) {
  asm volatile("" : : "r"(&value) : "memory");
}

struct Measurement {
  size_t allocations = 0;
  double ns_per_request = 0;
};

// Runs `request` a few times to warm up (every request shape: stages cycle
// through them by index), then kRequests times with allocations counted.
// `other_heap_allocations` reports a running count of heap allocations made
// outside operator new (nghttp2's); they are added to the stage's figure.
template <typename F, typename G>
Measurement measure(const char* stage, const char* what, F&& request, G&& other_heap_allocations) {
  for (size_t i = 0; i < kWarmUpRequests; ++i) request(i);
  uint64_t other_before = other_heap_allocations();
  trellis::testing::start_counting_allocations();
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kRequests; ++i) request(i);
  auto elapsed = std::chrono::steady_clock::now() - start;
  Measurement m;
  m.allocations = trellis::testing::stop_counting_allocations();
  uint64_t other = other_heap_allocations() - other_before;
  m.allocations += other;
  m.ns_per_request = std::chrono::duration<double, std::nano>(elapsed).count() / kRequests;
  std::string detail = what;
  if (other > 0) {
    char split[96];
    std::snprintf(split, sizeof(split), "; operator new %.3f + nghttp2 heap %.3f",
                  static_cast<double>(m.allocations - other) / kRequests,
                  static_cast<double>(other) / kRequests);
    detail += split;
  }
  // One line per stage; bench/run parses these.
  std::printf("[alloc] %s allocations/request=%.3f ns/request=%.1f requests=%zu what=\"%s\"\n", stage,
              static_cast<double>(m.allocations) / kRequests, m.ns_per_request, kRequests, detail.c_str());
  std::fflush(stdout);
  return m;
}

template <typename F>
Measurement measure(const char* stage, const char* what, F&& request) {
  return measure(stage, what, std::forward<F>(request), [] { return uint64_t{0}; });
}

// What wrk, h2load and browsers send, through the request decoder the
// sidecar's HTTP/1 side uses (so header names keep their wire case).
constexpr std::string_view kWireRequests[] = {
    "GET / HTTP/1.1\r\nHost: 10.96.0.10\r\n\r\n",
    "GET /api/v1/items?id=42&q=a+b HTTP/1.1\r\nHost: shop.bench.svc.cluster.local\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "X-Request-Id: 5f0c6a1e-8d3b-4c1e-9a3f-2b7d9e4c1a60\r\nX-Canary: true\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef\r\nConnection: keep-alive\r\n\r\n",
    "GET /re/2024?tenant=acme HTTP/1.1\r\nHost: shop\r\nuser-agent: h2load nghttp2/1.52.0\r\n"
    "accept: */*\r\nx-version: v2\r\nx-version: v3\r\n\r\n",
    "POST /checkout/cart HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
    "Content-Length: 0\r\nX-Canary: false\r\n\r\n",
};

// Collects the heads the decoder produces.
class HeadCollector final : public http1::RequestHandler {
 public:
  void on_head(http::RequestHead&& head, const http1::MessageInfo&) override { head_ = std::move(head); }
  void on_body(const char*, size_t) override {}
  void on_trailers(http::HeaderMap&&) override {}
  void on_message_complete() override { ++complete_; }
  void on_error(const trellis::Error& error) override { error_ = error.message; }

  http::RequestHead head_;
  size_t complete_ = 0;
  std::string error_;
};

std::vector<http::RequestHead> decoded_requests() {
  std::vector<http::RequestHead> out;
  for (std::string_view wire : kWireRequests) {
    HeadCollector collector;
    http1::RequestDecoder decoder(collector);
    size_t used = decoder.feed(wire);
    REQUIRE_MESSAGE(collector.error_.empty(), collector.error_);
    REQUIRE(used == wire.size());
    REQUIRE(collector.complete_ == 1);
    out.push_back(std::move(collector.head_));
  }
  return out;
}

http::ResponseHead backend_response() {
  http::ResponseHead r;
  r.headers.add("Server", "nginx/1.22.1");
  r.headers.add("Date", "Fri, 27 Nov 2026 08:49:43 GMT");
  r.headers.add("Content-Type", "text/plain");
  r.headers.add("Content-Length", "14");
  r.headers.add("Connection", "keep-alive");
  return r;
}

// A namespace's table as the controller writes it: the bench Service with an
// HTTPRoute whose rules use every kind of match (header, query, regex, method)
// and a weighted split, next to 200 other Services so that the frontend lookup
// is a real hash lookup.
constexpr char kVip[] = "10.96.0.10";

std::string route_table_json() {
  std::string services;
  std::string endpoints;
  for (int i = 0; i < 200; ++i) {
    std::string name = "svc-" + std::to_string(i);
    std::string vip = "10.96." + std::to_string(1 + i / 250) + "." + std::to_string(i % 250);
    services += R"({"namespace":"bench","name":")" + name + R"(","clusterIPs":[")" + vip +
                R"("],"ports":[{"name":"http","port":80,"targetPort":8080}]},)";
    endpoints += R"({"namespace":"bench","service":")" + name +
                 R"(","port":80,"addresses":[{"ip":"10.244.1.)" + std::to_string(i % 250) +
                 R"(","port":8080}]},)";
  }
  return std::string(R"({"version":"alloc-bench","namespace":"bench","services":[)") + services +
         R"({"namespace":"bench","name":"shop","clusterIPs":[")" + kVip +
         R"("],"ports":[{"name":"http","port":80,"targetPort":8080}],
      "routes":[{"kind":"HTTPRoute","namespace":"bench","name":"shop",
        "creationTimestamp":"2026-01-01T00:00:00Z","rules":[
        {"matches":[{"path":{"type":"PathPrefix","value":"/api/v1"},
                     "headers":[{"name":"x-canary","value":"true"}],
                     "queryParams":[{"name":"q","value":"a b"}]}],
         "backendRefs":[{"name":"v2","port":80}]},
        {"matches":[{"path":{"type":"RegularExpression","value":"/re/[0-9]+"},
                     "headers":[{"type":"RegularExpression","name":"x-version","value":"v[0-9],v[0-9]"}]}],
         "backendRefs":[{"name":"v2","port":80}]},
        {"matches":[{"method":"POST","path":{"type":"Exact","value":"/checkout/cart"}}],
         "backendRefs":[{"name":"v1","port":80}]},
        {"backendRefs":[{"name":"v1","port":80,"weight":80},{"name":"v2","port":80,"weight":20}]}]}]}],
    "endpoints":[)" + endpoints + R"(
      {"namespace":"bench","service":"shop","port":80,"addresses":[]},
      {"namespace":"bench","service":"v1","port":80,"addresses":[{"ip":"10.77.0.2","port":8080}]},
      {"namespace":"bench","service":"v2","port":80,"addresses":[{"ip":"10.77.0.2","port":8081}]}]})";
}

std::shared_ptr<const router::Table> compile_table() {
  auto parsed = routes::parse(route_table_json());
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? std::string() : parsed.error().message));
  return router::Table::compile(*parsed);
}

sockaddr_in original_destination() {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(80);
  REQUIRE(inet_pton(AF_INET, kVip, &addr.sin_addr) == 1);
  return addr;
}

uint64_t draw_for(size_t i) { return static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull; }

}  // namespace

TEST_CASE("target: header lookups allocate nothing per request") {
  std::vector<http::RequestHead> requests = decoded_requests();
  http::ResponseHead response = backend_response();
  // The lookups one proxied request makes: the downstream connection reads
  // Connection, the exchange looks for the mesh's original-protocol header,
  // the upstream side reads the response's Content-Length; then what filters
  // and matches read (case-insensitive, hits and misses, repeated fields).
  Measurement m = measure("header-lookups", "HeaderMap get/contains/count/for_each_value, 9 per request",
                          [&](size_t i) {
    const http::HeaderMap& h = requests[i % std::size(requests)].headers;
    size_t connection_tokens = 0;
    h.for_each_value("connection", [&](std::string_view v) { connection_tokens += v.size(); });
    keep(connection_tokens);
    keep(h.get("trellis-orig-proto"));
    keep(h.get("Content-Length"));
    keep(h.get("transfer-encoding"));
    keep(h.contains("upgrade"));
    keep(h.count("X-Version"));
    keep(h.get("x-request-id"));
    keep(h.get("USER-AGENT"));
    keep(response.headers.get("content-length"));
  });
  CHECK(m.allocations == 0);
}

TEST_CASE("target: routing a request allocates nothing") {
  auto table = compile_table();
  std::vector<http::RequestHead> requests = decoded_requests();
  sockaddr_in dst = original_destination();
  // Every request reaches a rule: catch-all split, header+query, regex+repeated
  // header, method+exact.
  for (const http::RequestHead& r : requests) {
    const router::Frontend* f = table->frontend(reinterpret_cast<const sockaddr*>(&dst));
    REQUIRE(f != nullptr);
    REQUIRE(f->mode == router::Mode::http);
    REQUIRE(table->match(*f, r) != nullptr);
  }
  Measurement m = measure("route", "Table::frontend(SO_ORIGINAL_DST) + match (path, header, query, regex, method) + pick",
                          [&](size_t i) {
    const router::Frontend* f = table->frontend(reinterpret_cast<const sockaddr*>(&dst));
    const router::Rule* rule = table->match(*f, requests[i % std::size(requests)]);
    keep(router::pick(*rule, draw_for(i)));
  });
  CHECK(m.allocations == 0);
}

TEST_CASE("target: the forwarding decision and empty filter lists allocate nothing") {
  auto table = compile_table();
  std::vector<http::RequestHead> requests = decoded_requests();
  http::ResponseHead response = backend_response();
  sockaddr_in dst = original_destination();
  const router::Frontend* f = table->frontend(reinterpret_cast<const sockaddr*>(&dst));
  REQUIRE(f != nullptr);
  Measurement m = measure("decide+filters", "decide() to forward, apply_request_filters/apply_response_filters without filters",
                          [&](size_t i) {
    http::RequestHead& r = requests[i % std::size(requests)];
    const router::Rule* rule = table->match(*f, r);
    router::Action action = router::decide(*f, *rule, r, draw_for(i));
    router::apply_request_filters(*rule, action.backend, r);
    router::apply_response_filters(*rule, action.backend, r, response);
    keep(action.backend);
  });
  CHECK(m.allocations == 0);
}

// Context: what owning the request costs. Not a target: a decoded head owns its
// strings (no arena yet), so names and values beyond the small-string buffer
// (15 bytes) and the header vector allocate.
TEST_CASE("context: HTTP/1 request decoding") {
  HeadCollector collector;
  http1::RequestDecoder decoder(collector);
  measure("http1-decode", "RequestDecoder::feed of one request on a keep-alive connection (4 request shapes)",
          [&](size_t i) {
    std::string_view wire = kWireRequests[i % std::size(kWireRequests)];
    keep(decoder.feed(wire));
  });
  REQUIRE_MESSAGE(collector.error_.empty(), collector.error_);
  CHECK(collector.complete_ == kRequests + kWarmUpRequests);
}

TEST_CASE("context: HTTP/1 head encoding into a reused buffer") {
  std::vector<http::RequestHead> requests = decoded_requests();
  http::ResponseHead response = backend_response();
  std::string out;
  measure("http1-encode", "encode_request_head + encode_response_head into a per-connection buffer",
          [&](size_t i) {
    out.clear();
    trellis::Status a = http1::encode_request_head(requests[i % std::size(requests)],
                                                   http1::Framing::no_body(), out);
    trellis::Status b = http1::encode_response_head(response, http1::Framing::content_length(14), out);
    keep(a.ok() && b.ok());
  });
  CHECK(!out.empty());
}

TEST_CASE("context: hop-by-hop stripping of a keep-alive response") {
  // nginx and most HTTP/1.1 servers send "Connection: keep-alive" on every
  // response; the proxy strips it before relaying.
  http::ResponseHead response = backend_response();
  measure("strip-hop-by-hop", "strip_hop_by_hop on a response carrying Connection: keep-alive",
          [&](size_t) {
    if (!response.headers.contains("Connection")) response.headers.add("Connection", "keep-alive");
    http::strip_hop_by_hop(response.headers);
  });
  CHECK(!response.headers.contains("connection"));
}

namespace {

// Both ends of one h2c connection, wired back to back in memory: what one
// session produces, the other receives. The server answers every request with
// a small body; the client consumes what it receives, as the proxy does once
// it has forwarded the bytes.
class Http2Pair {
 public:
  Http2Pair() {
    http2::SessionConfig client_config;
    client_config.role = http2::Role::client;
    auto client = http2::Session::create(client_config, client_handler_);
    REQUIRE(client.ok());
    client_ = std::move(*client);
    client_handler_.session = client_.get();
    auto server = http2::Session::create(http2::SessionConfig{}, server_handler_);
    REQUIRE(server.ok());
    server_ = std::move(*server);
    server_handler_.session = server_.get();
    server_handler_.response = backend_response();
    pump();
  }

  // One request, its response head and body, until both sides closed the stream.
  void exchange(const http::RequestHead& request) {
    trellis::Result<int32_t> id = client_->submit_request(request, false);
    if (!id.ok()) FAIL(id.error().message);
    pump();
  }

  size_t completed() const { return client_handler_.completed; }
  const std::string& error() const { return error_; }
  uint64_t nghttp2_heap_allocations() const {
    return client_->nghttp2_memory().heap_allocations + server_->nghttp2_memory().heap_allocations;
  }

 private:
  struct Server final : http2::SessionHandler {
    void on_request_head(int32_t id, http::RequestHead&& head, bool) override {
      keep(head);
      trellis::Status s = session->submit_response(id, response, true);
      if (s.ok()) s = session->send_data(id, "hello, world!\n", true);
      if (!s.ok()) error = s.error().message;
    }
    void on_data(int32_t, const char*, size_t) override {}
    void on_trailers(int32_t, http::HeaderMap&&) override {}
    void on_end_stream(int32_t) override {}
    void on_stream_close(int32_t, uint32_t) override {}

    http2::Session* session = nullptr;
    http::ResponseHead response;
    std::string error;
  };
  struct Client final : http2::SessionHandler {
    void on_response_head(int32_t, http::ResponseHead&& head, bool) override { keep(head); }
    void on_data(int32_t id, const char*, size_t len) override {
      trellis::Status s = session->consume(id, len);
      if (!s.ok()) error = s.error().message;
    }
    void on_trailers(int32_t, http::HeaderMap&&) override {}
    void on_end_stream(int32_t) override {}
    void on_stream_close(int32_t, uint32_t error_code) override {
      if (error_code == 0) ++completed;
    }

    http2::Session* session = nullptr;
    size_t completed = 0;
    std::string error;
  };

  void pump() {
    for (;;) {
      to_server_.clear();
      to_client_.clear();
      check(client_->produce(to_server_));
      if (!to_server_.empty()) check(server_->receive(to_server_.data(), to_server_.size()));
      check(server_->produce(to_client_));
      if (!to_client_.empty()) check(client_->receive(to_client_.data(), to_client_.size()));
      if (to_server_.empty() && to_client_.empty()) break;
    }
    if (error_.empty() && !server_handler_.error.empty()) error_ = server_handler_.error;
    if (error_.empty() && !client_handler_.error.empty()) error_ = client_handler_.error;
  }

  void check(const trellis::Status& s) {
    if (!s.ok() && error_.empty()) error_ = s.error().message;
  }

  Server server_handler_;
  Client client_handler_;
  std::unique_ptr<http2::Session> client_;
  std::unique_ptr<http2::Session> server_;
  std::string to_server_, to_client_;
  std::string error_;
};

// What the sidecar's HTTP/2 side forwards: h2load's fields plus a browser's
// and a mesh's, with a request id that differs on every request (so HPACK
// enters a new field in its dynamic table each time, as with real traffic).
http::RequestHead http2_request() {
  http::RequestHead r;
  r.method = "GET";
  r.target = "/api/v1/items?id=42&q=a+b";
  r.authority = "shop.bench.svc.cluster.local";
  r.scheme = "http";
  r.version = http::Version::http2;
  r.headers.add("user-agent", "h2load nghttp2/1.52.0");
  r.headers.add("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
  r.headers.add("accept-encoding", "gzip, deflate, br");
  r.headers.add("accept-language", "en-US,en;q=0.5");
  r.headers.add("x-request-id", "00000000-8d3b-4c1e-9a3f-2b7d9e4c1a60");
  r.headers.add("cookie", "session=0123456789abcdef0123456789abcdef");
  return r;
}

}  // namespace

TEST_CASE("context: HTTP/2 exchange between two sessions") {
  Http2Pair pair;
  http::RequestHead request = http2_request();
  char request_id[] = "00000000-8d3b-4c1e-9a3f-2b7d9e4c1a60";
  measure("http2-exchange",
          "client and server http2::Session back to back: request HEADERS (10 fields, new x-request-id), "
          "response HEADERS + 14-byte DATA, WINDOW_UPDATEs; both sessions counted",
          [&](size_t i) {
            std::snprintf(request_id, 9, "%08zx", i);
            request_id[8] = '-';
            request.headers.set("x-request-id", request_id);
            pair.exchange(request);
          },
          [&] { return pair.nghttp2_heap_allocations(); });
  REQUIRE_MESSAGE(pair.error().empty(), pair.error());
  CHECK(pair.completed() == kRequests + kWarmUpRequests);
}
