#include "mesh-controller/stream/server.h"

#include <doctest/doctest.h>

#include <chrono>

#include "common/metrics/exposition.h"
#include "common/net/tcp_connection.h"
#include "tests/unit/mesh-controller/stream/support.h"

using namespace trellis;
using namespace trellis::controller;
using namespace trellis::controller::stream;
using namespace trellis::controller::stream::test;
using std::chrono::milliseconds;

namespace {

const std::string kShop = "/v1/route-table?namespace=shop";

// One server with a resolver behind it, on a fresh loop.
struct Harness {
  explicit Harness(ServerOptions options = insecure_options()) {
    loop = event::testing::make_loop();
    REQUIRE(loop);
    resolver = make_resolver();
    add_services(*resolver, 0, 1);
    auto s = Server::create(*loop, std::move(options), registry, observer);
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
    server = std::move(*s);
    observer.server = server.get();
    observer.resolver = resolver.get();
  }

  static ServerOptions insecure_options() {
    ServerOptions o;
    o.policy.insecure_namespace_from_query = true;
    return o;
  }

  bool run_until(const std::vector<Client*>& clients, const std::function<bool()>& done,
                 milliseconds limit = milliseconds(10000)) {
    return event::testing::run_until(
        *loop,
        [&] {
          for (Client* c : clients) c->pump();
          return done();
        },
        limit);
  }

  std::shared_ptr<const resolve::Table> table() { return resolver->compute("shop"); }

  // Adds a Service and publishes the new table as a change seen now.
  std::shared_ptr<const resolve::Table> change(int service) {
    add_services(*resolver, service, 1);
    auto t = table();
    server->publish("shop", t, Clock::now());
    return t;
  }

  std::string metrics() { return metrics::text_exposition(registry); }

  std::unique_ptr<event::EventLoop> loop;
  metrics::Registry registry;
  Observer observer;
  std::unique_ptr<resolve::Resolver> resolver;
  std::unique_ptr<Server> server;
};

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("ServerOptions are validated") {
  ServerOptions o;
  o.feed_bytes = 0;
  CHECK(validate(o).error().message == "feed_bytes must be positive");
  o = ServerOptions{};
  o.heartbeat_interval = milliseconds(0);
  CHECK(validate(o).error().message == "heartbeat_interval must be positive");
  o = ServerOptions{};
  o.shutdown_timeout = milliseconds(-1);
  CHECK(validate(o).error().message == "shutdown_timeout must be positive");
  o = ServerOptions{};
  o.session.max_frame_size = 1000;
  CHECK(validate(o).error().message ==
        "http2 config: max_frame_size: 1000 is outside [16384, 16777215]");
}

TEST_CASE("a stream gets the current table at once, then every new version, one per line") {
  Harness h;
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  const Response& r = c.responses[id];
  REQUIRE(r.head);
  CHECK(r.head->status == 200);
  CHECK(*r.head->headers.get("content-type") == "application/x-ndjson");
  CHECK(r.tables()[0] == h.table()->json());
  CHECK(h.observer.watched == std::vector<std::string>{"shop"});

  auto v2 = h.change(1);
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 2; }));
  CHECK(c.responses[id].tables()[1] == v2->json());
  CHECK_FALSE(c.responses[id].ended);
  CHECK(h.server->streams() == 1);

  std::string m = h.metrics();
  CHECK(contains(m, "trellis_controller_streams 1\n"));
  CHECK(contains(m, "trellis_controller_namespace_streams{namespace=\"shop\"} 1\n"));
  CHECK(contains(m, "trellis_controller_tables_sent_total 2\n"));
  CHECK(contains(m, "trellis_controller_stream_requests_total{code=\"200\"} 1\n"));
  // Only the second table was caused by a change.
  CHECK(contains(m, "trellis_controller_push_latency_seconds_count 1\n"));
}

TEST_CASE("streams of a namespace share its table; identical versions are not sent again") {
  Harness h;
  Client a(*h.server), b(*h.server);
  int32_t ia = a.get(kShop);
  int32_t ib = b.get(kShop);
  REQUIRE(h.run_until({&a, &b}, [&] {
    return a.responses[ia].tables().size() == 1 && b.responses[ib].tables().size() == 1;
  }));
  CHECK(h.observer.watched == std::vector<std::string>{"shop"});  // asked once

  h.server->publish("shop", h.table(), Clock::now());  // the same version again
  h.server->publish("other", h.table(), Clock::now());  // nobody watches it: ignored
  event::testing::run_for(*h.loop, milliseconds(50));
  a.pump();
  b.pump();
  CHECK(a.responses[ia].tables().size() == 1);
  CHECK(b.responses[ib].tables().size() == 1);

  auto v2 = h.change(1);
  REQUIRE(h.run_until({&a, &b}, [&] {
    return a.responses[ia].tables().size() == 2 && b.responses[ib].tables().size() == 2;
  }));

  // The namespace stays watched until its last stream goes.
  require_ok(a.session->reset_stream(ia, http2::error_code::cancel));
  REQUIRE(h.run_until({&a, &b}, [&] { return h.server->streams() == 1; }));
  CHECK(h.observer.unwatched.empty());
  require_ok(b.session->reset_stream(ib, http2::error_code::cancel));
  REQUIRE(h.run_until({&a, &b}, [&] { return h.server->streams() == 0; }));
  CHECK(h.observer.unwatched == std::vector<std::string>{"shop"});
  CHECK(h.server->watched_namespaces().empty());
  CHECK(contains(h.metrics(), "trellis_controller_streams 0\n"));
  CHECK_FALSE(contains(h.metrics(), "trellis_controller_namespace_streams{"));
}

TEST_CASE("a slow sidecar gets the table in flight and then only the latest version") {
  ServerOptions options = Harness::insecure_options();
  options.feed_bytes = 16 * 1024;
  Harness h(options);
  add_services(*h.resolver, 1, 1500);  // a table of a few hundred KiB
  Client c(*h.server);
  c.auto_consume = false;
  int32_t id = c.get(kShop);
  auto v1 = h.table();
  REQUIRE(v1->json().size() > 200 * 1024);
  // The stream window (64 KiB) fills; the server stops there.
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].unconsumed >= 60000; }));
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  CHECK(c.responses[id].body.size() <= 65535);

  h.change(5000);
  h.change(5001);
  auto v4 = h.change(5002);
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  CHECK(c.responses[id].body.size() <= 65535);  // nothing more without credit

  c.consume(id);
  c.auto_consume = true;
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 2; }));
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  std::vector<std::string> tables = c.responses[id].tables();
  REQUIRE(tables.size() == 2);
  CHECK(tables[0] == v1->json());
  CHECK(tables[1] == v4->json());  // v2 and v3 were skipped
  CHECK(contains(h.metrics(), "trellis_controller_tables_sent_total 2\n"));
}

TEST_CASE("a sidecar that does not read holds at most high_water of output, then gets the rest") {
  const ServerOptions defaults;
  REQUIRE(defaults.high_water == 256 * 1024);
  Harness h(Harness::insecure_options());
  add_services(*h.resolver, 1, 8000);
  // The sidecar's windows (8 MiB): flow control does not stop the server.
  Client c(*h.server, std::nullopt, 8u << 20);
  int32_t id = c.get(kShop);
  auto v1 = h.table();
  REQUIRE(v1->json().size() > 4 * defaults.high_water);
  c.reading = false;
  REQUIRE(h.run_until({&c}, [&] { return c.pipe->paused; }));
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  // One produce() batch past the mark at most: a stream's feed and its frame headers.
  CHECK(c.pipe->to_client.size() > defaults.high_water);
  CHECK(c.pipe->to_client.size() <= defaults.high_water + defaults.feed_bytes + 1024);

  c.reading = true;
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  CHECK(c.responses[id].tables()[0] == v1->json());
  CHECK_FALSE(c.pipe->paused);
}

TEST_CASE("a stream that returns to the version being written does not get it twice") {
  ServerOptions options = Harness::insecure_options();
  options.feed_bytes = 16 * 1024;
  Harness h(options);
  add_services(*h.resolver, 1, 1500);
  Client c(*h.server);
  c.auto_consume = false;
  int32_t id = c.get(kShop);
  auto v1 = h.table();
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].unconsumed >= 60000; }));
  auto v2 = h.change(5000);
  h.server->publish("shop", v1, Clock::now());  // v2 was undone before it went out
  c.consume(id);
  c.auto_consume = true;
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  CHECK(c.responses[id].tables() == std::vector<std::string>{v1->json()});
}

TEST_CASE("a stream opened before its namespace's table exists waits for it") {
  Harness h;
  h.observer.resolver = nullptr;  // the controller has not synced yet
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].head.has_value(); }));
  CHECK(c.responses[id].head->status == 200);
  event::testing::run_for(*h.loop, milliseconds(50));
  c.pump();
  CHECK(c.responses[id].body.empty());
  CHECK(h.server->watched("shop"));
  h.server->publish("shop", h.table(), std::nullopt);
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
}

TEST_CASE("refused requests get their status and a one-line explanation, and are counted") {
  Harness h(ServerOptions{});  // without the insecure flag
  Client c(*h.server);
  int32_t forbidden = c.get(kShop);
  int32_t missing = c.get("/v1/tables");
  int32_t method = c.get(kShop, "POST");
  REQUIRE(h.run_until({&c}, [&] {
    return c.responses[forbidden].ended && c.responses[missing].ended && c.responses[method].ended;
  }));
  CHECK(c.responses[forbidden].head->status == 403);
  CHECK(c.responses[forbidden].body ==
        "the route-table namespace comes from the peer's mTLS identity, which this controller "
        "cannot verify yet (no mTLS); it takes the 'namespace' query parameter instead only when "
        "started with --insecure-namespace-from-query (tests and the sandbox only)\n");
  CHECK(*c.responses[forbidden].head->headers.get("content-type") == "text/plain; charset=utf-8");
  CHECK(c.responses[missing].head->status == 404);
  CHECK(c.responses[missing].body ==
        "no such path '/v1/tables': the route-table stream is GET /v1/route-table\n");
  CHECK(c.responses[method].head->status == 405);
  CHECK(*c.responses[method].head->headers.get("allow") == "GET");
  CHECK(h.server->streams() == 0);
  std::string m = h.metrics();
  CHECK(contains(m, "trellis_controller_stream_requests_total{code=\"403\"} 1\n"));
  CHECK(contains(m, "trellis_controller_stream_requests_total{code=\"404\"} 1\n"));
  CHECK(contains(m, "trellis_controller_stream_requests_total{code=\"405\"} 1\n"));

  Harness insecure;
  Client d(*insecure.server);
  int32_t bad = d.get("/v1/route-table?namespace=NOPE");
  REQUIRE(insecure.run_until({&d}, [&] { return d.responses[bad].ended; }));
  CHECK(d.responses[bad].head->status == 400);
  CHECK(d.responses[bad].body ==
        "query parameter 'namespace': invalid value 'NOPE' (want a DNS label: 1-63 lowercase "
        "letters, digits and '-', starting and ending with a letter or digit)\n");
}

TEST_CASE("a peer identity picks the namespace without the insecure flag") {
  Harness h(ServerOptions{});
  Client c(*h.server, std::string("spiffe://cluster.local/ns/shop/sa/web"));
  int32_t id = c.get("/v1/route-table");
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  CHECK(h.observer.watched == std::vector<std::string>{"shop"});
}

TEST_CASE("idle streams get heartbeats (empty lines)") {
  ServerOptions options = Harness::insecure_options();
  options.heartbeat_interval = milliseconds(20);
  Harness h(options);
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.run_until({&c}, [&] {
    auto lines = c.responses[id].lines();
    return lines.size() >= 3 && lines.back().empty();
  }));
  std::vector<std::string> lines = c.responses[id].lines();
  CHECK(lines[0] == h.table()->json());
  CHECK(lines[1].empty());
}

TEST_CASE("garbage from one peer fails only its own connection") {
  Harness h;
  Client good(*h.server);
  int32_t id = good.get(kShop);
  REQUIRE(h.run_until({&good}, [&] { return good.responses[id].tables().size() == 1; }));

  auto bad = std::make_shared<PipeState>();
  h.server->adopt(std::make_unique<PipeTransport>(bad));
  REQUIRE(h.server->connections() == 2);
  const std::string garbage = "GET /v1/route-table HTTP/1.1\r\nHost: x\r\n\r\n";
  bad->handler->on_transport_data(garbage.data(), garbage.size());
  REQUIRE(bad->close_requested);
  bad->closed = true;
  bad->handler->on_transport_closed(ok_status());
  REQUIRE(h.run_until({&good}, [&] { return bad->destroyed; }));
  CHECK(h.server->connections() == 1);
  CHECK(contains(h.metrics(), "trellis_controller_stream_protocol_errors_total 1\n"));

  h.change(1);
  REQUIRE(h.run_until({&good}, [&] { return good.responses[id].tables().size() == 2; }));
}

TEST_CASE("shutdown ends every stream and sends GOAWAY, then reports done") {
  Harness h;
  Client a(*h.server), b(*h.server);
  int32_t ia = a.get(kShop);
  int32_t ib = b.get("/v1/route-table?namespace=bank");
  REQUIRE(h.run_until({&a, &b}, [&] {
    return a.responses[ia].tables().size() == 1 && b.responses[ib].tables().size() == 1;
  }));
  bool done = false;
  h.server->shutdown([&] { done = true; });
  REQUIRE(h.run_until({&a, &b}, [&] { return done; }));
  CHECK(a.goaway == http2::error_code::no_error);
  CHECK(b.goaway == http2::error_code::no_error);
  CHECK(a.responses[ia].ended);
  CHECK(a.responses[ia].closed == http2::error_code::no_error);
  CHECK(b.responses[ib].ended);
  CHECK(h.server->connections() == 0);
  CHECK(h.server->streams() == 0);
  CHECK(a.pipe->close_requested);
}

TEST_CASE("shutdown closes what does not finish within shutdown_timeout") {
  ServerOptions options = Harness::insecure_options();
  options.shutdown_timeout = milliseconds(100);
  Harness h(options);
  Client c(*h.server);
  int32_t id = c.get(kShop);
  REQUIRE(h.run_until({&c}, [&] { return c.responses[id].tables().size() == 1; }));
  c.reading = false;  // the sidecar hangs
  bool done = false;
  h.server->shutdown([&] { done = true; });
  REQUIRE(h.run_until({&c}, [&] { return done; }));
  CHECK(h.server->connections() == 0);
  REQUIRE(h.run_until({&c}, [&] { return c.pipe->destroyed; }));
}

namespace {

// An HTTP/2 client over a real TCP connection.
class TcpClient final : public net::TcpConnection::Handler, public http2::SessionHandler {
 public:
  explicit TcpClient(event::EventLoop& loop, const net::Address& to) {
    http2::SessionConfig config;
    config.role = http2::Role::client;
    session = std::move(http2::Session::create(config, *this).value());
    auto c = net::TcpConnection::connect(loop, to, milliseconds(5000), [this](const Status& s) {
      require_ok(s);
      require_ok(connection->start(*this));
      flush();
    });
    REQUIRE(c.ok());
    connection = std::move(*c);
  }
  int32_t get(const std::string& target) {
    http::RequestHead head;
    head.method = "GET";
    head.target = target;
    head.authority = "controller";
    int32_t id = session->submit_request(head, false).value();
    return id;
  }
  void flush() {
    if (connection->state() != net::TcpConnection::State::open) return;
    std::string out;
    (void)session->produce(out);
    if (!out.empty()) (void)connection->write(out);
  }
  void on_data(const char* data, size_t length) override {
    (void)session->receive(data, length);
    flush();
  }
  void on_eof() override {
    eof = true;
    connection->close();
  }
  void on_error(const Error&) override { eof = true; }
  void on_response_head(int32_t, http::ResponseHead&& head, bool) override { status = head.status; }
  void on_data(int32_t id, const char* data, size_t len) override {
    body.append(data, len);
    (void)session->consume(id, len);
  }
  void on_trailers(int32_t, http::HeaderMap&&) override {}
  void on_end_stream(int32_t) override { ended = true; }
  void on_stream_close(int32_t, uint32_t) override {}
  void on_goaway(int32_t, uint32_t) override { goaway = true; }

  std::unique_ptr<http2::Session> session;
  std::unique_ptr<net::TcpConnection> connection;
  int status = 0;
  std::string body;
  bool ended = false;
  bool goaway = false;
  bool eof = false;
};

}  // namespace

TEST_CASE("over TCP: h2c with prior knowledge, then GOAWAY and close on shutdown") {
  Harness h;
  require_ok(h.server->listen(net::Address::parse("127.0.0.1:0").value()));
  REQUIRE(h.server->local_address());
  CHECK(h.server->local_address()->port() != 0);
  TcpClient c(*h.loop, *h.server->local_address());
  c.get(kShop);
  c.flush();
  REQUIRE(event::testing::run_until(*h.loop, [&] { return c.body.find('\n') != std::string::npos; }));
  CHECK(c.status == 200);
  CHECK(c.body == h.table()->json() + "\n");
  bool done = false;
  h.server->shutdown([&] { done = true; });
  REQUIRE(event::testing::run_until(*h.loop, [&] { return done && c.eof; }));
  CHECK(c.goaway);
  CHECK(c.ended);
}
