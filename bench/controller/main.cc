// bench-controller-load: the mesh controller's scale bench (bench/controller/run
// drives it; method and numbers in bench/README.md).
#include <csignal>
#include <cstdio>

#include "bench/controller/bench.h"
#include "bench/controller/options.h"
#include "common/config/config.h"
#include "common/log/log.h"

int main(int argc, char** argv) {
  using namespace trellis::bench::controller;
  std::signal(SIGPIPE, SIG_IGN);
  trellis::log::set_component("bench-controller-load");
  // The sidecar's stream client logs every table at info.
  trellis::log::set_level(trellis::log::Level::warn);
  auto parsed = parse_load_options(trellis::config::arguments(argc, argv));
  if (!parsed.ok()) {
    std::fprintf(stderr, "bench-controller-load: %s\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(load_help_text().c_str(), stdout);
    return 0;
  }
  auto code = run_bench(parsed->options);
  if (!code.ok()) {
    std::fprintf(stderr, "bench-controller-load: %s\n", code.error().message.c_str());
    return 1;
  }
  return *code;
}
