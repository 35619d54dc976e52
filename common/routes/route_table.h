// The route table: the contract between trellis-controller (which builds and
// serializes one per client namespace) and trellis-proxy (which parses it and
// routes by it). Format and semantics: docs/route-table.md.
//
// The model mirrors Gateway API v1 (v1.6.1) field for field; C++ members are
// the JSON names in snake_case (`backendRefs` -> `backend_refs`), and
// `namespace`, a C++ keyword, is `ns` throughout. parse() fills in defaults as
// the API server would and validates what the CRDs validate (enums, ranges,
// maxItems, CEL rules), so a parsed table is complete: no field the proxy reads
// needs a second default. An invalid table is rejected whole with the first
// error, path-qualified (`services[0].routes[1].rules[2].matches[0].path.type:
// unknown value 'Foo' (want Exact, PathPrefix or RegularExpression)`).
//
// A parsed table is immutable and shared (std::shared_ptr<const RouteTable>);
// reading it from several threads is safe. Regular expressions are compiled
// once by parse() (RE2: linear-time matching, no recursion) and shared by
// copies of the model.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace re2 {
class RE2;
}

namespace trellis::routes {

using Regex = std::shared_ptr<const re2::RE2>;

enum class RouteKind { http_route, grpc_route };                     // HTTPRoute, GRPCRoute
// Exact, PathPrefix, RegularExpression
enum class PathMatchType { exact, path_prefix, regular_expression };
enum class MatchType { exact, regular_expression };                   // Exact, RegularExpression
enum class PathModifierType { replace_full_path, replace_prefix_match };
enum class FilterType {
  request_header_modifier,
  response_header_modifier,
  request_redirect,
  url_rewrite,
  request_mirror,
  cors,
  extension_ref,
};

// The Gateway API spelling: "HTTPRoute", "PathPrefix", "URLRewrite", ...
std::string_view name(RouteKind kind);
std::string_view name(PathMatchType type);
std::string_view name(MatchType type);
std::string_view name(PathModifierType type);
std::string_view name(FilterType type);

// A GEP-2257 duration: the text exactly as written (never normalized, as the
// API requires) and its value.
struct Duration {
  std::string text;
  std::chrono::milliseconds value{0};
};

struct HTTPPathMatch {
  PathMatchType type = PathMatchType::path_prefix;
  std::string value = "/";
  Regex regex;  // set for RegularExpression
};

// HTTPHeaderMatch, HTTPQueryParamMatch and GRPCHeaderMatch share this shape.
struct StringMatch {
  MatchType type = MatchType::exact;
  std::string name;
  std::string value;
  Regex regex;  // set for RegularExpression
};

struct HTTPRouteMatch {
  HTTPPathMatch path;
  std::vector<StringMatch> headers;
  std::vector<StringMatch> query_params;
  std::optional<std::string> method;  // GET, HEAD, POST, ...
};

struct HTTPHeader {
  std::string name;
  std::string value;
};

// requestHeaderModifier / responseHeaderModifier.
struct HTTPHeaderFilter {
  std::vector<HTTPHeader> set;
  std::vector<HTTPHeader> add;
  std::vector<std::string> remove;
};

struct HTTPPathModifier {
  PathModifierType type = PathModifierType::replace_full_path;
  std::optional<std::string> replace_full_path;
  std::optional<std::string> replace_prefix_match;
};

struct HTTPRequestRedirectFilter {
  std::optional<std::string> scheme;  // http | https
  std::optional<std::string> hostname;
  std::optional<HTTPPathModifier> path;
  std::optional<uint16_t> port;
  int status_code = 302;  // 301 | 302 | 303 | 307 | 308
};

struct HTTPURLRewriteFilter {
  std::optional<std::string> hostname;
  std::optional<HTTPPathModifier> path;
};

// BackendObjectReference, also the head of HTTPBackendRef.
struct BackendObjectReference {
  std::string group;            // "" (core)
  std::string kind = "Service";
  std::string name;
  std::string ns;               // defaulted to the route's namespace
  std::optional<uint16_t> port; // required for Services
};

struct Fraction {
  int32_t numerator = 0;
  int32_t denominator = 100;
};

struct HTTPRequestMirrorFilter {
  BackendObjectReference backend_ref;
  std::optional<int32_t> percent;     // 0-100
  std::optional<Fraction> fraction;   // at most one of percent and fraction; neither = all
};

struct HTTPCORSFilter {
  std::vector<std::string> allow_origins;
  std::vector<std::string> allow_methods;
  std::vector<std::string> allow_headers;
  std::vector<std::string> expose_headers;
  std::optional<bool> allow_credentials;
  int32_t max_age = 5;
};

// ExtensionRef: recorded so that the proxy can fail closed (500) for the
// rules that use one; Trellis implements no extension filters.
struct LocalObjectReference {
  std::string group;
  std::string kind;
  std::string name;
};

// HTTPRouteFilter; GRPCRouteFilter is the same shape restricted to
// RequestHeaderModifier, ResponseHeaderModifier, RequestMirror and ExtensionRef.
// Exactly the member named by `type` is set.
struct HTTPRouteFilter {
  FilterType type = FilterType::request_header_modifier;
  std::optional<HTTPHeaderFilter> request_header_modifier;
  std::optional<HTTPHeaderFilter> response_header_modifier;
  std::optional<HTTPRequestRedirectFilter> request_redirect;
  std::optional<HTTPURLRewriteFilter> url_rewrite;
  std::optional<HTTPRequestMirrorFilter> request_mirror;
  std::optional<HTTPCORSFilter> cors;
  std::optional<LocalObjectReference> extension_ref;
};
using GRPCRouteFilter = HTTPRouteFilter;

// HTTPBackendRef and GRPCBackendRef.
struct HTTPBackendRef {
  BackendObjectReference ref;  // group, kind, name, namespace, port (inline in JSON)
  int32_t weight = 1;          // 0-1000000; 0 = never chosen
  std::vector<HTTPRouteFilter> filters;
};
using GRPCBackendRef = HTTPBackendRef;

struct HTTPRouteTimeouts {
  std::optional<Duration> request;
  std::optional<Duration> backend_request;
};

struct HTTPRouteRetry {
  std::vector<int32_t> codes;  // 400-599
  std::optional<int32_t> attempts;
  std::optional<Duration> backoff;
};

struct HTTPRouteRule {
  std::optional<std::string> name;
  std::vector<HTTPRouteMatch> matches;  // never empty once parsed
  std::vector<HTTPRouteFilter> filters;
  std::vector<HTTPBackendRef> backend_refs;
  std::optional<HTTPRouteTimeouts> timeouts;
  std::optional<HTTPRouteRetry> retry;
};

struct GRPCMethodMatch {
  MatchType type = MatchType::exact;
  std::optional<std::string> service;
  std::optional<std::string> method;
  Regex service_regex;  // set for RegularExpression with a service
  Regex method_regex;   // set for RegularExpression with a method
};

struct GRPCRouteMatch {
  std::optional<GRPCMethodMatch> method;
  std::vector<StringMatch> headers;
};

struct GRPCRouteRule {
  std::optional<std::string> name;
  std::vector<GRPCRouteMatch> matches;  // empty = every RPC
  std::vector<GRPCRouteFilter> filters;
  std::vector<GRPCBackendRef> backend_refs;
};

struct Route {
  RouteKind kind = RouteKind::http_route;
  std::string ns;
  std::string name;
  std::string creation_timestamp;  // RFC 3339, as written
  int64_t creation_time_ns = 0;    // the same, in nanoseconds since the Unix epoch (ordering)
  std::optional<uint16_t> port;    // absent = every port of the Service
  std::vector<HTTPRouteRule> http_rules;  // kind HTTPRoute
  std::vector<GRPCRouteRule> grpc_rules;  // kind GRPCRoute
};

struct ServicePort {
  std::string name;
  uint16_t port = 0;
  uint16_t target_port = 0;  // defaulted to `port`
  std::optional<std::string> app_protocol;
};

struct Service {
  std::string ns;
  std::string name;
  std::vector<std::string> cluster_ips;
  std::vector<ServicePort> ports;
  std::vector<Route> routes;
};

struct EndpointAddress {
  std::string ip;
  uint16_t port = 0;
  bool ready = true;  // EndpointSlice: an unknown condition reads as ready
  std::optional<bool> serving;
  std::optional<bool> terminating;
  std::optional<std::string> pod;
  std::optional<std::string> identity;  // SPIFFE ID; present = meshed (mTLS)
};

struct Endpoints {
  std::string ns;
  std::string service;
  uint16_t port = 0;  // the Service port
  std::vector<EndpointAddress> addresses;
};

struct RouteTable {
  std::string version;  // opaque; changes whenever the content changes
  std::string ns;       // the client namespace
  std::vector<Service> services;
  std::vector<Endpoints> endpoints;
};

// Bounds on what one table may hold, so that a hostile or runaway table is
// rejected with a clear error instead of exhausting memory. The defaults fit a
// namespace's table for a cluster of 10 000 Services and 50 000 endpoints.
struct Limits {
  size_t max_bytes = size_t{48} << 20;
  size_t max_depth = 32;           // JSON nesting; a table needs 14
  size_t max_services = 16384;
  size_t max_routes = 16384;       // route entries, over all services
  size_t max_rules = 32768;        // over all routes
  size_t max_matches = 65536;      // over all rules, defaults included
  size_t max_endpoints = 131072;   // addresses, over all endpoints entries
  int max_regex_program_size = 1000;  // RE2 program size of one regular expression
};

Result<std::shared_ptr<const RouteTable>> parse(std::string_view json,
                                                const Limits& limits = Limits{});

// Compact JSON with every default spelled out; parse(serialize(t)) == t.
std::string serialize(const RouteTable& table);

// Structural equality of the API fields (compiled regexes are not compared;
// they follow from the patterns).
bool operator==(const HTTPPathMatch& a, const HTTPPathMatch& b);
bool operator==(const StringMatch& a, const StringMatch& b);
bool operator==(const HTTPRouteMatch& a, const HTTPRouteMatch& b);
bool operator==(const HTTPHeader& a, const HTTPHeader& b);
bool operator==(const HTTPHeaderFilter& a, const HTTPHeaderFilter& b);
bool operator==(const HTTPPathModifier& a, const HTTPPathModifier& b);
bool operator==(const HTTPRequestRedirectFilter& a, const HTTPRequestRedirectFilter& b);
bool operator==(const HTTPURLRewriteFilter& a, const HTTPURLRewriteFilter& b);
bool operator==(const BackendObjectReference& a, const BackendObjectReference& b);
bool operator==(const Fraction& a, const Fraction& b);
bool operator==(const HTTPRequestMirrorFilter& a, const HTTPRequestMirrorFilter& b);
bool operator==(const HTTPCORSFilter& a, const HTTPCORSFilter& b);
bool operator==(const LocalObjectReference& a, const LocalObjectReference& b);
bool operator==(const HTTPRouteFilter& a, const HTTPRouteFilter& b);
bool operator==(const HTTPBackendRef& a, const HTTPBackendRef& b);
bool operator==(const Duration& a, const Duration& b);
bool operator==(const HTTPRouteTimeouts& a, const HTTPRouteTimeouts& b);
bool operator==(const HTTPRouteRetry& a, const HTTPRouteRetry& b);
bool operator==(const HTTPRouteRule& a, const HTTPRouteRule& b);
bool operator==(const GRPCMethodMatch& a, const GRPCMethodMatch& b);
bool operator==(const GRPCRouteMatch& a, const GRPCRouteMatch& b);
bool operator==(const GRPCRouteRule& a, const GRPCRouteRule& b);
bool operator==(const Route& a, const Route& b);
bool operator==(const ServicePort& a, const ServicePort& b);
bool operator==(const Service& a, const Service& b);
bool operator==(const EndpointAddress& a, const EndpointAddress& b);
bool operator==(const Endpoints& a, const Endpoints& b);
bool operator==(const RouteTable& a, const RouteTable& b);

}  // namespace trellis::routes
