// trellis-proxy's one config struct: flags, or their TRELLIS_* environment
// equivalents (the injector sets those), parsed and validated in one place.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "common/config/config.h"
#include "common/log/log.h"

namespace trellis::proxy {

// Where the controller's route-table stream is: an IP or a DNS name, and a port.
struct HostPort {
  std::string host;  // "10.0.0.1", "::1" (no brackets), "trellis-controller.trellis-system"
  uint16_t port = 0;

  // "host:port", IPv6 in brackets.
  std::string to_string() const;
};

// "host:port", "[ipv6]:port". Errors: "invalid address 'x': missing port",
// "... invalid port '0'", "... IPv6 addresses must be in brackets, as in
// [::1]:15010", "... invalid host 'a_b' (want an IP address or a DNS name)".
Result<HostPort> parse_host_port(std::string_view text);

struct ProxyConfig {
  uint16_t outbound_port = 15001;
  uint16_t inbound_port = 15006;
  uint16_t admin_port = 15020;
  int workers = 2;
  log::Level log_level = log::Level::info;

  // Where route tables come from, exactly one of: a file (reloaded on atomic
  // rename), or the controller's route-table stream for this pod's namespace.
  std::string routes_file;
  HostPort controller;  // port 0: not set
  std::string namespace_;

  // Inbound traffic is forwarded to the app on this address and the original port.
  std::string inbound_target_ip = "127.0.0.1";
  // Protocol detection gives up (→ opaque TCP) after this: server-speaks-first protocols.
  std::chrono::milliseconds detect_timeout{500};
  std::chrono::milliseconds connect_timeout{1000};
  // A request head must arrive within this (slowloris) → 408.
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{300000};
  // On SIGTERM or POST /drain: in-flight requests get this long to finish.
  std::chrono::milliseconds drain_timeout{30000};

  // Retries need the request body buffered; larger bodies are not retried.
  uint64_t retry_buffer_bytes = 64 * 1024;
  double retry_budget_ratio = 0.2;
  int retry_budget_min_per_second = 10;
};

struct ParsedProxyConfig {
  ProxyConfig config;
  bool help = false;
};

Result<ParsedProxyConfig> parse_proxy_config(const std::vector<std::string>& args,
                                             const config::Environment& env);
std::string proxy_help_text();

}  // namespace trellis::proxy
