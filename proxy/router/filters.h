// Gateway API filters as pure functions on the shared HTTP heads, and the
// per-request decision that ties matching, backend choice and filters together.
//
// For a matched request the proxy calls decide(); then, when forwarding,
// apply_request_filters() on the request it sends upstream (and to mirrors,
// see mirrors_of()), and apply_response_filters() on the response it returns.
// Rule-level filters apply before backendRef-level filters, on both sides.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http/message.h"
#include "proxy/router/table.h"

namespace trellis::proxy::router {

// A compiled CORS filter (GEP-1767).
struct Cors {
  struct Origin {
    std::string scheme;  // "http" | "https"
    std::string host;    // lower case; "" = any host; for "*.example.org", "example.org"
    bool subdomains = false;
    uint16_t port = 0;   // explicit, or the scheme's default
  };
  bool any_origin = false;
  std::vector<Origin> origins;
  bool any_method = false;
  std::string allow_methods;  // ", "-joined; "" = none configured
  bool any_header = false;
  std::string allow_headers;
  bool expose_any = false;
  std::string expose_headers;
  bool credentials = false;
  std::string max_age;

  static Cors compile(const routes::HTTPCORSFilter& filter);
  bool allows(std::string_view origin) const;
};

// requestHeaderModifier / responseHeaderModifier on a header map. Order:
// remove, then set (replaces every entry of the name), then add (appends to
// the existing value: "existing,added"; Set-Cookie gets its own line). Names
// are case-insensitive; of entries naming the same header, the first counts.
void apply_header_filter(const routes::HTTPHeaderFilter& filter, trellis::http::HeaderMap& headers);
// The same on a request, where Host lives in `authority`: `set` of Host
// replaces the authority; add or remove of Host are ignored.
void apply_request_header_filter(const routes::HTTPHeaderFilter& filter,
                                 trellis::http::RequestHead& request);

// ReplacePrefixMatch: `prefix` (without trailing '/', "" for "/") replaced by
// `replacement` in `path`, by whole segments, never yielding "" ("/prefix/one"
// -> "/one": "/prefix/one/two" -> "/one/two"; "/strip" -> "/": "/strip/x" ->
// "/x", "/strip" -> "/"). A path the prefix does not cover is returned as is.
std::string replace_prefix(std::string_view path, std::string_view prefix,
                           std::string_view replacement);

// The path of a redirect or rewrite, or the request's path when the modifier
// is absent.
std::string modified_path(const std::optional<routes::HTTPPathModifier>& modifier,
                          std::string_view path, const Rule& rule);

// Location of a RequestRedirect: scheme (the filter's, else the request's),
// hostname (the filter's, else the request's host, else the frontend's
// default host), port (the filter's; else the scheme's well-known port when
// the filter sets a scheme; else the Service port dialled), ":80" omitted for
// http and ":443" for https, the path per the filter, the query preserved.
std::string redirect_location(const routes::HTTPRequestRedirectFilter& filter, const Rule& rule,
                              const Frontend& frontend, const trellis::http::RequestHead& request);

// URLRewrite on the request forwarded: hostname replaces the authority, the
// path is replaced per the modifier, the query is kept.
void apply_url_rewrite(const routes::HTTPURLRewriteFilter& filter, const Rule& rule,
                       trellis::http::RequestHead& request);

// Whether this request goes to the mirror too; `draw` uniform over uint64.
bool mirror_selected(const Mirror& mirror, uint64_t draw);

// Calls f(const Mirror&) for the rule's mirrors, then the backend's.
template <typename F>
void mirrors_of(const Rule& rule, const Backend* backend, F&& f) {
  for (const Mirror& m : rule.filters.mirrors) f(m);
  if (backend != nullptr) {
    for (const Mirror& m : backend->filters.mirrors) f(m);
  }
}

// A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method.
bool is_cors_preflight(const trellis::http::RequestHead& request);
// The proxy's answer to a preflight: 200, with the CORS headers when the
// origin is allowed and without them when it is not.
trellis::http::ResponseHead cors_preflight_response(const Cors& cors, const trellis::http::RequestHead& request);
// Headers on the response to an actual cross-origin request from an allowed origin.
void apply_cors_response(const Cors& cors, const trellis::http::RequestHead& request,
                         trellis::http::ResponseHead& response);

// Request side: the rule's RequestHeaderModifier and URLRewrite, then the backend's.
void apply_request_filters(const Rule& rule, const Backend* backend, trellis::http::RequestHead& request);
// Response side: the rule's ResponseHeaderModifier and the backend's, then CORS.
void apply_response_filters(const Rule& rule, const Backend* backend,
                            const trellis::http::RequestHead& request, trellis::http::ResponseHead& response);

struct Action {
  enum class Kind {
    forward,   // to `backend`
    respond,   // with `response` (500, 503, a CORS preflight answer or a redirect)
  };
  Kind kind = Kind::respond;
  const Backend* backend = nullptr;  // forward; also set for 500/503 answered for a backend
  trellis::http::ResponseHead response;       // respond
};

// What to do with a request that matched `rule`: the ExtensionRef check (500),
// a CORS preflight, a rule-level redirect, then the weighted backend (`draw`
// uniform over uint64): none (500), invalid (500), unavailable (503), a
// backend-level ExtensionRef (500) or redirect, or forward.
Action decide(const Frontend& frontend, const Rule& rule, const trellis::http::RequestHead& request,
              uint64_t draw);

}  // namespace trellis::proxy::router
