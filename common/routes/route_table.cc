#include "common/routes/route_table.h"

#include <tuple>

namespace trellis::routes {

std::string_view name(RouteKind kind) {
  switch (kind) {
    case RouteKind::http_route: return "HTTPRoute";
    case RouteKind::grpc_route: return "GRPCRoute";
  }
  return "HTTPRoute";
}

std::string_view name(PathMatchType type) {
  switch (type) {
    case PathMatchType::exact: return "Exact";
    case PathMatchType::path_prefix: return "PathPrefix";
    case PathMatchType::regular_expression: return "RegularExpression";
  }
  return "PathPrefix";
}

std::string_view name(MatchType type) {
  switch (type) {
    case MatchType::exact: return "Exact";
    case MatchType::regular_expression: return "RegularExpression";
  }
  return "Exact";
}

std::string_view name(PathModifierType type) {
  switch (type) {
    case PathModifierType::replace_full_path: return "ReplaceFullPath";
    case PathModifierType::replace_prefix_match: return "ReplacePrefixMatch";
  }
  return "ReplaceFullPath";
}

std::string_view name(FilterType type) {
  switch (type) {
    case FilterType::request_header_modifier: return "RequestHeaderModifier";
    case FilterType::response_header_modifier: return "ResponseHeaderModifier";
    case FilterType::request_redirect: return "RequestRedirect";
    case FilterType::url_rewrite: return "URLRewrite";
    case FilterType::request_mirror: return "RequestMirror";
    case FilterType::cors: return "CORS";
    case FilterType::extension_ref: return "ExtensionRef";
  }
  return "RequestHeaderModifier";
}

bool operator==(const HTTPPathMatch& a, const HTTPPathMatch& b) {
  return std::tie(a.type, a.value) == std::tie(b.type, b.value);
}

bool operator==(const StringMatch& a, const StringMatch& b) {
  return std::tie(a.type, a.name, a.value) == std::tie(b.type, b.name, b.value);
}

bool operator==(const HTTPRouteMatch& a, const HTTPRouteMatch& b) {
  return std::tie(a.path, a.headers, a.query_params, a.method) ==
         std::tie(b.path, b.headers, b.query_params, b.method);
}

bool operator==(const HTTPHeader& a, const HTTPHeader& b) {
  return std::tie(a.name, a.value) == std::tie(b.name, b.value);
}

bool operator==(const HTTPHeaderFilter& a, const HTTPHeaderFilter& b) {
  return std::tie(a.set, a.add, a.remove) == std::tie(b.set, b.add, b.remove);
}

bool operator==(const HTTPPathModifier& a, const HTTPPathModifier& b) {
  return std::tie(a.type, a.replace_full_path, a.replace_prefix_match) ==
         std::tie(b.type, b.replace_full_path, b.replace_prefix_match);
}

bool operator==(const HTTPRequestRedirectFilter& a, const HTTPRequestRedirectFilter& b) {
  return std::tie(a.scheme, a.hostname, a.path, a.port, a.status_code) ==
         std::tie(b.scheme, b.hostname, b.path, b.port, b.status_code);
}

bool operator==(const HTTPURLRewriteFilter& a, const HTTPURLRewriteFilter& b) {
  return std::tie(a.hostname, a.path) == std::tie(b.hostname, b.path);
}

bool operator==(const BackendObjectReference& a, const BackendObjectReference& b) {
  return std::tie(a.group, a.kind, a.name, a.ns, a.port) ==
         std::tie(b.group, b.kind, b.name, b.ns, b.port);
}

bool operator==(const Fraction& a, const Fraction& b) {
  return std::tie(a.numerator, a.denominator) == std::tie(b.numerator, b.denominator);
}

bool operator==(const HTTPRequestMirrorFilter& a, const HTTPRequestMirrorFilter& b) {
  return std::tie(a.backend_ref, a.percent, a.fraction) ==
         std::tie(b.backend_ref, b.percent, b.fraction);
}

bool operator==(const HTTPCORSFilter& a, const HTTPCORSFilter& b) {
  return std::tie(a.allow_origins, a.allow_methods, a.allow_headers, a.expose_headers,
                  a.allow_credentials, a.max_age) ==
         std::tie(b.allow_origins, b.allow_methods, b.allow_headers, b.expose_headers,
                  b.allow_credentials, b.max_age);
}

bool operator==(const LocalObjectReference& a, const LocalObjectReference& b) {
  return std::tie(a.group, a.kind, a.name) == std::tie(b.group, b.kind, b.name);
}

bool operator==(const HTTPRouteFilter& a, const HTTPRouteFilter& b) {
  return std::tie(a.type, a.request_header_modifier, a.response_header_modifier,
                  a.request_redirect, a.url_rewrite, a.request_mirror, a.cors, a.extension_ref) ==
         std::tie(b.type, b.request_header_modifier, b.response_header_modifier,
                  b.request_redirect, b.url_rewrite, b.request_mirror, b.cors, b.extension_ref);
}

bool operator==(const HTTPBackendRef& a, const HTTPBackendRef& b) {
  return std::tie(a.ref, a.weight, a.filters) == std::tie(b.ref, b.weight, b.filters);
}

bool operator==(const Duration& a, const Duration& b) {
  return std::tie(a.text, a.value) == std::tie(b.text, b.value);
}

bool operator==(const HTTPRouteTimeouts& a, const HTTPRouteTimeouts& b) {
  return std::tie(a.request, a.backend_request) == std::tie(b.request, b.backend_request);
}

bool operator==(const HTTPRouteRetry& a, const HTTPRouteRetry& b) {
  return std::tie(a.codes, a.attempts, a.backoff) == std::tie(b.codes, b.attempts, b.backoff);
}

bool operator==(const HTTPRouteRule& a, const HTTPRouteRule& b) {
  return std::tie(a.name, a.matches, a.filters, a.backend_refs, a.timeouts, a.retry) ==
         std::tie(b.name, b.matches, b.filters, b.backend_refs, b.timeouts, b.retry);
}

bool operator==(const GRPCMethodMatch& a, const GRPCMethodMatch& b) {
  return std::tie(a.type, a.service, a.method) == std::tie(b.type, b.service, b.method);
}

bool operator==(const GRPCRouteMatch& a, const GRPCRouteMatch& b) {
  return std::tie(a.method, a.headers) == std::tie(b.method, b.headers);
}

bool operator==(const GRPCRouteRule& a, const GRPCRouteRule& b) {
  return std::tie(a.name, a.matches, a.filters, a.backend_refs) ==
         std::tie(b.name, b.matches, b.filters, b.backend_refs);
}

bool operator==(const Route& a, const Route& b) {
  return std::tie(a.kind, a.ns, a.name, a.creation_timestamp, a.creation_time_ns, a.port,
                  a.http_rules, a.grpc_rules) ==
         std::tie(b.kind, b.ns, b.name, b.creation_timestamp, b.creation_time_ns, b.port,
                  b.http_rules, b.grpc_rules);
}

bool operator==(const ServicePort& a, const ServicePort& b) {
  return std::tie(a.name, a.port, a.target_port, a.app_protocol) ==
         std::tie(b.name, b.port, b.target_port, b.app_protocol);
}

bool operator==(const Service& a, const Service& b) {
  return std::tie(a.ns, a.name, a.cluster_ips, a.ports, a.routes) ==
         std::tie(b.ns, b.name, b.cluster_ips, b.ports, b.routes);
}

bool operator==(const EndpointAddress& a, const EndpointAddress& b) {
  return std::tie(a.ip, a.port, a.ready, a.serving, a.terminating, a.pod, a.identity) ==
         std::tie(b.ip, b.port, b.ready, b.serving, b.terminating, b.pod, b.identity);
}

bool operator==(const Endpoints& a, const Endpoints& b) {
  return std::tie(a.ns, a.service, a.port, a.addresses) ==
         std::tie(b.ns, b.service, b.port, b.addresses);
}

bool operator==(const RouteTable& a, const RouteTable& b) {
  return std::tie(a.version, a.ns, a.services, a.endpoints) ==
         std::tie(b.version, b.ns, b.services, b.endpoints);
}

}  // namespace trellis::routes
