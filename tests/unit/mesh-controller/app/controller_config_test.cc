#include "mesh-controller/app/controller_config.h"

#include <doctest/doctest.h>

using namespace trellis;
using trellis::controller::app::ControllerConfig;
using trellis::controller::app::parse_controller_config;

namespace {

Result<controller::app::ParsedControllerConfig> parse(std::vector<std::string> args,
                                                      std::map<std::string, std::string> env = {},
                                                      std::string hostname = "controller-0") {
  return parse_controller_config(args, config::map_environment(std::move(env)), hostname);
}

std::string error_of(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto p = parse(std::move(args), std::move(env));
  REQUIRE_FALSE(p.ok());
  return p.error().message;
}

}  // namespace

TEST_CASE("defaults: stream on 15010, admin on 15011, in-cluster, secure, the host name as identity") {
  auto p = parse({});
  REQUIRE(p.ok());
  const ControllerConfig& c = p->config;
  CHECK(c.kubeconfig.empty());
  CHECK(c.listen.to_string() == "0.0.0.0:15010");
  CHECK(c.admin_port == 15011);
  CHECK(c.trust_domain == "cluster.local");
  CHECK(c.leader_election_namespace.empty());
  CHECK(c.lease_name == "trellis-controller");
  CHECK(c.identity == "controller-0");
  CHECK(c.lease_duration.count() == 15000);
  CHECK(c.renew_deadline.count() == 10000);
  CHECK(c.retry_period.count() == 2000);
  CHECK_FALSE(c.insecure_namespace_from_query);
  CHECK(c.log_level == log::Level::info);
}

TEST_CASE("flags and their environment equivalents, flags win") {
  auto p = parse({"--kubeconfig", "/k.yaml", "--listen", "[::1]:9000", "--insecure-namespace-from-query",
                  "--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "500ms"},
                 {{"TRELLIS_KUBECONFIG", "/env.yaml"},
                  {"TRELLIS_ADMIN_PORT", "9001"},
                  {"TRELLIS_TRUST_DOMAIN", "example.org"},
                  {"TRELLIS_LEADER_ELECTION_NAMESPACE", "trellis-system"},
                  {"TRELLIS_LEASE_NAME", "mesh.controller"},
                  {"TRELLIS_IDENTITY", "pod-1"},
                  {"TRELLIS_LOG_LEVEL", "debug"}});
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
  const ControllerConfig& c = p->config;
  CHECK(c.kubeconfig == "/k.yaml");
  CHECK(c.listen.to_string() == "[::1]:9000");
  CHECK(c.admin_port == 9001);
  CHECK(c.trust_domain == "example.org");
  CHECK(c.leader_election_namespace == "trellis-system");
  CHECK(c.lease_name == "mesh.controller");
  CHECK(c.identity == "pod-1");
  CHECK(c.lease_duration.count() == 6000);
  CHECK(c.renew_deadline.count() == 4000);
  CHECK(c.retry_period.count() == 500);
  CHECK(c.insecure_namespace_from_query);
  CHECK(c.log_level == log::Level::debug);
  CHECK(parse({}, {{"TRELLIS_INSECURE_NAMESPACE_FROM_QUERY", "true"}})->config.insecure_namespace_from_query);
}

TEST_CASE("bad values are rejected with exact errors") {
  CHECK(error_of({"--listen", "localhost:15010"}) ==
        "--listen: invalid address 'localhost:15010': 'localhost' is not an IPv4 address");
  CHECK(error_of({"--listen", "0.0.0.0:0"}) == "--listen: invalid address '0.0.0.0:0': port 0");
  CHECK(error_of({"--admin-port", "15010"}) == "--listen and --admin-port must use different ports");
  CHECK(error_of({"--trust-domain", "Cluster.Local"}) ==
        "--trust-domain: invalid value 'Cluster.Local' (want lowercase letters, digits, '.', '-' "
        "and '_')");
  CHECK(error_of({"--leader-election-namespace", "Bad_NS"}) ==
        "--leader-election-namespace: invalid value 'Bad_NS' (want a DNS label: 1-63 lowercase "
        "letters, digits and '-', starting and ending with a letter or digit)");
  CHECK(error_of({"--lease-name", "a/b"}) ==
        "--lease-name: invalid value 'a/b' (want a DNS subdomain: lowercase letters, digits, '-' "
        "and '.')");
  CHECK(error_of({"--lease-duration", "1500ms"}) ==
        "--lease-duration: must be whole seconds (a Lease counts in seconds), got '1500ms'");
  CHECK(error_of({"--retry-period", "0s"}) == "--retry-period: must be positive, got '0s'");
  CHECK(error_of({"--renew-deadline", "10x"}) ==
        "--renew-deadline: invalid duration '10x': unknown unit 'x' (want h, m, s or ms)");
  CHECK(error_of({"--lease-duration", "10s"}) ==
        "leader election: lease_duration (10000 ms) must be longer than renew_deadline (10000 ms)");
  CHECK(error_of({"--retry-period", "9s"}) ==
        "leader election: renew_deadline (10000 ms) must be longer than 1.2 × retry_period (9000 ms)");
  CHECK(error_of({"--log-level", "loud"}) ==
        "--log-level: unknown value 'loud' (want debug, info, warn or error)");
  CHECK(error_of({"--insecure-namespace-from-query=yes"}) ==
        "--insecure-namespace-from-query: expected true or false, got 'yes'");
  auto nameless = parse({}, {}, "");
  REQUIRE_FALSE(nameless.ok());
  CHECK(nameless.error().message == "--identity: required: the host name is unknown");
}

TEST_CASE("--help documents every flag and the ports") {
  CHECK(parse({"--help"})->help);
  std::string help = controller::app::controller_help_text();
  for (const char* flag : {"--kubeconfig", "--listen", "--admin-port", "--trust-domain",
                           "--leader-election-namespace", "--lease-name", "--identity",
                           "--lease-duration", "--renew-deadline", "--retry-period",
                           "--insecure-namespace-from-query", "--log-level", "15010", "15011",
                           "Kubeconfig file"}) {
    CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
  }
}

TEST_CASE("host_name is this machine's") { CHECK_FALSE(controller::app::host_name().empty()); }
