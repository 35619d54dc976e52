// trellis-controller: the Trellis mesh controller.
#include <csignal>
#include <cstdio>

#include "common/log/log.h"
#include "mesh-controller/app/controller.h"
#include "mesh-controller/app/controller_config.h"

int main(int argc, char** argv) {
  using namespace trellis;
  std::signal(SIGPIPE, SIG_IGN);
  log::set_component("trellis-controller");
  auto parsed = controller::app::parse_controller_config(
      config::arguments(argc, argv), config::process_environment(), controller::app::host_name());
  if (!parsed.ok()) {
    std::fprintf(stderr, "trellis-controller: %s\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(controller::app::controller_help_text().c_str(), stdout);
    return 0;
  }
  log::set_level(parsed->config.log_level);
  auto controller = controller::app::Controller::start(parsed->config);
  if (!controller.ok()) {
    log::error("trellis-controller could not start", {{"error", controller.error().message}});
    return 1;
  }
  return (*controller)->run();
}
