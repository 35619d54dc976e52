// The router's compiled form of a route table: built once per table (off the
// request path), then shared read-only by every worker thread. Per request it
// answers, without allocating:
//   1. frontend(ip, port): is the dialled (ClusterIP, port) a Service frontend?
//      The mesh routes by the address dialled, never by Host. nullptr = not a
//      frontend: pass the connection through untouched.
//   2. Frontend::mode: passthrough (no route attached: send to the Service's own
//      endpoints), http or grpc (routes attached; GRPCRoutes win over HTTPRoutes
//      on the same Service port).
//   3. match(frontend, request): the winning rule by Gateway API precedence, or
//      nullptr: 404.
//   4. pick(rule, draw): the weighted backend (nullptr: no weight, 500); the
//      backend's state says 500 (missing or not a Service) or 503 (no ready
//      endpoint).
// filters.h turns a rule and backend into what to do with the request.
// Matching semantics and precedence: docs/route-table.md.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/http/message.h"
#include "common/routes/route_table.h"

namespace trellis::proxy::router {

// An IPv4 or IPv6 address in binary form; IPv4-mapped IPv6 addresses are
// stored as IPv4 so that both spellings find the same frontend.
struct IpAddress {
  uint8_t family = 0;  // 4 or 6; 0 = invalid
  std::array<uint8_t, 16> bytes{};

  static IpAddress parse(std::string_view text);      // family 0 when invalid
  static IpAddress from_sockaddr(const sockaddr* addr);  // AF_INET / AF_INET6
  bool operator==(const IpAddress& o) const { return family == o.family && bytes == o.bytes; }
};

// Stable identifiers, for metric labels and logs; views into the route table,
// valid while the Table lives.
struct RuleId {
  routes::RouteKind route_kind = routes::RouteKind::http_route;
  std::string_view route_namespace;
  std::string_view route_name;
  size_t rule_index = 0;
  std::string_view rule_name;  // "" when the rule has no name
  std::string_view parent_namespace;
  std::string_view parent_name;
  uint16_t parent_port = 0;
};

struct BackendId {
  std::string_view ns;
  std::string_view name;
  uint16_t port = 0;  // 0 when the reference has none (not a Service)
};

// The addresses of one (namespace, service, port) endpoints entry a request may
// go to: the ready ones, or, when none is ready, the serving ones that are
// terminating (as kube-proxy falls back to them).
struct EndpointSet {
  const routes::Endpoints* source = nullptr;
  std::vector<const routes::EndpointAddress*> eligible;
};

struct Cors;  // compiled CORS filter, filters.h

// One filter list (a rule's or a backendRef's), compiled. The CRD allows each of
// these filter types at most once per list; mirrors may repeat.
struct Mirror;
struct Filters {
  const routes::HTTPHeaderFilter* request_headers = nullptr;
  const routes::HTTPHeaderFilter* response_headers = nullptr;
  const routes::HTTPURLRewriteFilter* url_rewrite = nullptr;
  const routes::HTTPRequestRedirectFilter* redirect = nullptr;
  std::vector<Mirror> mirrors;
  std::shared_ptr<const Cors> cors;
  // An ExtensionRef: Trellis implements none, and the API forbids skipping
  // one, so requests through this list fail closed with 500.
  bool unsupported = false;

  Filters();
  ~Filters();
  Filters(Filters&&) noexcept;
  Filters& operator=(Filters&&) noexcept;
};

enum class BackendState {
  ok,           // resolved, with at least one eligible endpoint
  invalid,      // not a Service, or no endpoints entry for it: its share answers 500
  unavailable,  // an endpoints entry without an eligible address: 503
};

struct Backend {
  size_t ordinal = 0;  // dense over Table::backends(), for per-backend state (metrics)
  BackendId id;
  uint32_t weight = 1;
  BackendState state = BackendState::invalid;
  const EndpointSet* endpoints = nullptr;  // set unless invalid
  Filters filters;                         // backendRef-level
};

struct Mirror {
  Backend backend;
  // Mirrored when a uniform draw in [0, denominator) is below numerator.
  uint32_t numerator = 1;
  uint32_t denominator = 1;
};

struct Rule {
  size_t ordinal = 0;  // dense over Table::rules()
  RuleId id;
  const routes::Route* route = nullptr;
  const routes::HTTPRouteRule* http = nullptr;  // exactly one of http and grpc
  const routes::GRPCRouteRule* grpc = nullptr;
  Filters filters;  // rule-level; applied before the backend's
  std::vector<Backend> backends;
  std::vector<uint64_t> cumulative_weights;
  uint64_t total_weight = 0;
  // The value of the rule's single PathPrefix match, without a trailing '/'
  // ("" for "/"): what ReplacePrefixMatch replaces.
  std::string_view prefix;
  bool has_prefix = false;
  const routes::HTTPRouteTimeouts* timeouts = nullptr;
  const routes::HTTPRouteRetry* retry = nullptr;
};

enum class Mode { passthrough, http, grpc };

namespace detail {
struct MatchIndex;
}

// A Service port reached through one of its ClusterIPs.
struct Frontend {
  const routes::Service* service = nullptr;
  const routes::ServicePort* port = nullptr;
  Mode mode = Mode::passthrough;
  const EndpointSet* endpoints = nullptr;  // the Service's own, for passthrough; may be null
  // Host for a redirect when the request has no authority: the first ClusterIP.
  std::string default_host;
  std::vector<Rule> rules;  // the rules of the routes that apply, in table order
  std::unique_ptr<detail::MatchIndex> index;  // compiled matching, private to the router

  Frontend();
  ~Frontend();
};

class Table {
 public:
  static std::shared_ptr<const Table> compile(std::shared_ptr<const routes::RouteTable> routes);

  const Frontend* frontend(const IpAddress& ip, uint16_t port) const;
  const Frontend* frontend(const sockaddr* original_destination) const;

  // The winning rule for a request on an http or grpc frontend, or nullptr
  // (404; for gRPC the proxy answers in gRPC form). Always nullptr for
  // passthrough frontends.
  const Rule* match(const Frontend& frontend, const trellis::http::RequestHead& request) const;

  const routes::RouteTable& source() const { return *source_; }
  const std::vector<std::unique_ptr<Frontend>>& frontends() const { return frontends_; }
  const std::vector<const Rule*>& rules() const { return rules_; }           // by ordinal
  // By ordinal; mirror backends included.
  const std::vector<const Backend*>& backends() const { return backends_; }
  // For install-time lookups (allocates); requests use Frontend::endpoints and
  // Backend::endpoints.
  const EndpointSet* endpoints(std::string_view ns, std::string_view service, uint16_t port) const;

 private:
  struct FrontendKey {
    IpAddress ip;
    uint16_t port;
    bool operator==(const FrontendKey& o) const { return port == o.port && ip == o.ip; }
  };
  struct FrontendKeyHash {
    size_t operator()(const FrontendKey& k) const;
  };

  std::shared_ptr<const routes::RouteTable> source_;
  std::vector<std::unique_ptr<EndpointSet>> endpoint_sets_;
  std::unordered_map<std::string, const EndpointSet*> endpoints_by_key_;
  std::vector<std::unique_ptr<Frontend>> frontends_;
  std::unordered_map<FrontendKey, const Frontend*, FrontendKeyHash> by_address_;
  std::vector<const Rule*> rules_;
  std::vector<const Backend*> backends_;

  friend class Compiler;
};

// Weighted backend choice. `draw` is uniform over all uint64 values (the
// caller's random source). nullptr when every weight is 0: answer 500.
const Backend* pick(const Rule& rule, uint64_t draw);

}  // namespace trellis::proxy::router
