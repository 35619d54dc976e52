# shellcheck shell=bash
# The bench's two "pods", each a network namespace, joined by one veth pair:
#
#   client ns  (trbench<pid>-client)           backend ns (trbench<pid>-backend)
#     eth0 10.77.0.1/24  <──── veth ────>        eth0 10.77.0.2/24
#     default via 10.77.0.2                      nginx :8080 :8081, trellis-echo :9080 :9081
#     trellis-init rules, trellis-proxy (uid 2790), HAProxy (uid 2790), load generators
#
# ClusterIPs (10.96.0.0/24) exist on no interface: only the client's iptables
# rules (REDIRECT to the proxy's outbound port) give them a meaning. Nothing
# is created in the host's namespace, so the subnets cannot collide with it.

BENCH_NS_PREFIX=trbench
BENCH_CLIENT_IP=10.77.0.1
BENCH_BACKEND_IP=10.77.0.2
BENCH_PROXY_UID=2790

# Command prefixes, set by netns_create. Arrays rather than functions so that
# bench_spawn's background job execs the program itself (its pid is the
# program's, and stopping it stops the program).
#   IN_CLIENT: in the client namespace as root; outbound connections are
#     intercepted.
#   IN_CLIENT_BYPASS: in the client namespace as the proxy's uid; never
#     intercepted (trellis-init exempts it): the direct path, and HAProxy's
#     path to the backend.
#   IN_BACKEND: in the backend namespace.
IN_CLIENT=()
IN_CLIENT_BYPASS=()
IN_BACKEND=()
in_client() { "${IN_CLIENT[@]}" "$@"; }
in_client_bypass() { "${IN_CLIENT_BYPASS[@]}" "$@"; }
in_backend() { "${IN_BACKEND[@]}" "$@"; }

# Deletes namespaces that a bench run which no longer exists left behind
# (trbench<pid>-...), killing what still runs in them.
netns_remove_stale() {
  local ns pid
  for ns in $(ip netns list | awk '{ print $1 }' | grep -E "^${BENCH_NS_PREFIX}[0-9]+-" || true); do
    pid=${ns#"$BENCH_NS_PREFIX"}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    bench_log "removing stale namespace $ns (bench run $pid is gone)"
    netns_kill_processes "$ns"
    ip netns delete "$ns" 2>/dev/null || true
  done
}

netns_kill_processes() {  # namespace
  local p
  for p in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
}

netns_create() {
  BENCH_CLIENT_NS="${BENCH_NS_PREFIX}$$-client"
  BENCH_BACKEND_NS="${BENCH_NS_PREFIX}$$-backend"
  IN_CLIENT=(ip netns exec "$BENCH_CLIENT_NS")
  IN_CLIENT_BYPASS=(ip netns exec "$BENCH_CLIENT_NS" setpriv --reuid "$BENCH_PROXY_UID"
    --regid "$BENCH_PROXY_UID" --clear-groups)
  IN_BACKEND=(ip netns exec "$BENCH_BACKEND_NS")
  ip netns add "$BENCH_CLIENT_NS" || bench_die "cannot create network namespace $BENCH_CLIENT_NS"
  ip netns add "$BENCH_BACKEND_NS" || bench_die "cannot create network namespace $BENCH_BACKEND_NS"
  local step
  for step in \
    "-n $BENCH_CLIENT_NS link add eth0 type veth peer name eth0 netns $BENCH_BACKEND_NS" \
    "-n $BENCH_CLIENT_NS link set lo up" \
    "-n $BENCH_BACKEND_NS link set lo up" \
    "-n $BENCH_CLIENT_NS addr add $BENCH_CLIENT_IP/24 dev eth0" \
    "-n $BENCH_BACKEND_NS addr add $BENCH_BACKEND_IP/24 dev eth0" \
    "-n $BENCH_CLIENT_NS link set eth0 up" \
    "-n $BENCH_BACKEND_NS link set eth0 up" \
    "-n $BENCH_CLIENT_NS route add default via $BENCH_BACKEND_IP"; do
    # shellcheck disable=SC2086  # the steps are word lists
    ip $step || bench_die "ip $step failed"
  done
}

netns_delete() {
  local ns
  for ns in "${BENCH_CLIENT_NS:-}" "${BENCH_BACKEND_NS:-}"; do
    [[ -n $ns ]] || continue
    netns_kill_processes "$ns"
    ip netns delete "$ns" 2>/dev/null || true
  done
}

# Whether something accepts TCP connections on ip:port, from inside a namespace.
netns_port_open() {  # namespace, ip, port
  ip netns exec "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
