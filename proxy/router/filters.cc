#include "proxy/router/filters.h"

#include <algorithm>

namespace trellis::proxy::router {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool iends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && http::iequals(s.substr(s.size() - suffix.size()), suffix);
}

std::string_view without_trailing_slash(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return s;
}

// The host part of an authority ("echo:8080" -> "echo", "[fd00::1]:80" -> "[fd00::1]").
std::string_view host_of(std::string_view authority) {
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  return authority.substr(0, authority.find(':'));
}

// Splits scheme://host[:port]; false for anything else (e.g. "null").
bool parse_origin(std::string_view origin, std::string_view& scheme, std::string_view& host,
                  uint16_t& port) {
  size_t sep = origin.find("://");
  if (sep == std::string_view::npos) return false;
  scheme = origin.substr(0, sep);
  std::string_view rest = origin.substr(sep + 3);
  port = http::iequals(scheme, "https") ? 443 : http::iequals(scheme, "http") ? 80 : 0;
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find(']', colon) == std::string_view::npos) {
    std::string_view digits = rest.substr(colon + 1);
    if (digits.empty() || digits.size() > 5) return false;
    uint32_t n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint32_t>(c - '0');
    }
    if (n == 0 || n > 65535) return false;
    port = static_cast<uint16_t>(n);
    rest = rest.substr(0, colon);
  }
  host = rest;
  return !host.empty() && port != 0 && host.find('/') == std::string_view::npos;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

bool contains_star(const std::vector<std::string>& items) {
  return std::find(items.begin(), items.end(), "*") != items.end();
}

// "add" appends to the value the header already has ("existing,added"), so
// that every hop sees one field; Set-Cookie cannot be folded, so it gets a
// line of its own.
void add_value(http::HeaderMap& headers, std::string_view name, std::string_view value) {
  if (!headers.contains(name) || http::iequals(name, "set-cookie")) {
    headers.add(name, value);
    return;
  }
  std::string joined = headers.joined(name);
  joined += ',';
  joined.append(value.data(), value.size());
  headers.set(name, joined);
}

// Of entries naming the same header (case-insensitively), the first counts.
bool shadowed(const std::vector<routes::HTTPHeader>& list, size_t i) {
  for (size_t k = 0; k < i; ++k) {
    if (http::iequals(list[k].name, list[i].name)) return true;
  }
  return false;
}

// `authority` is null for responses; for requests it receives `set` of Host.
void apply_headers(const routes::HTTPHeaderFilter& filter, http::HeaderMap& headers,
                   std::string* authority) {
  auto is_host = [&](std::string_view name) {
    return authority != nullptr && http::iequals(name, "host");
  };
  for (const std::string& name : filter.remove) {
    if (!is_host(name)) headers.remove(name);
  }
  for (size_t i = 0; i < filter.set.size(); ++i) {
    const routes::HTTPHeader& h = filter.set[i];
    if (shadowed(filter.set, i)) continue;
    if (is_host(h.name)) {
      *authority = h.value;
    } else {
      headers.set(h.name, h.value);
    }
  }
  for (size_t i = 0; i < filter.add.size(); ++i) {
    const routes::HTTPHeader& h = filter.add[i];
    if (shadowed(filter.add, i) || is_host(h.name)) continue;
    add_value(headers, h.name, h.value);
  }
}

http::ResponseHead status_only(int status) {
  http::ResponseHead r;
  r.status = status;
  return r;
}

http::ResponseHead redirect_response(const routes::HTTPRequestRedirectFilter& filter,
                                     const Rule& rule, const Frontend& frontend,
                                     const http::RequestHead& request) {
  http::ResponseHead r = status_only(filter.status_code);
  r.headers.add("location", redirect_location(filter, rule, frontend, request));
  return r;
}

void add_common_cors(const Cors& cors, std::string_view origin, http::ResponseHead& response) {
  if (cors.any_origin && !cors.credentials) {
    response.headers.set("access-control-allow-origin", "*");
  } else {
    response.headers.set("access-control-allow-origin", origin);
    response.headers.add("vary", "Origin");
  }
  if (cors.credentials) response.headers.set("access-control-allow-credentials", "true");
  if (cors.expose_any) {
    // With credentials a literal '*' would not be honoured by browsers.
    if (!cors.credentials) response.headers.set("access-control-expose-headers", "*");
  } else if (!cors.expose_headers.empty()) {
    response.headers.set("access-control-expose-headers", cors.expose_headers);
  }
}

}  // namespace

Cors Cors::compile(const routes::HTTPCORSFilter& filter) {
  Cors c;
  for (const std::string& o : filter.allow_origins) {
    if (o == "*") {
      c.any_origin = true;
      continue;
    }
    std::string_view scheme;
    std::string_view host;
    uint16_t port = 0;
    // The pattern's host may be "*", which parse_origin accepts as a host.
    if (!parse_origin(o, scheme, host, port)) continue;
    Origin origin;
    origin.scheme = lowercase(scheme);
    origin.port = port;
    if (host == "*") {
      origin.host.clear();
    } else if (host.rfind("*.", 0) == 0) {
      origin.subdomains = true;
      origin.host = lowercase(host.substr(2));
    } else {
      origin.host = lowercase(host);
    }
    c.origins.push_back(std::move(origin));
  }
  c.any_method = contains_star(filter.allow_methods);
  if (!c.any_method) c.allow_methods = join(filter.allow_methods);
  c.any_header = contains_star(filter.allow_headers);
  if (!c.any_header) c.allow_headers = join(filter.allow_headers);
  c.expose_any = contains_star(filter.expose_headers);
  if (!c.expose_any) c.expose_headers = join(filter.expose_headers);
  c.credentials = filter.allow_credentials.value_or(false);
  c.max_age = std::to_string(filter.max_age);
  return c;
}

bool Cors::allows(std::string_view origin) const {
  if (any_origin) return true;
  std::string_view scheme;
  std::string_view host;
  uint16_t port = 0;
  if (!parse_origin(origin, scheme, host, port)) return false;
  for (const Origin& o : origins) {
    if (!http::iequals(scheme, o.scheme) || port != o.port) continue;
    if (o.host.empty()) return true;
    if (o.subdomains) {
      // "*" is greedy to the left: any number of labels, at least one.
      if (host.size() > o.host.size() + 1 && iends_with(host, o.host) &&
          host[host.size() - o.host.size() - 1] == '.') {
        return true;
      }
    } else if (http::iequals(host, o.host)) {
      return true;
    }
  }
  return false;
}

void apply_header_filter(const routes::HTTPHeaderFilter& filter, http::HeaderMap& headers) {
  apply_headers(filter, headers, nullptr);
}

void apply_request_header_filter(const routes::HTTPHeaderFilter& filter,
                                 http::RequestHead& request) {
  apply_headers(filter, request.headers, &request.authority);
}

std::string replace_prefix(std::string_view path, std::string_view prefix,
                           std::string_view replacement) {
  bool covered = prefix.empty()
                     ? (!path.empty() && path[0] == '/')
                     : (path.compare(0, prefix.size(), prefix) == 0 &&
                        (path.size() == prefix.size() || path[prefix.size()] == '/'));
  if (!covered) return std::string(path);
  std::string out(without_trailing_slash(replacement));
  if (!out.empty() && out[0] != '/') out.insert(out.begin(), '/');
  std::string_view rest = path.substr(prefix.size());  // "" or "/..."
  out.append(rest.data(), rest.size());
  if (out.empty()) out = "/";
  return out;
}

std::string modified_path(const std::optional<routes::HTTPPathModifier>& modifier,
                          std::string_view path, const Rule& rule) {
  if (!modifier) return std::string(path);
  if (modifier->type == routes::PathModifierType::replace_full_path) {
    const std::string& full = *modifier->replace_full_path;
    if (full.empty()) return "/";
    return full[0] == '/' ? full : "/" + full;
  }
  if (!rule.has_prefix) return std::string(path);
  return replace_prefix(path, rule.prefix, *modifier->replace_prefix_match);
}

std::string redirect_location(const routes::HTTPRequestRedirectFilter& filter, const Rule& rule,
                              const Frontend& frontend, const http::RequestHead& request) {
  std::string scheme = filter.scheme ? *filter.scheme
                                     : lowercase(request.scheme.empty() ? "http" : request.scheme);
  std::string_view host =
      filter.hostname ? std::string_view(*filter.hostname) : host_of(request.authority);
  if (host.empty()) host = frontend.default_host;
  uint16_t port = filter.port     ? *filter.port
                  : filter.scheme ? (scheme == "https" ? 443 : 80)
                                  : frontend.port->port;
  bool well_known = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  std::string location = scheme + "://";
  location.append(host.data(), host.size());
  if (!well_known) location += ":" + std::to_string(port);
  location += modified_path(filter.path, request.path(), rule);
  if (request.target.find('?') != std::string::npos) {
    location += '?';
    location += request.query();
  }
  return location;
}

void apply_url_rewrite(const routes::HTTPURLRewriteFilter& filter, const Rule& rule,
                       http::RequestHead& request) {
  if (filter.hostname) request.authority = *filter.hostname;
  if (!filter.path) return;
  std::string target = modified_path(filter.path, request.path(), rule);
  size_t question = request.target.find('?');
  if (question != std::string::npos) target.append(request.target, question, std::string::npos);
  request.target = std::move(target);
}

bool mirror_selected(const Mirror& mirror, uint64_t draw) {
  if (mirror.numerator >= mirror.denominator) return true;
  if (mirror.numerator == 0) return false;
  __extension__ using uint128 = unsigned __int128;
  auto x = static_cast<uint64_t>((static_cast<uint128>(draw) * mirror.denominator) >> 64);
  return x < mirror.numerator;
}

bool is_cors_preflight(const http::RequestHead& request) {
  return request.method == "OPTIONS" && request.headers.contains("origin") &&
         request.headers.contains("access-control-request-method");
}

http::ResponseHead cors_preflight_response(const Cors& cors, const http::RequestHead& request) {
  http::ResponseHead r = status_only(200);
  const std::string* origin = request.headers.get("origin");
  if (origin == nullptr || !cors.allows(*origin)) return r;
  add_common_cors(cors, *origin, r);
  if (cors.any_method) {
    // With credentials '*' is taken literally by browsers: echo the request.
    const std::string* method = request.headers.get("access-control-request-method");
    r.headers.set("access-control-allow-methods",
                  cors.credentials && method ? std::string_view(*method) : std::string_view("*"));
  } else if (!cors.allow_methods.empty()) {
    r.headers.set("access-control-allow-methods", cors.allow_methods);
  }
  if (cors.any_header) {
    const std::string* requested = request.headers.get("access-control-request-headers");
    if (!cors.credentials) {
      r.headers.set("access-control-allow-headers", "*");
    } else if (requested != nullptr) {
      r.headers.set("access-control-allow-headers", *requested);
    }
  } else if (!cors.allow_headers.empty()) {
    r.headers.set("access-control-allow-headers", cors.allow_headers);
  }
  r.headers.set("access-control-max-age", cors.max_age);
  return r;
}

void apply_cors_response(const Cors& cors, const http::RequestHead& request,
                         http::ResponseHead& response) {
  const std::string* origin = request.headers.get("origin");
  if (origin == nullptr || !cors.allows(*origin)) return;
  add_common_cors(cors, *origin, response);
}

void apply_request_filters(const Rule& rule, const Backend* backend, http::RequestHead& request) {
  auto apply = [&](const Filters& f) {
    if (f.request_headers) apply_request_header_filter(*f.request_headers, request);
    if (f.url_rewrite) apply_url_rewrite(*f.url_rewrite, rule, request);
  };
  apply(rule.filters);
  if (backend != nullptr) apply(backend->filters);
}

void apply_response_filters(const Rule& rule, const Backend* backend,
                            const http::RequestHead& request, http::ResponseHead& response) {
  if (rule.filters.response_headers) {
    apply_header_filter(*rule.filters.response_headers, response.headers);
  }
  if (backend != nullptr && backend->filters.response_headers) {
    apply_header_filter(*backend->filters.response_headers, response.headers);
  }
  const Cors* cors = rule.filters.cors.get();
  if (cors == nullptr && backend != nullptr) cors = backend->filters.cors.get();
  if (cors != nullptr) apply_cors_response(*cors, request, response);
}

Action decide(const Frontend& frontend, const Rule& rule, const http::RequestHead& request,
              uint64_t draw) {
  Action a;
  if (rule.filters.unsupported) {
    a.response = status_only(500);
    return a;
  }
  if (rule.filters.cors && is_cors_preflight(request)) {
    a.response = cors_preflight_response(*rule.filters.cors, request);
    return a;
  }
  if (rule.filters.redirect) {
    a.response = redirect_response(*rule.filters.redirect, rule, frontend, request);
    return a;
  }
  const Backend* b = pick(rule, draw);
  a.backend = b;
  if (b == nullptr || b->filters.unsupported) {
    a.response = status_only(500);
    return a;
  }
  if (b->filters.redirect) {
    a.response = redirect_response(*b->filters.redirect, rule, frontend, request);
    return a;
  }
  if (b->filters.cors && is_cors_preflight(request)) {
    a.response = cors_preflight_response(*b->filters.cors, request);
    return a;
  }
  if (b->state != BackendState::ok) {
    a.response = status_only(b->state == BackendState::unavailable ? 503 : 500);
    return a;
  }
  a.kind = Action::Kind::forward;
  return a;
}

}  // namespace trellis::proxy::router
