// Test support for the router: loading route tables and sending a request
// through the whole decision (frontend -> rule -> action -> filters) the way
// the proxy does.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "common/http/message.h"
#include "common/routes/route_table.h"
#include "proxy/router/filters.h"
#include "proxy/router/table.h"

namespace router_test {

namespace router = trellis::proxy::router;
namespace routes = trellis::routes;
namespace http = trellis::http;

// ClusterIPs of the mesh conformance Services in data/*.json.
constexpr char kEcho[] = "10.96.0.10";
constexpr char kEchoV1[] = "10.96.0.11";
constexpr char kEchoV2[] = "10.96.0.12";
constexpr char kEchoV2Pod[] = "10.244.0.12";

inline std::string read_data(const std::string& name) {
  std::ifstream in(std::string(TRELLIS_ROUTER_TEST_DATA) + "/" + name);
  REQUIRE_MESSAGE(in.good(), "missing test data " << name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::shared_ptr<const router::Table> compile_json(std::string_view json) {
  auto parsed = routes::parse(json);
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? std::string() : parsed.error().message));
  return router::Table::compile(*parsed);
}

inline std::shared_ptr<const router::Table> load(const std::string& name) {
  return compile_json(read_data(name));
}

inline http::RequestHead request(std::string target,
                                 std::initializer_list<std::pair<const char*, const char*>> headers = {},
                                 std::string method = "GET", std::string authority = "echo") {
  http::RequestHead r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.authority = std::move(authority);
  for (const auto& [name, value] : headers) r.headers.add(name, value);
  return r;
}

// A gRPC call as the Istio echo client makes it: POST /proto.EchoTestService/Echo.
inline http::RequestHead grpc_request(std::initializer_list<std::pair<const char*, const char*>> headers = {},
                                      std::string path = "/proto.EchoTestService/Echo") {
  http::RequestHead r = request(std::move(path), headers, "POST", "echo:7070");
  r.version = http::Version::http2;
  r.headers.add("content-type", "application/grpc");
  r.headers.add("te", "trailers");
  return r;
}

struct Outcome {
  int status = 0;             // 200 when forwarded; -1 when the target is not a frontend
  bool passthrough = false;   // no route attached: to the Service's own endpoints
  std::string backend;        // the Service forwarded to ("echo-v1"), or passed through to
  const router::Rule* rule = nullptr;
  http::RequestHead upstream;  // the request as forwarded, after filters
  http::ResponseHead response;  // as returned to the client, after filters
  std::string location;

  std::string response_header(std::string_view name) const {
    const std::string* v = response.headers.get(name);
    return v ? *v : std::string("<absent>");
  }
  std::string upstream_header(std::string_view name) const {
    return upstream.headers.contains(name) ? upstream.headers.joined(name) : std::string("<absent>");
  }
};

// Sends `req` to ip:port; `draw` is the uniform draw for the weighted choice.
inline Outcome send(const router::Table& table, const char* ip, uint16_t port, http::RequestHead req,
                    uint64_t draw = 0) {
  Outcome out;
  const router::Frontend* f = table.frontend(router::IpAddress::parse(ip), port);
  if (f == nullptr) {
    out.status = -1;
    return out;
  }
  if (f->mode == router::Mode::passthrough) {
    out.passthrough = true;
    out.status = 200;
    out.backend = f->service->name;
    out.upstream = std::move(req);
    out.response.status = 200;
    return out;
  }
  out.rule = table.match(*f, req);
  if (out.rule == nullptr) {
    out.status = 404;
    return out;
  }
  router::Action a = router::decide(*f, *out.rule, req, draw);
  if (a.kind == router::Action::Kind::respond) {
    out.status = a.response.status;
    out.response = a.response;
    if (const std::string* loc = a.response.headers.get("location")) out.location = *loc;
    if (a.backend) out.backend = std::string(a.backend->id.name);
    return out;
  }
  out.status = 200;
  out.backend = std::string(a.backend->id.name);
  out.upstream = req;
  router::apply_request_filters(*out.rule, a.backend, out.upstream);
  out.response.status = 200;
  router::apply_response_filters(*out.rule, a.backend, req, out.response);
  return out;
}

}  // namespace router_test
