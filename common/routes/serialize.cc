// RouteTable -> compact JSON, every default spelled out, optional fields that
// are absent left out; parse(serialize(t)) == t.
#include "common/json/json.h"
#include "common/routes/route_table.h"

namespace trellis::routes {
namespace {

using json::Writer;

void optional_string(Writer& w, std::string_view key, const std::optional<std::string>& v) {
  if (v) w.string_field(key, *v);
}

void optional_integer(Writer& w, std::string_view key, const std::optional<uint16_t>& v) {
  if (v) w.integer_field(key, *v);
}

void strings(Writer& w, std::string_view key, const std::vector<std::string>& items) {
  if (items.empty()) return;
  w.key(key).start_array();
  for (const std::string& s : items) w.string(s);
  w.end_array();
}

void string_matches(Writer& w, std::string_view key, const std::vector<StringMatch>& matches) {
  if (matches.empty()) return;
  w.key(key).start_array();
  for (const StringMatch& m : matches) {
    w.start_object()
        .string_field("type", name(m.type))
        .string_field("name", m.name)
        .string_field("value", m.value)
        .end_object();
  }
  w.end_array();
}

void headers(Writer& w, std::string_view key, const std::vector<HTTPHeader>& list) {
  if (list.empty()) return;
  w.key(key).start_array();
  for (const HTTPHeader& h : list) {
    w.start_object().string_field("name", h.name).string_field("value", h.value).end_object();
  }
  w.end_array();
}

void header_filter(Writer& w, std::string_view key, const HTTPHeaderFilter& f) {
  w.key(key).start_object();
  headers(w, "set", f.set);
  headers(w, "add", f.add);
  strings(w, "remove", f.remove);
  w.end_object();
}

void path_modifier(Writer& w, const std::optional<HTTPPathModifier>& m) {
  if (!m) return;
  w.key("path").start_object().string_field("type", name(m->type));
  optional_string(w, "replaceFullPath", m->replace_full_path);
  optional_string(w, "replacePrefixMatch", m->replace_prefix_match);
  w.end_object();
}

void object_ref_fields(Writer& w, const BackendObjectReference& r) {
  w.string_field("group", r.group)
      .string_field("kind", r.kind)
      .string_field("name", r.name)
      .string_field("namespace", r.ns);
  optional_integer(w, "port", r.port);
}

void filters(Writer& w, const std::vector<HTTPRouteFilter>& list);

void filter(Writer& w, const HTTPRouteFilter& f) {
  w.start_object().string_field("type", name(f.type));
  switch (f.type) {
    case FilterType::request_header_modifier:
      header_filter(w, "requestHeaderModifier", *f.request_header_modifier);
      break;
    case FilterType::response_header_modifier:
      header_filter(w, "responseHeaderModifier", *f.response_header_modifier);
      break;
    case FilterType::request_redirect: {
      const HTTPRequestRedirectFilter& r = *f.request_redirect;
      w.key("requestRedirect").start_object();
      optional_string(w, "scheme", r.scheme);
      optional_string(w, "hostname", r.hostname);
      path_modifier(w, r.path);
      optional_integer(w, "port", r.port);
      w.integer_field("statusCode", r.status_code).end_object();
      break;
    }
    case FilterType::url_rewrite:
      w.key("urlRewrite").start_object();
      optional_string(w, "hostname", f.url_rewrite->hostname);
      path_modifier(w, f.url_rewrite->path);
      w.end_object();
      break;
    case FilterType::request_mirror: {
      const HTTPRequestMirrorFilter& m = *f.request_mirror;
      w.key("requestMirror").start_object().key("backendRef").start_object();
      object_ref_fields(w, m.backend_ref);
      w.end_object();
      if (m.percent) w.integer_field("percent", *m.percent);
      if (m.fraction) {
        w.key("fraction")
            .start_object()
            .integer_field("numerator", m.fraction->numerator)
            .integer_field("denominator", m.fraction->denominator)
            .end_object();
      }
      w.end_object();
      break;
    }
    case FilterType::cors: {
      const HTTPCORSFilter& c = *f.cors;
      w.key("cors").start_object();
      strings(w, "allowOrigins", c.allow_origins);
      strings(w, "allowMethods", c.allow_methods);
      strings(w, "allowHeaders", c.allow_headers);
      strings(w, "exposeHeaders", c.expose_headers);
      if (c.allow_credentials) w.bool_field("allowCredentials", *c.allow_credentials);
      w.integer_field("maxAge", c.max_age).end_object();
      break;
    }
    case FilterType::extension_ref:
      w.key("extensionRef")
          .start_object()
          .string_field("group", f.extension_ref->group)
          .string_field("kind", f.extension_ref->kind)
          .string_field("name", f.extension_ref->name)
          .end_object();
      break;
  }
  w.end_object();
}

void filters(Writer& w, const std::vector<HTTPRouteFilter>& list) {
  if (list.empty()) return;
  w.key("filters").start_array();
  for (const HTTPRouteFilter& f : list) filter(w, f);
  w.end_array();
}

void backend_refs(Writer& w, const std::vector<HTTPBackendRef>& refs) {
  if (refs.empty()) return;
  w.key("backendRefs").start_array();
  for (const HTTPBackendRef& b : refs) {
    w.start_object();
    object_ref_fields(w, b.ref);
    w.integer_field("weight", b.weight);
    filters(w, b.filters);
    w.end_object();
  }
  w.end_array();
}

void duration(Writer& w, std::string_view key, const std::optional<Duration>& d) {
  if (d) w.string_field(key, d->text);
}

void http_rule(Writer& w, const HTTPRouteRule& rule) {
  w.start_object();
  optional_string(w, "name", rule.name);
  w.key("matches").start_array();
  for (const HTTPRouteMatch& m : rule.matches) {
    w.start_object()
        .key("path")
        .start_object()
        .string_field("type", name(m.path.type))
        .string_field("value", m.path.value)
        .end_object();
    string_matches(w, "headers", m.headers);
    string_matches(w, "queryParams", m.query_params);
    optional_string(w, "method", m.method);
    w.end_object();
  }
  w.end_array();
  filters(w, rule.filters);
  backend_refs(w, rule.backend_refs);
  if (rule.timeouts) {
    w.key("timeouts").start_object();
    duration(w, "request", rule.timeouts->request);
    duration(w, "backendRequest", rule.timeouts->backend_request);
    w.end_object();
  }
  if (rule.retry) {
    w.key("retry").start_object();
    if (!rule.retry->codes.empty()) {
      w.key("codes").start_array();
      for (int32_t code : rule.retry->codes) w.integer(code);
      w.end_array();
    }
    if (rule.retry->attempts) w.integer_field("attempts", *rule.retry->attempts);
    duration(w, "backoff", rule.retry->backoff);
    w.end_object();
  }
  w.end_object();
}

void grpc_rule(Writer& w, const GRPCRouteRule& rule) {
  w.start_object();
  optional_string(w, "name", rule.name);
  if (!rule.matches.empty()) {
    w.key("matches").start_array();
    for (const GRPCRouteMatch& m : rule.matches) {
      w.start_object();
      if (m.method) {
        w.key("method").start_object().string_field("type", name(m.method->type));
        optional_string(w, "service", m.method->service);
        optional_string(w, "method", m.method->method);
        w.end_object();
      }
      string_matches(w, "headers", m.headers);
      w.end_object();
    }
    w.end_array();
  }
  filters(w, rule.filters);
  backend_refs(w, rule.backend_refs);
  w.end_object();
}

void route(Writer& w, const Route& r) {
  w.start_object()
      .string_field("kind", name(r.kind))
      .string_field("namespace", r.ns)
      .string_field("name", r.name)
      .string_field("creationTimestamp", r.creation_timestamp);
  optional_integer(w, "port", r.port);
  w.key("rules").start_array();
  for (const HTTPRouteRule& rule : r.http_rules) http_rule(w, rule);
  for (const GRPCRouteRule& rule : r.grpc_rules) grpc_rule(w, rule);
  w.end_array().end_object();
}

}  // namespace

std::string serialize(const RouteTable& table) {
  Writer w;
  w.start_object()
      .string_field("version", table.version)
      .string_field("namespace", table.ns)
      .key("services")
      .start_array();
  for (const Service& s : table.services) {
    w.start_object().string_field("namespace", s.ns).string_field("name", s.name);
    w.key("clusterIPs").start_array();
    for (const std::string& ip : s.cluster_ips) w.string(ip);
    w.end_array().key("ports").start_array();
    for (const ServicePort& p : s.ports) {
      w.start_object();
      if (!p.name.empty()) w.string_field("name", p.name);
      w.integer_field("port", p.port).integer_field("targetPort", p.target_port);
      optional_string(w, "appProtocol", p.app_protocol);
      w.end_object();
    }
    w.end_array();
    if (!s.routes.empty()) {
      w.key("routes").start_array();
      for (const Route& r : s.routes) route(w, r);
      w.end_array();
    }
    w.end_object();
  }
  w.end_array().key("endpoints").start_array();
  for (const Endpoints& e : table.endpoints) {
    w.start_object()
        .string_field("namespace", e.ns)
        .string_field("service", e.service)
        .integer_field("port", e.port)
        .key("addresses")
        .start_array();
    for (const EndpointAddress& a : e.addresses) {
      w.start_object()
          .string_field("ip", a.ip)
          .integer_field("port", a.port)
          .bool_field("ready", a.ready);
      if (a.serving) w.bool_field("serving", *a.serving);
      if (a.terminating) w.bool_field("terminating", *a.terminating);
      optional_string(w, "pod", a.pod);
      optional_string(w, "identity", a.identity);
      w.end_object();
    }
    w.end_array().end_object();
  }
  w.end_array().end_object();
  return w.str();
}

}  // namespace trellis::routes
