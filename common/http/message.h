// Protocol-neutral HTTP message heads shared by the HTTP/1 and HTTP/2 codecs,
// the router and the proxy. Conventions:
//   - `authority` is the one place for Host / :authority; codecs move the Host
//     header there on decode and write it back on encode, so `headers` never
//     holds Host or any pseudo-header.
//   - header names keep the case they arrived with; every lookup is
//     case-insensitive and allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trellis::http {

enum class Version { http10, http11, http2 };

std::string_view version_name(Version v);  // "HTTP/1.0", "HTTP/1.1", "HTTP/2"

namespace detail {
bool iequals_same_size(const char* a, const char* b, size_t n);
}

// ASCII case-insensitive equality. Inline so that the length check, which
// settles most lookups of a literal name, costs no call.
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && detail::iequals_same_size(a.data(), b.data(), a.size());
}

struct Header {
  std::string name;
  std::string value;
};

class HeaderMap {
 public:
  using const_iterator = std::vector<Header>::const_iterator;

  void add(std::string_view name, std::string_view value);
  // Replaces every entry named `name` by one entry (at the first one's place).
  void set(std::string_view name, std::string_view value);
  // Removes every entry named `name`; returns how many were removed.
  size_t remove(std::string_view name);

  // The first value of `name`, or nullptr.
  const std::string* get(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name) != nullptr; }
  size_t count(std::string_view name) const;
  // Every value of `name` joined with "," (how the Gateway API and RFC 9110
  // combine repeated fields); empty when absent.
  std::string joined(std::string_view name) const;
  // Byte size of names and values, as limits count it.
  size_t byte_size() const;

  size_t size() const { return headers_.size(); }
  bool empty() const { return headers_.empty(); }
  void clear() { headers_.clear(); }
  void reserve(size_t n) { headers_.reserve(n); }
  const_iterator begin() const { return headers_.begin(); }
  const_iterator end() const { return headers_.end(); }
  const Header& operator[](size_t i) const { return headers_[i]; }

  template <typename F>
  void for_each_value(std::string_view name, F&& f) const {
    for (const Header& h : headers_) {
      if (iequals(h.name, name)) f(std::string_view(h.value));
    }
  }

 private:
  friend void strip_hop_by_hop(HeaderMap& headers);

  std::vector<Header> headers_;
};

struct RequestHead {
  std::string method;     // "GET"
  std::string target;     // origin-form: path and query, e.g. "/a/b?x=1" (":path" in HTTP/2)
  std::string authority;  // Host header or ":authority"
  std::string scheme = "http";
  Version version = Version::http11;
  HeaderMap headers;

  std::string_view path() const;   // target without the query
  std::string_view query() const;  // after '?', without it; empty when none
  // Back to a default head, keeping the capacity of what was not moved away.
  void clear();
};

struct ResponseHead {
  int status = 200;
  std::string reason;  // HTTP/1 only; empty means the standard phrase
  Version version = Version::http11;
  HeaderMap headers;

  // Back to a default head, keeping the capacity of what was not moved away.
  void clear();
};

// The standard reason phrase of a status code ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status);

// Connection-specific (hop-by-hop) fields that a proxy must not forward
// (RFC 9110 §7.6.1): Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE (except "trailers", which gRPC needs), Transfer-Encoding,
// Upgrade. One pass; allocates nothing.
void strip_hop_by_hop(HeaderMap& headers);

}  // namespace trellis::http
