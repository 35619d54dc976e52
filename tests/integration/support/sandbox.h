// Integration tests' access to the sandbox control plane (sandbox/up): a real
// etcd, kube-apiserver and kube-controller-manager inside the network
// namespace trellis-node.
//
//   auto sandbox = trellis::integration::ensure_sandbox();   // once, first thing
//   REQUIRE(sandbox.ok());
//   REQUIRE(trellis::integration::enter_sandbox_network(*sandbox).ok());  // before threads
//   ... connect to sandbox->api_server_url with sandbox->kubeconfig's credentials ...
//
// The sandbox is shared by every test of a run: sandbox/up is idempotent and
// serialises concurrent callers with a lock file, and scripts/test stops it
// at the end. Tests isolate themselves by namespace. Everything here is for
// the main thread of a test process.
#pragma once

#include <string>
#include <vector>

#include "common/base/result.h"

namespace trellis::integration {

struct SandboxOptions {
  // Installs the Gateway API experimental channel (HTTPRoute retry, ...)
  // instead of the standard one; upgrades a running sandbox.
  bool experimental_gateway_api = false;
};

struct Sandbox {
  std::string kubeconfig;      // admin (system:masters); CA and client cert embedded
  std::string api_server_url;  // https://<node address>:6443, reachable only inside netns
  std::string ca_file;         // PEM of the CA that signed the apiserver's certificate
  std::string netns;           // the node's network namespace, "trellis-node"
  std::string kubectl;         // the pinned kubectl binary
  std::string gateway_api_channel;  // "standard" or "experimental"
};

// Starts the control plane unless it is running (runs sandbox/up, which may
// build Kubernetes for many minutes on a cold cache; its progress goes to
// stderr) and describes it. Repeated calls in one process with the same
// options return the first answer without running sandbox/up again.
Result<Sandbox> ensure_sandbox(const SandboxOptions& options = {});

// Moves the calling process into the sandbox's network namespace, so that its
// sockets and its child processes reach the apiserver. setns() moves only the
// calling thread, so this fails if the process already has a second thread;
// threads created afterwards inherit the namespace. Idempotent.
Status enter_sandbox_network(const Sandbox& sandbox);

struct CommandOutput {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with the given arguments and collects its
// output. An error only when it cannot be started or dies from a signal; a
// non-zero exit is reported in exit_code.
Result<CommandOutput> run_command(const std::vector<std::string>& argv);

// Runs the pinned kubectl with the sandbox's kubeconfig inside its network
// namespace (whether or not this process entered it) and returns its stdout;
// an error carrying its stderr when it exits non-zero.
Result<std::string> run_kubectl(const Sandbox& sandbox, const std::vector<std::string>& args);

}  // namespace trellis::integration
