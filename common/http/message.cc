#include "common/http/message.h"

#include <cstddef>

namespace trellis::http {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

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

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

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

bool always_hop_by_hop(std::string_view name) {
  return iequals(name, "keep-alive") || iequals(name, "proxy-connection") ||
         iequals(name, "transfer-encoding") || iequals(name, "upgrade");
}

// Whether a Connection field lists `name` among its comma-separated tokens.
bool named_by_connection(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (!iequals(h.name, "connection")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      if (iequals(trim(v.substr(0, comma)), name)) return true;
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    }
  }
  return false;
}

}  // namespace

void strip_hop_by_hop(HeaderMap& map) {
  std::vector<Header>& headers = map.headers_;
  bool has_connection = false;
  for (const Header& h : headers) has_connection = has_connection || iequals(h.name, "connection");
  // Every field is judged while the Connection values (which name fields to
  // drop) are intact; a field to drop gets an empty name, which no real
  // field has (both codecs reject it). Then one pass removes them.
  bool te_seen = false;
  bool te_trailers = false;
  for (Header& h : headers) {
    if (iequals(h.name, "connection")) continue;  // still needed; removed below
    bool drop;
    if (iequals(h.name, "te")) {
      // TE: only "trailers" may cross a proxy (gRPC requires it end to end).
      if (!te_seen) te_trailers = iequals(trim(h.value), "trailers");
      te_seen = true;
      drop = true;
    } else {
      drop = always_hop_by_hop(h.name) || (has_connection && named_by_connection(headers, h.name));
    }
    if (drop) h.name.clear();
  }
  size_t kept = 0;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers[i].name.empty() || iequals(headers[i].name, "connection")) continue;
    if (kept != i) headers[kept] = std::move(headers[i]);
    ++kept;
  }
  headers.erase(headers.begin() + static_cast<std::ptrdiff_t>(kept), headers.end());
  if (te_trailers) headers.push_back(Header{"te", "trailers"});  // fits: a TE field went
}

}  // namespace trellis::http
