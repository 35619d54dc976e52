// trellis-proxy's one config struct: flags, or their TRELLIS_* environment
// equivalents (the injector sets those), parsed and validated in one place.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/config/config.h"
#include "common/log/log.h"

namespace trellis::proxy {

struct ProxyConfig {
  uint16_t outbound_port = 15001;
  uint16_t inbound_port = 15006;
  uint16_t admin_port = 15020;
  int workers = 2;
  log::Level log_level = log::Level::info;

  // Where route tables come from: a file (reloaded on atomic rename).
  std::string routes_file;

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
