#include "proxy/router/table.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <bitset>
#include <cstring>
#include <tuple>

#include <re2/re2.h>

#include "proxy/router/filters.h"

namespace trellis::proxy::router {

namespace detail {

struct StringMatcher {
  std::string_view name;
  routes::MatchType type = routes::MatchType::exact;
  std::string_view value;
  const re2::RE2* regex = nullptr;
};

struct HttpEntry {
  const Rule* rule = nullptr;
  routes::PathMatchType path_type = routes::PathMatchType::path_prefix;
  std::string_view path;  // PathPrefix: without trailing '/'
  const re2::RE2* path_regex = nullptr;
  std::string_view method;  // "" = any
  std::vector<StringMatcher> headers;
  std::vector<StringMatcher> query_params;
};

struct GrpcEntry {
  const Rule* rule = nullptr;
  bool any = true;  // no method match
  routes::MatchType type = routes::MatchType::exact;
  std::optional<std::string_view> service;
  std::optional<std::string_view> method;
  const re2::RE2* service_regex = nullptr;
  const re2::RE2* method_regex = nullptr;
  std::vector<StringMatcher> headers;
};

struct MatchIndex {
  std::vector<HttpEntry> http;  // in precedence order; the lists below index it
  std::unordered_map<std::string_view, std::vector<uint32_t>> exact;
  std::unordered_map<std::string_view, std::vector<uint32_t>> prefix;
  std::bitset<1025> prefix_lengths;  // path values are at most 1024 characters
  std::vector<uint32_t> regex;
  std::vector<GrpcEntry> grpc;  // in precedence order
};

}  // namespace detail

Filters::Filters() = default;
Filters::~Filters() = default;
Filters::Filters(Filters&&) noexcept = default;
Filters& Filters::operator=(Filters&&) noexcept = default;
Frontend::Frontend() = default;
Frontend::~Frontend() = default;

namespace {

using detail::GrpcEntry;
using detail::HttpEntry;
using detail::MatchIndex;
using detail::StringMatcher;

re2::StringPiece piece(std::string_view s) { return re2::StringPiece(s.data(), s.size()); }

// Reused per thread for the rare values that must be contiguous before a
// regular expression sees them (repeated headers, percent-encoded query
// values): grows to the longest such value, then never allocates again.
std::string& scratch() {
  thread_local std::string buffer;
  buffer.clear();
  return buffer;
}

// ---------------------------------------------------------------- headers

// A request header repeated N times is matched as its values joined with ","
// (RFC 9110 5.3), as Envoy does; an absent header never matches.
bool header_matches(const StringMatcher& m, const http::HeaderMap& headers) {
  size_t count = 0;
  const std::string* first = nullptr;
  for (const http::Header& h : headers) {
    if (http::iequals(h.name, m.name)) {
      if (count++ == 0) first = &h.value;
    }
  }
  if (count == 0) return false;
  if (m.type == routes::MatchType::regular_expression) {
    if (count == 1) return re2::RE2::FullMatch(piece(*first), *m.regex);
    std::string& joined = scratch();
    bool leading = true;
    headers.for_each_value(m.name, [&](std::string_view v) {
      if (!leading) joined += ',';
      leading = false;
      joined.append(v.data(), v.size());
    });
    return re2::RE2::FullMatch(piece(joined), *m.regex);
  }
  std::string_view expected = m.value;
  size_t pos = 0;
  bool ok = true;
  bool leading = true;
  headers.for_each_value(m.name, [&](std::string_view v) {
    if (!ok) return;
    if (!leading) {
      if (pos >= expected.size() || expected[pos] != ',') {
        ok = false;
        return;
      }
      ++pos;
    }
    leading = false;
    if (expected.substr(pos, v.size()) != v) {
      ok = false;
      return;
    }
    pos += v.size();
  });
  return ok && pos == expected.size();
}

// ---------------------------------------------------------------- query

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Query names and values are compared after form decoding: "%XX" is the
// octet, '+' a space; a '%' not followed by two hex digits stays literal.
template <typename F>
void decode_each(std::string_view encoded, F&& f) {
  for (size_t i = 0; i < encoded.size(); ++i) {
    char c = encoded[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%' && i + 2 < encoded.size() && hex_value(encoded[i + 1]) >= 0 &&
               hex_value(encoded[i + 2]) >= 0) {
      c = static_cast<char>(hex_value(encoded[i + 1]) * 16 + hex_value(encoded[i + 2]));
      i += 2;
    }
    if (!f(c)) return;
  }
}

bool decoded_equals(std::string_view encoded, std::string_view plain) {
  size_t j = 0;
  bool ok = true;
  decode_each(encoded, [&](char c) {
    ok = j < plain.size() && plain[j] == c;
    ++j;
    return ok;
  });
  return ok && j == plain.size();
}

bool needs_decoding(std::string_view s) { return s.find_first_of("%+") != std::string_view::npos; }

// The first value of the named parameter (names compared decoded and
// case-sensitively); a parameter without '=' has the empty value.
bool query_matches(const StringMatcher& m, std::string_view query) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    if (!decoded_equals(name, m.name)) continue;
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (m.type == routes::MatchType::exact) return decoded_equals(value, m.value);
    if (!needs_decoding(value)) return re2::RE2::FullMatch(piece(value), *m.regex);
    std::string& decoded = scratch();
    decode_each(value, [&](char c) {
      decoded.push_back(c);
      return true;
    });
    return re2::RE2::FullMatch(piece(decoded), *m.regex);
  }
  return false;
}

bool conditions_match(const HttpEntry& e, const http::RequestHead& request,
                      std::string_view query) {
  if (!e.method.empty() && request.method != e.method) return false;
  for (const StringMatcher& h : e.headers) {
    if (!header_matches(h, request.headers)) return false;
  }
  for (const StringMatcher& q : e.query_params) {
    if (!query_matches(q, query)) return false;
  }
  return true;
}

const Rule* match_http(const MatchIndex& ix, const http::RequestHead& request) {
  std::string_view path = request.path();
  std::string_view query = request.query();
  auto first_of = [&](const std::vector<uint32_t>& ids) -> const Rule* {
    for (uint32_t id : ids) {
      if (conditions_match(ix.http[id], request, query)) return ix.http[id].rule;
    }
    return nullptr;
  };
  // Precedence: every Exact match, then RegularExpression, then PathPrefix by
  // length; each list is already in precedence order.
  if (!ix.exact.empty()) {
    auto it = ix.exact.find(path);
    if (it != ix.exact.end()) {
      if (const Rule* r = first_of(it->second)) return r;
    }
  }
  for (uint32_t id : ix.regex) {
    const HttpEntry& e = ix.http[id];
    if (re2::RE2::FullMatch(piece(path), *e.path_regex) && conditions_match(e, request, query)) {
      return e.rule;
    }
  }
  if (ix.prefix.empty()) return nullptr;
  auto prefix = [&](std::string_view p) -> const Rule* {
    if (p.size() >= ix.prefix_lengths.size() || !ix.prefix_lengths[p.size()]) return nullptr;
    auto it = ix.prefix.find(p);
    return it == ix.prefix.end() ? nullptr : first_of(it->second);
  };
  // The prefixes that cover `path` by whole segments, longest first: the path
  // itself, then the path cut before each '/' ("" = "/", which covers all).
  if (path.empty() || path[0] != '/') return prefix("");
  if (path.back() != '/') {
    if (const Rule* r = prefix(path)) return r;
  }
  for (size_t i = path.size(); i-- > 0;) {
    if (path[i] != '/') continue;
    if (const Rule* r = prefix(path.substr(0, i))) return r;
  }
  return nullptr;
}

// gRPC: the :path "/package.Service/Method"; anything else matches no rule.
const Rule* match_grpc(const MatchIndex& ix, const http::RequestHead& request) {
  std::string_view path = request.path();
  if (path.size() < 4 || path[0] != '/') return nullptr;
  size_t slash = path.find('/', 1);
  if (slash == std::string_view::npos) return nullptr;
  std::string_view service = path.substr(1, slash - 1);
  std::string_view method = path.substr(slash + 1);
  if (service.empty() || method.empty() || method.find('/') != std::string_view::npos) {
    return nullptr;
  }
  for (const GrpcEntry& e : ix.grpc) {
    if (!e.any) {
      if (e.type == routes::MatchType::exact) {
        if (e.service && *e.service != service) continue;
        if (e.method && *e.method != method) continue;
      } else {
        if (e.service_regex && !re2::RE2::FullMatch(piece(service), *e.service_regex)) continue;
        if (e.method_regex && !re2::RE2::FullMatch(piece(method), *e.method_regex)) continue;
      }
    }
    bool headers_ok = std::all_of(e.headers.begin(), e.headers.end(), [&](const StringMatcher& h) {
      return header_matches(h, request.headers);
    });
    if (headers_ok) return e.rule;
  }
  return nullptr;
}

// ---------------------------------------------------------------- compiling

std::string_view without_trailing_slash(std::string_view prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  return prefix;
}

// Of matchers naming the same header (case-insensitively), only the first counts.
std::vector<StringMatcher> header_matchers(const std::vector<routes::StringMatch>& matches) {
  std::vector<StringMatcher> out;
  for (const routes::StringMatch& m : matches) {
    bool seen = std::any_of(out.begin(), out.end(),
                            [&](const StringMatcher& o) { return http::iequals(o.name, m.name); });
    if (!seen) out.push_back({m.name, m.type, m.value, m.regex.get()});
  }
  return out;
}

std::vector<StringMatcher> query_matchers(const std::vector<routes::StringMatch>& matches) {
  std::vector<StringMatcher> out;
  for (const routes::StringMatch& m : matches) {
    bool seen = std::any_of(out.begin(), out.end(),
                            [&](const StringMatcher& o) { return o.name == m.name; });
    if (!seen) out.push_back({m.name, m.type, m.value, m.regex.get()});
  }
  return out;
}

// The cross-route tie-breakers, shared by HTTP and gRPC precedence: the oldest
// route, then "{namespace}/{name}" alphabetically, then rule order, then match
// order.
struct Tiebreak {
  int64_t created;
  std::string ns_name;
  size_t rule;
  size_t match;
  auto key() const { return std::tie(created, ns_name, rule, match); }
};

std::string format_host(const std::string& ip) {
  return ip.find(':') == std::string::npos ? ip : "[" + ip + "]";
}

}  // namespace

IpAddress IpAddress::parse(std::string_view text) {
  IpAddress out;
  char buf[INET6_ADDRSTRLEN];
  if (text.size() >= sizeof(buf)) return out;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (inet_pton(AF_INET, buf, out.bytes.data()) == 1) {
    out.family = 4;
  } else if (inet_pton(AF_INET6, buf, out.bytes.data()) == 1) {
    out.family = 6;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(out.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
      std::memmove(out.bytes.data(), out.bytes.data() + 12, 4);
      std::fill(out.bytes.begin() + 4, out.bytes.end(), 0);
      out.family = 4;
    }
  } else {
    out.bytes.fill(0);
  }
  return out;
}

IpAddress IpAddress::from_sockaddr(const sockaddr* addr) {
  IpAddress out;
  if (addr == nullptr) return out;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    std::memcpy(out.bytes.data(), &in->sin_addr, 4);
    out.family = 4;
  } else if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      std::memcpy(out.bytes.data(), reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, 4);
      out.family = 4;
    } else {
      std::memcpy(out.bytes.data(), &in6->sin6_addr, 16);
      out.family = 6;
    }
  }
  return out;
}

size_t Table::FrontendKeyHash::operator()(const FrontendKey& k) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  mix(k.ip.family);
  size_t n = k.ip.family == 4 ? 4 : 16;
  for (size_t i = 0; i < n; ++i) mix(k.ip.bytes[i]);
  mix(static_cast<uint8_t>(k.port >> 8));
  mix(static_cast<uint8_t>(k.port));
  return static_cast<size_t>(h);
}

class Compiler {
 public:
  explicit Compiler(Table& t) : t_(t) {}

  void run() {
    const routes::RouteTable& src = *t_.source_;
    for (const routes::Endpoints& e : src.endpoints) {
      auto set = std::make_unique<EndpointSet>();
      set->source = &e;
      for (const routes::EndpointAddress& a : e.addresses) {
        if (a.ready) set->eligible.push_back(&a);
      }
      if (set->eligible.empty()) {
        for (const routes::EndpointAddress& a : e.addresses) {
          if (a.serving.value_or(a.ready) && a.terminating.value_or(false)) {
            set->eligible.push_back(&a);
          }
        }
      }
      t_.endpoints_by_key_.emplace(key(e.ns, e.service, e.port), set.get());
      t_.endpoint_sets_.push_back(std::move(set));
    }
    for (const routes::Service& s : src.services) {
      // Without a ClusterIP (headless) a Service has no frontend to route at.
      if (s.cluster_ips.empty()) continue;
      for (const routes::ServicePort& p : s.ports) frontend(s, p);
    }
    // Dense ordinals, in table order, for per-rule and per-backend state.
    for (const auto& f : t_.frontends_) {
      for (Rule& r : f->rules) {
        r.ordinal = t_.rules_.size();
        t_.rules_.push_back(&r);
        auto number = [&](Backend& b) {
          b.ordinal = t_.backends_.size();
          t_.backends_.push_back(&b);
        };
        for (Backend& b : r.backends) number(b);
        for (Mirror& m : r.filters.mirrors) number(m.backend);
        for (Backend& b : r.backends) {
          for (Mirror& m : b.filters.mirrors) number(m.backend);
        }
      }
    }
  }

 private:
  static std::string key(std::string_view ns, std::string_view service, uint16_t port) {
    return std::string(ns) + "/" + std::string(service) + ":" + std::to_string(port);
  }

  const EndpointSet* endpoints(std::string_view ns, std::string_view service, uint16_t port) const {
    auto it = t_.endpoints_by_key_.find(key(ns, service, port));
    return it == t_.endpoints_by_key_.end() ? nullptr : it->second;
  }

  Backend backend(const routes::BackendObjectReference& ref, uint32_t weight) const {
    Backend b;
    b.id = BackendId{ref.ns, ref.name, ref.port.value_or(0)};
    b.weight = weight;
    bool service = (ref.group.empty() || ref.group == "core") && ref.kind == "Service" && ref.port;
    if (service) {
      if (const EndpointSet* e = endpoints(ref.ns, ref.name, *ref.port)) {
        b.endpoints = e;
        b.state = e->eligible.empty() ? BackendState::unavailable : BackendState::ok;
      }
    }
    return b;
  }

  Filters filters(const std::vector<routes::HTTPRouteFilter>& list) const {
    Filters out;
    for (const routes::HTTPRouteFilter& f : list) {
      switch (f.type) {
        case routes::FilterType::request_header_modifier:
          out.request_headers = &*f.request_header_modifier;
          break;
        case routes::FilterType::response_header_modifier:
          out.response_headers = &*f.response_header_modifier;
          break;
        case routes::FilterType::url_rewrite:
          out.url_rewrite = &*f.url_rewrite;
          break;
        case routes::FilterType::request_redirect:
          out.redirect = &*f.request_redirect;
          break;
        case routes::FilterType::request_mirror: {
          const routes::HTTPRequestMirrorFilter& m = *f.request_mirror;
          Mirror mirror;
          mirror.backend = backend(m.backend_ref, 1);
          if (m.percent) {
            mirror.numerator = static_cast<uint32_t>(*m.percent);
            mirror.denominator = 100;
          } else if (m.fraction) {
            mirror.numerator = static_cast<uint32_t>(m.fraction->numerator);
            mirror.denominator = static_cast<uint32_t>(m.fraction->denominator);
          }
          out.mirrors.push_back(std::move(mirror));
          break;
        }
        case routes::FilterType::cors:
          out.cors = std::make_shared<const Cors>(Cors::compile(*f.cors));
          break;
        case routes::FilterType::extension_ref:
          out.unsupported = true;
          break;
      }
    }
    return out;
  }

  template <typename RuleT>
  Rule make_rule(const routes::Service& s, const routes::ServicePort& p, const routes::Route& route,
            size_t index, const RuleT& source) const {
    Rule r;
    r.id = RuleId{route.kind, route.ns, route.name, index,
                  source.name ? std::string_view(*source.name) : std::string_view(),
                  s.ns, s.name, p.port};
    r.route = &route;
    r.filters = filters(source.filters);
    for (const routes::HTTPBackendRef& ref : source.backend_refs) {
      Backend b = backend(ref.ref, static_cast<uint32_t>(ref.weight));
      b.filters = filters(ref.filters);
      r.total_weight += b.weight;
      r.cumulative_weights.push_back(r.total_weight);
      r.backends.push_back(std::move(b));
    }
    return r;
  }

  void frontend(const routes::Service& s, const routes::ServicePort& p) {
    auto f = std::make_unique<Frontend>();
    f->service = &s;
    f->port = &p;
    f->endpoints = endpoints(s.ns, s.name, p.port);
    f->default_host = format_host(s.cluster_ips[0]);
    f->index = std::make_unique<MatchIndex>();

    auto applies = [&](const routes::Route& r) { return !r.port || *r.port == p.port; };
    bool grpc = std::any_of(s.routes.begin(), s.routes.end(), [&](const routes::Route& r) {
      return applies(r) && r.kind == routes::RouteKind::grpc_route;
    });
    bool http = std::any_of(s.routes.begin(), s.routes.end(), [&](const routes::Route& r) {
      return applies(r) && r.kind == routes::RouteKind::http_route;
    });
    f->mode = grpc ? Mode::grpc : http ? Mode::http : Mode::passthrough;

    // Rules first (their addresses must not move), then the match index.
    std::vector<const routes::Route*> applicable;
    size_t count = 0;
    for (const routes::Route& r : s.routes) {
      bool kind = r.kind == (grpc ? routes::RouteKind::grpc_route : routes::RouteKind::http_route);
      if (f->mode == Mode::passthrough || !applies(r) || !kind) continue;
      applicable.push_back(&r);
      count += grpc ? r.grpc_rules.size() : r.http_rules.size();
    }
    f->rules.reserve(count);
    for (const routes::Route* r : applicable) {
      for (size_t i = 0; i < r->http_rules.size(); ++i) {
        const routes::HTTPRouteRule& source = r->http_rules[i];
        Rule rule = make_rule(s, p, *r, i, source);
        rule.http = &source;
        rule.timeouts = source.timeouts ? &*source.timeouts : nullptr;
        rule.retry = source.retry ? &*source.retry : nullptr;
        if (source.matches.size() == 1 &&
            source.matches[0].path.type == routes::PathMatchType::path_prefix) {
          rule.prefix = without_trailing_slash(source.matches[0].path.value);
          rule.has_prefix = true;
        }
        f->rules.push_back(std::move(rule));
      }
      for (size_t i = 0; i < r->grpc_rules.size(); ++i) {
        Rule rule = make_rule(s, p, *r, i, r->grpc_rules[i]);
        rule.grpc = &r->grpc_rules[i];
        f->rules.push_back(std::move(rule));
      }
    }
    if (f->mode == Mode::http) index_http(*f);
    if (f->mode == Mode::grpc) index_grpc(*f);

    for (const std::string& ip : s.cluster_ips) {
      t_.by_address_.emplace(Table::FrontendKey{IpAddress::parse(ip), p.port}, f.get());
    }
    t_.frontends_.push_back(std::move(f));
  }

  static std::string ns_name(const routes::Route& r) { return r.ns + "/" + r.name; }

  // HTTPRoute precedence, across every rule of every route that applies:
  // Exact path, then RegularExpression (longer pattern first), then PathPrefix
  // by length (without trailing '/'); then method; then more header matches;
  // then more query-param matches; then the tie-breakers.
  static void index_http(Frontend& f) {
    struct Ranked {
      int path_class;
      size_t path_length;
      bool method;
      size_t headers;
      size_t query_params;
      Tiebreak tiebreak;
      HttpEntry entry;
    };
    std::vector<Ranked> ranked;
    for (const Rule& rule : f.rules) {
      const auto& matches = rule.http->matches;
      for (size_t m = 0; m < matches.size(); ++m) {
        const routes::HTTPRouteMatch& match = matches[m];
        HttpEntry e;
        e.rule = &rule;
        e.path_type = match.path.type;
        e.path = match.path.type == routes::PathMatchType::path_prefix
                     ? without_trailing_slash(match.path.value)
                     : std::string_view(match.path.value);
        e.path_regex = match.path.regex.get();
        if (match.method) e.method = *match.method;
        e.headers = header_matchers(match.headers);
        e.query_params = query_matchers(match.query_params);
        int path_class = match.path.type == routes::PathMatchType::exact                ? 3
                         : match.path.type == routes::PathMatchType::regular_expression ? 2
                                                                                       : 1;
        Tiebreak tiebreak{rule.route->creation_time_ns, ns_name(*rule.route), rule.id.rule_index,
                          m};
        size_t path_length = e.path.size();
        bool method = !e.method.empty();
        size_t headers = e.headers.size();
        size_t query_params = e.query_params.size();
        ranked.push_back(Ranked{path_class, path_length, method, headers, query_params,
                                std::move(tiebreak), std::move(e)});
      }
    }
    auto primary = [](const Ranked& r) {
      return std::make_tuple(-r.path_class, -static_cast<int64_t>(r.path_length), !r.method,
                             -static_cast<int64_t>(r.headers),
                             -static_cast<int64_t>(r.query_params));
    };
    std::sort(ranked.begin(), ranked.end(), [&](const Ranked& a, const Ranked& b) {
      if (primary(a) != primary(b)) return primary(a) < primary(b);
      return a.tiebreak.key() < b.tiebreak.key();
    });
    MatchIndex& ix = *f.index;
    ix.http.reserve(ranked.size());
    for (Ranked& r : ranked) {
      auto id = static_cast<uint32_t>(ix.http.size());
      ix.http.push_back(std::move(r.entry));
      const HttpEntry& e = ix.http.back();
      switch (e.path_type) {
        case routes::PathMatchType::exact:
          ix.exact[e.path].push_back(id);
          break;
        case routes::PathMatchType::regular_expression:
          ix.regex.push_back(id);
          break;
        case routes::PathMatchType::path_prefix:
          ix.prefix[e.path].push_back(id);
          ix.prefix_lengths.set(e.path.size());
          break;
      }
    }
  }

  // GRPCRoute precedence: more characters in the matching service, then in
  // the method (a pattern counts its characters), then more header matches;
  // then the tie-breakers. A rule without matches matches every RPC.
  static void index_grpc(Frontend& f) {
    struct Ranked {
      size_t service;
      size_t method;
      size_t headers;
      Tiebreak tiebreak;
      GrpcEntry entry;
    };
    std::vector<Ranked> ranked;
    for (const Rule& rule : f.rules) {
      const auto& matches = rule.grpc->matches;
      Tiebreak tb{rule.route->creation_time_ns, ns_name(*rule.route), rule.id.rule_index, 0};
      if (matches.empty()) {
        GrpcEntry e;
        e.rule = &rule;
        ranked.push_back(Ranked{0, 0, 0, tb, std::move(e)});
        continue;
      }
      for (size_t m = 0; m < matches.size(); ++m) {
        const routes::GRPCRouteMatch& match = matches[m];
        GrpcEntry e;
        e.rule = &rule;
        e.headers = header_matchers(match.headers);
        if (match.method) {
          const routes::GRPCMethodMatch& mm = *match.method;
          e.any = false;
          e.type = mm.type;
          if (mm.service) {
            std::string_view service = *mm.service;
            // A leading '.' (a fully qualified proto name) is not part of :path.
            if (mm.type == routes::MatchType::exact && !service.empty() && service[0] == '.') {
              service.remove_prefix(1);
            }
            e.service = service;
          }
          if (mm.method) e.method = std::string_view(*mm.method);
          e.service_regex = mm.service_regex.get();
          e.method_regex = mm.method_regex.get();
        }
        tb.match = m;
        ranked.push_back(Ranked{e.service ? e.service->size() : 0, e.method ? e.method->size() : 0,
                                e.headers.size(), tb, std::move(e)});
      }
    }
    std::sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) {
      if (a.service != b.service) return a.service > b.service;
      if (a.method != b.method) return a.method > b.method;
      if (a.headers != b.headers) return a.headers > b.headers;
      return a.tiebreak.key() < b.tiebreak.key();
    });
    f.index->grpc.reserve(ranked.size());
    for (Ranked& r : ranked) f.index->grpc.push_back(std::move(r.entry));
  }

  Table& t_;
};

std::shared_ptr<const Table> Table::compile(std::shared_ptr<const routes::RouteTable> routes) {
  auto t = std::make_shared<Table>();
  t->source_ = std::move(routes);
  Compiler(*t).run();
  return t;
}

const Frontend* Table::frontend(const IpAddress& ip, uint16_t port) const {
  if (ip.family == 0) return nullptr;
  auto it = by_address_.find(FrontendKey{ip, port});
  return it == by_address_.end() ? nullptr : it->second;
}

const Frontend* Table::frontend(const sockaddr* original_destination) const {
  if (original_destination == nullptr) return nullptr;
  uint16_t port = 0;
  if (original_destination->sa_family == AF_INET) {
    port = ntohs(reinterpret_cast<const sockaddr_in*>(original_destination)->sin_port);
  } else if (original_destination->sa_family == AF_INET6) {
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(original_destination)->sin6_port);
  } else {
    return nullptr;
  }
  return frontend(IpAddress::from_sockaddr(original_destination), port);
}

const Rule* Table::match(const Frontend& frontend, const http::RequestHead& request) const {
  switch (frontend.mode) {
    case Mode::passthrough: return nullptr;
    case Mode::http: return match_http(*frontend.index, request);
    case Mode::grpc: return match_grpc(*frontend.index, request);
  }
  return nullptr;
}

const EndpointSet* Table::endpoints(std::string_view ns, std::string_view service,
                                    uint16_t port) const {
  auto it = endpoints_by_key_.find(std::string(ns) + "/" + std::string(service) + ":" +
                                   std::to_string(port));
  return it == endpoints_by_key_.end() ? nullptr : it->second;
}

const Backend* pick(const Rule& rule, uint64_t draw) {
  if (rule.total_weight == 0) return nullptr;
  // Scale the draw to [0, total) without modulo bias.
  __extension__ using uint128 = unsigned __int128;
  auto x = static_cast<uint64_t>((static_cast<uint128>(draw) * rule.total_weight) >> 64);
  for (size_t i = 0; i < rule.backends.size(); ++i) {
    if (x < rule.cumulative_weights[i]) return &rule.backends[i];
  }
  return nullptr;
}

}  // namespace trellis::proxy::router
