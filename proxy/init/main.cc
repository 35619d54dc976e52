// trellis-init: writes (or prints, or removes) the pod's interception rules.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>

#include "common/log/log.h"
#include "proxy/init/command.h"
#include "proxy/init/init_config.h"
#include "proxy/init/iptables_rules.h"

namespace trellis::proxy::init {
namespace {

struct Tools {
  const char* name;
  const char* iptables;
  const char* restore;
  Family family;
};

constexpr Tools kIpv4{"ipv4", "iptables", "iptables-restore", Family::ipv4};
constexpr Tools kIpv6{"ipv6", "ip6tables", "ip6tables-restore", Family::ipv6};

bool kernel_has_ipv6() { return access("/proc/net/if_inet6", F_OK) == 0; }

// Removes our jumps and chains; absent ones are fine, so errors are ignored
// here and the final apply (or a listing) is what proves the outcome.
Status remove_rules(const Tools& t) {
  for (const auto& jump : jump_rules()) {
    for (int i = 0; i < 16; ++i) {  // a jump may have been added more than once by hand
      std::vector<std::string> argv = {t.iptables, "-w", "-t", "nat", "-D"};
      argv.insert(argv.end(), jump.begin(), jump.end());
      auto r = run_command(argv);
      if (!r.ok()) return std::move(r).error();
      if (r->exit_code != 0) break;
    }
  }
  for (const std::string& chain : owned_chains()) {
    auto f = run_command({t.iptables, "-w", "-t", "nat", "-F", chain});
    if (!f.ok()) return std::move(f).error();
  }
  for (const std::string& chain : owned_chains()) {
    auto x = run_command({t.iptables, "-w", "-t", "nat", "-X", chain});
    if (!x.ok()) return std::move(x).error();
  }
  return ok_status();
}

Status apply_rules(const Tools& t, const InitConfig& c) {
  if (auto s = remove_rules(t); !s.ok()) return s;
  auto r = run_command({t.restore, "-w", "--noflush"}, render_restore(c.rules, t.family));
  if (!r.ok()) return std::move(r).error();
  if (r->exit_code != 0) {
    return make_error(std::string(t.restore) + " exited " + std::to_string(r->exit_code) + ": " +
                      r->stderr_text);
  }
  return ok_status();
}

int run(int argc, char** argv) {
  log::set_component("trellis-init");
  auto parsed = parse_init_config(config::arguments(argc, argv), config::process_environment());
  if (!parsed.ok()) {
    std::fprintf(stderr, "trellis-init: %s\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(init_help_text().c_str(), stdout);
    return 0;
  }
  const InitConfig& c = parsed->config;
  std::vector<Tools> families = {kIpv4};
  if (c.ipv6 && kernel_has_ipv6()) families.push_back(kIpv6);

  for (const Tools& t : families) {
    if (c.mode == Mode::dry_run) {
      std::printf("# %s (%s-restore --noflush)\n%s", t.name, t.iptables,
                  render_restore(c.rules, t.family).c_str());
      continue;
    }
    Status s = c.mode == Mode::cleanup ? remove_rules(t) : apply_rules(t, c);
    if (!s.ok()) {
      log::error("writing interception rules failed", {{"family", t.name}, {"error", s.error().message}});
      return 1;
    }
    log::info(c.mode == Mode::cleanup ? "interception rules removed" : "interception rules written",
              {{"family", t.name},
               {"inbound_port", c.rules.inbound_port},
               {"outbound_port", c.rules.outbound_port},
               {"proxy_uid", c.rules.proxy_uid}});
  }
  return 0;
}

}  // namespace
}  // namespace trellis::proxy::init

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return trellis::proxy::init::run(argc, argv);
}
