#include "mesh-controller/app/controller_config.h"

#include <unistd.h>

#include "common/gateway/duration.h"
#include "common/kube/client_config.h"
#include "common/kube/leader_election.h"
#include "mesh-controller/stream/request.h"

namespace trellis::controller::app {
namespace {

Result<std::chrono::milliseconds> parse_positive_duration(std::string_view text) {
  auto d = gateway::parse_duration(text);
  if (!d.ok()) return d;
  if (d->count() == 0) return make_error("must be positive, got '" + std::string(text) + "'");
  return d;
}

Result<std::chrono::milliseconds> parse_whole_seconds(std::string_view text) {
  auto d = parse_positive_duration(text);
  if (!d.ok()) return d;
  if (d->count() % 1000 != 0) {
    return make_error("must be whole seconds (a Lease counts in seconds), got '" +
                      std::string(text) + "'");
  }
  return d;
}

Result<net::Address> parse_listen(std::string_view text) {
  auto a = net::Address::parse(text);
  if (!a.ok()) return a;
  if (a->port() == 0) return make_error("invalid address '" + std::string(text) + "': port 0");
  return a;
}

Result<std::string> parse_trust_domain(std::string_view text) {
  bool ok = !text.empty() && text.size() <= 255;
  for (char c : text) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_');
  }
  if (!ok) {
    return make_error("invalid value '" + std::string(text) +
                      "' (want lowercase letters, digits, '.', '-' and '_')");
  }
  return std::string(text);
}

Result<std::string> parse_namespace(std::string_view text) {
  if (text.empty()) return std::string();
  RETURN_IF_ERROR(stream::check_dns_label(text));
  return std::string(text);
}

// A Lease name: a DNS subdomain.
Result<std::string> parse_lease_name(std::string_view text) {
  bool ok = !text.empty() && text.size() <= 253;
  for (char c : text) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
  if (!ok) {
    return make_error("invalid value '" + std::string(text) +
                      "' (want a DNS subdomain: lowercase letters, digits, '-' and '.')");
  }
  return std::string(text);
}

const config::Spec<ControllerConfig>& spec() {
  using C = ControllerConfig;
  static const config::Spec<C> s = [] {
    config::Spec<C> s("trellis-controller",
                      "The Trellis mesh controller: watches Services, EndpointSlices, Pods, HTTPRoutes "
                      "and GRPCRoutes, streams each client namespace's route table to its sidecars "
                      "and writes route status.");
    s.option({"--kubeconfig", "TRELLIS_KUBECONFIG", std::string(kube::kKubeconfigHelp), std::nullopt},
             config::path(&C::kubeconfig));
    s.option({"--listen", "TRELLIS_LISTEN",
              "route-table stream server (HTTP/2, GET /v1/route-table); sidecars connect here",
              "0.0.0.0:15010"},
             config::custom(&C::listen, "<ip:port>", parse_listen));
    s.option({"--admin-port", "TRELLIS_ADMIN_PORT", "admin server: /metrics, /ready, /live", "15011"},
             config::port(&C::admin_port));
    s.option({"--trust-domain", "TRELLIS_TRUST_DOMAIN", "SPIFFE trust domain of workload identities",
              "cluster.local"},
             config::custom(&C::trust_domain, "<domain>", parse_trust_domain));
    s.option({"--leader-election-namespace", "TRELLIS_LEADER_ELECTION_NAMESPACE",
              "namespace of the leader-election Lease (only the leader writes route status); "
              "default: the kubeconfig context's namespace, or the pod's",
              std::nullopt},
             config::custom(&C::leader_election_namespace, "<namespace>", parse_namespace));
    s.option({"--lease-name", "TRELLIS_LEASE_NAME", "name of the leader-election Lease",
              "trellis-controller"},
             config::custom(&C::lease_name, "<name>", parse_lease_name));
    s.option({"--identity", "TRELLIS_IDENTITY",
              "this replica's name in the Lease; default: the host name (the pod name)", std::nullopt},
             config::text(&C::identity));
    s.option({"--lease-duration", "TRELLIS_LEASE_DURATION",
              "a leader that stops renewing is replaced after this", "15s"},
             config::duration(&C::lease_duration, parse_whole_seconds));
    s.option({"--renew-deadline", "TRELLIS_RENEW_DEADLINE",
              "a leader that cannot renew within this stops leading", "10s"},
             config::duration(&C::renew_deadline, parse_positive_duration));
    s.option({"--retry-period", "TRELLIS_RETRY_PERIOD", "between leader-election attempts", "2s"},
             config::duration(&C::retry_period, parse_positive_duration));
    s.option({"--insecure-namespace-from-query", "TRELLIS_INSECURE_NAMESPACE_FROM_QUERY",
              "serve the route table of the namespace a sidecar names in its request, unverified "
              "(mTLS identities are not available yet); without it such requests get 403. "
              "Tests and the sandbox only",
              "false"},
             config::boolean(&C::insecure_namespace_from_query));
    s.option({"--log-level", "TRELLIS_LOG_LEVEL", "debug, info, warn or error", "info"},
             config::one_of(&C::log_level, {{"debug", log::Level::debug},
                                            {"info", log::Level::info},
                                            {"warn", log::Level::warn},
                                            {"error", log::Level::error}}));
    return s;
  }();
  return s;
}

}  // namespace

Result<ParsedControllerConfig> parse_controller_config(const std::vector<std::string>& args,
                                                       const config::Environment& env,
                                                       const std::string& hostname) {
  auto parsed = spec().parse(args, env);
  if (!parsed.ok()) return std::move(parsed).error();
  ParsedControllerConfig out;
  out.help = parsed->help;
  if (out.help) return out;
  out.config = std::move(parsed->config);
  ControllerConfig& c = out.config;
  if (c.listen.port() == c.admin_port) {
    return make_error("--listen and --admin-port must use different ports");
  }
  if (c.identity.empty()) c.identity = hostname;
  if (c.identity.empty()) return make_error("--identity: required: the host name is unknown");
  kube::LeaderElectionConfig election;
  election.lease_namespace = "unused";  // resolved at start-up; only the timings are checked here
  election.lease_name = c.lease_name;
  election.identity = c.identity;
  election.lease_duration = std::chrono::duration_cast<std::chrono::seconds>(c.lease_duration);
  election.renew_deadline = c.renew_deadline;
  election.retry_period = c.retry_period;
  if (Status s = kube::validate(election); !s.ok()) {
    return make_error("leader election: " + s.error().message);
  }
  return out;
}

std::string controller_help_text() { return spec().help(); }

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace trellis::controller::app
