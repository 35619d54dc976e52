// The inbound exchange: protocol restoration, target, retries, metrics.
#include "tests/unit/proxy/exchange/support.h"

using namespace exchange_test;

namespace {

hm::RequestHead from_sidecar(const char* orig_proto) {
  hm::RequestHead r = get("/in", {{"x-app", "1"}});
  r.version = hm::Version::http2;
  if (orig_proto != nullptr) r.headers.add("trellis-orig-proto", orig_proto);
  return r;
}

}  // namespace

TEST_CASE("inbound: an HTTP/1 request carried over the mesh is restored to HTTP/1") {
  Harness h;
  Client& c = h.receive(from_sidecar("HTTP/1.1"));
  Upstream& u = h.pool.last();
  CHECK(u.target.address.to_string() == "127.0.0.1:8080");
  CHECK(u.target.protocol == ph::UpstreamProtocol::http1);
  CHECK(u.target.identity.empty());
  CHECK(u.head->version == hm::Version::http11);
  CHECK(u.header("trellis-orig-proto") == "<absent>");
  CHECK(u.header("x-app") == "1");
  u.respond(200);
  CHECK(c->status() == 200);

  h.receive(from_sidecar("HTTP/1.0"));
  CHECK(h.pool.last().head->version == hm::Version::http10);
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::http1);
}

TEST_CASE("inbound: HTTP/2 without the header goes as h2c, HTTP/1 as HTTP/1") {
  Harness h;
  h.receive(from_sidecar(nullptr), true, 9090);
  CHECK(h.pool.last().target.address.to_string() == "127.0.0.1:9090");
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::h2c);
  CHECK(h.pool.last().head->version == hm::Version::http2);

  // A plain HTTP/1 client cannot smuggle the header to the app.
  h.receive(get("/", {{"trellis-orig-proto", "HTTP/1.0"}}));
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::http1);
  CHECK(h.pool.last().head->version == hm::Version::http11);
  CHECK(h.pool.last().header("trellis-orig-proto") == "<absent>");
}

TEST_CASE("inbound: an invalid trellis-orig-proto answers 400") {
  Harness h;
  Client& c = h.receive(from_sidecar("HTTP/3"));
  CHECK(c->status() == 400);
  CHECK(c->header("trellis-proxy-error") == "bad_request");
  CHECK(h.pool.streams.empty());
  CHECK(h.value("trellis_local_responses_total",
                {{"direction", "inbound"}, {"reason", "bad_request"}}) == 1);
}

TEST_CASE("inbound: connect failures to the app are retried after a backoff, nothing else") {
  Harness h;
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 1) {
      u.fail(ph::UpstreamFailure::connect_failed);
    } else {
      u.respond(200);
    }
  };
  Client& c = h.receive(get("/"));
  h.scheduler.run();
  CHECK(h.pool.streams.size() == 1);
  h.scheduler.advance(milliseconds(49));
  CHECK(h.pool.streams.size() == 1);  // inbound_retry_backoff: the app may be starting
  h.scheduler.advance(milliseconds(51));
  REQUIRE(h.pool.streams.size() == 2);
  CHECK(h.pool.last().target.address.to_string() == "127.0.0.1:8080");
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_retries_total",
                {{"direction", "inbound"}, {"reason", "connect_failed"}}) == 1);

  h.pool.responder = [](Upstream& u) { u.respond(503); };
  Client& unavailable = h.receive(get("/"));
  h.scheduler.advance(milliseconds(1000));
  CHECK(unavailable->status() == 503);
  CHECK(h.pool.streams.size() == 3);  // an app's own 503 is its answer

  h.pool.responder = [](Upstream& u) { u.fail(ph::UpstreamFailure::reset); };
  Client& reset = h.receive(get("/"));
  h.scheduler.advance(milliseconds(1000));
  CHECK(reset->status() == 502);
  CHECK(h.pool.streams.size() == 4);
}

TEST_CASE("inbound metrics carry the target port and the peer's identity") {
  Harness h;
  h.pool.responder = [](Upstream& u) { u.respond(200); };
  h.receive(get("/"), true, 8080, "spiffe://cluster.local/ns/web/sa/a");
  h.receive(get("/"), true, 8080, "spiffe://cluster.local/ns/web/sa/a");
  h.receive(get("/"), true, 8080, "");
  h.receive(get("/"), true, 9000, "spiffe://cluster.local/ns/web/sa/a");
  h.scheduler.run();
  CHECK(h.value("trellis_requests_total",
                {{"direction", "inbound"}, {"target_port", "8080"},
                 {"peer_identity", "spiffe://cluster.local/ns/web/sa/a"}, {"parent_name", ""},
                 {"route_name", ""}, {"backend_name", ""}, {"status_code", "200"}}) == 2);
  CHECK(h.value("trellis_requests_total",
                {{"target_port", "8080"}, {"peer_identity", ""}, {"direction", "inbound"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"target_port", "9000"}}) == 1);
  CHECK(h.value("trellis_request_duration_seconds_count", {{"direction", "inbound"}}) == 4);
  CHECK(h.value("trellis_requests_total", {{"direction", "outbound"}}) == 0);
}
