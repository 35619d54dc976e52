// Route-table parsing: JSON -> RouteTable, with the API server's defaulting and
// validation (Gateway API v1.6.1 CRDs: enums, ranges, maxItems, CEL rules; CEL
// messages are quoted verbatim) plus the table's own rules (docs/route-table.md).
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <unordered_map>
#include <unordered_set>

#include <re2/re2.h>

#include "common/gateway/duration.h"
#include "common/json/json.h"
#include "common/routes/route_table.h"

namespace trellis::routes {
namespace {

using json::Array;
using json::Object;
using json::Value;

constexpr int64_t kInt32Max = 2147483647;
// rules, filters, backendRefs, headers, queryParams, set, add, remove
constexpr size_t kMaxItems = 16;
constexpr size_t kMaxMatches = 64;     // per rule
constexpr size_t kMaxRouteMatches = 128;
constexpr size_t kMaxCorsItems = 64;
constexpr size_t kMaxCorsMethods = 9;
constexpr size_t kMaxClusterIPs = 2;   // dual stack
constexpr size_t kShown = 64;          // longest value quoted in an error
constexpr int64_t kRegexMaxMem = int64_t{1} << 20;

// ---------------------------------------------------------------- helpers

std::string shown(std::string_view s) {
  return s.size() > kShown ? std::string(s.substr(0, kShown)) + "..." : std::string(s);
}

std::string want_list(const std::vector<std::string_view>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += (i + 1 == names.size()) ? " or " : ", ";
    out += names[i];
  }
  return out;
}

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

template <typename E>
Result<E> parse_enum(const Value& v, std::initializer_list<EnumName<E>> names) {
  ASSIGN_OR_RETURN(std::string_view s, v.string());
  std::vector<std::string_view> all;
  for (const EnumName<E>& n : names) {
    if (n.name == s) return n.value;
    all.push_back(n.name);
  }
  return v.error("unknown value '" + shown(s) + "' (want " + want_list(all) + ")");
}

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$
bool dns1123_label(std::string_view s) {
  if (s.empty() || !is_lower_alnum(s.front()) || !is_lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

// ^[a-z]([-a-z0-9]*[a-z0-9])?$
bool dns1035_label(std::string_view s) { return dns1123_label(s) && s.front() >= 'a'; }

// ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$
bool dns1123_subdomain(std::string_view s) {
  if (s.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!dns1123_label(s.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool group_name(std::string_view s) { return s.empty() || dns1123_subdomain(s); }

// ^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$
bool kind_name(std::string_view s) {
  if (s.empty() || !is_alpha(s.front()) || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

// RFC 9110 token: ^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$
bool tchar(char c) {
  return is_alpha(c) || is_digit(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), tchar); }

// Header values reach the wire: no control characters but HTAB (CR or LF would
// split a header). The standard-channel CRD accepts anything else.
bool field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7F;
  });
}

// Paths written into a request line or a Location header: no controls, no spaces.
bool path_text(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F;
  });
}

bool spiffe_id(std::string_view s) { return s.rfind("spiffe://", 0) == 0 && path_text(s); }

// ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$
bool path_chars(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
      continue;
    }
    if (!(is_alpha(c) || is_digit(c) || std::strchr("-/._~!$&'()*+,;=:@", c) != nullptr)) {
      return false;
    }
  }
  return true;
}

// CORS origin, per the CRD:
// (^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)
bool cors_origin(std::string_view s) {
  if (s == "*") return true;
  std::string_view rest;
  if (s.rfind("http://", 0) == 0) {
    rest = s.substr(7);
  } else if (s.rfind("https://", 0) == 0) {
    rest = s.substr(8);
  } else {
    return false;
  }
  size_t colon = rest.find(':');
  std::string_view host = rest.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit)) {
      return false;
    }
  }
  if (host == "*") return true;
  if (host.rfind("*.", 0) == 0) host.remove_prefix(2);
  if (host.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string_view label = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || !std::all_of(label.begin(), label.end(), [](char c) {
          return is_alpha(c) || is_digit(c) || c == '-';
        })) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool ip_address(std::string_view s) {
  if (s.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char out[16];
  return inet_pton(AF_INET, buf, out) == 1 || inet_pton(AF_INET6, buf, out) == 1;
}

// The address in a canonical binary form, to detect the same IP written twice.
std::string ip_key(std::string_view s) {
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char out[16];
  if (inet_pton(AF_INET, buf, out) == 1) return std::string(reinterpret_cast<char*>(out), 4);
  inet_pton(AF_INET6, buf, out);
  return std::string(reinterpret_cast<char*>(out), 16);
}

// Constraints on one string field.
struct Text {
  size_t min_length;
  size_t max_length;
  bool (*valid)(std::string_view) = nullptr;
  const char* requirement = nullptr;  // why `valid` failed, for the error
};

constexpr char kLabelPattern[] = "must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
constexpr char kSubdomainPattern[] =
    "must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

const Text kNamespace{1, 63, dns1123_label, kLabelPattern};
const Text kServiceName{1, 63, dns1035_label, "must match ^[a-z]([-a-z0-9]*[a-z0-9])?$"};
const Text kObjectName{1, 253, dns1123_subdomain, kSubdomainPattern};
const Text kPortName{1, 63, dns1123_label, kLabelPattern};
const Text kReferentName{1, 253};
const Text kGroup{0, 253, group_name, "must be empty or match a DNS subdomain"};
const Text kKind{1, 63, kind_name, "must match ^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"};
const Text kHeaderName{1, 256, token, "must match ^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$"};
const Text kHeaderValue{1, 4096, field_value, "must not contain control characters"};
const Text kQueryValue{1, 1024};
const Text kHostname{1, 253, dns1123_subdomain, kSubdomainPattern};
const Text kModifierPath{0, 1024, path_text, "must not contain spaces or control characters"};
const Text kOrigin{1, 253, cors_origin,
                   "must be '*' or http(s)://host[:port], the host optionally '*.'-prefixed"};
const Text kVersion{1, 1024};
const Text kAppProtocol{1, 253, field_value, "must not contain control characters"};
const Text kIP{1, 64, ip_address, "must be an IPv4 or IPv6 address"};
const Text kIdentity{1, 2048, spiffe_id, "must be a SPIFFE ID (spiffe://...)"};

Result<std::string> read_text(const Value& v, const Text& spec) {
  ASSIGN_OR_RETURN(std::string_view s, v.string());
  if (s.size() < spec.min_length) return v.error("must not be empty");
  if (s.size() > spec.max_length) {
    return v.error("is " + std::to_string(s.size()) +
                   " characters long, more than the maximum of " + std::to_string(spec.max_length));
  }
  if (spec.valid != nullptr && !spec.valid(s)) {
    return v.error("invalid value '" + shown(s) + "' (" + spec.requirement + ")");
  }
  return std::string(s);
}

Result<std::string> required_text(const Object& o, std::string_view key, const Text& spec) {
  ASSIGN_OR_RETURN(Value v, o.required(key));
  return read_text(v, spec);
}

Result<std::optional<std::string>> optional_text(const Object& o, std::string_view key,
                                                 const Text& spec) {
  std::optional<Value> v = o.find(key);
  if (!v) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, read_text(*v, spec));
  return std::optional<std::string>(std::move(s));
}

Result<std::optional<uint16_t>> optional_port(const Object& o, std::string_view key) {
  ASSIGN_OR_RETURN(std::optional<int64_t> n, o.optional_integer(key, 1, 65535));
  if (!n) return std::optional<uint16_t>();
  return std::optional<uint16_t>(static_cast<uint16_t>(*n));
}

Result<uint16_t> required_port(const Object& o, std::string_view key) {
  ASSIGN_OR_RETURN(int64_t n, o.required_integer(key, 1, 65535));
  return static_cast<uint16_t>(n);
}

// An optional array of at most `max` items ("too many items: 17 (at most 16)").
Result<std::optional<Array>> bounded_array(const Object& o, std::string_view key, size_t max) {
  ASSIGN_OR_RETURN(std::optional<Array> a, o.optional_array(key));
  if (a && a->size() > max) {
    return a->error("too many items: " + std::to_string(a->size()) + " (at most " +
                    std::to_string(max) + ")");
  }
  return a;
}

Result<Object> object_at(const Array& a, size_t i) { return a[i].object(); }

Error duplicate(const Value& v, std::string_view what) {
  return v.error("duplicate value '" + shown(what) + "'");
}

Result<Duration> read_duration(const Value& v) {
  ASSIGN_OR_RETURN(std::string_view text, v.string());
  auto parsed = gateway::parse_duration(text);
  if (!parsed) return v.error(parsed.error().message);
  return Duration{std::string(text), *parsed};
}

Result<std::optional<Duration>> optional_duration(const Object& o, std::string_view key) {
  std::optional<Value> v = o.find(key);
  if (!v) return std::optional<Duration>();
  ASSIGN_OR_RETURN(Duration d, read_duration(*v));
  return std::optional<Duration>(std::move(d));
}

// RFC 3339 ("2026-01-02T03:04:05Z", optional fraction and offset) to Unix ns.
std::optional<int64_t> parse_rfc3339(std::string_view s) {
  auto digits = [&](size_t pos, size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (!is_digit(s[i])) return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' ||
      !digits(8, 2, day) || (s[10] != 'T' && s[10] != 't') || !digits(11, 2, hour) ||
      s[13] != ':' || !digits(14, 2, minute) || s[16] != ':' || !digits(17, 2, second)) {
    return std::nullopt;
  }
  static constexpr int kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDaysInMonth[month - 1] ||
      (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t nanos = 0;
  if (s[pos] == '.') {
    size_t start = ++pos;
    int64_t scale = 100000000;
    while (pos < s.size() && is_digit(s[pos])) {
      nanos += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int64_t offset_seconds = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_seconds = (s[pos] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  // Days from civil (H. Hinnant), proleptic Gregorian.
  int64_t y = year - (month <= 2 ? 1 : 0);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = era * 146097 + doe - 719468;
  int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  return seconds * 1000000000 + nanos;
}

Result<Regex> compile_regex(const Value& where, std::string_view pattern, const Limits& limits) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(kRegexMaxMem);
  auto re = std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()),
                                             options);
  if (!re->ok()) return where.error("invalid regular expression: " + re->error());
  if (re->ProgramSize() > limits.max_regex_program_size) {
    return where.error("regular expression too complex: program size " +
                       std::to_string(re->ProgramSize()) + " exceeds the limit of " +
                       std::to_string(limits.max_regex_program_size));
  }
  return Regex(std::move(re));
}

// ---------------------------------------------------------------- the parser

class Parser {
 public:
  explicit Parser(const Limits& limits) : limits_(limits) {}

  Result<RouteTable> table(const Object& root);

 private:
  Result<Service> service(const Object& o);
  Result<ServicePort> service_port(const Object& o);
  Result<Route> route(const Object& o, const Service& parent);
  Result<HTTPRouteRule> http_rule(const Object& o, const std::string& route_ns);
  Result<GRPCRouteRule> grpc_rule(const Object& o, const std::string& route_ns);
  Result<HTTPRouteMatch> http_match(const Object& o);
  Result<GRPCRouteMatch> grpc_match(const Object& o);
  Result<std::vector<StringMatch>> string_matches(const Object& o, std::string_view key,
                                                  const Text& value_text);
  Result<std::vector<HTTPRouteFilter>> filters(const Object& o, RouteKind kind,
                                               const std::string& route_ns);
  Result<HTTPRouteFilter> filter(const Object& o, RouteKind kind, const std::string& route_ns);
  Result<std::vector<HTTPBackendRef>> backend_refs(const Object& o, RouteKind kind,
                                                   const std::string& route_ns);
  Result<BackendObjectReference> backend_object_ref(const Object& o, const std::string& route_ns);
  Result<HTTPHeaderFilter> header_filter(const Object& o);
  Result<HTTPPathModifier> path_modifier(const Object& o);
  Result<HTTPRequestRedirectFilter> redirect(const Object& o);
  Result<HTTPURLRewriteFilter> rewrite(const Object& o);
  Result<HTTPRequestMirrorFilter> mirror(const Object& o, const std::string& route_ns);
  Result<HTTPCORSFilter> cors(const Object& o);
  Result<LocalObjectReference> extension_ref(const Object& o);
  Result<std::optional<HTTPRouteTimeouts>> timeouts(const Object& rule);
  Result<std::optional<HTTPRouteRetry>> retry(const Object& rule);
  Result<Endpoints> endpoints(const Object& o);
  Status count(const Value& where, size_t& counter, size_t n, size_t limit, std::string_view what);

  const Limits& limits_;
  size_t routes_ = 0;
  size_t rules_ = 0;
  size_t matches_ = 0;
  size_t addresses_ = 0;
};

Status Parser::count(const Value& where, size_t& counter, size_t n, size_t limit,
                     std::string_view what) {
  counter += n;
  if (counter > limit) {
    return where.error("route table limit exceeded: more than " + std::to_string(limit) + " " +
                       std::string(what));
  }
  return ok_status();
}

Result<RouteTable> Parser::table(const Object& root) {
  RouteTable t;
  ASSIGN_OR_RETURN(t.version, required_text(root, "version", kVersion));
  ASSIGN_OR_RETURN(t.ns, required_text(root, "namespace", kNamespace));

  ASSIGN_OR_RETURN(Array services, root.required_array("services"));
  if (services.size() > limits_.max_services) {
    return services.error("route table limit exceeded: " + std::to_string(services.size()) +
                          " services, more than " + std::to_string(limits_.max_services));
  }
  t.services.reserve(services.size());
  std::unordered_set<std::string> names;
  std::unordered_map<std::string, std::string> cluster_ips;  // ip_key -> "ns/name"
  for (size_t i = 0; i < services.size(); ++i) {
    ASSIGN_OR_RETURN(Object o, object_at(services, i));
    ASSIGN_OR_RETURN(Service s, service(o));
    std::string id = s.ns + "/" + s.name;
    if (!names.insert(id).second) return services[i].error("duplicate service " + id);
    for (size_t k = 0; k < s.cluster_ips.size(); ++k) {
      auto [it, inserted] = cluster_ips.emplace(ip_key(s.cluster_ips[k]), id);
      if (!inserted) {
        Array ips = *o.required_array("clusterIPs");
        return ips[k].error("clusterIP " + s.cluster_ips[k] + " is already used by " + it->second);
      }
    }
    t.services.push_back(std::move(s));
  }

  ASSIGN_OR_RETURN(Array endpoints_array, root.required_array("endpoints"));
  t.endpoints.reserve(std::min(endpoints_array.size(), limits_.max_endpoints));
  std::unordered_set<std::string> endpoint_keys;
  for (size_t i = 0; i < endpoints_array.size(); ++i) {
    ASSIGN_OR_RETURN(Object o, object_at(endpoints_array, i));
    ASSIGN_OR_RETURN(Endpoints e, endpoints(o));
    std::string key = e.ns + "/" + e.service + ":" + std::to_string(e.port);
    if (!endpoint_keys.insert(key).second) {
      return endpoints_array[i].error("duplicate endpoints for " + e.ns + "/" + e.service +
                                      " port " + std::to_string(e.port));
    }
    t.endpoints.push_back(std::move(e));
  }
  return t;
}

Result<Service> Parser::service(const Object& o) {
  Service s;
  ASSIGN_OR_RETURN(s.ns, required_text(o, "namespace", kNamespace));
  ASSIGN_OR_RETURN(s.name, required_text(o, "name", kServiceName));
  ASSIGN_OR_RETURN(Array ips, o.required_array("clusterIPs"));
  if (ips.size() > kMaxClusterIPs) {
    return ips.error("too many items: " + std::to_string(ips.size()) + " (at most 2)");
  }
  for (size_t i = 0; i < ips.size(); ++i) {
    ASSIGN_OR_RETURN(std::string ip, read_text(ips[i], kIP));
    for (const std::string& seen : s.cluster_ips) {
      if (ip_key(seen) == ip_key(ip)) return duplicate(ips[i], ip);
    }
    s.cluster_ips.push_back(std::move(ip));
  }

  ASSIGN_OR_RETURN(Array ports, o.required_array("ports"));
  for (size_t i = 0; i < ports.size(); ++i) {
    ASSIGN_OR_RETURN(Object po, object_at(ports, i));
    ASSIGN_OR_RETURN(ServicePort p, service_port(po));
    for (const ServicePort& seen : s.ports) {
      if (seen.port == p.port) {
        return (*po.required("port")).error("duplicate port " + std::to_string(p.port));
      }
      if (!p.name.empty() && seen.name == p.name) return duplicate(*po.required("name"), p.name);
    }
    s.ports.push_back(std::move(p));
  }

  ASSIGN_OR_RETURN(std::optional<Array> routes, o.optional_array("routes"));
  if (routes) {
    RETURN_IF_ERROR(count(routes->value(), routes_, routes->size(), limits_.max_routes, "routes"));
    s.routes.reserve(routes->size());
    for (size_t i = 0; i < routes->size(); ++i) {
      ASSIGN_OR_RETURN(Object ro, object_at(*routes, i));
      ASSIGN_OR_RETURN(Route r, route(ro, s));
      s.routes.push_back(std::move(r));
    }
  }
  return s;
}

Result<ServicePort> Parser::service_port(const Object& o) {
  ServicePort p;
  ASSIGN_OR_RETURN(std::optional<std::string> name, optional_text(o, "name", kPortName));
  p.name = name.value_or("");
  ASSIGN_OR_RETURN(p.port, required_port(o, "port"));
  ASSIGN_OR_RETURN(std::optional<uint16_t> target, optional_port(o, "targetPort"));
  p.target_port = target.value_or(p.port);
  ASSIGN_OR_RETURN(p.app_protocol, optional_text(o, "appProtocol", kAppProtocol));
  return p;
}

Result<Route> Parser::route(const Object& o, const Service& parent) {
  Route r;
  ASSIGN_OR_RETURN(Value kind, o.required("kind"));
  ASSIGN_OR_RETURN(r.kind, parse_enum<RouteKind>(kind, {{"HTTPRoute", RouteKind::http_route},
                                                        {"GRPCRoute", RouteKind::grpc_route}}));
  ASSIGN_OR_RETURN(r.ns, required_text(o, "namespace", kNamespace));
  ASSIGN_OR_RETURN(r.name, required_text(o, "name", kObjectName));
  ASSIGN_OR_RETURN(Value ts, o.required("creationTimestamp"));
  ASSIGN_OR_RETURN(std::string_view ts_text, ts.string());
  std::optional<int64_t> created = parse_rfc3339(ts_text);
  if (!created) return ts.error("invalid RFC 3339 timestamp '" + shown(ts_text) + "'");
  r.creation_timestamp = std::string(ts_text);
  r.creation_time_ns = *created;
  ASSIGN_OR_RETURN(r.port, optional_port(o, "port"));
  if (r.port) {
    bool known = std::any_of(parent.ports.begin(), parent.ports.end(),
                             [&](const ServicePort& p) { return p.port == *r.port; });
    if (!known) {
      return (*o.required("port"))
          .error(std::to_string(*r.port) + " is not a port of service " + parent.ns + "/" +
                 parent.name);
    }
  }

  ASSIGN_OR_RETURN(std::optional<Array> rules, bounded_array(o, "rules", kMaxItems));
  size_t route_matches = 0;
  if (r.kind == RouteKind::http_route) {
    if (!rules) {
      // The CRD default: one rule matching every request (and, without
      // backendRefs, answering 500).
      RETURN_IF_ERROR(count(o.value(), rules_, 1, limits_.max_rules, "rules"));
      RETURN_IF_ERROR(count(o.value(), matches_, 1, limits_.max_matches, "matches"));
      r.http_rules.emplace_back().matches.emplace_back();
      return r;
    }
    if (rules->empty()) return rules->error("must have at least 1 item");
    RETURN_IF_ERROR(count(rules->value(), rules_, rules->size(), limits_.max_rules, "rules"));
    for (size_t i = 0; i < rules->size(); ++i) {
      ASSIGN_OR_RETURN(Object ro, object_at(*rules, i));
      ASSIGN_OR_RETURN(HTTPRouteRule rule, http_rule(ro, r.ns));
      route_matches += rule.matches.size();
      r.http_rules.push_back(std::move(rule));
    }
  } else if (rules) {
    RETURN_IF_ERROR(count(rules->value(), rules_, rules->size(), limits_.max_rules, "rules"));
    for (size_t i = 0; i < rules->size(); ++i) {
      ASSIGN_OR_RETURN(Object ro, object_at(*rules, i));
      ASSIGN_OR_RETURN(GRPCRouteRule rule, grpc_rule(ro, r.ns));
      route_matches += rule.matches.size();
      r.grpc_rules.push_back(std::move(rule));
    }
  }
  if (rules) {
    if (route_matches > kMaxRouteMatches) {
      return rules->error(
          "While 16 rules and 64 matches per rule are allowed, the total number of matches "
          "across all rules in a route must be less than 128");
    }
    std::vector<const std::optional<std::string>*> names;
    for (const auto& rule : r.http_rules) names.push_back(&rule.name);
    for (const auto& rule : r.grpc_rules) names.push_back(&rule.name);
    for (size_t i = 0; i < names.size(); ++i) {
      for (size_t k = 0; k < i; ++k) {
        if (*names[i] && *names[k] && **names[i] == **names[k]) {
          return rules->error("Rule name must be unique within the route");
        }
      }
    }
  }
  return r;
}

bool has_prefix_modifier(const std::vector<HTTPRouteFilter>& filters, FilterType type) {
  for (const HTTPRouteFilter& f : filters) {
    const std::optional<HTTPPathModifier>* path = nullptr;
    if (type == FilterType::request_redirect && f.request_redirect) {
      path = &f.request_redirect->path;
    }
    if (type == FilterType::url_rewrite && f.url_rewrite) path = &f.url_rewrite->path;
    if (path && path->has_value() && (*path)->type == PathModifierType::replace_prefix_match) {
      return true;
    }
  }
  return false;
}

Result<HTTPRouteRule> Parser::http_rule(const Object& o, const std::string& route_ns) {
  HTTPRouteRule rule;
  ASSIGN_OR_RETURN(rule.name, optional_text(o, "name", kObjectName));
  ASSIGN_OR_RETURN(std::optional<Array> matches, bounded_array(o, "matches", kMaxMatches));
  if (matches) {
    for (size_t i = 0; i < matches->size(); ++i) {
      ASSIGN_OR_RETURN(Object mo, object_at(*matches, i));
      ASSIGN_OR_RETURN(HTTPRouteMatch m, http_match(mo));
      rule.matches.push_back(std::move(m));
    }
  } else {
    rule.matches.emplace_back();  // the CRD default: PathPrefix "/"
  }
  ASSIGN_OR_RETURN(rule.filters, filters(o, RouteKind::http_route, route_ns));
  ASSIGN_OR_RETURN(rule.backend_refs, backend_refs(o, RouteKind::http_route, route_ns));
  ASSIGN_OR_RETURN(rule.timeouts, timeouts(o));
  ASSIGN_OR_RETURN(rule.retry, retry(o));

  // The rule-level CEL rules, in the CRD's order, on the rule as stored.
  bool redirect =
      std::any_of(rule.filters.begin(), rule.filters.end(),
                  [](const HTTPRouteFilter& f) { return f.type == FilterType::request_redirect; });
  if (redirect && !rule.backend_refs.empty()) {
    return o.error("RequestRedirect filter must not be used together with backendRefs");
  }
  bool one_prefix_match =
      rule.matches.size() == 1 && rule.matches[0].path.type == PathMatchType::path_prefix;
  if (has_prefix_modifier(rule.filters, FilterType::request_redirect) && !one_prefix_match) {
    return o.error(
        "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix "
        "match must be specified");
  }
  if (has_prefix_modifier(rule.filters, FilterType::url_rewrite) && !one_prefix_match) {
    return o.error(
        "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match "
        "must be specified");
  }
  for (const HTTPBackendRef& b : rule.backend_refs) {
    if (has_prefix_modifier(b.filters, FilterType::request_redirect) && !one_prefix_match) {
      return o.error(
          "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, "
          "exactly one PathPrefix match must be specified");
    }
  }
  for (const HTTPBackendRef& b : rule.backend_refs) {
    if (has_prefix_modifier(b.filters, FilterType::url_rewrite) && !one_prefix_match) {
      return o.error(
          "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly "
          "one PathPrefix match must be specified");
    }
  }
  // No matches means "match everything" (the API's documented meaning).
  if (rule.matches.empty()) rule.matches.emplace_back();
  RETURN_IF_ERROR(count(o.value(), matches_, rule.matches.size(), limits_.max_matches, "matches"));
  return rule;
}

Result<HTTPRouteMatch> Parser::http_match(const Object& o) {
  HTTPRouteMatch m;
  ASSIGN_OR_RETURN(std::optional<Object> path, o.optional_object("path"));
  if (path) {
    if (std::optional<Value> type = path->find("type")) {
      ASSIGN_OR_RETURN(m.path.type,
                       parse_enum<PathMatchType>(*type, {{"Exact", PathMatchType::exact},
                                                         {"PathPrefix", PathMatchType::path_prefix},
                                                         {"RegularExpression",
                                                          PathMatchType::regular_expression}}));
    }
    if (std::optional<Value> value = path->find("value")) {
      ASSIGN_OR_RETURN(m.path.value, read_text(*value, Text{0, 1024}));
      const std::string& v = m.path.value;
      if (m.path.type == PathMatchType::regular_expression) {
        ASSIGN_OR_RETURN(m.path.regex, compile_regex(*value, v, limits_));
      } else {
        // The CEL rules of HTTPPathMatch, in the CRD's order, on the object.
        auto ends_with = [&](std::string_view suffix) {
          return v.size() >= suffix.size() &&
                 v.compare(v.size() - suffix.size(), suffix.size(), suffix) == 0;
        };
        const char* broken = nullptr;
        if (v.empty() || v[0] != '/') {
          broken =
              "value must be an absolute path and start with '/' when type one of ['Exact', "
              "'PathPrefix']";
        } else if (v.find("//") != std::string::npos) {
          broken = "must not contain '//' when type one of ['Exact', 'PathPrefix']";
        } else if (v.find("/./") != std::string::npos) {
          broken = "must not contain '/./' when type one of ['Exact', 'PathPrefix']";
        } else if (v.find("/../") != std::string::npos) {
          broken = "must not contain '/../' when type one of ['Exact', 'PathPrefix']";
        } else if (v.find("%2f") != std::string::npos) {
          broken = "must not contain '%2f' when type one of ['Exact', 'PathPrefix']";
        } else if (v.find("%2F") != std::string::npos) {
          broken = "must not contain '%2F' when type one of ['Exact', 'PathPrefix']";
        } else if (v.find('#') != std::string::npos) {
          broken = "must not contain '#' when type one of ['Exact', 'PathPrefix']";
        } else if (ends_with("/..")) {
          broken = "must not end with '/..' when type one of ['Exact', 'PathPrefix']";
        } else if (ends_with("/.")) {
          broken = "must not end with '/.' when type one of ['Exact', 'PathPrefix']";
        } else if (!path_chars(v)) {
          broken =
              "must only contain valid characters (matching "
              "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', "
              "'PathPrefix']";
        }
        if (broken) return path->error(broken);
      }
    } else if (m.path.type == PathMatchType::regular_expression) {
      // The default value "/" as a pattern.
      ASSIGN_OR_RETURN(m.path.regex, compile_regex(path->value(), m.path.value, limits_));
    }
  }
  ASSIGN_OR_RETURN(m.headers, string_matches(o, "headers", kHeaderValue));
  ASSIGN_OR_RETURN(m.query_params, string_matches(o, "queryParams", kQueryValue));
  if (std::optional<Value> method = o.find("method")) {
    ASSIGN_OR_RETURN(std::string_view s, method->string());
    static constexpr std::string_view kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                    "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (std::find(std::begin(kMethods), std::end(kMethods), s) == std::end(kMethods)) {
      return method->error(
          "unknown value '" + shown(s) +
          "' (want GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH)");
    }
    m.method = std::string(s);
  }
  return m;
}

Result<std::vector<StringMatch>> Parser::string_matches(const Object& o, std::string_view key,
                                                        const Text& value_text) {
  std::vector<StringMatch> out;
  ASSIGN_OR_RETURN(std::optional<Array> items, bounded_array(o, key, kMaxItems));
  if (!items) return out;
  for (size_t i = 0; i < items->size(); ++i) {
    ASSIGN_OR_RETURN(Object mo, object_at(*items, i));
    StringMatch m;
    ASSIGN_OR_RETURN(Value name, mo.required("name"));
    ASSIGN_OR_RETURN(m.name, read_text(name, kHeaderName));
    for (const StringMatch& seen : out) {
      if (seen.name == m.name) return duplicate(name, m.name);
    }
    if (std::optional<Value> type = mo.find("type")) {
      ASSIGN_OR_RETURN(m.type, parse_enum<MatchType>(*type, {{"Exact", MatchType::exact},
                                                             {"RegularExpression",
                                                              MatchType::regular_expression}}));
    }
    ASSIGN_OR_RETURN(Value value, mo.required("value"));
    ASSIGN_OR_RETURN(m.value, read_text(value, value_text));
    if (m.type == MatchType::regular_expression) {
      ASSIGN_OR_RETURN(m.regex, compile_regex(value, m.value, limits_));
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<GRPCRouteRule> Parser::grpc_rule(const Object& o, const std::string& route_ns) {
  GRPCRouteRule rule;
  ASSIGN_OR_RETURN(rule.name, optional_text(o, "name", kObjectName));
  ASSIGN_OR_RETURN(std::optional<Array> matches, bounded_array(o, "matches", kMaxMatches));
  if (matches) {
    for (size_t i = 0; i < matches->size(); ++i) {
      ASSIGN_OR_RETURN(Object mo, object_at(*matches, i));
      ASSIGN_OR_RETURN(GRPCRouteMatch m, grpc_match(mo));
      rule.matches.push_back(std::move(m));
    }
  }
  ASSIGN_OR_RETURN(rule.filters, filters(o, RouteKind::grpc_route, route_ns));
  ASSIGN_OR_RETURN(rule.backend_refs, backend_refs(o, RouteKind::grpc_route, route_ns));
  RETURN_IF_ERROR(count(o.value(), matches_, std::max<size_t>(rule.matches.size(), 1),
                        limits_.max_matches, "matches"));
  return rule;
}

// ^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$
bool grpc_service_name(std::string_view s) {
  if (!s.empty() && s[0] == '.') s.remove_prefix(1);
  if (s.empty()) return false;
  bool start = true;
  for (char c : s) {
    if (c == '.') {
      if (start) return false;
      start = true;
    } else if (is_alpha(c) || c == '_' || (!start && is_digit(c))) {
      start = false;
    } else {
      return false;
    }
  }
  return !start;
}

// ^[A-Za-z_][A-Za-z_0-9]*$
bool grpc_method_name(std::string_view s) {
  if (s.empty() || !(is_alpha(s[0]) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '_'; });
}

Result<GRPCRouteMatch> Parser::grpc_match(const Object& o) {
  GRPCRouteMatch m;
  ASSIGN_OR_RETURN(std::optional<Object> method, o.optional_object("method"));
  if (method) {
    GRPCMethodMatch mm;
    if (std::optional<Value> type = method->find("type")) {
      ASSIGN_OR_RETURN(mm.type, parse_enum<MatchType>(*type, {{"Exact", MatchType::exact},
                                                              {"RegularExpression",
                                                               MatchType::regular_expression}}));
    }
    ASSIGN_OR_RETURN(mm.service, optional_text(*method, "service", Text{0, 1024}));
    ASSIGN_OR_RETURN(mm.method, optional_text(*method, "method", Text{0, 1024}));
    if (!mm.service && !mm.method) {
      return method->error("One or both of 'service' or 'method' must be specified");
    }
    if (mm.type == MatchType::exact) {
      if (mm.service && !grpc_service_name(*mm.service)) {
        return method->error(
            "service must only contain valid characters (matching "
            "^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)");
      }
      if (mm.method && !grpc_method_name(*mm.method)) {
        return method->error(
            "method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)");
      }
    } else {
      if (mm.service) {
        ASSIGN_OR_RETURN(mm.service_regex,
                         compile_regex(*method->find("service"), *mm.service, limits_));
      }
      if (mm.method) {
        ASSIGN_OR_RETURN(mm.method_regex,
                         compile_regex(*method->find("method"), *mm.method, limits_));
      }
    }
    m.method = std::move(mm);
  }
  ASSIGN_OR_RETURN(m.headers, string_matches(o, "headers", kHeaderValue));
  return m;
}

Result<std::vector<HTTPRouteFilter>> Parser::filters(const Object& o, RouteKind kind,
                                                     const std::string& route_ns) {
  std::vector<HTTPRouteFilter> out;
  ASSIGN_OR_RETURN(std::optional<Array> items, bounded_array(o, "filters", kMaxItems));
  if (!items) return out;
  for (size_t i = 0; i < items->size(); ++i) {
    ASSIGN_OR_RETURN(Object fo, object_at(*items, i));
    ASSIGN_OR_RETURN(HTTPRouteFilter f, filter(fo, kind, route_ns));
    out.push_back(std::move(f));
  }
  // The list-level CEL rules, in the CRD's order.
  auto count_of = [&](FilterType t) {
    return std::count_if(out.begin(), out.end(),
                         [t](const HTTPRouteFilter& f) { return f.type == t; });
  };
  if (count_of(FilterType::request_redirect) > 0 && count_of(FilterType::url_rewrite) > 0) {
    return items->error(
        "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but "
        "not both");
  }
  for (FilterType t : {FilterType::cors, FilterType::request_header_modifier,
                       FilterType::response_header_modifier, FilterType::request_redirect,
                       FilterType::url_rewrite}) {
    if (count_of(t) > 1) return items->error(std::string(name(t)) + " filter cannot be repeated");
  }
  return out;
}

Result<HTTPRouteFilter> Parser::filter(const Object& o, RouteKind kind,
                                       const std::string& route_ns) {
  HTTPRouteFilter f;
  ASSIGN_OR_RETURN(Value type, o.required("type"));
  if (kind == RouteKind::http_route) {
    ASSIGN_OR_RETURN(f.type,
                     parse_enum<FilterType>(
                         type, {{"RequestHeaderModifier", FilterType::request_header_modifier},
                                {"ResponseHeaderModifier", FilterType::response_header_modifier},
                                {"RequestMirror", FilterType::request_mirror},
                                {"RequestRedirect", FilterType::request_redirect},
                                {"URLRewrite", FilterType::url_rewrite},
                                {"ExtensionRef", FilterType::extension_ref},
                                {"CORS", FilterType::cors}}));
  } else {
    ASSIGN_OR_RETURN(f.type,
                     parse_enum<FilterType>(
                         type, {{"ResponseHeaderModifier", FilterType::response_header_modifier},
                                {"RequestHeaderModifier", FilterType::request_header_modifier},
                                {"RequestMirror", FilterType::request_mirror},
                                {"ExtensionRef", FilterType::extension_ref}}));
  }
  // Exactly the payload named by the type, checked in the CRD's order.
  struct Payload {
    std::string_view key;
    FilterType type;
  };
  static constexpr Payload kHttpPayloads[] = {
      {"cors", FilterType::cors},
      {"requestHeaderModifier", FilterType::request_header_modifier},
      {"responseHeaderModifier", FilterType::response_header_modifier},
      {"requestMirror", FilterType::request_mirror},
      {"requestRedirect", FilterType::request_redirect},
      {"urlRewrite", FilterType::url_rewrite},
      {"extensionRef", FilterType::extension_ref},
  };
  for (const Payload& p : kHttpPayloads) {
    bool grpc_field = p.type == FilterType::request_header_modifier ||
                      p.type == FilterType::response_header_modifier ||
                      p.type == FilterType::request_mirror || p.type == FilterType::extension_ref;
    if (kind == RouteKind::grpc_route && !grpc_field) continue;  // unknown field: ignored
    bool present = o.find(p.key).has_value();
    if (present && f.type != p.type) {
      return o.error("filter." + std::string(p.key) + " must be nil if the filter.type is not " +
                     std::string(name(p.type)));
    }
    if (!present && f.type == p.type) {
      return o.error("filter." + std::string(p.key) + " must be specified for " +
                     std::string(name(p.type)) + " filter.type");
    }
  }
  switch (f.type) {
    case FilterType::request_header_modifier: {
      ASSIGN_OR_RETURN(Object p, o.required_object("requestHeaderModifier"));
      ASSIGN_OR_RETURN(f.request_header_modifier, header_filter(p));
      break;
    }
    case FilterType::response_header_modifier: {
      ASSIGN_OR_RETURN(Object p, o.required_object("responseHeaderModifier"));
      ASSIGN_OR_RETURN(f.response_header_modifier, header_filter(p));
      break;
    }
    case FilterType::request_redirect: {
      ASSIGN_OR_RETURN(Object p, o.required_object("requestRedirect"));
      ASSIGN_OR_RETURN(f.request_redirect, redirect(p));
      break;
    }
    case FilterType::url_rewrite: {
      ASSIGN_OR_RETURN(Object p, o.required_object("urlRewrite"));
      ASSIGN_OR_RETURN(f.url_rewrite, rewrite(p));
      break;
    }
    case FilterType::request_mirror: {
      ASSIGN_OR_RETURN(Object p, o.required_object("requestMirror"));
      ASSIGN_OR_RETURN(f.request_mirror, mirror(p, route_ns));
      break;
    }
    case FilterType::cors: {
      ASSIGN_OR_RETURN(Object p, o.required_object("cors"));
      ASSIGN_OR_RETURN(f.cors, cors(p));
      break;
    }
    case FilterType::extension_ref: {
      ASSIGN_OR_RETURN(Object p, o.required_object("extensionRef"));
      ASSIGN_OR_RETURN(f.extension_ref, extension_ref(p));
      break;
    }
  }
  return f;
}

Result<HTTPHeaderFilter> Parser::header_filter(const Object& o) {
  HTTPHeaderFilter h;
  for (auto [key, list] : {std::pair<std::string_view, std::vector<HTTPHeader>*>{"set", &h.set},
                           {"add", &h.add}}) {
    ASSIGN_OR_RETURN(std::optional<Array> items, bounded_array(o, key, kMaxItems));
    if (!items) continue;
    for (size_t i = 0; i < items->size(); ++i) {
      ASSIGN_OR_RETURN(Object ho, object_at(*items, i));
      HTTPHeader header;
      ASSIGN_OR_RETURN(Value name, ho.required("name"));
      ASSIGN_OR_RETURN(header.name, read_text(name, kHeaderName));
      for (const HTTPHeader& seen : *list) {
        if (seen.name == header.name) return duplicate(name, header.name);
      }
      ASSIGN_OR_RETURN(header.value, required_text(ho, "value", kHeaderValue));
      list->push_back(std::move(header));
    }
  }
  ASSIGN_OR_RETURN(std::optional<Array> remove, bounded_array(o, "remove", kMaxItems));
  if (remove) {
    for (size_t i = 0; i < remove->size(); ++i) {
      ASSIGN_OR_RETURN(std::string name, read_text((*remove)[i], kHeaderName));
      if (std::find(h.remove.begin(), h.remove.end(), name) != h.remove.end()) {
        return duplicate((*remove)[i], name);
      }
      h.remove.push_back(std::move(name));
    }
  }
  return h;
}

Result<HTTPPathModifier> Parser::path_modifier(const Object& o) {
  HTTPPathModifier m;
  ASSIGN_OR_RETURN(Value type, o.required("type"));
  ASSIGN_OR_RETURN(
      m.type, parse_enum<PathModifierType>(
                  type, {{"ReplaceFullPath", PathModifierType::replace_full_path},
                         {"ReplacePrefixMatch", PathModifierType::replace_prefix_match}}));
  ASSIGN_OR_RETURN(m.replace_full_path, optional_text(o, "replaceFullPath", kModifierPath));
  ASSIGN_OR_RETURN(m.replace_prefix_match, optional_text(o, "replacePrefixMatch", kModifierPath));
  bool full = m.type == PathModifierType::replace_full_path;
  if (full && !m.replace_full_path) {
    return o.error("replaceFullPath must be specified when type is set to 'ReplaceFullPath'");
  }
  if (m.replace_full_path && !full) {
    return o.error("type must be 'ReplaceFullPath' when replaceFullPath is set");
  }
  if (!full && !m.replace_prefix_match) {
    return o.error("replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'");
  }
  if (m.replace_prefix_match && full) {
    return o.error("type must be 'ReplacePrefixMatch' when replacePrefixMatch is set");
  }
  return m;
}

Result<HTTPRequestRedirectFilter> Parser::redirect(const Object& o) {
  HTTPRequestRedirectFilter r;
  if (std::optional<Value> scheme = o.find("scheme")) {
    ASSIGN_OR_RETURN(std::string_view s, scheme->string());
    if (s != "http" && s != "https") {
      return scheme->error("unknown value '" + shown(s) + "' (want http or https)");
    }
    r.scheme = std::string(s);
  }
  ASSIGN_OR_RETURN(r.hostname, optional_text(o, "hostname", kHostname));
  ASSIGN_OR_RETURN(std::optional<Object> path, o.optional_object("path"));
  if (path) {
    ASSIGN_OR_RETURN(r.path, path_modifier(*path));
  }
  ASSIGN_OR_RETURN(r.port, optional_port(o, "port"));
  if (std::optional<Value> status = o.find("statusCode")) {
    ASSIGN_OR_RETURN(int64_t code, status->integer());
    if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308) {
      return status->error("unknown value " + std::to_string(code) +
                           " (want 301, 302, 303, 307 or 308)");
    }
    r.status_code = static_cast<int>(code);
  }
  return r;
}

Result<HTTPURLRewriteFilter> Parser::rewrite(const Object& o) {
  HTTPURLRewriteFilter r;
  ASSIGN_OR_RETURN(r.hostname, optional_text(o, "hostname", kHostname));
  ASSIGN_OR_RETURN(std::optional<Object> path, o.optional_object("path"));
  if (path) {
    ASSIGN_OR_RETURN(r.path, path_modifier(*path));
  }
  return r;
}

Result<BackendObjectReference> Parser::backend_object_ref(const Object& o,
                                                          const std::string& route_ns) {
  BackendObjectReference ref;
  ASSIGN_OR_RETURN(std::optional<std::string> group, optional_text(o, "group", kGroup));
  ref.group = group.value_or("");
  ASSIGN_OR_RETURN(std::optional<std::string> kind, optional_text(o, "kind", kKind));
  ref.kind = kind.value_or("Service");
  ASSIGN_OR_RETURN(ref.name, required_text(o, "name", kReferentName));
  ASSIGN_OR_RETURN(std::optional<std::string> ns, optional_text(o, "namespace", kNamespace));
  ref.ns = ns.value_or(route_ns);
  ASSIGN_OR_RETURN(ref.port, optional_port(o, "port"));
  if (ref.group.empty() && ref.kind == "Service" && !ref.port) {
    return o.error("Must have port for Service reference");
  }
  return ref;
}

Result<HTTPRequestMirrorFilter> Parser::mirror(const Object& o, const std::string& route_ns) {
  HTTPRequestMirrorFilter m;
  ASSIGN_OR_RETURN(Object ref, o.required_object("backendRef"));
  ASSIGN_OR_RETURN(m.backend_ref, backend_object_ref(ref, route_ns));
  ASSIGN_OR_RETURN(std::optional<int64_t> percent, o.optional_integer("percent", 0, 100));
  if (percent) m.percent = static_cast<int32_t>(*percent);
  ASSIGN_OR_RETURN(std::optional<Object> fraction, o.optional_object("fraction"));
  if (fraction) {
    Fraction f;
    ASSIGN_OR_RETURN(int64_t numerator, fraction->required_integer("numerator", 0, kInt32Max));
    ASSIGN_OR_RETURN(std::optional<int64_t> denominator,
                     fraction->optional_integer("denominator", 1, kInt32Max));
    f.numerator = static_cast<int32_t>(numerator);
    f.denominator = static_cast<int32_t>(denominator.value_or(100));
    if (f.numerator > f.denominator) {
      return fraction->error("numerator must be less than or equal to denominator");
    }
    m.fraction = f;
  }
  if (m.percent && m.fraction) {
    return o.error("Only one of percent or fraction may be specified in HTTPRequestMirrorFilter");
  }
  return m;
}

Result<HTTPCORSFilter> Parser::cors(const Object& o) {
  HTTPCORSFilter c;
  struct List {
    std::string_view key;
    std::vector<std::string>* out;
    size_t max;
    const Text* text;
    const char* wildcard_error;
  };
  static const Text kMethod{1, 16};
  const List lists[] = {
      {"allowOrigins", &c.allow_origins, kMaxCorsItems, &kOrigin,
       "AllowOrigins cannot contain '*' alongside other origins"},
      {"allowMethods", &c.allow_methods, kMaxCorsMethods, &kMethod,
       "AllowMethods cannot contain '*' alongside other methods"},
      {"allowHeaders", &c.allow_headers, kMaxCorsItems, &kHeaderName,
       "AllowHeaders cannot contain '*' alongside other methods"},
      {"exposeHeaders", &c.expose_headers, kMaxCorsItems, &kHeaderName, nullptr},
  };
  for (const List& list : lists) {
    ASSIGN_OR_RETURN(std::optional<Array> items, bounded_array(o, list.key, list.max));
    if (!items) continue;
    for (size_t i = 0; i < items->size(); ++i) {
      ASSIGN_OR_RETURN(std::string item, read_text((*items)[i], *list.text));
      if (list.out == &c.allow_methods) {
        static constexpr std::string_view kMethods[] = {
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"};
        if (std::find(std::begin(kMethods), std::end(kMethods), item) == std::end(kMethods)) {
          return (*items)[i].error(
              "unknown value '" + shown(item) +
              "' (want GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH or *)");
        }
      }
      if (std::find(list.out->begin(), list.out->end(), item) != list.out->end()) {
        return duplicate((*items)[i], item);
      }
      list.out->push_back(std::move(item));
    }
    if (list.wildcard_error && list.out->size() > 1 &&
        std::find(list.out->begin(), list.out->end(), "*") != list.out->end()) {
      return items->error(list.wildcard_error);
    }
  }
  ASSIGN_OR_RETURN(c.allow_credentials, o.optional_bool("allowCredentials"));
  ASSIGN_OR_RETURN(std::optional<int64_t> max_age, o.optional_integer("maxAge", 1, kInt32Max));
  c.max_age = static_cast<int32_t>(max_age.value_or(5));
  return c;
}

Result<LocalObjectReference> Parser::extension_ref(const Object& o) {
  LocalObjectReference r;
  ASSIGN_OR_RETURN(r.group, required_text(o, "group", kGroup));
  ASSIGN_OR_RETURN(r.kind, required_text(o, "kind", kKind));
  ASSIGN_OR_RETURN(r.name, required_text(o, "name", kReferentName));
  return r;
}

Result<std::vector<HTTPBackendRef>> Parser::backend_refs(const Object& o, RouteKind kind,
                                                         const std::string& route_ns) {
  std::vector<HTTPBackendRef> out;
  ASSIGN_OR_RETURN(std::optional<Array> items, bounded_array(o, "backendRefs", kMaxItems));
  if (!items) return out;
  for (size_t i = 0; i < items->size(); ++i) {
    ASSIGN_OR_RETURN(Object bo, object_at(*items, i));
    HTTPBackendRef b;
    // The ref's own fields first, then the CEL rule on the whole object.
    ASSIGN_OR_RETURN(std::optional<int64_t> weight, bo.optional_integer("weight", 0, 1000000));
    b.weight = static_cast<int32_t>(weight.value_or(1));
    ASSIGN_OR_RETURN(b.filters, filters(bo, kind, route_ns));
    ASSIGN_OR_RETURN(b.ref, backend_object_ref(bo, route_ns));
    out.push_back(std::move(b));
  }
  return out;
}

Result<std::optional<HTTPRouteTimeouts>> Parser::timeouts(const Object& rule) {
  ASSIGN_OR_RETURN(std::optional<Object> o, rule.optional_object("timeouts"));
  if (!o) return std::optional<HTTPRouteTimeouts>();
  HTTPRouteTimeouts t;
  ASSIGN_OR_RETURN(t.request, optional_duration(*o, "request"));
  ASSIGN_OR_RETURN(t.backend_request, optional_duration(*o, "backendRequest"));
  if (t.request && t.backend_request && t.request->value.count() != 0 &&
      t.backend_request->value > t.request->value) {
    return o->error("backendRequest timeout cannot be longer than request timeout");
  }
  return std::optional<HTTPRouteTimeouts>(std::move(t));
}

Result<std::optional<HTTPRouteRetry>> Parser::retry(const Object& rule) {
  ASSIGN_OR_RETURN(std::optional<Object> o, rule.optional_object("retry"));
  if (!o) return std::optional<HTTPRouteRetry>();
  HTTPRouteRetry r;
  ASSIGN_OR_RETURN(std::optional<Array> codes, o->optional_array("codes"));
  if (codes) {
    for (size_t i = 0; i < codes->size(); ++i) {
      ASSIGN_OR_RETURN(int64_t code, (*codes)[i].integer(400, 599));
      if (std::find(r.codes.begin(), r.codes.end(), code) != r.codes.end()) {
        return duplicate((*codes)[i], std::to_string(code));
      }
      r.codes.push_back(static_cast<int32_t>(code));
    }
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> attempts, o->optional_integer("attempts", 1, kInt32Max));
  if (attempts) r.attempts = static_cast<int32_t>(*attempts);
  ASSIGN_OR_RETURN(r.backoff, optional_duration(*o, "backoff"));
  return std::optional<HTTPRouteRetry>(std::move(r));
}

Result<Endpoints> Parser::endpoints(const Object& o) {
  Endpoints e;
  ASSIGN_OR_RETURN(e.ns, required_text(o, "namespace", kNamespace));
  ASSIGN_OR_RETURN(e.service, required_text(o, "service", kServiceName));
  ASSIGN_OR_RETURN(e.port, required_port(o, "port"));
  ASSIGN_OR_RETURN(Array addresses, o.required_array("addresses"));
  RETURN_IF_ERROR(count(addresses.value(), addresses_, addresses.size(), limits_.max_endpoints,
                        "endpoint addresses"));
  e.addresses.reserve(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    ASSIGN_OR_RETURN(Object ao, object_at(addresses, i));
    EndpointAddress a;
    ASSIGN_OR_RETURN(a.ip, required_text(ao, "ip", kIP));
    ASSIGN_OR_RETURN(a.port, required_port(ao, "port"));
    ASSIGN_OR_RETURN(std::optional<bool> ready, ao.optional_bool("ready"));
    a.ready = ready.value_or(true);
    ASSIGN_OR_RETURN(a.serving, ao.optional_bool("serving"));
    ASSIGN_OR_RETURN(a.terminating, ao.optional_bool("terminating"));
    ASSIGN_OR_RETURN(a.pod, optional_text(ao, "pod", kObjectName));
    ASSIGN_OR_RETURN(a.identity, optional_text(ao, "identity", kIdentity));
    e.addresses.push_back(std::move(a));
  }
  return e;
}

}  // namespace

Result<std::shared_ptr<const RouteTable>> parse(std::string_view text, const Limits& limits) {
  json::Limits json_limits;
  json_limits.max_bytes = limits.max_bytes;
  json_limits.max_depth = limits.max_depth;
  auto doc = json::Document::parse(text, json_limits);
  if (!doc) return std::move(doc).error();
  ASSIGN_OR_RETURN(Object root, doc->root().object());
  Parser parser(limits);
  ASSIGN_OR_RETURN(RouteTable table, parser.table(root));
  return std::shared_ptr<const RouteTable>(std::make_shared<RouteTable>(std::move(table)));
}

}  // namespace trellis::routes
