#include "proxy/init/init_config.h"

namespace trellis::proxy::init {
namespace {

// The flag parser fills plain fields; rules and mode are assembled after.
struct Flags {
  uint16_t inbound_port = 15006;
  uint16_t outbound_port = 15001;
  uint16_t admin_port = 15020;
  uint32_t proxy_uid = 2790;
  std::vector<PortRange> skip_inbound;
  std::vector<PortRange> skip_outbound;
  bool dry_run = false;
  bool cleanup = false;
  bool ipv6 = true;
};

const config::Spec<Flags>& spec() {
  static const config::Spec<Flags> s = [] {
    config::Spec<Flags> s("trellis-init",
                          "Writes the pod's iptables rules: inbound TCP to the proxy's inbound port, "
                          "outbound TCP to its outbound port.");
    s.option({"--inbound-port", "TRELLIS_INBOUND_PORT", "port of the proxy's inbound listener", "15006"},
             config::port(&Flags::inbound_port));
    s.option({"--outbound-port", "TRELLIS_OUTBOUND_PORT", "port of the proxy's outbound listener", "15001"},
             config::port(&Flags::outbound_port));
    s.option({"--admin-port", "TRELLIS_ADMIN_PORT", "the proxy's admin port, never redirected inbound",
              "15020"},
             config::port(&Flags::admin_port));
    s.option({"--proxy-uid", "TRELLIS_PROXY_UID", "uid the proxy runs as; its traffic is not redirected",
              "2790"},
             config::integer(&Flags::proxy_uid, 0u, 4294967294u));
    s.option({"--skip-inbound-ports", "TRELLIS_SKIP_INBOUND_PORTS",
              "inbound ports (or ranges a-b), comma-separated, that bypass the proxy", ""},
             config::custom(&Flags::skip_inbound, "<ports>", parse_port_list));
    s.option({"--skip-outbound-ports", "TRELLIS_SKIP_OUTBOUND_PORTS",
              "outbound destination ports (or ranges a-b), comma-separated, that bypass the proxy", ""},
             config::custom(&Flags::skip_outbound, "<ports>", parse_port_list));
    s.option({"--ipv6", "TRELLIS_IPV6", "also write ip6tables rules when the kernel has IPv6", "true"},
             config::boolean(&Flags::ipv6));
    s.option({"--dry-run", "", "print the rules instead of applying them", std::nullopt},
             config::boolean(&Flags::dry_run));
    s.option({"--cleanup", "", "remove every rule and chain trellis-init wrote", std::nullopt},
             config::boolean(&Flags::cleanup));
    return s;
  }();
  return s;
}

}  // namespace

Result<ParsedInit> parse_init_config(const std::vector<std::string>& args,
                                     const config::Environment& env) {
  auto parsed = spec().parse(args, env);
  if (!parsed.ok()) return std::move(parsed).error();
  ParsedInit out;
  if (parsed->help) {
    out.help = true;
    return out;
  }
  const Flags& f = parsed->config;
  if (f.dry_run && f.cleanup) return make_error("--dry-run and --cleanup exclude each other");
  if (f.inbound_port == f.outbound_port) {
    return make_error("--inbound-port and --outbound-port must differ (both " +
                      std::to_string(f.inbound_port) + ")");
  }
  if (f.admin_port == f.inbound_port || f.admin_port == f.outbound_port) {
    return make_error("--admin-port must differ from the inbound and outbound ports");
  }
  InitConfig& c = out.config;
  c.rules.inbound_port = f.inbound_port;
  c.rules.outbound_port = f.outbound_port;
  c.rules.admin_port = f.admin_port;
  c.rules.proxy_uid = f.proxy_uid;
  c.rules.skip_inbound_ports = f.skip_inbound;
  c.rules.skip_outbound_ports = f.skip_outbound;
  c.mode = f.cleanup ? Mode::cleanup : f.dry_run ? Mode::dry_run : Mode::apply;
  c.ipv6 = f.ipv6;
  return out;
}

std::string init_help_text() { return spec().help(); }

}  // namespace trellis::proxy::init
