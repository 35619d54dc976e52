// Pool configuration, metrics and the transport seam.
#include <doctest/doctest.h>

#include <string>

#include "common/metrics/exposition.h"
#include "tests/unit/proxy/pool/backends.h"

using namespace trellis::proxy::pool;
using namespace trellis::proxy::pool::testing;
using namespace std::chrono_literals;
using trellis::Status;
using trellis::proxy::http::UpstreamProtocol;

namespace {

std::string error_of(const PoolConfig& c) {
  Status s = validate(c);
  return s.ok() ? "ok" : s.error().message;
}

}  // namespace

TEST_CASE("pool config: defaults are valid; bad values get exact errors") {
  PoolConfig c;
  CHECK(error_of(c) == "ok");
  CHECK(c.connect_timeout == 1000ms);
  CHECK(c.idle_timeout == 60000ms);

  c = PoolConfig{};
  c.connect_timeout = 0ms;
  CHECK(error_of(c) == "pool config: connect_timeout must be positive, got 0 ms");
  c = PoolConfig{};
  c.idle_timeout = -5ms;
  CHECK(error_of(c) == "pool config: idle_timeout must be positive, got -5 ms");
  c = PoolConfig{};
  c.max_connections_per_endpoint = 0;
  CHECK(error_of(c) == "pool config: max_connections_per_endpoint must be positive");
  c = PoolConfig{};
  c.high_water = 0;
  c.low_water = 0;
  CHECK(error_of(c) == "pool config: high_water must be positive");
  c = PoolConfig{};
  c.high_water = 5;
  c.low_water = 10;
  CHECK(error_of(c) == "pool config: low_water (10) must not exceed high_water (5)");
  c = PoolConfig{};
  c.h2_stream_window = 0;
  CHECK(error_of(c) == "pool config: h2_stream_window: 0 is outside [1, 2147483647]");
  c = PoolConfig{};
  c.h2_connection_window = 1000;
  CHECK(error_of(c) == "pool config: h2_connection_window: 1000 is outside [65535, 2147483647]");

  auto loop = make_loop();
  c = PoolConfig{};
  c.connect_timeout = 0ms;
  auto pool = Pool::create(*loop, c);
  REQUIRE_FALSE(pool.ok());
  CHECK(pool.error().message == "pool config: connect_timeout must be positive, got 0 ms");
  auto no_factory = Pool::create(*loop, PoolConfig{}, PoolMetrics{}, nullptr);
  REQUIRE_FALSE(no_factory.ok());
  CHECK(no_factory.error().message == "pool: no transport factory");
}

TEST_CASE("pool metrics: open connections per protocol and connect failures") {
  trellis::metrics::Registry registry;
  auto m = PoolMetrics::create(registry);
  REQUIRE(m.ok());
  auto again = PoolMetrics::create(registry);
  CHECK_FALSE(again.ok());  // registered once per registry, then shared

  auto loop = make_loop();
  Http1Backend http1(*loop);
  H2Backend h2c(*loop);
  auto pool = Pool::create(*loop, PoolConfig{}, m.value());
  REQUIRE(pool.ok());
  // A second worker's pool shares the handles.
  auto other = Pool::create(*loop, PoolConfig{}, m.value());
  REQUIRE(other.ok());

  Recorder a, b, c;
  auto sa = pool.value()->new_stream(target(http1.address()), a);
  sa->send_request_head(get("/"), true);
  auto sb = other.value()->new_stream(target(h2c.address(), UpstreamProtocol::h2c), b);
  sb->send_request_head(get("/"), true);
  auto sc = pool.value()->new_stream(target(loopback(1)), c);  // nothing listens on port 1
  sc->send_request_head(get("/"), true);
  REQUIRE(run_until(*loop, [&] { return a.done() && b.done() && c.done(); }));

  std::string text = trellis::metrics::text_exposition(registry);
  CHECK(text.find("trellis_upstream_connections_open{protocol=\"http1\"} 1") != std::string::npos);
  CHECK(text.find("trellis_upstream_connections_open{protocol=\"h2c\"} 1") != std::string::npos);
  CHECK(text.find("trellis_upstream_connect_failures_total 1") != std::string::npos);

  // Destroying a pool closes its connections, and the gauge follows.
  pool.value().reset();
  other.value().reset();
  text = trellis::metrics::text_exposition(registry);
  CHECK(text.find("trellis_upstream_connections_open{protocol=\"http1\"} 0") != std::string::npos);
  CHECK(text.find("trellis_upstream_connections_open{protocol=\"h2c\"} 0") != std::string::npos);
}

TEST_CASE("pool: connections go through the transport factory (the TLS seam)") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  std::vector<trellis::proxy::http::UpstreamTarget> dialled;
  TransportFactory tcp = tcp_transports();
  TransportFactory spy = [&](trellis::event::EventLoop& l, const trellis::proxy::http::UpstreamTarget& t,
                             const TransportOptions& o, Transport::ConnectCallback done) {
    dialled.push_back(t);
    CHECK(o.connect_timeout == 250ms);
    return tcp(l, t, o, std::move(done));
  };
  PoolConfig config;
  config.connect_timeout = 250ms;
  auto pool = Pool::create(*loop, config, PoolMetrics{}, spy);
  REQUIRE(pool.ok());
  Recorder r;
  auto target_with_identity = target(backend.address());
  target_with_identity.identity = "spiffe://cluster.local/ns/shop/sa/default";
  auto s = pool.value()->new_stream(target_with_identity, r);
  s->send_request_head(get("/"), true);
  REQUIRE(run_until(*loop, [&] { return r.done(); }));
  CHECK(r.ended);
  REQUIRE(dialled.size() == 1);
  CHECK(dialled[0].identity == "spiffe://cluster.local/ns/shop/sa/default");

  // A factory that refuses at once fails the stream on a later turn.
  TransportFactory refusing = [](trellis::event::EventLoop&, const trellis::proxy::http::UpstreamTarget&,
                                 const TransportOptions&, Transport::ConnectCallback)
      -> trellis::Result<std::unique_ptr<Transport>> {
    return trellis::make_error("tls: no certificate yet");
  };
  auto failing = Pool::create(*loop, PoolConfig{}, PoolMetrics{}, refusing);
  REQUIRE(failing.ok());
  for (UpstreamProtocol protocol : {UpstreamProtocol::http1, UpstreamProtocol::mesh}) {
    Recorder f;
    f.inside_call = true;
    auto fs = failing.value()->new_stream(target(backend.address(), protocol), f);
    fs->send_request_head(get("/"), true);
    f.inside_call = false;
    REQUIRE(run_until(*loop, [&] { return f.done(); }));
    CHECK(f.failure == UpstreamFailure::connect_failed);
    CHECK(f.failure_detail.message == "tls: no certificate yet");
    CHECK(f.failures_inside_call == 0);
  }
  CHECK(failing.value()->stats().connect_failures == 2);
}

TEST_CASE("pool: endpoints without connections or streams are forgotten") {
  auto loop = make_loop();
  Http1Backend backend(*loop);
  PoolConfig config;
  config.idle_timeout = 100ms;
  auto pool = make_pool(*loop, config);
  Recorder r;
  auto s = pool->new_stream(target(backend.address()), r);
  s->send_request_head(get("/"), true);
  REQUIRE(run_until(*loop, [&] { return r.done(); }));
  CHECK(pool->endpoints() == 1);
  s.reset();
  REQUIRE(run_until(*loop, [&] { return pool->idle() && pool->endpoints() == 0; }));
  Recorder again;
  auto s2 = pool->new_stream(target(backend.address()), again);
  s2->send_request_head(get("/"), true);
  REQUIRE(run_until(*loop, [&] { return again.done(); }));
  CHECK(again.ended);
}
