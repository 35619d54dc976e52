# shellcheck shell=bash disable=SC2034  # the globals are for the scripts that source this
# Shared by every sandbox script and by the test helpers. Sourced, never run.
# Defines paths, the pinned versions, the network plan and small utilities.

SANDBOX_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../versions.env
source "$SANDBOX_HOME/versions.env"

# Binaries and Go downloads, keyed by version so a second run costs seconds.
TRELLIS_CACHE_DIR=${TRELLIS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trellis}
# Everything a running sandbox owns: pids, logs, PKI, etcd data, kubeconfig.
TRELLIS_SANDBOX_DIR_SET=${TRELLIS_SANDBOX_DIR:+1}
TRELLIS_SANDBOX_DIR=${TRELLIS_SANDBOX_DIR:-$HOME/.local/state/trellis-sandbox}

# Network plan (see README.md). Nothing here is reachable from the host's
# network: the namespace has no link to it.
# TRELLIS_SANDBOX_NETNS lets a test run a second, private sandbox next to the
# shared one (with its own TRELLIS_SANDBOX_DIR).
SANDBOX_NETNS=${TRELLIS_SANDBOX_NETNS:-trellis-node}
SANDBOX_BRIDGE=trellis0
SANDBOX_NODE_CIDR=10.77.0.0/24
SANDBOX_NODE_IP=10.77.0.1
SANDBOX_POD_CIDR=10.78.0.0/16
SANDBOX_POD_GATEWAY=10.78.0.1
SANDBOX_SERVICE_CIDR=10.79.0.0/16
SANDBOX_KUBERNETES_SERVICE_IP=10.79.0.1
SANDBOX_APISERVER_PORT=6443
SANDBOX_APISERVER_URL=https://$SANDBOX_NODE_IP:$SANDBOX_APISERVER_PORT
SANDBOX_SERVICE_ACCOUNT_ISSUER=https://kubernetes.default.svc.cluster.local
# Audiences the apiserver accepts in service-account tokens; `trellis` is the
# one the mesh's identity service asks for in TokenRequest / TokenReview.
SANDBOX_API_AUDIENCES=$SANDBOX_SERVICE_ACCOUNT_ISSUER,trellis

sandbox_log() { printf 'sandbox: %s\n' "$*" >&2; }
sandbox_die() { sandbox_log "error: $*"; exit 1; }

sandbox_go() {
  local go
  go=$(command -v go 2>/dev/null || true)
  [[ -n "$go" ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; }
  [[ -n "$go" ]] || sandbox_die "the Go toolchain is missing (need go >= 1.26 on PATH or in /usr/local/go/bin)"
  GOMODCACHE="$TRELLIS_CACHE_DIR/go/mod" GOCACHE="$TRELLIS_CACHE_DIR/go/build" \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false "$go" "$@"
}

sandbox_require_root() {
  [[ $(id -u) -eq 0 ]] || sandbox_die "$1 needs root (network namespaces): run it as root or with sudo"
}

# The cache directory of one component's binaries at its pinned version.
sandbox_bin_dir() {  # component
  local version
  case $1 in
    kubernetes) version=$KUBERNETES_VERSION ;;
    etcd) version=$ETCD_VERSION ;;
    helm) version=$HELM_VERSION ;;
    *) sandbox_die "unknown component '$1'" ;;
  esac
  printf '%s/bin/%s-%s\n' "$TRELLIS_CACHE_DIR" "$1" "$version"
}

sandbox_in_netns() { ip netns exec "$SANDBOX_NETNS" "$@"; }

sandbox_netns_exists() { [[ -e /run/netns/$SANDBOX_NETNS ]]; }
