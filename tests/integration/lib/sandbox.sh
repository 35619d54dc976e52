# shellcheck shell=bash
# Shell helper for integration tests and scripts: brings up the shared sandbox
# control plane and exposes its kubeconfig. Sourced; usage:
#
#   source tests/integration/lib/sandbox.sh
#   trellis_sandbox_missing_capability && ...   # prints why it cannot run, if so
#   trellis_sandbox_up [--experimental]         # exports KUBECONFIG, TRELLIS_SANDBOX_*
#   kube get pods -A                            # kubectl inside trellis-node
#
# sandbox/up is idempotent and serialises its callers with a lock, so every
# test may call trellis_sandbox_up: the first starts the control plane, the
# others return in about a second. scripts/test stops it at the end of a run.

TRELLIS_ROOT=${TRELLIS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}

# Prints what this machine lacks for the sandbox, if anything, and succeeds then.
trellis_sandbox_missing_capability() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "root (CAP_SYS_ADMIN and CAP_NET_ADMIN, for network namespaces)"
  elif ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "ip netns (iproute2)"
  else
    return 1
  fi
}

trellis_sandbox_up() {  # [--experimental]
  "$TRELLIS_ROOT/sandbox/up" --quiet "$@" || return 1
  local dir=${TRELLIS_SANDBOX_DIR:-$HOME/.local/state/trellis-sandbox} key value
  while IFS='=' read -r key value; do
    export "$key=$value"
  done <"$dir/env"
}

kube() { "$TRELLIS_ROOT/sandbox/kubectl" "$@"; }
