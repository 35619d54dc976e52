#include "common/http/message.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace trellis::http {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Lower-cases the ASCII letters among 8 bytes at once: a byte gets 0x20 when
// its low 7 bits are in 'A'..'Z' and its top bit is clear. No carry crosses
// a byte: every addend keeps each byte below 0x100.
uint64_t fold_ascii8(uint64_t w) {
  constexpr uint64_t k01 = 0x0101010101010101;
  constexpr uint64_t k80 = 0x80 * k01;
  uint64_t low7 = w & ~k80;
  uint64_t at_least_a = low7 + (0x80 - 'A') * k01;
  uint64_t above_z = low7 + (0x80 - 'Z' - 1) * k01;
  uint64_t upper = at_least_a & ~above_z & ~w & k80;
  return w | (upper >> 2);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string_view version_name(Version v) {
  switch (v) {
    case Version::http10: return "HTTP/1.0";
    case Version::http11: return "HTTP/1.1";
    case Version::http2: return "HTTP/2";
  }
  return "HTTP/1.1";
}

namespace detail {

bool iequals_same_size(const char* a, const char* b, size_t n) {
  auto same = [&](size_t at, size_t len) {
    uint64_t x = 0;
    uint64_t y = 0;
    std::memcpy(&x, a + at, len);
    std::memcpy(&y, b + at, len);
    return x == y || fold_ascii8(x) == fold_ascii8(y);
  };
  if (n < 4) {
    for (size_t i = 0; i < n; ++i) {
      if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
  }
  // The last word overlaps the one before it rather than going byte by byte.
  if (n < 8) return same(0, 4) && same(n - 4, 4);
  for (size_t i = 0; i + 8 < n; i += 8) {
    if (!same(i, 8)) return false;
  }
  return same(n - 8, 8);
}

}  // namespace detail

void HeaderMap::add(std::string_view name, std::string_view value) {
  headers_.push_back(Header{std::string(name), std::string(value)});
}

void HeaderMap::set(std::string_view name, std::string_view value) {
  size_t out = 0;
  bool placed = false;
  for (size_t i = 0; i < headers_.size(); ++i) {
    if (iequals(headers_[i].name, name)) {
      if (placed) continue;
      headers_[i].value.assign(value.data(), value.size());
      placed = true;
    }
    if (out != i) headers_[out] = std::move(headers_[i]);
    ++out;
  }
  headers_.resize(out);
  if (!placed) add(name, value);
}

size_t HeaderMap::remove(std::string_view name) {
  size_t out = 0;
  for (size_t i = 0; i < headers_.size(); ++i) {
    if (iequals(headers_[i].name, name)) continue;
    if (out != i) headers_[out] = std::move(headers_[i]);
    ++out;
  }
  size_t removed = headers_.size() - out;
  headers_.resize(out);
  return removed;
}

const std::string* HeaderMap::get(std::string_view name) const {
  for (const Header& h : headers_) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (const Header& h : headers_) n += iequals(h.name, name) ? 1 : 0;
  return n;
}

std::string HeaderMap::joined(std::string_view name) const {
  std::string out;
  bool first = true;
  for (const Header& h : headers_) {
    if (!iequals(h.name, name)) continue;
    if (!first) out.push_back(',');
    out += h.value;
    first = false;
  }
  return out;
}

size_t HeaderMap::byte_size() const {
  size_t n = 0;
  for (const Header& h : headers_) n += h.name.size() + h.value.size();
  return n;
}

std::string_view RequestHead::path() const {
  std::string_view t(target);
  size_t q = t.find('?');
  return q == std::string_view::npos ? t : t.substr(0, q);
}

std::string_view RequestHead::query() const {
  std::string_view t(target);
  size_t q = t.find('?');
  return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

void RequestHead::clear() {
  method.clear();
  target.clear();
  authority.clear();
  if (std::string_view(scheme) != "http") scheme.assign("http");
  version = Version::http11;
  headers.clear();
}

void ResponseHead::clear() {
  status = 200;
  reason.clear();
  version = Version::http11;
  headers.clear();
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace {

enum class HopKind : uint8_t { end_to_end, connection, te, other };

// One compare per name: the length picks the only candidate it can be.
HopKind hop_kind(std::string_view name) {
  switch (name.size()) {
    case 2: return iequals(name, "te") ? HopKind::te : HopKind::end_to_end;
    case 7: return iequals(name, "upgrade") ? HopKind::other : HopKind::end_to_end;
    case 10:
      if (iequals(name, "connection")) return HopKind::connection;
      return iequals(name, "keep-alive") ? HopKind::other : HopKind::end_to_end;
    case 16: return iequals(name, "proxy-connection") ? HopKind::other : HopKind::end_to_end;
    case 17: return iequals(name, "transfer-encoding") ? HopKind::other : HopKind::end_to_end;
    default: return HopKind::end_to_end;
  }
}

}  // namespace

void strip_hop_by_hop(HeaderMap& map) {
  std::vector<Header>& headers = map.headers_;
  // A field to drop gets an empty name, which no real field has (both codecs
  // reject it); the last pass removes them. TE is read before its name goes.
  size_t connections = 0;
  bool dropped = false;
  bool te_seen = false;
  bool te_trailers = false;
  for (Header& h : headers) {
    switch (hop_kind(h.name)) {
      case HopKind::end_to_end:
        continue;
      case HopKind::connection:
        ++connections;  // its value is still needed
        continue;
      case HopKind::te:
        // TE: only "trailers" may cross a proxy (gRPC requires it end to end).
        if (!te_seen) te_trailers = iequals(trim(h.value), "trailers");
        te_seen = true;
        break;
      case HopKind::other:
        break;
    }
    h.name.clear();
    dropped = true;
  }
  if (connections == 0 && !dropped) return;
  // Each name a Connection field lists is looked for once. A Connection
  // field's own name goes only after its list is read; a listed
  // "connection" is skipped so that no later Connection field is lost.
  for (size_t c = 0; connections > 0; ++c) {
    Header& conn = headers[c];
    if (!iequals(conn.name, "connection")) continue;
    std::string_view list = conn.value;
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view token = trim(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (token.empty() || iequals(token, "connection")) continue;
      for (Header& h : headers) {
        if (iequals(h.name, token)) h.name.clear();
      }
    }
    conn.name.clear();
    --connections;
  }
  size_t kept = 0;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers[i].name.empty()) continue;
    if (kept != i) headers[kept] = std::move(headers[i]);
    ++kept;
  }
  headers.erase(headers.begin() + static_cast<std::ptrdiff_t>(kept), headers.end());
  if (te_trailers) headers.push_back(Header{"te", "trailers"});  // fits: a TE field went
}

}  // namespace trellis::http
