#include "proxy/init/iptables_rules.h"

#include <charconv>

namespace trellis::proxy::init {
namespace {

constexpr const char* kInbound = "TRELLIS_INBOUND";
constexpr const char* kInRedirect = "TRELLIS_IN_REDIRECT";
constexpr const char* kOutput = "TRELLIS_OUTPUT";
constexpr const char* kOutRedirect = "TRELLIS_OUT_REDIRECT";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Result<uint16_t> parse_port(std::string_view text, std::string_view item) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 1 ||
      value > 65535) {
    return make_error("invalid port '" + std::string(item) + "': want 1-65535 or a range like 9000-9010");
  }
  return static_cast<uint16_t>(value);
}

std::string dport(const PortRange& r) {
  std::string s = std::to_string(r.first);
  if (r.last != r.first) s += ":" + std::to_string(r.last);
  return s;
}

}  // namespace

Result<std::vector<PortRange>> parse_port_list(std::string_view text) {
  std::vector<PortRange> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    size_t dash = item.find('-');
    auto first = parse_port(trim(item.substr(0, dash)), item);
    if (!first.ok()) return std::move(first).error();
    PortRange range{*first, *first};
    if (dash != std::string_view::npos) {
      auto last = parse_port(trim(item.substr(dash + 1)), item);
      if (!last.ok()) return std::move(last).error();
      if (*last < *first) return make_error("invalid port range '" + std::string(item) + "': end before start");
      range.last = *last;
    }
    out.push_back(range);
  }
  return out;
}

std::string render_restore(const InterceptionRules& rules, Family family) {
  const char* loopback = family == Family::ipv4 ? "127.0.0.0/8" : "::1/128";
  std::string out = "*nat\n";
  for (const char* chain : {kInbound, kInRedirect, kOutput, kOutRedirect}) {
    out += ":" + std::string(chain) + " - [0:0]\n";
  }
  // Inbound: everything but the admin port and the skipped ports goes to the
  // proxy's inbound listener.
  out += "-A PREROUTING -p tcp -j " + std::string(kInbound) + "\n";
  out += "-A " + std::string(kInbound) + " -p tcp --dport " + std::to_string(rules.admin_port) +
         " -j RETURN\n";
  for (const PortRange& r : rules.skip_inbound_ports) {
    out += "-A " + std::string(kInbound) + " -p tcp --dport " + dport(r) + " -j RETURN\n";
  }
  out += "-A " + std::string(kInbound) + " -p tcp -j " + kInRedirect + "\n";
  out += "-A " + std::string(kInRedirect) + " -p tcp -j REDIRECT --to-ports " +
         std::to_string(rules.inbound_port) + "\n";
  // Outbound: the proxy's own connections, loopback-to-loopback traffic and
  // skipped ports leave untouched; the rest goes to the outbound listener.
  out += "-A OUTPUT -p tcp -j " + std::string(kOutput) + "\n";
  out += "-A " + std::string(kOutput) + " -m owner --uid-owner " + std::to_string(rules.proxy_uid) +
         " -j RETURN\n";
  out += "-A " + std::string(kOutput) + " -o lo -d " + loopback + " -j RETURN\n";
  for (const PortRange& r : rules.skip_outbound_ports) {
    out += "-A " + std::string(kOutput) + " -p tcp --dport " + dport(r) + " -j RETURN\n";
  }
  out += "-A " + std::string(kOutput) + " -p tcp -j " + kOutRedirect + "\n";
  out += "-A " + std::string(kOutRedirect) + " -p tcp -j REDIRECT --to-ports " +
         std::to_string(rules.outbound_port) + "\n";
  out += "COMMIT\n";
  return out;
}

std::vector<std::vector<std::string>> jump_rules() {
  return {{"PREROUTING", "-p", "tcp", "-j", kInbound}, {"OUTPUT", "-p", "tcp", "-j", kOutput}};
}

std::vector<std::string> owned_chains() { return {kInbound, kOutput, kInRedirect, kOutRedirect}; }

}  // namespace trellis::proxy::init
