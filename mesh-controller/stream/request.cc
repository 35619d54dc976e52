#include "mesh-controller/stream/request.h"

namespace trellis::controller::stream {
namespace {

constexpr int kBadRequest = 400;
constexpr int kForbidden = 403;
constexpr int kNotFound = 404;
constexpr int kMethodNotAllowed = 405;

// For messages: at most 64 bytes, printable ASCII only.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) out += (c >= 0x20 && c < 0x7f && c != '\'') ? c : '?';
  if (text.size() > 64) out += "...";
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string form_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

std::string usage() { return "the route-table stream is GET " + std::string(kRouteTablePath); }

}  // namespace

Status check_dns_label(std::string_view value) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !value.empty() && value.size() <= 63 && alnum(value.front()) && alnum(value.back());
  for (char c : value) ok = ok && (alnum(c) || c == '-');
  if (ok) return ok_status();
  return make_error("invalid value '" + printable(value) +
                    "' (want a DNS label: 1-63 lowercase letters, digits and '-', starting and "
                    "ending with a letter or digit)");
}

std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
  size_t question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  size_t fragment = query.find('#');
  if (fragment != std::string_view::npos) query = query.substr(0, fragment);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (form_decode(key) != name) continue;
    return eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

Result<std::string> identity_namespace(std::string_view spiffe_id, std::string_view trust_domain) {
  auto refuse = [&] {
    return make_error("peer identity '" + printable(spiffe_id) +
                          "' is not a workload identity of trust domain '" +
                          std::string(trust_domain) + "' (want spiffe://" +
                          std::string(trust_domain) + "/ns/<namespace>/sa/<service account>)",
                      kForbidden);
  };
  std::string prefix = "spiffe://" + std::string(trust_domain) + "/ns/";
  if (spiffe_id.substr(0, prefix.size()) != prefix) return refuse();
  std::string_view rest = spiffe_id.substr(prefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return refuse();
  std::string_view ns = rest.substr(0, slash);
  std::string_view sa_part = rest.substr(slash);
  if (sa_part.substr(0, 4) != "/sa/" || sa_part.size() == 4 ||
      sa_part.find('/', 4) != std::string_view::npos || !check_dns_label(ns).ok()) {
    return refuse();
  }
  return std::string(ns);
}

Result<std::string> client_namespace(const http::RequestHead& head,
                                     const std::optional<std::string>& peer_identity,
                                     const RequestPolicy& policy) {
  if (head.path() != kRouteTablePath) {
    return make_error("no such path '" + printable(head.path()) + "': " + usage(), kNotFound);
  }
  if (head.method != "GET") {
    return make_error("method '" + printable(head.method) + "' not allowed: " + usage(),
                      kMethodNotAllowed);
  }
  std::optional<std::string> requested = query_parameter(head.target, kNamespaceParameter);
  if (peer_identity) {
    ASSIGN_OR_RETURN(std::string ns, identity_namespace(*peer_identity, policy.trust_domain));
    if (requested && *requested != ns) {
      return make_error("query parameter 'namespace' ('" + printable(*requested) +
                            "') does not match the namespace of the peer identity ('" + ns + "')",
                        kForbidden);
    }
    return ns;
  }
  if (!policy.insecure_namespace_from_query) {
    return make_error(
        "the route-table namespace comes from the peer's mTLS identity, which this controller "
        "cannot verify yet (no mTLS); it takes the 'namespace' query parameter instead only when "
        "started with --insecure-namespace-from-query (tests and the sandbox only)",
        kForbidden);
  }
  if (!requested) return make_error("missing query parameter 'namespace'", kBadRequest);
  if (Status s = check_dns_label(*requested); !s.ok()) {
    return make_error("query parameter 'namespace': " + s.error().message, kBadRequest);
  }
  return *requested;
}

}  // namespace trellis::controller::stream
