#include "proxy/init/init_config.h"

#include <doctest/doctest.h>

using namespace trellis;
using namespace trellis::proxy::init;

namespace {

Result<ParsedInit> parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  return parse_init_config(args, config::map_environment(std::move(env)));
}

}  // namespace

TEST_CASE("defaults match the proxy's ports and uid") {
  auto p = parse({});
  REQUIRE(p.ok());
  const InitConfig& c = p->config;
  CHECK(c.rules.inbound_port == 15006);
  CHECK(c.rules.outbound_port == 15001);
  CHECK(c.rules.admin_port == 15020);
  CHECK(c.rules.proxy_uid == 2790);
  CHECK(c.rules.skip_inbound_ports.empty());
  CHECK(c.mode == Mode::apply);
  CHECK(c.ipv6);
}

TEST_CASE("flags and environment") {
  auto p = parse({"--skip-inbound-ports=22,9000-9001", "--dry-run", "--proxy-uid", "1000"},
                 {{"TRELLIS_SKIP_OUTBOUND_PORTS", "5432"}, {"TRELLIS_INBOUND_PORT", "16006"},
                  {"TRELLIS_IPV6", "false"}});
  REQUIRE(p.ok());
  const InitConfig& c = p->config;
  CHECK(c.mode == Mode::dry_run);
  CHECK(c.rules.proxy_uid == 1000);
  CHECK(c.rules.inbound_port == 16006);
  REQUIRE(c.rules.skip_inbound_ports.size() == 2);
  CHECK(c.rules.skip_inbound_ports[1].last == 9001);
  REQUIRE(c.rules.skip_outbound_ports.size() == 1);
  CHECK(c.rules.skip_outbound_ports[0].first == 5432);
  CHECK_FALSE(c.ipv6);
  CHECK(parse({"--cleanup"})->config.mode == Mode::cleanup);
  CHECK(parse({"--help"})->help);
}

TEST_CASE("bad input is rejected with exact errors") {
  CHECK(parse({"--skip-inbound-ports", "ssh"}).error().message ==
        "--skip-inbound-ports: invalid port 'ssh': want 1-65535 or a range like 9000-9010");
  CHECK(parse({}, {{"TRELLIS_SKIP_OUTBOUND_PORTS", "70000"}}).error().message ==
        "TRELLIS_SKIP_OUTBOUND_PORTS: invalid port '70000': want 1-65535 or a range like 9000-9010");
  CHECK(parse({"--dry-run", "--cleanup"}).error().message == "--dry-run and --cleanup exclude each other");
  CHECK(parse({"--inbound-port", "15001"}).error().message ==
        "--inbound-port and --outbound-port must differ (both 15001)");
  CHECK(parse({"--admin-port", "15006"}).error().message ==
        "--admin-port must differ from the inbound and outbound ports");
  CHECK(parse({"--proxy-uid", "-1"}).error().message ==
        "--proxy-uid: expected an integer between 0 and 4294967294, got '-1'");
  CHECK(parse({"--frobnicate"}).error().message == "unknown flag --frobnicate");
}

TEST_CASE("help documents every flag") {
  std::string help = init_help_text();
  for (const char* flag : {"--inbound-port", "--outbound-port", "--admin-port", "--proxy-uid",
                           "--skip-inbound-ports", "--skip-outbound-ports", "--ipv6", "--dry-run",
                           "--cleanup"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
}
