// The outbound exchange: routing outcomes, local answers, filters, mirrors,
// streaming and back-pressure, cancellation, metrics.
#include "tests/unit/proxy/exchange/support.h"

using namespace exchange_test;

namespace {

// A rule forwarding everything to echo-v1:80, with `extra` members.
std::string to_v1(std::string_view extra = "") {
  return std::string(R"({"backendRefs":[{"name":"echo-v1","port":80}])") + std::string(extra) +
         "}";
}

void respond_ok(Upstream& u) { u.respond(200, {{"x-from", "upstream"}}); }

}  // namespace

TEST_CASE("a request to a routed frontend is forwarded, streamed back and counted once") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/hello?x=1", {{"x-app", "1"}}), false);
  REQUIRE(h.pool.streams.size() == 1);
  Upstream& u = h.pool.last();
  CHECK(u.head->target == "/hello?x=1");
  CHECK(u.header("x-app") == "1");
  CHECK(!u.request_ended);
  c.data("abc", false);
  c.data("def", true);
  CHECK(u.body == "abcdef");
  CHECK(u.request_ended);
  // echo-v1's endpoints are meshed: the pool dials their sidecar.
  CHECK(u.target.protocol == ph::UpstreamProtocol::mesh);
  CHECK(u.target.identity == kV1Identity);
  CHECK(u.target.address.ip().rfind("10.244.1.", 0) == 0);

  u.respond(200, {{"content-type", "text/plain"}}, false);
  CHECK(c->status() == 200);
  CHECK(!c->ended);
  u.data("one ", false);
  u.data("two", true);
  CHECK(c->body == "one two");
  CHECK(c->ended);
  CHECK(c->misuse == 0);
  CHECK(u.destroyed);
  CHECK(h.scheduler.armed() == 0);
  CHECK(h.value("trellis_requests_total",
                {{"direction", "outbound"}, {"parent_namespace", "shop"}, {"parent_name", "echo"},
                 {"parent_port", "80"}, {"route_kind", "HTTPRoute"}, {"route_namespace", "shop"},
                 {"route_name", "r"}, {"route_rule", "0"}, {"backend_namespace", "shop"},
                 {"backend_name", "echo-v1"}, {"backend_port", "80"},
                 {"status_code", "200"}}) == 1);
  CHECK(h.value("trellis_request_duration_seconds_count", {{"backend_name", "echo-v1"}}) == 1);
  // The exchange ended: late events are ignored and count nothing more.
  c.data("late", true);
  c.exchange->on_downstream_reset();
  CHECK(h.value("trellis_requests_total") == 1);
}

TEST_CASE("routes attached but none matching: 404; gRPC calls get UNIMPLEMENTED in gRPC form") {
  Harness h(http_route(R"([{"matches":[{"path":{"type":"PathPrefix","value":"/api"}}],
                            "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& c = h.send(get("/other"));
  CHECK(c->status() == 404);
  CHECK(c->ended);
  CHECK(c->header("trellis-proxy-error") == "no_route");
  CHECK(h.pool.streams.empty());
  CHECK(h.value("trellis_local_responses_total",
                {{"direction", "outbound"}, {"reason", "no_route"}}) == 1);
  CHECK(h.value("trellis_requests_total",
                {{"parent_name", "echo"}, {"route_name", ""}, {"status_code", "404"}}) == 1);

  Client& g = h.send(grpc_call("/other.Svc/Call"), true);
  CHECK(g->status() == 200);
  CHECK(g->ended);
  CHECK(g->header("content-type") == "application/grpc");
  CHECK(g->header("grpc-status") == "12");
  CHECK(g->header("grpc-message") == "no_route");
  CHECK(h.value("trellis_local_responses_total", {{"reason", "no_route"}}) == 2);
}

TEST_CASE("gRPC-shaped local answers: 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED") {
  Harness h(http_route(R"([
      {"matches":[{"path":{"type":"PathPrefix","value":"/missing"}}],"backendRefs":[{"name":"gone","port":80}]},
      {"matches":[{"path":{"type":"PathPrefix","value":"/empty"}}],"backendRefs":[{"name":"empty","port":80}]},
      {"matches":[{"path":{"type":"PathPrefix","value":"/slow"}}],"timeouts":{"request":"100ms"},
       "backendRefs":[{"name":"echo-v2","port":80}]}])"));
  CHECK(h.send(grpc_call("/missing/M"))->header("grpc-status") == "13");
  CHECK(h.send(grpc_call("/empty/M"))->header("grpc-status") == "14");
  Client& slow = h.send(grpc_call("/slow/M"));
  h.scheduler.advance(milliseconds(100));
  CHECK(slow->status() == 200);
  CHECK(slow->header("grpc-status") == "4");
  CHECK(slow->header("grpc-message") == "request_timeout");
  // The wire status is what trellis_requests_total counts.
  CHECK(h.value("trellis_requests_total", {{"status_code", "200"}}) == 3);
  CHECK(ex::grpc_status_for(502) == 14);
  CHECK(ex::grpc_status_for(418) == 2);
}

TEST_CASE("a passthrough Service port is balanced over its own endpoints, unfiltered") {
  Harness h;
  h.pool.responder = respond_ok;
  Client& c = h.send(get("/x", {{"connection", "close"}}), true, kEchoV1);
  h.scheduler.run();
  REQUIRE(h.pool.streams.size() == 1);
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::mesh);
  CHECK(c->status() == 200);
  CHECK(c->header("x-from") == "upstream");
  CHECK(h.value("trellis_requests_total",
                {{"parent_name", "echo-v1"}, {"route_name", ""}, {"backend_name", "echo-v1"},
                 {"backend_port", "80"}, {"status_code", "200"}}) == 1);

  // HTTP/2 requests to plaintext endpoints go as h2c, HTTP/1 ones as HTTP/1.
  hm::RequestHead h2 = get("/y");
  h2.version = hm::Version::http2;
  h.send(std::move(h2), true);
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::h2c);
  h.send(get("/z"), true);
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::http1);
}

TEST_CASE("a Service port without a ready endpoint answers 503") {
  Harness h;
  Client& c = h.send(get("/"), true, kEmpty);
  CHECK(c->status() == 503);
  CHECK(c->header("trellis-proxy-error") == "no_endpoint");
  CHECK(h.value("trellis_local_responses_total", {{"reason", "no_endpoint"}}) == 1);

  Harness routed(http_route(R"([{"backendRefs":[{"name":"empty","port":80}]}])"));
  CHECK(routed.send(get("/"))->status() == 503);
  CHECK(routed.value("trellis_requests_total",
                     {{"backend_name", "empty"}, {"status_code", "503"}}) == 1);
}

TEST_CASE("a destination that is no frontend (the table changed) is passed through unrouted") {
  Harness h;
  h.pool.responder = respond_ok;
  Client& c = h.send(get("/"), true, "10.96.0.99", 8081);
  h.scheduler.run();
  REQUIRE(h.pool.streams.size() == 1);
  CHECK(h.pool.last().target.address.to_string() == "10.96.0.99:8081");
  CHECK(h.pool.last().target.protocol == ph::UpstreamProtocol::http1);
  CHECK(h.pool.last().target.identity.empty());
  CHECK(c->status() == 200);
  CHECK(h.value("trellis_requests_total",
                {{"direction", "outbound"}, {"parent_name", ""}, {"backend_name", ""},
                 {"status_code", "200"}}) == 1);
}

TEST_CASE("weighted backendRefs split requests 80/20 over 2000 requests") {
  Harness h(http_route(R"([{"backendRefs":[{"name":"echo-v1","port":80,"weight":80},
                                            {"name":"echo-v2","port":80,"weight":20}]}])"));
  h.pool.responder = respond_ok;
  int v1 = 0;
  int v2 = 0;
  for (int i = 0; i < 2000; ++i) {
    Client& c = h.send(get("/"));
    h.scheduler.run();
    REQUIRE(c->status() == 200);
    const Upstream& u = h.pool.last();
    if (u.target.address.ip().rfind("10.244.1.", 0) == 0) {
      ++v1;
      CHECK(u.target.protocol == ph::UpstreamProtocol::mesh);
    } else {
      ++v2;
      CHECK(u.target.address.to_string() == "10.244.2.1:8080");
      CHECK(u.target.protocol == ph::UpstreamProtocol::http1);
    }
    h.clients.clear();
  }
  CHECK(v1 + v2 == 2000);
  CHECK(std::abs(v1 / 2000.0 - 0.8) <= 0.03);
  CHECK(h.value("trellis_requests_total", {{"backend_name", "echo-v1"}}) == v1);
  CHECK(h.value("trellis_requests_total", {{"backend_name", "echo-v2"}}) == v2);
}

TEST_CASE("a backendRef to a missing Service answers 500 for its share") {
  Harness h(http_route(R"([{"backendRefs":[{"name":"echo-v1","port":80},{"name":"gone","port":80}]}])"));
  h.pool.responder = respond_ok;
  int ok = 0;
  int failed = 0;
  for (int i = 0; i < 400; ++i) {
    Client& c = h.send(get("/"));
    h.scheduler.run();
    if (c->status() == 200) ++ok;
    if (c->status() == 500) {
      ++failed;
      CHECK(c->header("trellis-proxy-error") == "no_backend");
    }
  }
  CHECK(ok + failed == 400);
  CHECK(std::abs(failed / 400.0 - 0.5) < 0.1);
  CHECK(h.pool.streams.size() == static_cast<size_t>(ok));
  CHECK(h.value("trellis_local_responses_total", {{"reason", "no_backend"}}) == failed);
  CHECK(h.value("trellis_requests_total", {{"backend_name", "gone"}, {"status_code", "500"}}) ==
        failed);
}

TEST_CASE("an ExtensionRef filter fails closed with 500") {
  Harness h(http_route(R"([{"filters":[{"type":"ExtensionRef","extensionRef":{"group":"x.io","kind":"K","name":"n"}}],
                            "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  CHECK(h.send(get("/"))->status() == 500);
  CHECK(h.value("trellis_local_responses_total", {{"reason", "unsupported_filter"}}) == 1);
}

TEST_CASE("RequestRedirect is answered with its status and Location") {
  Harness h(http_route(R"([{"matches":[{"path":{"type":"PathPrefix","value":"/old"}}],
      "filters":[{"type":"RequestRedirect","requestRedirect":{"hostname":"example.org","statusCode":301,
        "path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/new"}}}]}])"));
  Client& c = h.send(get("/old/page?q=1"));
  CHECK(c->status() == 301);
  CHECK(c->header("location") == "http://example.org/new/page?q=1");
  CHECK(c->header("trellis-proxy-error") == "<absent>");
  CHECK(h.pool.streams.empty());
  CHECK(h.value("trellis_local_responses_total", {{"reason", "redirect"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"route_name", "r"}, {"status_code", "301"}}) == 1);
}

TEST_CASE("header filters apply at rule then backend level, on requests and responses") {
  Harness h(http_route(R"([{
      "filters":[
        {"type":"RequestHeaderModifier","requestHeaderModifier":{
          "set":[{"name":"x-rule","value":"r"}],"add":[{"name":"x-add","value":"rule"}],"remove":["x-drop"]}},
        {"type":"ResponseHeaderModifier","responseHeaderModifier":{"set":[{"name":"x-resp","value":"rule"}]}}],
      "backendRefs":[{"name":"echo-v1","port":80,"filters":[
        {"type":"RequestHeaderModifier","requestHeaderModifier":{
          "set":[{"name":"x-backend","value":"b"}],"add":[{"name":"x-add","value":"backend"}]}},
        {"type":"ResponseHeaderModifier","responseHeaderModifier":{
          "add":[{"name":"x-resp-b","value":"b"}],"remove":["x-secret"]}}]}]}])"));
  Client& c = h.send(get("/", {{"x-add", "client"}, {"x-drop", "1"}}));
  Upstream& u = h.pool.last();
  CHECK(u.header("x-add") == "client,rule,backend");
  CHECK(u.header("x-rule") == "r");
  CHECK(u.header("x-backend") == "b");
  CHECK(u.header("x-drop") == "<absent>");
  u.respond(200, {{"x-secret", "s"}});
  CHECK(c->header("x-resp") == "rule");
  CHECK(c->header("x-resp-b") == "b");
  CHECK(c->header("x-secret") == "<absent>");
}

TEST_CASE("URLRewrite is what the upstream sees; hop-by-hop fields are not forwarded") {
  Harness h(http_route(R"([{"matches":[{"path":{"type":"PathPrefix","value":"/prefix"}}],
      "filters":[{"type":"URLRewrite","urlRewrite":{"hostname":"rewritten.example",
        "path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/new"}}}],
      "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  h.send(get("/prefix/x?q=1", {{"connection", "keep-alive, x-conn"}, {"x-conn", "1"},
                               {"keep-alive", "5"}, {"te", "trailers"}, {"x-keep", "1"}}));
  Upstream& u = h.pool.last();
  CHECK(u.head->target == "/new/x?q=1");
  CHECK(u.head->authority == "rewritten.example");
  CHECK(u.header("connection") == "<absent>");
  CHECK(u.header("x-conn") == "<absent>");
  CHECK(u.header("keep-alive") == "<absent>");
  CHECK(u.header("te") == "trailers");
  CHECK(u.header("x-keep") == "1");
}

TEST_CASE("CORS: a preflight is answered by the proxy, actual responses are decorated") {
  Harness h(http_route(R"([{"filters":[{"type":"CORS","cors":{
        "allowOrigins":["https://app.example"],"allowMethods":["GET","POST"],"maxAge":60}}],
      "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& pre = h.send(get("/", {{"origin", "https://app.example"},
                                 {"access-control-request-method", "POST"}}, "OPTIONS"));
  CHECK(pre->status() == 200);
  CHECK(pre->header("access-control-allow-origin") == "https://app.example");
  CHECK(pre->header("access-control-allow-methods") == "GET, POST");
  CHECK(pre->header("access-control-max-age") == "60");
  CHECK(h.pool.streams.empty());
  CHECK(h.value("trellis_local_responses_total", {{"reason", "cors_preflight"}}) == 1);

  Client& actual = h.send(get("/", {{"origin", "https://app.example"}}));
  h.pool.last().respond(200);
  CHECK(actual->header("access-control-allow-origin") == "https://app.example");
  Client& other = h.send(get("/", {{"origin", "https://evil.example"}}));
  h.pool.last().respond(200);
  CHECK(other->header("access-control-allow-origin") == "<absent>");
}

TEST_CASE("a mirror gets a copy of the forwarded request; its fate never touches the request") {
  Harness h(http_route(R"([{"filters":[
        {"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"x-rule","value":"1"}]}},
        {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"echo-v2","port":80}}}],
      "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& c = h.send(get("/m", {{"content-length", "5"}}), false);
  REQUIRE(h.pool.streams.size() == 1);  // the mirror waits for the whole body
  c.data("hel", false);
  c.data("lo", true);
  REQUIRE(h.pool.streams.size() == 2);
  Upstream& main = *h.pool.streams[0];
  Upstream& mirror = *h.pool.streams[1];
  CHECK(main.target.address.ip().rfind("10.244.1.", 0) == 0);
  CHECK(mirror.target.address.to_string() == "10.244.2.1:8080");
  CHECK(mirror.head->target == "/m");
  CHECK(mirror.header("x-rule") == "1");
  CHECK(mirror.body == "hello");
  CHECK(mirror.request_ended);
  CHECK(h.outbound->mirrors_in_flight() == 1);

  mirror.fail(ph::UpstreamFailure::reset);
  CHECK(!c->closed());
  main.respond(200);
  CHECK(c->status() == 200);
  h.scheduler.run();
  CHECK(h.outbound->mirrors_in_flight() == 0);
  CHECK(h.value("trellis_mirror_requests_total",
                {{"backend_name", "echo-v2"}, {"outcome", "failed"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"backend_name", "echo-v2"}}) == 0);

  // A mirror that answers is completed; one that never answers times out.
  Client& c2 = h.send(get("/m"));  // complete at once: main attempt first, then the mirror
  h.pool.streams[3]->respond(204);
  h.pool.streams[2]->respond(200);
  CHECK(c2->status() == 200);
  Client& c3 = h.send(get("/m"));
  h.pool.streams[4]->respond(200);
  CHECK(c3->status() == 200);
  h.scheduler.advance(milliseconds(10000));
  CHECK(h.pool.streams[5]->destroyed);
  CHECK(h.outbound->mirrors_in_flight() == 0);
  CHECK(h.value("trellis_mirror_requests_total", {{"outcome", "completed"}}) == 1);
  CHECK(h.value("trellis_mirror_requests_total", {{"outcome", "timeout"}}) == 1);
}

TEST_CASE("a mirror is skipped when the body outgrows the buffer or the request never ends") {
  Harness h(http_route(R"([{"filters":[
        {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"echo-v2","port":80}}}],
      "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& c = h.send(get("/big"), false);
  std::string chunk(40 * 1024, 'x');
  c.data(chunk, false);
  c.data(chunk, true);
  CHECK(h.pool.streams.size() == 1);
  CHECK(h.pool.last().body.size() == 80 * 1024);
  h.pool.last().respond(200);
  CHECK(h.value("trellis_mirror_requests_total", {{"outcome", "skipped"}}) == 1);

  // The main response ends before the request does.
  Client& early = h.send(get("/early"), false);
  h.pool.last().respond(413);
  CHECK(early->status() == 413);
  CHECK(h.value("trellis_mirror_requests_total", {{"outcome", "skipped"}}) == 2);

  // A mirror backend without endpoints.
  Harness empty(http_route(R"([{"filters":[
        {"type":"RequestMirror","requestMirror":{"backendRef":{"name":"empty","port":80}}}],
      "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  empty.send(get("/"));
  CHECK(empty.pool.streams.size() == 1);
  CHECK(empty.value("trellis_mirror_requests_total", {{"outcome", "no_endpoint"}}) == 1);
}

TEST_CASE("after the response head, an upstream failure resets the client") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/"));
  Upstream& u = h.pool.last();
  u.respond(200, {}, false);
  u.data("part", false);
  u.fail(ph::UpstreamFailure::reset);
  CHECK(c->was_reset);
  CHECK(c->body == "part");
  CHECK(u.destroyed);
  CHECK(h.value("trellis_requests_total", {{"status_code", "0"}}) == 1);
  CHECK(h.value("trellis_requests_total", {{"status_code", "200"}}) == 0);
}

TEST_CASE("response trailers end the response (gRPC status)") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(grpc_call("/"));
  Upstream& u = h.pool.last();
  CHECK(u.target.protocol == ph::UpstreamProtocol::mesh);
  u.respond(200, {{"content-type", "application/grpc"}}, false);
  u.data("msg", false);
  u.send_trailers({{"grpc-status", "0"}});
  REQUIRE(c->trailers.has_value());
  CHECK(*c->trailers->get("grpc-status") == "0");
  CHECK(c->ended);
  CHECK(h.value("trellis_requests_total", {{"status_code", "200"}}) == 1);
}

TEST_CASE("back-pressure: each side's congestion pauses the other side's body") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/"), false);
  Upstream& u = h.pool.last();
  // Request side: the upstream cannot take more.
  u.congested();
  CHECK(c->pauses == 1);
  CHECK(c->paused);
  u.writable();
  CHECK(c->resumes == 1);
  CHECK(!c->paused);
  c.data("body", true);

  // Response side: the client cannot take more.
  u.respond(200, {}, false);
  c.congested();
  CHECK(u.pauses == 1);
  CHECK(u.paused);
  c.congested();  // repeated: no second pause
  CHECK(u.pauses == 1);
  c.writable();
  CHECK(u.resumes == 1);
  CHECK(!u.paused);
  // Congestion reported from inside a send.
  c->congest_on_data = true;
  u.data("x", false);
  CHECK(u.pauses == 2);
  c.writable();
  u.data("y", true);
  CHECK(c->body == "xy");
  CHECK(c->misuse == 0);
}

TEST_CASE("a client reset cancels everything upstream and counts once") {
  Harness h(http_route(R"([{"timeouts":{"request":"1s","backendRequest":"500ms"},
                            "backendRefs":[{"name":"echo-v1","port":80}]}])"));
  Client& c = h.send(get("/"), false);
  Upstream& u = h.pool.last();
  const balancer::Endpoint* endpoint = h.endpoint(u.target.address.to_string().c_str());
  REQUIRE(endpoint != nullptr);
  CHECK(endpoint->outstanding() == 1);
  CHECK(h.scheduler.armed() == 2);
  h.scheduler.advance(milliseconds(30));
  c.reset();
  CHECK(u.destroyed);
  CHECK(h.scheduler.armed() == 0);
  CHECK(h.scheduler.alarms() == 0);
  CHECK(endpoint->outstanding() == 0);
  CHECK(endpoint->consecutive_failures() == 0);  // abandoned, not judged
  CHECK(h.value("trellis_requests_total", {{"status_code", "0"}}) == 1);
  CHECK(h.value("trellis_request_duration_seconds_sum") == doctest::Approx(0.03));
  h.scheduler.advance(milliseconds(2000));
  CHECK(h.value("trellis_timeouts_total") == 0);
  CHECK(h.value("trellis_requests_total") == 1);
}

TEST_CASE("an exchange destroyed without a reset (its connection died) counts as reset") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/"));
  Upstream& u = h.pool.last();
  c.exchange.reset();
  CHECK(u.destroyed);
  CHECK(h.value("trellis_requests_total", {{"status_code", "0"}}) == 1);
}

TEST_CASE("request trailers are forwarded") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/"), false);
  c.data("x", false);
  hm::HeaderMap t;
  t.add("x-checksum", "abc");
  c.trailers(std::move(t));
  Upstream& u = h.pool.last();
  REQUIRE(u.trailers.has_value());
  CHECK(*u.trailers->get("x-checksum") == "abc");
  CHECK(u.request_ended);
  CHECK(u.misuse == 0);
}

TEST_CASE("a client reset from inside the send of the head is handled once") {
  Harness h(http_route("[" + to_v1() + "]"));
  Client& c = h.send(get("/"));
  c->reset_on_head = true;
  Upstream& u = h.pool.last();
  u.respond(200, {}, false);
  CHECK(c->was_reset);
  CHECK(u.destroyed);
  CHECK(h.value("trellis_requests_total", {{"status_code", "0"}}) == 1);
  CHECK(h.value("trellis_request_duration_seconds_count") == 1);
}

TEST_CASE("the balancer judges forwarded answers: 5xx is a failure, 4xx a success") {
  Harness h(http_route("[" + to_v1() + "]"));
  h.send(get("/"));
  Upstream& first = h.pool.last();
  first.respond(500);
  const balancer::Endpoint* e = h.endpoint(first.target.address.to_string().c_str());
  CHECK(e->consecutive_failures() == 1);
  CHECK(e->outstanding() == 0);
  Client& c = h.send(get("/"));
  Upstream& second = h.pool.last();
  second.respond(404);
  CHECK(c->status() == 404);
  CHECK(h.endpoint(second.target.address.to_string().c_str())->consecutive_failures() == 0);
}
