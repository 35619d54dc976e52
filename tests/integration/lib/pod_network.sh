# shellcheck shell=bash
# The pod network of tests/integration/support/pod_network.h, in shell, for
# scripts/demo and for exploring by hand: a "switch" network namespace with a
# bridge, pods (network namespaces with eth0 on the bridge, a default route
# and an /etc/netns/<ns>/hosts file), processes started in them, and meshing
# (trellis-init + trellis-proxy as uid 2790). Needs root. Sourced; usage:
#
#   source tests/integration/lib/pod_network.sh
#   pn_create                        # trap pn_destroy EXIT is the caller's job
#   (or pn_create_on_bridge trellis-node trellis0 10.78.0.1 16: pods on the
#    sandbox node's bridge, where they reach the API server and the controller)
#   pn_add_pod echo-v1
#   pn_next_cluster_ip vip           # sets $vip: an address that exists nowhere
#   pn_add_pod client "echo=$vip"    # name=IP entries for the pod's /etc/hosts
#   pn_start echo-v1 echo "$PN_ECHO" server --hostname echo-v1
#   pn_wait_port echo-v1 8080
#   pn_mesh client routes.json --workers 1
#   pn_exec client "$PN_ECHO" client http://echo/ --count 10
#   pn_destroy                       # idempotent
#
# Names follow the C++ harness ("trit<pid>-<n>[-<pod>]"), so either removes
# what the other left behind when its process died (pn_remove_stale).

TRELLIS_ROOT=${TRELLIS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
PN_BUILD=${PN_BUILD:-$TRELLIS_ROOT/build}
PN_PROXY=${TRELLIS_PROXY_BIN:-$PN_BUILD/proxy/trellis-proxy}
PN_INIT=${TRELLIS_INIT_BIN:-$PN_BUILD/proxy/init/trellis-init}
# shellcheck disable=SC2034  # for the callers
PN_ECHO=${TRELLIS_ECHO_BIN:-$PN_BUILD/tests/support/echo/trellis-echo}
PN_PROXY_UID=2790

PN_PREFIX=""       # every pod namespace of this network starts with it
PN_SWITCH=""       # the namespace holding the bridge
PN_BRIDGE=""
PN_SWITCH_OWNED=0  # 1: pn_create made the switch, pn_destroy deletes it
PN_GATEWAY=""      # the bridge's address, the pods' default route
PN_PREFIX_LEN=""   # of the pods' addresses
PN_DIR=""          # logs and route tables
PN_SUBNET=""       # "10.a.b." : gateway .1, pods .2 and up
PN_CLUSTER=""      # "10.96.b." : ClusterIPs .10 and up
PN_PODS=()         # pod names, in creation order
PN_PIDS=()         # background processes, "pid label"
declare -gA PN_IP=()
PN_NEXT_HOST=2
PN_NEXT_CLUSTER=10
PN_COUNTER=0

pn_log() { printf 'pod-network: %s\n' "$*" >&2; }
pn_fail() { pn_log "$*"; return 1; }

pn_ns() { echo "$PN_PREFIX-$1"; }  # pod -> its namespace

# Removes namespaces and /etc/netns entries "trit<pid>-..." whose pid is gone.
pn_remove_stale() {
  local name pid
  for name in $(ls /run/netns 2>/dev/null) $(ls /etc/netns 2>/dev/null); do
    [[ $name =~ ^trit([0-9]+)- ]] || continue
    pid=${BASH_REMATCH[1]}
    kill -0 "$pid" 2>/dev/null && continue
    pn_remove_namespace "$name"
  done
}

pn_remove_namespace() {  # name
  local pid
  if [[ -e /run/netns/$1 ]]; then
    for pid in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$1" 2>/dev/null || true
  fi
  rm -rf "/etc/netns/$1"
}

pn_create() {
  [[ $(id -u) -eq 0 ]] || pn_fail "needs root (network namespaces, iptables)" || return 1
  pn_remove_stale
  PN_COUNTER=$((PN_COUNTER + 1))
  PN_PREFIX="trit$$-$PN_COUNTER"
  local slot=$((($$ * 8 + PN_COUNTER) % 65536))
  PN_SUBNET="10.$((100 + (slot >> 8) % 100)).$((slot & 255))."
  PN_CLUSTER="10.96.$((slot & 255))."
  pn_reset_state "$PN_PREFIX" br0 "${PN_SUBNET}1" 24
  PN_SWITCH_OWNED=1
  if ! { ip netns add "$PN_PREFIX" &&
    ip -n "$PN_PREFIX" link set lo up &&
    ip -n "$PN_PREFIX" link add br0 type bridge &&
    ip -n "$PN_PREFIX" addr add "${PN_SUBNET}1/24" dev br0 &&
    ip -n "$PN_PREFIX" link set br0 up; }; then
    pn_fail "cannot create the switch namespace $PN_PREFIX"
  fi
}

# Pods on an existing bridge in another namespace (the sandbox node's), with
# addresses in a /24 of the bridge's network chosen from this process's pid.
# pn_destroy leaves that namespace and its bridge alone.
pn_create_on_bridge() {  # namespace, bridge, gateway IPv4 (a.b.0.1), prefix length (<= 16)
  [[ $(id -u) -eq 0 ]] || pn_fail "needs root (network namespaces, iptables)" || return 1
  [[ -e /run/netns/$1 ]] || pn_fail "no network namespace $1" || return 1
  ip -n "$1" link show "$2" >/dev/null 2>&1 || pn_fail "no bridge $2 in $1" || return 1
  pn_remove_stale
  PN_COUNTER=$((PN_COUNTER + 1))
  PN_PREFIX="trit$$-$PN_COUNTER"
  local base=${3%.*.*}
  PN_SUBNET="$base.$((1 + ($$ * 8 + PN_COUNTER) % 254))."
  PN_CLUSTER=""
  pn_reset_state "$1" "$2" "$3" "$4"
  PN_SWITCH_OWNED=0
}

pn_reset_state() {  # switch namespace, bridge, gateway, prefix length
  PN_SWITCH=$1 PN_BRIDGE=$2 PN_GATEWAY=$3 PN_PREFIX_LEN=$4
  PN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trellis-pod-network-XXXXXX")
  chmod 755 "$PN_DIR"  # the proxy (uid 2790) reads its route table here
  PN_PODS=()
  PN_PIDS=()
  PN_IP=()
  PN_NEXT_HOST=2
  PN_NEXT_CLUSTER=10
}

pn_next_cluster_ip() {  # variable name
  [[ -n $PN_CLUSTER ]] || pn_fail "this network's ClusterIPs come from its API server" || return 1
  printf -v "$1" '%s%d' "$PN_CLUSTER" "$PN_NEXT_CLUSTER"
  PN_NEXT_CLUSTER=$((PN_NEXT_CLUSTER + 1))
}

pn_add_pod() {  # name, [hostname=ip]...
  local name=$1 host=$PN_NEXT_HOST ns entry veth
  shift
  ns=$(pn_ns "$name")
  # Unique on a shared bridge too, and within IFNAMSIZ.
  veth="p$$c${PN_COUNTER}h$host"
  PN_NEXT_HOST=$((PN_NEXT_HOST + 1))
  PN_IP[$name]="$PN_SUBNET$host"
  PN_PODS+=("$name")
  mkdir -p "$PN_DIR/$name" "/etc/netns/$ns"
  if ! { ip netns add "$ns" &&
    ip -n "$PN_SWITCH" link add "$veth" type veth peer name eth0 netns "$ns" &&
    ip -n "$PN_SWITCH" link set "$veth" master "$PN_BRIDGE" up &&
    ip -n "$ns" link set lo up &&
    ip -n "$ns" addr add "${PN_IP[$name]}/$PN_PREFIX_LEN" dev eth0 &&
    ip -n "$ns" link set eth0 up &&
    ip -n "$ns" route add default via "$PN_GATEWAY"; }; then
    pn_fail "cannot create pod $name ($ns)"
    return 1
  fi
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n' "${PN_IP[$name]}" "$name"
    for entry in "$@"; do printf '%s\t%s\n' "${entry#*=}" "${entry%%=*}"; done
  } >"/etc/netns/$ns/hosts"
  # No resolver here: unknown names fail at once instead of timing out.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$ns/resolv.conf"
}

pn_ip() { echo "${PN_IP[$1]}"; }

# Starts argv in the pod in the background; output goes to $PN_DIR/<pod>/<label>.log.
pn_start() {  # pod, label, [--uid N], argv...
  local pod=$1 label=$2 ns log
  shift 2
  local as=()
  if [[ ${1:-} == --uid ]]; then
    as=(setpriv "--reuid=$2" "--regid=$2" --clear-groups --)
    shift 2
  fi
  ns=$(pn_ns "$pod")
  log="$PN_DIR/$pod/$label.log"
  # ip netns exec and setpriv both exec, so $! is the program itself.
  ip netns exec "$ns" "${as[@]}" "$@" </dev/null >"$log" 2>&1 &
  PN_PIDS+=("$! $pod/$label")
}

pn_exec() {  # pod, argv...
  local ns
  ns=$(pn_ns "$1")
  shift
  ip netns exec "$ns" "$@"
}

pn_wait_port() {  # pod, port, [seconds]
  local pod=$1 port=$2 deadline=$((SECONDS + ${3:-10}))
  until pn_exec "$pod" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
    ((SECONDS < deadline)) || pn_fail "$pod: nothing accepts on 127.0.0.1:$port" || return 1
    sleep 0.1
  done
}

# Meshes a pod: trellis-init, then trellis-proxy as uid 2790 with the route
# table, and waits until /ready answers.
pn_mesh() {  # pod, routes.json, [proxy flags]...
  local pod=$1 routes=$2
  shift 2
  install -m 644 "$routes" "$PN_DIR/$pod/routes.json"
  pn_mesh_with "$pod" --routes-file "$PN_DIR/$pod/routes.json" "$@"
}

# The same with the proxy's flags only: --controller ADDRESS --namespace NS.
pn_mesh_with() {  # pod, proxy flags...
  local pod=$1 deadline
  shift
  pn_exec "$pod" "$PN_INIT" >"$PN_DIR/$pod/trellis-init.log" 2>&1 ||
    { cat "$PN_DIR/$pod/trellis-init.log" >&2; pn_fail "$pod: trellis-init failed"; return 1; }
  pn_start "$pod" trellis-proxy --uid "$PN_PROXY_UID" "$PN_PROXY" "$@"
  deadline=$((SECONDS + 20))
  until pn_exec "$pod" curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:15020/ready 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$PN_DIR/$pod/trellis-proxy.log" >&2
      pn_fail "$pod: trellis-proxy not ready after 20s"
      return 1
    fi
    sleep 0.1
  done
}

# Replaces a meshed pod's route table atomically (the proxy reloads it).
pn_replace_routes() {  # pod, routes.json
  install -m 644 "$2" "$PN_DIR/$1/routes.json.next"
  mv -f "$PN_DIR/$1/routes.json.next" "$PN_DIR/$1/routes.json"
}

pn_metrics() { pn_exec "$1" curl -fsS --max-time 5 http://127.0.0.1:15020/metrics; }

pn_dump_logs() {
  local log
  [[ -n $PN_DIR && -d $PN_DIR ]] || return 0
  for log in "$PN_DIR"/*/*.log; do
    [[ -s $log ]] || continue
    printf -- '---- %s\n' "${log#"$PN_DIR"/}" >&2
    tail -n 20 "$log" >&2
  done
}

# Stops every process (SIGTERM, 3 s, SIGKILL), deletes namespaces, veths,
# bridge and hosts files, and the log directory (kept when PN_KEEP_LOGS=1).
pn_destroy() {
  local entry pid name i
  [[ -n $PN_PREFIX ]] || return 0
  for entry in "${PN_PIDS[@]}"; do kill -TERM "${entry%% *}" 2>/dev/null || true; done
  for ((i = 0; i < 30; i++)); do
    local alive=0
    for entry in "${PN_PIDS[@]}"; do kill -0 "${entry%% *}" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for entry in "${PN_PIDS[@]}"; do
    pid=${entry%% *}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for name in "${PN_PODS[@]}"; do pn_remove_namespace "$(pn_ns "$name")"; done
  ((PN_SWITCH_OWNED)) && pn_remove_namespace "$PN_SWITCH"
  if [[ ${PN_KEEP_LOGS:-0} == 1 ]]; then
    pn_log "logs kept in $PN_DIR"
  else
    rm -rf "$PN_DIR"
  fi
  PN_PREFIX=""
  PN_PODS=()
  PN_PIDS=()
}
