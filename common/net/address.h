// Address: an IPv4 or IPv6 socket address (IP and port), by value.
//
//   auto a = Address::parse("10.0.0.1:80");      // or "[::1]:8080"
//   a->to_string() == "10.0.0.1:80"; a->ip() == "10.0.0.1"; a->port() == 80
//
// Host names are not addresses: resolving them is someone else's job.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::net {

class Address {
 public:
  // 0.0.0.0:0.
  Address();

  // "a.b.c.d:port" or "[ipv6]:port", port 0..65535. Errors read
  // "invalid address '<text>': <reason>", e.g. "missing port",
  // "'10.0.0.256' is not an IPv4 address",
  // "IPv6 addresses must be in brackets, as in [::1]:80".
  static Result<Address> parse(std::string_view text);
  // An IP without brackets ("10.0.0.1", "::1") and a port.
  // Error: "invalid IP address '<ip>'".
  static Result<Address> from_ip(std::string_view ip, uint16_t port);
  // From what the kernel returned (getsockname, accept, SO_ORIGINAL_DST).
  // Errors: "unsupported address family N", "truncated socket address".
  static Result<Address> from_sockaddr(const sockaddr* sa, socklen_t length);

  int family() const { return storage_.any.sa_family; }  // AF_INET or AF_INET6
  bool is_ipv6() const { return family() == AF_INET6; }
  uint16_t port() const;
  std::string ip() const;         // "10.0.0.1", "::1"
  std::string to_string() const;  // "10.0.0.1:80", "[::1]:80"

  const sockaddr* sockaddr_ptr() const { return &storage_.any; }
  socklen_t sockaddr_length() const;

  bool operator==(const Address& other) const;
  bool operator!=(const Address& other) const { return !(*this == other); }

 private:
  union Storage {
    sockaddr any;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } storage_;
};

}  // namespace trellis::net
