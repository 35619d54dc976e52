#include "common/http2/header_block.h"

#include <array>

namespace trellis::http2 {
namespace {

const uint8_t* bytes(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f for every comma-separated, trimmed, non-empty token of a list value.
template <typename F>
void for_each_token(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view token = trim(v.substr(0, comma));
    if (!token.empty()) f(token);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
  }
}

// Credentials are never entered in the HPACK dynamic table, so that a
// compression side channel cannot recover them (RFC 7541 §7.1.3).
bool never_index(std::string_view lowered_name) {
  return lowered_name == "authorization" || lowered_name == "proxy-authorization";
}

}  // namespace

std::string printable(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out;
  for (char c : s.substr(0, kMax)) out.push_back(c > 0x20 && c < 0x7f && c != '\'' ? c : '?');
  if (s.size() > kMax) out += "...";
  return out;
}

bool is_connection_specific(std::string_view name) {
  static constexpr std::array<std::string_view, 5> kNames = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"};
  for (std::string_view n : kNames) {
    if (http::iequals(name, n)) return true;
  }
  return false;
}

void HeaderBlock::reset(const http::HeaderMap& headers) {
  // A reused block keeps its storage, unless an unusually large head grew it.
  constexpr size_t kKeptNameBytes = 4096;
  constexpr size_t kKeptFields = 128;
  size_t names = 0;
  for (const http::Header& h : headers) names += h.name.size();
  if (names_.capacity() > kKeptNameBytes && names <= kKeptNameBytes) std::string().swap(names_);
  names_.clear();
  names_.reserve(names);
  size_t fields = headers.size() + 5;
  if (fields_.capacity() > kKeptFields && fields <= kKeptFields) std::vector<nghttp2_nv>().swap(fields_);
  fields_.clear();
  fields_.reserve(fields);
  if (named_by_connection_.capacity() > kKeptFields) {
    std::vector<std::string_view>().swap(named_by_connection_);
  }
  named_by_connection_.clear();
  list_size_ = 0;
}

void HeaderBlock::add(std::string_view name, std::string_view value) {
  uint8_t flags = never_index(name) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
  fields_.push_back(nghttp2_nv{const_cast<uint8_t*>(bytes(name)), const_cast<uint8_t*>(bytes(value)),
                               name.size(), value.size(), flags});
  list_size_ += header_field_size(name.size(), value.size());
}

Status HeaderBlock::add_regular(const http::HeaderMap& headers, Kind kind) {
  const char* where = kind == Kind::request    ? "http2: request.headers"
                      : kind == Kind::response ? "http2: response.headers"
                                               : "http2: trailers";
  // Fields named by Connection are connection-specific too (RFC 9110 §7.6.1).
  headers.for_each_value("connection", [&](std::string_view v) {
    for_each_token(v, [&](std::string_view token) { named_by_connection_.push_back(token); });
  });
  bool te_trailers = false;
  for (size_t i = 0; i < headers.size(); ++i) {
    const http::Header& h = headers[i];
    if (h.name.empty()) return make_error(std::string(where) + "[" + std::to_string(i) + "]: empty name");
    if (h.name[0] == ':') {
      return make_error(std::string(where) + "['" + printable(h.name) +
                        "']: pseudo-header fields come from the message head");
    }
    if (is_connection_specific(h.name)) continue;
    if (http::iequals(h.name, "te")) {
      for_each_token(h.value, [&](std::string_view t) { te_trailers |= http::iequals(t, "trailers"); });
      continue;
    }
    if (kind == Kind::request && http::iequals(h.name, "host")) continue;  // became :authority
    bool hop = false;
    for (std::string_view n : named_by_connection_) hop |= http::iequals(h.name, n);
    if (hop) continue;

    size_t start = names_.size();
    for (char c : h.name) names_.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    std::string_view name(names_.data() + start, h.name.size());
    if (!nghttp2_check_header_name(bytes(name), name.size())) {
      return make_error(std::string(where) + "['" + printable(h.name) + "']: invalid name");
    }
    std::string_view value = trim(h.value);
    if (!nghttp2_check_header_value(bytes(value), value.size())) {
      return make_error(std::string(where) + "['" + printable(h.name) +
                        "']: invalid value (control characters)");
    }
    add(name, value);
  }
  // Only requests carry TE; gRPC needs "te: trailers" end to end.
  if (te_trailers && kind == Kind::request) add("te", "trailers");
  return ok_status();
}

Status HeaderBlock::encode_request(const http::RequestHead& head) {
  reset(head.headers);
  if (head.method.empty()) return make_error("http2: request.method: empty");
  if (!nghttp2_check_method(bytes(head.method), head.method.size())) {
    return make_error("http2: request.method: '" + printable(head.method) + "' is not a token");
  }
  std::string_view authority = head.authority;
  if (authority.empty()) {
    if (const std::string* host = head.headers.get("host")) authority = trim(*host);
  }
  if (!authority.empty() && !nghttp2_check_authority(bytes(authority), authority.size())) {
    return make_error("http2: request.authority: '" + printable(authority) + "' is invalid");
  }
  add(":method", head.method);
  if (head.method == "CONNECT") {
    // CONNECT names only the authority to tunnel to (RFC 9113 §8.5).
    if (authority.empty()) return make_error("http2: request.authority: CONNECT needs an authority");
    add(":authority", authority);
  } else {
    if (head.scheme.empty()) return make_error("http2: request.scheme: empty");
    bool origin_form = !head.target.empty() && head.target[0] == '/';
    bool asterisk = head.target == "*" && head.method == "OPTIONS";
    if (!origin_form && !asterisk) {
      return make_error("http2: request.target: '" + printable(head.target) +
                        "' is not origin-form (must start with '/')");
    }
    if (!nghttp2_check_path(bytes(head.target), head.target.size())) {
      return make_error("http2: request.target: '" + printable(head.target) + "' has invalid characters");
    }
    if (authority.empty()) return make_error("http2: request.authority: empty and no Host header");
    add(":scheme", head.scheme);
    add(":authority", authority);
    add(":path", head.target);
  }
  return add_regular(head.headers, Kind::request);
}

Status HeaderBlock::encode_response(const http::ResponseHead& head) {
  reset(head.headers);
  if (head.status < 100 || head.status > 599) {
    return make_error("http2: response.status: " + std::to_string(head.status) + " is outside 100..599");
  }
  if (head.status == 101) {
    return make_error("http2: response.status: 101 Switching Protocols does not exist in HTTP/2");
  }
  status_[0] = static_cast<char>('0' + head.status / 100);
  status_[1] = static_cast<char>('0' + head.status / 10 % 10);
  status_[2] = static_cast<char>('0' + head.status % 10);
  add(":status", std::string_view(status_, 3));
  return add_regular(head.headers, Kind::response);
}

Status HeaderBlock::encode_trailers(const http::HeaderMap& trailers) {
  reset(trailers);
  return add_regular(trailers, Kind::trailers);
}

}  // namespace trellis::http2
