// trellis-init's one config struct, from flags or TRELLIS_* environment.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/config/config.h"
#include "proxy/init/iptables_rules.h"

namespace trellis::proxy::init {

enum class Mode { apply, dry_run, cleanup };

struct InitConfig {
  InterceptionRules rules;
  Mode mode = Mode::apply;
  bool ipv6 = true;  // also write ip6tables rules (skipped when the kernel has no IPv6)
};

// Parses argv (without the program name) and the environment. `help` is set
// when --help was asked for; the caller prints help_text().
struct ParsedInit {
  InitConfig config;
  bool help = false;
};
Result<ParsedInit> parse_init_config(const std::vector<std::string>& args,
                                     const config::Environment& env);
std::string init_help_text();

}  // namespace trellis::proxy::init
