// bench-controller-load's one config struct: the world's size, the phases to
// run, the controller to start and where the results go. Flags only (no
// environment variables: bench/controller/run passes everything explicitly).
#pragma once

#include <string>
#include <vector>

#include "bench/controller/world.h"
#include "common/base/result.h"

namespace trellis::bench::controller {

struct LoadOptions {
  Scale scale;
  std::string kubeconfig;
  // populate: create the world in the API server; measure: start the
  // controller, the streams, idle, updates.
  enum class Phases { all, populate, measure };
  Phases phases = Phases::all;
  int inflight = 32;  // concurrent create requests

  std::string controller_bin;
  std::string controller_log;
  int controller_cpu = -1;          // pin the controller to this CPU; -1: no pinning
  uint16_t stream_port = 15010;
  uint16_t admin_port = 15011;

  int updates = 50;
  int consumer_every = 5;      // every N-th update is a consumer route's; 0: never
  int update_timeout_s = 60;   // per update, for every affected stream to have it
  int update_gap_ms = 1000;    // quiet time after each update
  int sync_timeout_s = 600;    // controller start → first table on every stream
  int settle_timeout_s = 600;  // for the initial route-status writes to finish
  int idle_s = 10;
  bool verify_sidecar = true;  // the sidecar's own client installs the last table

  // Other processes whose CPU time is reported per phase (the sandbox's).
  int apiserver_pid = 0;
  int etcd_pid = 0;

  std::string report;  // markdown
  std::string tsv;     // one line per update
  std::string checks;  // one "ok|FAILED<TAB>name" line per sanity check
};

struct ParsedLoadOptions {
  LoadOptions options;
  bool help = false;
};

// Errors name the flag ("--streams: expected an integer between 1 and 10000,
// got 'x'"), or the flags that are missing ("--controller-bin is required to
// measure").
Result<ParsedLoadOptions> parse_load_options(const std::vector<std::string>& args);
std::string load_help_text();

}  // namespace trellis::bench::controller
