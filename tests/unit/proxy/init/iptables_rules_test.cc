#include "proxy/init/iptables_rules.h"

#include <doctest/doctest.h>

using namespace trellis::proxy::init;

TEST_CASE("port lists: single ports, ranges, spaces and empty items") {
  auto r = parse_port_list(" 80, 8080 ,,9000-9010");
  REQUIRE(r.ok());
  REQUIRE(r->size() == 3);
  CHECK((*r)[0].first == 80);
  CHECK((*r)[0].last == 80);
  CHECK((*r)[2].first == 9000);
  CHECK((*r)[2].last == 9010);
  CHECK(parse_port_list("").value().empty());
}

TEST_CASE("port lists: bad items are rejected with the item named") {
  CHECK(parse_port_list("80,http").error().message ==
        "invalid port 'http': want 1-65535 or a range like 9000-9010");
  CHECK(parse_port_list("0").error().message ==
        "invalid port '0': want 1-65535 or a range like 9000-9010");
  CHECK(parse_port_list("65536").error().message ==
        "invalid port '65536': want 1-65535 or a range like 9000-9010");
  CHECK(parse_port_list("-5").error().message ==
        "invalid port '-5': want 1-65535 or a range like 9000-9010");
  CHECK(parse_port_list("90-80").error().message == "invalid port range '90-80': end before start");
  CHECK(parse_port_list("1-2-3").error().message ==
        "invalid port '1-2-3': want 1-65535 or a range like 9000-9010");
  CHECK_FALSE(parse_port_list("99999999999999999999").ok());
}

TEST_CASE("default IPv4 rules") {
  InterceptionRules rules;
  CHECK(render_restore(rules, Family::ipv4) ==
        "*nat\n"
        ":TRELLIS_INBOUND - [0:0]\n"
        ":TRELLIS_IN_REDIRECT - [0:0]\n"
        ":TRELLIS_OUTPUT - [0:0]\n"
        ":TRELLIS_OUT_REDIRECT - [0:0]\n"
        "-A PREROUTING -p tcp -j TRELLIS_INBOUND\n"
        "-A TRELLIS_INBOUND -p tcp --dport 15020 -j RETURN\n"
        "-A TRELLIS_INBOUND -p tcp -j TRELLIS_IN_REDIRECT\n"
        "-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
        "-A OUTPUT -p tcp -j TRELLIS_OUTPUT\n"
        "-A TRELLIS_OUTPUT -m owner --uid-owner 2790 -j RETURN\n"
        "-A TRELLIS_OUTPUT -o lo -d 127.0.0.0/8 -j RETURN\n"
        "-A TRELLIS_OUTPUT -p tcp -j TRELLIS_OUT_REDIRECT\n"
        "-A TRELLIS_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
        "COMMIT\n");
}

TEST_CASE("skip ports, custom ports and uid, IPv6 loopback") {
  InterceptionRules rules;
  rules.inbound_port = 16006;
  rules.outbound_port = 16001;
  rules.admin_port = 16020;
  rules.proxy_uid = 1000;
  rules.skip_inbound_ports = parse_port_list("22,9000-9010").value();
  rules.skip_outbound_ports = parse_port_list("5432").value();
  std::string v6 = render_restore(rules, Family::ipv6);
  CHECK(v6.find("-A TRELLIS_INBOUND -p tcp --dport 16020 -j RETURN\n"
                "-A TRELLIS_INBOUND -p tcp --dport 22 -j RETURN\n"
                "-A TRELLIS_INBOUND -p tcp --dport 9000:9010 -j RETURN\n") != std::string::npos);
  CHECK(v6.find("-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n") != std::string::npos);
  CHECK(v6.find("-A TRELLIS_OUTPUT -m owner --uid-owner 1000 -j RETURN\n") != std::string::npos);
  CHECK(v6.find("-A TRELLIS_OUTPUT -o lo -d ::1/128 -j RETURN\n") != std::string::npos);
  CHECK(v6.find("-A TRELLIS_OUTPUT -p tcp --dport 5432 -j RETURN\n") != std::string::npos);
  CHECK(v6.find("-A TRELLIS_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n") != std::string::npos);
}

TEST_CASE("owned chains and jumps") {
  CHECK(owned_chains() ==
        std::vector<std::string>{"TRELLIS_INBOUND", "TRELLIS_OUTPUT", "TRELLIS_IN_REDIRECT",
                                 "TRELLIS_OUT_REDIRECT"});
  auto jumps = jump_rules();
  REQUIRE(jumps.size() == 2);
  CHECK(jumps[0].front() == "PREROUTING");
  CHECK(jumps[1].back() == "TRELLIS_OUTPUT");
}
