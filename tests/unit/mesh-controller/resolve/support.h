// Helpers for the resolver's tests: feeding it Kubernetes objects from JSON
// (fixture files in data/, or inline text) and reading its tables.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include "common/json/json.h"
#include "common/kube/objects.h"
#include "common/routes/route_table.h"
#include "mesh-controller/gateway/route.h"
#include "mesh-controller/resolve/resolver.h"

namespace trellis::controller::resolve::test {

constexpr char kMesh[] = "gateway-conformance-mesh";
constexpr char kConsumer[] = "gateway-conformance-mesh-consumer";

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::string fixture_path(std::string_view name) {
  return std::string(TRELLIS_FIXTURES) + "/" + std::string(name);
}

// Upserts one object by its kind.
inline Changes feed(Resolver& resolver, const json::Value& object) {
  auto kind = object.object()->required_string("kind");
  REQUIRE_MESSAGE(kind.ok(), kind.error().message);
  if (*kind == "Namespace") {
    auto ns = kube::decode_namespace(object);
    REQUIRE_MESSAGE(ns.ok(), ns.error().message);
    return resolver.upsert_namespace(*ns);
  }
  if (*kind == "Service") {
    auto service = kube::decode_service(object);
    REQUIRE_MESSAGE(service.ok(), service.error().message);
    return resolver.upsert_service(std::move(*service));
  }
  if (*kind == "EndpointSlice") {
    auto slice = kube::decode_endpoint_slice(object);
    REQUIRE_MESSAGE(slice.ok(), slice.error().message);
    return resolver.upsert_endpoint_slice(std::move(*slice));
  }
  if (*kind == "Pod") {
    auto pod = kube::decode_pod(object);
    REQUIRE_MESSAGE(pod.ok(), pod.error().message);
    return resolver.upsert_pod(*pod);
  }
  REQUIRE_MESSAGE((*kind == "HTTPRoute" || *kind == "GRPCRoute"), "unexpected kind " << *kind);
  auto route = gateway::decode_route(
      *kind == "GRPCRoute" ? routes::RouteKind::grpc_route : routes::RouteKind::http_route, object);
  REQUIRE_MESSAGE(route.ok(), route.error().message);
  return resolver.upsert_route(std::move(*route));
}

// Upserts one object given as JSON text.
inline Changes feed(Resolver& resolver, std::string_view text) {
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE_MESSAGE(doc.ok(), doc.error().message);
  return feed(resolver, doc->root());
}

// Upserts every item of a fixture List.
inline Changes load(Resolver& resolver, std::string_view file) {
  std::string text = read_file(fixture_path(file));
  auto doc = json::Document::parse(text, json::Limits{});
  REQUIRE_MESSAGE(doc.ok(), doc.error().message);
  auto items = doc->root().object()->required_array("items");
  REQUIRE(items.ok());
  Changes changes;
  for (size_t i = 0; i < items->size(); ++i) changes.merge(feed(resolver, (*items)[i]));
  return changes;
}

inline std::unique_ptr<Resolver> make_resolver(Config config = Config{}) {
  auto r = Resolver::create(std::move(config));
  REQUIRE(r.ok());
  return std::move(*r);
}

// A resolver holding the conformance base: namespaces, Services, slices, pods.
inline std::unique_ptr<Resolver> conformance_world() {
  auto r = make_resolver();
  load(*r, "world.json");
  return r;
}

// The table for `ns`, parsed by the sidecar's parser, which must accept it and
// write it back byte for byte.
inline std::shared_ptr<const routes::RouteTable> table(Resolver& resolver, std::string_view ns) {
  std::shared_ptr<const Table> t = resolver.compute(ns);
  std::string text = t->json();
  auto parsed = routes::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().message);
  CHECK(routes::serialize(**parsed) == text);
  CHECK((*parsed)->version == t->version());
  CHECK((*parsed)->ns == ns);
  return *parsed;
}

inline const routes::Service* find_service(const routes::RouteTable& t, std::string_view ns,
                                           std::string_view name) {
  for (const routes::Service& s : t.services) {
    if (s.ns == ns && s.name == name) return &s;
  }
  return nullptr;
}

inline const routes::Endpoints* find_endpoints(const routes::RouteTable& t, std::string_view ns,
                                               std::string_view service, uint16_t port) {
  for (const routes::Endpoints& e : t.endpoints) {
    if (e.ns == ns && e.service == service && e.port == port) return &e;
  }
  return nullptr;
}

// "HTTPRoute ns/name[:port]" for each route on the Service, in table order.
inline std::vector<std::string> route_names(const routes::RouteTable& t, std::string_view ns,
                                            std::string_view service) {
  std::vector<std::string> out;
  const routes::Service* s = find_service(t, ns, service);
  if (s == nullptr) return out;
  for (const routes::Route& r : s->routes) {
    out.push_back(std::string(routes::name(r.kind)) + " " + r.ns + "/" + r.name +
                  (r.port ? ":" + std::to_string(*r.port) : ""));
  }
  return out;
}

inline RouteKey http_key(std::string ns, std::string name) {
  return RouteKey{routes::RouteKind::http_route, std::move(ns), std::move(name)};
}

inline RouteKey grpc_key(std::string ns, std::string name) {
  return RouteKey{routes::RouteKind::grpc_route, std::move(ns), std::move(name)};
}

// The condition of `type` in the route's status for its `parent`th Service parentRef.
inline const gateway::Condition* condition(const std::vector<gateway::RouteParentStatus>& status,
                                           size_t parent, std::string_view type) {
  if (parent >= status.size()) return nullptr;
  for (const gateway::Condition& c : status[parent].conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

}  // namespace trellis::controller::resolve::test
