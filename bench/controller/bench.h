// The controller scale bench's phases, on one loop:
//
//   populate   namespaces, Services, EndpointSlices, HTTPRoutes (Creator)
//   sync       start trellis-controller and every stream at once; time to
//              /ready, to the informers' sync (its log), to a table on every stream
//   settle     wait for the initial route-status writes (the leader writes one
//              per route, rate-limited) so that they do not overlap what follows
//   idle       CPU and memory of a controller with nothing to do
//   updates    one HTTPRoute update at a time: PATCH, then wait until every
//              affected stream has a table with the update's marker
//   verify     the sidecar's own client (proxy/app ControllerStream) receives,
//              parses and compiles the last table
//
// and the report: markdown, one TSV line per update, and the sanity checks
// (the harness worked and the controller behaved: every stream got every
// update it should, none it should not, no stream broke, the controller
// exited cleanly). Performance goals are reported, never checked.
//
// Threading: the calling thread runs the loop; ReadyProbe has its own.
#pragma once

#include <memory>

#include "bench/controller/options.h"
#include "common/base/result.h"

namespace trellis::bench::controller {

// Runs the phases `options` selects and writes the report files. Errors: the
// harness could not run (bad kubeconfig, the controller would not start, ...);
// otherwise the exit code: 0 when every sanity check passed, else 1.
Result<int> run_bench(const LoadOptions& options);

}  // namespace trellis::bench::controller
