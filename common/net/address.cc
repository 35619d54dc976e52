#include "common/net/address.h"

#include <arpa/inet.h>

#include <cstring>

namespace trellis::net {
namespace {

Error invalid(std::string_view text, std::string_view reason) {
  std::string message = "invalid address '";
  message.append(text);
  message += "': ";
  message.append(reason);
  return make_error(std::move(message), EINVAL);
}

// Strict decimal 0..65535: no sign, no spaces, at most five digits.
bool parse_port(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

// inet_pton wants a C string; an embedded NUL would silently cut the text short.
bool parse_ip(int family, std::string_view ip, void* out) {
  if (ip.find('\0') != std::string_view::npos) return false;
  std::string copy(ip);
  return inet_pton(family, copy.c_str(), out) == 1;
}

}  // namespace

Address::Address() {
  std::memset(&storage_, 0, sizeof(storage_));
  storage_.v4.sin_family = AF_INET;
}

Result<Address> Address::parse(std::string_view text) {
  if (text.empty()) return invalid(text, "empty");
  std::string_view host;
  std::string_view port_text;
  bool bracketed = text.front() == '[';
  if (bracketed) {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid(text, "missing ']'");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return invalid(text, "missing port");
    if (rest.front() != ':') return invalid(text, "expected ':' after ']'");
    port_text = rest.substr(1);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid(text, "missing port");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return invalid(text, "IPv6 addresses must be in brackets, as in [::1]:80");
    }
  }
  if (host.empty()) return invalid(text, "missing IP address");
  if (port_text.empty()) return invalid(text, "missing port");
  uint16_t port = 0;
  if (!parse_port(port_text, &port)) {
    return invalid(text, "port '" + std::string(port_text) + "' is not a number from 0 to 65535");
  }
  Address a;
  std::memset(&a.storage_, 0, sizeof(a.storage_));
  if (bracketed) {
    if (!parse_ip(AF_INET6, host, &a.storage_.v6.sin6_addr)) {
      return invalid(text, "'" + std::string(host) + "' is not an IPv6 address");
    }
    a.storage_.v6.sin6_family = AF_INET6;
    a.storage_.v6.sin6_port = htons(port);
  } else {
    if (!parse_ip(AF_INET, host, &a.storage_.v4.sin_addr)) {
      return invalid(text, "'" + std::string(host) + "' is not an IPv4 address");
    }
    a.storage_.v4.sin_family = AF_INET;
    a.storage_.v4.sin_port = htons(port);
  }
  return a;
}

Result<Address> Address::from_ip(std::string_view ip, uint16_t port) {
  Address a;
  std::memset(&a.storage_, 0, sizeof(a.storage_));
  if (parse_ip(AF_INET, ip, &a.storage_.v4.sin_addr)) {
    a.storage_.v4.sin_family = AF_INET;
    a.storage_.v4.sin_port = htons(port);
    return a;
  }
  if (parse_ip(AF_INET6, ip, &a.storage_.v6.sin6_addr)) {
    a.storage_.v6.sin6_family = AF_INET6;
    a.storage_.v6.sin6_port = htons(port);
    return a;
  }
  return make_error("invalid IP address '" + std::string(ip) + "'", EINVAL);
}

Result<Address> Address::from_sockaddr(const sockaddr* sa, socklen_t length) {
  if (sa == nullptr || length < static_cast<socklen_t>(sizeof(sa_family_t))) {
    return make_error("truncated socket address", EINVAL);
  }
  Address a;
  std::memset(&a.storage_, 0, sizeof(a.storage_));
  if (sa->sa_family == AF_INET) {
    if (length < static_cast<socklen_t>(sizeof(sockaddr_in))) {
      return make_error("truncated socket address", EINVAL);
    }
    std::memcpy(&a.storage_.v4, sa, sizeof(sockaddr_in));
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    if (length < static_cast<socklen_t>(sizeof(sockaddr_in6))) {
      return make_error("truncated socket address", EINVAL);
    }
    std::memcpy(&a.storage_.v6, sa, sizeof(sockaddr_in6));
    return a;
  }
  return make_error("unsupported address family " + std::to_string(sa->sa_family), EAFNOSUPPORT);
}

uint16_t Address::port() const {
  return ntohs(is_ipv6() ? storage_.v6.sin6_port : storage_.v4.sin_port);
}

std::string Address::ip() const {
  char buf[INET6_ADDRSTRLEN];
  const void* src = is_ipv6() ? static_cast<const void*>(&storage_.v6.sin6_addr)
                              : static_cast<const void*>(&storage_.v4.sin_addr);
  inet_ntop(family(), src, buf, sizeof(buf));  // cannot fail: family and size are right
  return buf;
}

std::string Address::to_string() const {
  std::string port_text = std::to_string(port());
  if (is_ipv6()) return "[" + ip() + "]:" + port_text;
  return ip() + ":" + port_text;
}

socklen_t Address::sockaddr_length() const {
  return is_ipv6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

bool Address::operator==(const Address& other) const {
  if (family() != other.family()) return false;
  if (is_ipv6()) {
    return storage_.v6.sin6_port == other.storage_.v6.sin6_port &&
           std::memcmp(&storage_.v6.sin6_addr, &other.storage_.v6.sin6_addr,
                       sizeof(in6_addr)) == 0 &&
           storage_.v6.sin6_scope_id == other.storage_.v6.sin6_scope_id;
  }
  return storage_.v4.sin_port == other.storage_.v4.sin_port &&
         storage_.v4.sin_addr.s_addr == other.storage_.v4.sin_addr.s_addr;
}

}  // namespace trellis::net
