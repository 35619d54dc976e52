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
  CHECK(parse({}).error().message == "--routes-file: required (or set TRELLIS_ROUTES_FILE)");
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
                           "--routes-file", "--detect-timeout", "--drain-timeout", "--retry-buffer-bytes"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
}
