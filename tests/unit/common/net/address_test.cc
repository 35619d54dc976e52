#include "common/net/address.h"

#include <doctest/doctest.h>

#include <string>

using trellis::net::Address;

TEST_CASE("IPv4 and bracketed IPv6 addresses parse, format and compare") {
  auto v4 = Address::parse("10.0.0.1:80");
  REQUIRE(v4.ok());
  CHECK(v4->family() == AF_INET);
  CHECK_FALSE(v4->is_ipv6());
  CHECK(v4->ip() == "10.0.0.1");
  CHECK(v4->port() == 80);
  CHECK(v4->to_string() == "10.0.0.1:80");
  CHECK(v4->sockaddr_length() == sizeof(sockaddr_in));

  auto v6 = Address::parse("[::1]:8080");
  REQUIRE(v6.ok());
  CHECK(v6->is_ipv6());
  CHECK(v6->ip() == "::1");
  CHECK(v6->port() == 8080);
  CHECK(v6->to_string() == "[::1]:8080");
  CHECK(v6->sockaddr_length() == sizeof(sockaddr_in6));

  auto full = Address::parse("[2001:DB8:0:0::1]:65535");
  REQUIRE(full.ok());
  CHECK(full->to_string() == "[2001:db8::1]:65535");  // canonical form

  CHECK(Address::parse("0.0.0.0:0")->port() == 0);
  CHECK(Address::parse("10.0.0.1:80").value() == Address::parse("10.0.0.1:80").value());
  CHECK(Address::parse("10.0.0.1:80").value() != Address::parse("10.0.0.1:81").value());
  CHECK(Address::parse("[::ffff:10.0.0.1]:80").value() != Address::parse("10.0.0.1:80").value());
  CHECK(Address().to_string() == "0.0.0.0:0");
}

TEST_CASE("malformed addresses are rejected with exact errors") {
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"", "invalid address '': empty"},
      {"10.0.0.1", "invalid address '10.0.0.1': missing port"},
      {"10.0.0.1:", "invalid address '10.0.0.1:': missing port"},
      {":80", "invalid address ':80': missing IP address"},
      {"[]:80", "invalid address '[]:80': missing IP address"},
      {"10.0.0.256:80", "invalid address '10.0.0.256:80': '10.0.0.256' is not an IPv4 address"},
      {"10.0.0:80", "invalid address '10.0.0:80': '10.0.0' is not an IPv4 address"},
      {"010.0.0.1:80", "invalid address '010.0.0.1:80': '010.0.0.1' is not an IPv4 address"},
      {"localhost:80", "invalid address 'localhost:80': 'localhost' is not an IPv4 address"},
      {"10.0.0.1:65536",
       "invalid address '10.0.0.1:65536': port '65536' is not a number from 0 to 65535"},
      {"10.0.0.1:-1", "invalid address '10.0.0.1:-1': port '-1' is not a number from 0 to 65535"},
      {"10.0.0.1:+80", "invalid address '10.0.0.1:+80': port '+80' is not a number from 0 to 65535"},
      {"10.0.0.1:8o", "invalid address '10.0.0.1:8o': port '8o' is not a number from 0 to 65535"},
      {"10.0.0.1:000080",
       "invalid address '10.0.0.1:000080': port '000080' is not a number from 0 to 65535"},
      {"10.0.0.1: 80", "invalid address '10.0.0.1: 80': port ' 80' is not a number from 0 to 65535"},
      {"::1:80",
       "invalid address '::1:80': IPv6 addresses must be in brackets, as in [::1]:80"},
      {"[::1", "invalid address '[::1': missing ']'"},
      {"[::1]", "invalid address '[::1]': missing port"},
      {"[::1]8080", "invalid address '[::1]8080': expected ':' after ']'"},
      {"[::1]:", "invalid address '[::1]:': missing port"},
      {"[10.0.0.1]:80", "invalid address '[10.0.0.1]:80': '10.0.0.1' is not an IPv6 address"},
      {"[::g]:80", "invalid address '[::g]:80': '::g' is not an IPv6 address"},
      {"[fe80::1%eth0]:80",
       "invalid address '[fe80::1%eth0]:80': 'fe80::1%eth0' is not an IPv6 address"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto r = Address::parse(c.text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == c.message);
    CHECK(r.error().code == EINVAL);
  }
}

TEST_CASE("an embedded NUL does not cut an address short") {
  std::string text("10.0.0.1\0junk:80", 16);
  auto r = Address::parse(text);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "invalid address '" + text + "': '" + text.substr(0, 13) +
                                 "' is not an IPv4 address");
}

TEST_CASE("from_ip takes a bare IPv4 or IPv6 address") {
  auto v4 = Address::from_ip("127.0.0.1", 15001);
  REQUIRE(v4.ok());
  CHECK(v4->to_string() == "127.0.0.1:15001");
  auto v6 = Address::from_ip("fd00::5", 443);
  REQUIRE(v6.ok());
  CHECK(v6->to_string() == "[fd00::5]:443");
  auto bad = Address::from_ip("[::1]", 80);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "invalid IP address '[::1]'");
}

TEST_CASE("from_sockaddr round-trips and rejects foreign or short input") {
  auto a = Address::parse("[fd00::7]:9").value();
  auto back = Address::from_sockaddr(a.sockaddr_ptr(), a.sockaddr_length());
  REQUIRE(back.ok());
  CHECK(back.value() == a);

  auto short_v6 = Address::from_sockaddr(a.sockaddr_ptr(), sizeof(sockaddr_in));
  REQUIRE_FALSE(short_v6.ok());
  CHECK(short_v6.error().message == "truncated socket address");
  auto none = Address::from_sockaddr(nullptr, 0);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "truncated socket address");

  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  auto foreign = Address::from_sockaddr(&unix_addr, sizeof(unix_addr));
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().message == "unsupported address family 1");
}
