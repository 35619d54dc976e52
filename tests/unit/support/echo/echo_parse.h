// Reads echo client output the way the Gateway API conformance suite does
// (conformance/utils/echo/parse.go, gamma-conformance.md §2.4), so that the
// tests check what the suite will actually see:
//   - scalar fields: the first "Key=(.*)" match anywhere in the text
//     (case-sensitive, up to the end of the line);
//   - every "RequestHeader=k:v" is added (http.Header.Add), split at the
//     first ':'; every "ResponseHeader=k:v" is set (http.Header.Set: the
//     last one wins); keys are Go-canonical;
//   - a batch is split on "\n\n"; sections with neither Hostname nor
//     StatusCode are dropped.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/echo/wire.h"

namespace trellis::support::echo::testing {

struct ParsedResponse {
  std::string method, protocol, version, port, code, host, hostname, url, ip;
  std::map<std::string, std::vector<std::string>> request_headers;  // canonical key -> values
  std::map<std::string, std::string> response_headers;              // canonical key -> last value

  // What compareRequest checks: every value of the header, joined with ",".
  std::string request_header(std::string_view key) const {
    auto it = request_headers.find(canonical_header_key(key));
    if (it == request_headers.end()) return "";
    std::string joined;
    for (const std::string& v : it->second) joined += (joined.empty() ? "" : ",") + v;
    return joined;
  }
  bool has_request_header(std::string_view key) const {
    return request_headers.count(canonical_header_key(key)) > 0;
  }
  // http.Header.Get: "" when absent.
  std::string response_header(std::string_view key) const {
    auto it = response_headers.find(canonical_header_key(key));
    return it == response_headers.end() ? "" : it->second;
  }
  bool has_response_header(std::string_view key) const {
    return response_headers.count(canonical_header_key(key)) > 0;
  }
};

namespace detail {

// The capture of the first "<key>=(.*)" match, as Go's FindStringSubmatch.
inline std::string first_match(std::string_view text, std::string_view key) {
  std::string needle = std::string(key) + "=";
  size_t at = text.find(needle);
  if (at == std::string_view::npos) return "";
  size_t start = at + needle.size();
  size_t end = text.find('\n', start);
  return std::string(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
}

// Every capture of "<key>=(.*)", as FindAllStringSubmatch.
inline std::vector<std::string> all_matches(std::string_view text, std::string_view key) {
  std::vector<std::string> out;
  std::string needle = std::string(key) + "=";
  size_t at = 0;
  while ((at = text.find(needle, at)) != std::string_view::npos) {
    size_t start = at + needle.size();
    size_t end = text.find('\n', start);
    out.emplace_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    at = end == std::string_view::npos ? text.size() : end;
  }
  return out;
}

}  // namespace detail

inline ParsedResponse parse_response(std::string_view output) {
  ParsedResponse r;
  r.method = detail::first_match(output, "Method");
  r.protocol = detail::first_match(output, "Proto");
  r.version = detail::first_match(output, "ServiceVersion");
  r.port = detail::first_match(output, "ServicePort");
  r.code = detail::first_match(output, "StatusCode");
  r.host = detail::first_match(output, "Host");
  r.hostname = detail::first_match(output, "Hostname");
  r.url = detail::first_match(output, "URL");
  r.ip = detail::first_match(output, "IP");
  for (const std::string& kv : detail::all_matches(output, "RequestHeader")) {
    size_t colon = kv.find(':');
    if (colon == std::string::npos) continue;
    r.request_headers[canonical_header_key(kv.substr(0, colon))].push_back(kv.substr(colon + 1));
  }
  for (const std::string& kv : detail::all_matches(output, "ResponseHeader")) {
    size_t colon = kv.find(':');
    if (colon == std::string::npos) continue;
    r.response_headers[canonical_header_key(kv.substr(0, colon))] = kv.substr(colon + 1);
  }
  return r;
}

inline std::vector<ParsedResponse> parse_multiple_responses(std::string_view output) {
  std::vector<ParsedResponse> out;
  while (true) {
    size_t at = output.find("\n\n");
    std::string_view section = output.substr(0, at);
    size_t first = section.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos) {
      ParsedResponse r = parse_response(section.substr(first));
      if (!r.hostname.empty() || !r.code.empty()) out.push_back(std::move(r));
    }
    if (at == std::string_view::npos) return out;
    output.remove_prefix(at + 2);
  }
}

// Backend name from a pod name, as the weight tests reduce Hostname:
// "echo-v1-7d9c-x2x4q" -> "echo-v1" (the last two '-' parts dropped).
inline std::string backend_name(std::string_view hostname) {
  size_t last = hostname.rfind('-');
  if (last == std::string_view::npos || last == 0) return std::string(hostname);
  size_t second = hostname.rfind('-', last - 1);
  if (second == std::string_view::npos) return std::string(hostname);
  return std::string(hostname.substr(0, second));
}

}  // namespace trellis::support::echo::testing
