// trellis-proxy: the Trellis sidecar.
#include <csignal>
#include <cstdio>

#include "common/log/log.h"
#include "proxy/app/sidecar.h"
#include "proxy/config/proxy_config.h"

int main(int argc, char** argv) {
  using namespace trellis;
  std::signal(SIGPIPE, SIG_IGN);
  log::set_component("trellis-proxy");
  auto parsed = proxy::parse_proxy_config(config::arguments(argc, argv), config::process_environment());
  if (!parsed.ok()) {
    std::fprintf(stderr, "trellis-proxy: %s\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(proxy::proxy_help_text().c_str(), stdout);
    return 0;
  }
  log::set_level(parsed->config.log_level);
  auto sidecar = proxy::app::Sidecar::start(parsed->config);
  if (!sidecar.ok()) {
    log::error("trellis-proxy could not start", {{"error", sidecar.error().message}});
    return 1;
  }
  return (*sidecar)->run();
}
