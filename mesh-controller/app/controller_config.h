// trellis-controller's one config struct: flags, or their TRELLIS_*
// environment equivalents (the chart sets those), parsed and validated in one
// place.
//
// Ports: 15010 serves the route-table stream (HTTP/2; h2c until the identity
// service brings mTLS), 15011 the admin endpoints (/metrics, /ready, /live).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/config/config.h"
#include "common/log/log.h"
#include "common/net/address.h"

namespace trellis::controller::app {

struct ControllerConfig {
  // Empty: the in-cluster service account.
  std::string kubeconfig;
  // The route-table stream server.
  net::Address listen = net::Address::parse("0.0.0.0:15010").value();
  uint16_t admin_port = 15011;
  // Of the SPIFFE IDs in route tables (and, later, of the peers' identities).
  std::string trust_domain = "cluster.local";

  // Leader election (a coordination.k8s.io Lease): only the leader writes
  // route status; every replica serves sidecars. An empty namespace means
  // the kubeconfig context's namespace, or the pod's in-cluster.
  std::string leader_election_namespace;
  std::string lease_name = "trellis-controller";
  std::string identity;  // unique per replica; the host name (the pod name) when not given
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};

  // Take the route-table namespace from the `namespace` query parameter
  // instead of the (not yet available) mTLS identity. Tests and the sandbox only.
  bool insecure_namespace_from_query = false;
  log::Level log_level = log::Level::info;
};

struct ParsedControllerConfig {
  ControllerConfig config;
  bool help = false;
};

// `hostname` supplies the default identity. Errors are prefixed with the flag
// or variable they concern ("--listen: invalid address ..."), or name the
// flags that disagree.
Result<ParsedControllerConfig> parse_controller_config(const std::vector<std::string>& args,
                                                       const config::Environment& env,
                                                       const std::string& hostname);
std::string controller_help_text();

// The machine's host name (in a pod: the pod name), or "" when unknown.
std::string host_name();

}  // namespace trellis::controller::app
