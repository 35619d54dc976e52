#include "proxy/config/proxy_config.h"

#include <doctest/doctest.h>

using namespace trellis;
using trellis::proxy::parse_proxy_config;

namespace {

Result<proxy::ParsedProxyConfig> parse(std::vector<std::string> args,
                                       std::map<std::string, std::string> env = {}) {
  return parse_proxy_config(args, config::map_environment(std::move(env)));
}

}  // namespace

TEST_CASE("defaults: the documented ports, two workers, 64 KiB retry buffer, 20 % + 10/s budget") {
  auto p = parse({"--routes-file", "/etc/trellis/routes.json"});
  REQUIRE(p.ok());
  const proxy::ProxyConfig& c = p->config;
  CHECK(c.outbound_port == 15001);
  CHECK(c.inbound_port == 15006);
  CHECK(c.admin_port == 15020);
  CHECK(c.workers == 2);
  CHECK(c.log_level == log::Level::info);
  CHECK(c.routes_file == "/etc/trellis/routes.json");
  CHECK(c.inbound_target_ip == "127.0.0.1");
  CHECK(c.detect_timeout.count() == 500);
  CHECK(c.connect_timeout.count() == 1000);
  CHECK(c.drain_timeout.count() == 30000);
  CHECK(c.retry_buffer_bytes == 65536);
  CHECK(c.retry_budget_ratio == doctest::Approx(0.2));
  CHECK(c.retry_budget_min_per_second == 10);
}

TEST_CASE("environment equivalents, flags win") {
  auto p = parse({"--workers", "3"}, {{"TRELLIS_WORKERS", "1"},
                                      {"TRELLIS_ROUTES_FILE", "/r.json"},
                                      {"TRELLIS_LOG_LEVEL", "debug"},
                                      {"TRELLIS_DETECT_TIMEOUT", "250ms"},
                                      {"TRELLIS_RETRY_BUDGET_RATIO", "0.5"},
                                      {"TRELLIS_INBOUND_TARGET_IP", "::1"}});
  REQUIRE(p.ok());
  CHECK(p->config.workers == 3);
  CHECK(p->config.routes_file == "/r.json");
  CHECK(p->config.log_level == log::Level::debug);
  CHECK(p->config.detect_timeout.count() == 250);
  CHECK(p->config.retry_budget_ratio == doctest::Approx(0.5));
  CHECK(p->config.inbound_target_ip == "::1");
}

TEST_CASE("bad values are rejected with exact errors") {
  CHECK(parse({}).error().message ==
        "one of --routes-file or --controller is required (or set TRELLIS_ROUTES_FILE or "
        "TRELLIS_CONTROLLER)");
  const std::vector<std::string> base = {"--routes-file", "/r.json"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return parse(args);
  };
  CHECK(with({"--workers", "0"}).error().message ==
        "--workers: expected an integer between 1 and 64, got '0'");
  CHECK(with({"--detect-timeout", "0s"}).error().message == "--detect-timeout: must be positive, got '0s'");
  CHECK(with({"--connect-timeout", "1d"}).error().message ==
        "--connect-timeout: invalid duration '1d': unknown unit 'd' (want h, m, s or ms)");
  CHECK(with({"--retry-budget-ratio", "1.5"}).error().message ==
        "--retry-budget-ratio: expected a ratio between 0 and 1, got '1.5'");
  CHECK(with({"--inbound-target-ip", "localhost"}).error().message ==
        "--inbound-target-ip: invalid IP address 'localhost'");
  CHECK(with({"--admin-port", "15001"}).error().message ==
        "--outbound-port, --inbound-port and --admin-port must all differ");
  CHECK(with({"--log-level", "loud"}).error().message ==
        "--log-level: unknown value 'loud' (want debug, info, warn or error)");
}

TEST_CASE("--help documents every flag") {
  CHECK(parse({"--help"})->help);
  std::string help = proxy::proxy_help_text();
  for (const char* flag : {"--outbound-port", "--inbound-port", "--admin-port", "--workers", "--log-level",
                           "--routes-file", "--controller", "--namespace", "--detect-timeout",
                           "--drain-timeout", "--retry-buffer-bytes"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
}

TEST_CASE("--controller streams the route table of --namespace instead of a file") {
  auto p = parse({"--controller", "trellis-controller.trellis-system:15010", "--namespace", "shop"});
  REQUIRE(p.ok());
  CHECK(p->config.routes_file.empty());
  CHECK(p->config.controller.host == "trellis-controller.trellis-system");
  CHECK(p->config.controller.port == 15010);
  CHECK(p->config.namespace_ == "shop");

  auto env = parse({}, {{"TRELLIS_CONTROLLER", "[fd00::1]:15010"}, {"TRELLIS_NAMESPACE", "bank"}});
  REQUIRE(env.ok());
  CHECK(env->config.controller.host == "fd00::1");
  CHECK(env->config.controller.to_string() == "[fd00::1]:15010");
  CHECK(env->config.namespace_ == "bank");
  CHECK(parse({"--controller", "10.0.0.1:15010", "--namespace", "a"})->config.controller.to_string() ==
        "10.0.0.1:15010");

  CHECK(parse({"--controller", "10.0.0.1:15010", "--namespace", "a", "--routes-file", "/r.json"})
            .error()
            .message == "--routes-file and --controller are mutually exclusive");
  CHECK(parse({"--controller", "10.0.0.1:15010"}).error().message ==
        "--namespace: required with --controller (or set TRELLIS_NAMESPACE)");
  CHECK(parse({"--controller", "10.0.0.1:15010", "--namespace", "Shop"}).error().message ==
        "--namespace: invalid value 'Shop' (want a DNS label: 1-63 lowercase letters, digits and "
        "'-', starting and ending with a letter or digit)");
}

TEST_CASE("--controller addresses are an IP or a DNS name and a port, with exact errors") {
  auto error = [](const std::string& address) {
    auto p = parse({"--controller", address, "--namespace", "a"});
    REQUIRE_FALSE(p.ok());
    return p.error().message;
  };
  CHECK(error("controller") == "--controller: invalid address 'controller': missing port");
  CHECK(error("controller:0") == "--controller: invalid address 'controller:0': invalid port '0'");
  CHECK(error("controller:http") == "--controller: invalid address 'controller:http': invalid port 'http'");
  CHECK(error("controller:70000") ==
        "--controller: invalid address 'controller:70000': invalid port '70000'");
  CHECK(error("::1:15010") ==
        "--controller: invalid address '::1:15010': IPv6 addresses must be in brackets, as in "
        "[::1]:15010");
  CHECK(error("[::1]") == "--controller: invalid address '[::1]': missing port");
  CHECK(error("[nope]:1") == "--controller: invalid address '[nope]:1': 'nope' is not an IPv6 address");
  CHECK(error("a_b:1") ==
        "--controller: invalid address 'a_b:1': invalid host 'a_b' (want an IP address or a DNS name)");
  CHECK(error("10.0.0.256:1") ==
        "--controller: invalid address '10.0.0.256:1': invalid host '10.0.0.256' (want an IP "
        "address or a DNS name)");
  CHECK(error("-x.svc:1") ==
        "--controller: invalid address '-x.svc:1': invalid host '-x.svc' (want an IP address or a "
        "DNS name)");
  CHECK(error(":15010") ==
        "--controller: invalid address ':15010': invalid host '' (want an IP address or a DNS name)");
}
