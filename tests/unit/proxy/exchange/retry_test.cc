// Retries, budgets, timeouts and the request body buffer.
#include "tests/unit/proxy/exchange/support.h"

using namespace exchange_test;

namespace {

// One rule to echo-v1:80 (two meshed endpoints) with `extra` members.
std::string rule(std::string_view extra) {
  return http_route(std::string(R"([{"backendRefs":[{"name":"echo-v1","port":80}],)") +
                    std::string(extra) + "}]");
}

const std::map<std::string, std::string> kRoute = {{"route_name", "r"}};

std::map<std::string, std::string> with(std::map<std::string, std::string> labels,
                                        const char* name, const char* value) {
  labels[name] = value;
  return labels;
}

}  // namespace

TEST_CASE("a retryable status is retried after the backoff, on another endpoint") {
  Harness h(rule(R"("retry":{"codes":[503],"attempts":2,"backoff":"10ms"})"));
  Client& c = h.send(get("/", {{"content-length", "4"}}), false);
  c.data("ping", true);
  Upstream& first = *h.pool.streams[0];
  first.respond(503, {{"x-attempt", "1"}});
  CHECK(first.destroyed);
  CHECK(!c->head);  // discarded, not forwarded
  CHECK(h.pool.streams.size() == 1);
  CHECK(c->paused == false);  // the request had ended: nothing to hold back
  h.scheduler.advance(milliseconds(9));
  CHECK(h.pool.streams.size() == 1);  // the backoff is at least retry.backoff
  h.scheduler.advance(milliseconds(11));
  REQUIRE(h.pool.streams.size() == 2);
  Upstream& second = *h.pool.streams[1];
  CHECK(second.target.address != first.target.address);
  CHECK(second.head->target == "/");
  CHECK(second.body == "ping");  // the buffered body, whole
  CHECK(second.request_ended);
  second.respond(200);
  CHECK(c->status() == 200);

  const balancer::Endpoint* failed = h.endpoint(first.target.address.to_string().c_str());
  const balancer::Endpoint* good = h.endpoint(second.target.address.to_string().c_str());
  CHECK(failed->consecutive_failures() == 1);
  CHECK(good->consecutive_failures() == 0);
  CHECK(failed->outstanding() == 0);
  CHECK(h.value("trellis_retries_total", with(kRoute, "reason", "response")) == 1);
  CHECK(h.value("trellis_requests_total", with(kRoute, "status_code", "200")) == 1);
  CHECK(h.value("trellis_requests_total", with(kRoute, "status_code", "503")) == 0);
}

TEST_CASE("retries stop at retry.attempts; the last response is returned") {
  Harness h(rule(R"("retry":{"codes":[500,503],"attempts":2,"backoff":"1ms"})"));
  h.pool.responder = [](Upstream& u) { u.respond(503, {{"x-from", "app"}}); };
  Client& c = h.send(get("/"));
  h.scheduler.advance(milliseconds(1000));
  CHECK(h.pool.streams.size() == 3);  // the request and two retries
  CHECK(c->status() == 503);
  CHECK(c->header("x-from") == "app");
  CHECK(c->header("trellis-proxy-error") == "<absent>");
  CHECK(h.value("trellis_retries_total", kRoute) == 2);
  CHECK(h.value("trellis_requests_total", with(kRoute, "status_code", "503")) == 1);
}

TEST_CASE("a status outside retry.codes is not retried") {
  Harness h(rule(R"("retry":{"codes":[503]})"));
  h.pool.responder = [](Upstream& u) { u.respond(500); };
  Client& c = h.send(get("/"));
  h.scheduler.advance(milliseconds(1000));
  CHECK(h.pool.streams.size() == 1);
  CHECK(c->status() == 500);
}

TEST_CASE("an exhausted retry budget stops retries and is counted") {
  ex::ExchangeConfig config;
  config.retry.budget.ratio = 0.2;
  config.retry.budget.min_per_second = 0;  // no reserve: only requests earn retries
  Harness h(rule(R"("retry":{"codes":[503],"attempts":1,"backoff":"1ms"})"), config);
  h.pool.responder = [](Upstream& u) { u.respond(503); };
  for (int i = 0; i < 5; ++i) {
    h.send(get("/"));
    h.scheduler.advance(milliseconds(10));
  }
  // Each request deposits a fifth of a retry: the fifth request can retry.
  CHECK(h.value("trellis_retry_budget_exhausted_total", kRoute) == 4);
  CHECK(h.value("trellis_retries_total", kRoute) == 1);
  CHECK(h.pool.streams.size() == 6);
  CHECK(h.budgets->find("HTTPRoute/shop/r")->available() == 0);
}

TEST_CASE("connect failures are retried on another endpoint without a retry stanza") {
  Harness h(rule(R"("matches":[{}])"));
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 1) {
      u.fail(ph::UpstreamFailure::connect_failed);
    } else {
      u.respond(200);
    }
  };
  Client& c = h.send(get("/"));
  h.scheduler.run();
  REQUIRE(h.pool.streams.size() == 2);
  CHECK(h.pool.streams[0]->target.address != h.pool.streams[1]->target.address);
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_retries_total", with(kRoute, "reason", "connect_failed")) == 1);
  CHECK(h.endpoint(h.pool.streams[0]->target.address.to_string().c_str())
            ->consecutive_failures() == 1);
}

TEST_CASE("failures that cannot be retried are answered: 503 connect, 502 reset") {
  Harness h(rule(R"("matches":[{}])"));
  h.pool.responder = [](Upstream& u) { u.fail(ph::UpstreamFailure::connect_failed); };
  Client& c = h.send(get("/"));
  h.scheduler.run();
  CHECK(h.pool.streams.size() == 2);  // one implicit retry
  CHECK(c->status() == 503);
  CHECK(c->header("trellis-proxy-error") == "connect_failed");

  // Without a retry stanza a reset is not retried (the request may have been processed).
  h.pool.responder = [](Upstream& u) { u.fail(ph::UpstreamFailure::reset); };
  Client& reset = h.send(get("/"));
  h.scheduler.run();
  CHECK(h.pool.streams.size() == 3);
  CHECK(reset->status() == 502);
  CHECK(reset->header("trellis-proxy-error") == "upstream_reset");

  h.pool.responder = [](Upstream& u) { u.fail(ph::UpstreamFailure::refused_stream); };
  Client& refused = h.send(get("/"));
  h.scheduler.run();
  CHECK(refused->status() == 503);
  h.pool.responder = [](Upstream& u) { u.fail(ph::UpstreamFailure::protocol_error); };
  Client& bad = h.send(get("/"));
  h.scheduler.run();
  CHECK(bad->status() == 502);
  CHECK(h.value("trellis_local_responses_total",
                {{"reason", "upstream_protocol_error"}}) == 1);
  CHECK(h.value("trellis_local_responses_total", {{"reason", "refused_stream"}}) == 1);
}

TEST_CASE("with a retry stanza, resets are retried too") {
  Harness h(rule(R"("retry":{"attempts":1,"backoff":"5ms"})"));
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 1) {
      u.fail(ph::UpstreamFailure::reset);
    } else {
      u.respond(200);
    }
  };
  Client& c = h.send(get("/"));
  h.scheduler.advance(milliseconds(20));
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_retries_total", with(kRoute, "reason", "reset")) == 1);
}

TEST_CASE("timeouts.request bounds the whole exchange, retries and backoffs included: 504") {
  Harness h(rule(R"("timeouts":{"request":"100ms"},"retry":{"codes":[503],"attempts":5,"backoff":"30ms"})"));
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 1) u.respond(503);  // the retry then stalls
  };
  Client& c = h.send(get("/"));
  h.scheduler.advance(milliseconds(99));
  REQUIRE(h.pool.streams.size() == 2);
  CHECK(!c->head);
  h.scheduler.advance(milliseconds(1));
  CHECK(c->status() == 504);
  CHECK(c->header("trellis-proxy-error") == "request_timeout");
  CHECK(h.pool.streams[1]->destroyed);
  CHECK(h.scheduler.armed() == 0);
  CHECK(h.value("trellis_timeouts_total", with(kRoute, "kind", "request")) == 1);
  CHECK(h.value("trellis_request_duration_seconds_sum", kRoute) == doctest::Approx(0.1));
  // The stalled attempt was abandoned, not judged.
  CHECK(h.endpoint(h.pool.streams[1]->target.address.to_string().c_str())
            ->consecutive_failures() == 0);
}

TEST_CASE("a retry that would outlive timeouts.request is not made") {
  Harness h(rule(R"("timeouts":{"request":"50ms"},"retry":{"codes":[503],"attempts":5,"backoff":"60ms"})"));
  h.pool.responder = [](Upstream& u) { u.respond(503); };
  Client& c = h.send(get("/"));
  h.scheduler.run();
  CHECK(h.pool.streams.size() == 1);
  CHECK(c->status() == 503);
}

TEST_CASE("after the head, timeouts.request resets the response") {
  Harness h(rule(R"("timeouts":{"request":"100ms"})"));
  Client& c = h.send(get("/"));
  h.pool.last().respond(200, {}, false);
  h.pool.last().data("slow", false);
  h.scheduler.advance(milliseconds(100));
  CHECK(c->was_reset);
  CHECK(h.pool.last().destroyed);
  CHECK(h.value("trellis_requests_total", with(kRoute, "status_code", "0")) == 1);
  CHECK(h.value("trellis_timeouts_total", with(kRoute, "kind", "request")) == 1);
}

TEST_CASE("timeouts.backendRequest fails the attempt; retried with a policy, else 504") {
  Harness h(rule(R"("timeouts":{"request":"1s","backendRequest":"50ms"},"retry":{"attempts":1})"));
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 2) u.respond(200);
  };
  Client& c = h.send(get("/"));
  h.scheduler.advance(milliseconds(49));
  CHECK(h.pool.streams.size() == 1);
  h.scheduler.advance(milliseconds(1));
  CHECK(h.pool.streams[0]->destroyed);
  h.scheduler.advance(milliseconds(60));  // default backoff 25 ms, jittered below 50 ms
  REQUIRE(h.pool.streams.size() == 2);
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_timeouts_total", with(kRoute, "kind", "backend_request")) == 1);
  CHECK(h.value("trellis_retries_total", with(kRoute, "reason", "backend_timeout")) == 1);
  CHECK(h.endpoint(h.pool.streams[0]->target.address.to_string().c_str())
            ->consecutive_failures() == 1);

  // It covers the whole response (GEP-1742): a response still streaming is cut.
  Client& streaming = h.send(get("/"));
  h.pool.last().respond(200, {}, false);
  h.scheduler.advance(milliseconds(50));
  CHECK(streaming->was_reset);
  CHECK(h.value("trellis_timeouts_total", with(kRoute, "kind", "backend_request")) == 2);

  Harness plain(rule(R"("timeouts":{"backendRequest":"50ms"})"));
  Client& p = plain.send(get("/"));
  plain.scheduler.advance(milliseconds(50));
  CHECK(p->status() == 504);
  CHECK(p->header("trellis-proxy-error") == "backend_timeout");
  CHECK(plain.pool.streams.size() == 1);
}

TEST_CASE("a body larger than the retry buffer is streamed and not retried") {
  Harness h(rule(R"("retry":{"codes":[503],"attempts":2,"backoff":"1ms"})"));
  Client& c = h.send(get("/upload"), false);
  std::string chunk(40 * 1024, 'b');
  c.data(chunk, false);
  Upstream& u = h.pool.last();
  CHECK(u.body.size() == chunk.size());  // streamed as it arrives
  c.data(chunk, true);
  CHECK(u.body.size() == 2 * chunk.size());
  u.respond(503);
  h.scheduler.advance(milliseconds(100));
  CHECK(h.pool.streams.size() == 1);
  CHECK(c->status() == 503);
  CHECK(h.value("trellis_retries_total") == 0);

  // At the limit (64 KiB) the body is kept and resent.
  Client& fits = h.send(get("/upload"), false);
  fits.data(std::string(64 * 1024, 'f'), true);
  h.pool.last().respond(503);
  h.scheduler.advance(milliseconds(100));
  REQUIRE(h.pool.streams.size() == 3);
  CHECK(h.pool.last().body.size() == 64 * 1024);
  h.pool.last().respond(200);
  CHECK(fits->status() == 200);
}

TEST_CASE("during a backoff the client's body is paused and kept whole for the retry") {
  Harness h(rule(R"("retry":{"codes":[503],"attempts":1,"backoff":"20ms"})"));
  Client& c = h.send(get("/"), false);
  c.data("part1-", false);
  h.pool.last().respond(503);  // an early answer, the request still streaming
  CHECK(c->paused);
  c.data("part2", false);  // was in flight
  h.scheduler.advance(milliseconds(40));
  REQUIRE(h.pool.streams.size() == 2);
  CHECK(!c->paused);
  Upstream& retry = h.pool.last();
  CHECK(retry.body == "part1-part2");
  CHECK(!retry.request_ended);
  c.data("-end", true);
  CHECK(retry.body == "part1-part2-end");
  CHECK(retry.request_ended);
  retry.respond(200);
  CHECK(c->status() == 200);
  CHECK(retry.misuse == 0);
}

TEST_CASE("a client reset during a backoff cancels the retry") {
  Harness h(rule(R"("retry":{"codes":[503],"attempts":1,"backoff":"20ms"})"));
  Client& c = h.send(get("/"));
  h.pool.last().respond(503);
  c.reset();
  h.scheduler.advance(milliseconds(100));
  CHECK(h.pool.streams.size() == 1);
  CHECK(h.value("trellis_requests_total", with(kRoute, "status_code", "0")) == 1);
}

TEST_CASE("request trailers are kept for a retry") {
  Harness h(rule(R"("retry":{"codes":[503],"attempts":1,"backoff":"1ms"})"));
  Client& c = h.send(get("/"), false);
  c.data("x", false);
  hm::HeaderMap t;
  t.add("x-sum", "1");
  c.trailers(std::move(t));
  h.pool.last().respond(503);
  h.scheduler.advance(milliseconds(5));
  REQUIRE(h.pool.streams.size() == 2);
  Upstream& retry = h.pool.last();
  CHECK(retry.body == "x");
  REQUIRE(retry.trailers.has_value());
  CHECK(*retry.trailers->get("x-sum") == "1");
  CHECK(retry.misuse == 0);
}

TEST_CASE("passthrough Service ports retry connect failures within their own budget") {
  Harness h;
  h.pool.responder = [&](Upstream& u) {
    if (h.pool.streams.size() == 1) {
      u.fail(ph::UpstreamFailure::refused_stream);
    } else {
      u.respond(200);
    }
  };
  Client& c = h.send(get("/"), true, kEchoV1);
  h.scheduler.run();
  CHECK(c->status() == 200);
  CHECK(h.pool.streams.size() == 2);
  CHECK(h.value("trellis_retries_total", {{"parent_name", "echo-v1"}, {"route_name", ""},
                                          {"reason", "refused_stream"}}) == 1);
  CHECK(h.budgets->find("Service/shop/echo-v1:80") != nullptr);
}
