// The pod's interception rules, rendered for iptables-restore. Pure functions:
// trellis-init decides, iptables applies, tests compare text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::proxy::init {

enum class Family { ipv4, ipv6 };

// A port or an inclusive range of ports, as written in --skip-*-ports.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
};

struct InterceptionRules {
  uint16_t inbound_port = 15006;
  uint16_t outbound_port = 15001;
  uint16_t admin_port = 15020;
  uint32_t proxy_uid = 2790;
  std::vector<PortRange> skip_inbound_ports;
  std::vector<PortRange> skip_outbound_ports;
};

// Parses "80,8080,9000-9010" (spaces allowed around items; empty = none).
Result<std::vector<PortRange>> parse_port_list(std::string_view text);

// Rules for `iptables-restore --noflush`: declares (and so flushes) the
// TRELLIS_* chains and appends the jumps from PREROUTING and OUTPUT. Callers
// remove stale jumps first (see jump_rules) so applying twice is idempotent.
std::string render_restore(const InterceptionRules& rules, Family family);

// The jumps from the built-in chains into ours, as iptables arguments after
// `-t nat -D`; used to remove them on cleanup and before re-applying.
std::vector<std::vector<std::string>> jump_rules();

// The chains we own, in deletion order.
std::vector<std::string> owned_chains();

}  // namespace trellis::proxy::init
