# shellcheck shell=bash
# CPU limits for the proxies under test, enforced the way the kubelet enforces
# a container's resources.limits.cpu: a CFS bandwidth quota per 100 ms period,
# in a cgroup of its own (v2 cpu.max, or v1 cpu.cfs_quota_us where the cpu
# controller is still on the v1 hierarchy). A limited proxy is the bottleneck
# while the load generator's CPU has room to spare, so its req/s measure the
# proxy rather than the machine.

CGROUP_PERIOD_US=100000
CGROUP_PREFIX=trellis-bench-
CGROUP_CPU_ROOT=
CGROUP_CPU_VERSION=
CGROUP_DIRS=()  # the cgroups this run created, removed on exit

# Finds the cpu controller. Returns 1 (and says why) when there is none.
cgroup_cpu_detect() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    CGROUP_CPU_ROOT=/sys/fs/cgroup CGROUP_CPU_VERSION=2
    grep -qw cpu "$CGROUP_CPU_ROOT/cgroup.subtree_control" ||
      echo +cpu >"$CGROUP_CPU_ROOT/cgroup.subtree_control" || return 1
  elif [[ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then
    CGROUP_CPU_ROOT=/sys/fs/cgroup/cpu CGROUP_CPU_VERSION=1
  else
    bench_log "no cgroup cpu controller with CFS bandwidth control (neither v2 cpu.max nor v1 cpu.cfs_quota_us)"
    return 1
  fi
}

# Cgroups left behind by runs that were killed.
cgroup_remove_stale() {
  [[ -n $CGROUP_CPU_ROOT ]] || return 0
  local dir pid
  for dir in "$CGROUP_CPU_ROOT/$CGROUP_PREFIX"*; do
    [[ -d $dir ]] || continue
    pid=${dir##*/"$CGROUP_PREFIX"}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    rmdir "$dir" 2>/dev/null || bench_log "cannot remove stale cgroup $dir (processes still in it?)"
  done
}

# The cgroup this run makes for `label`.
cgroup_dir() { echo "$CGROUP_CPU_ROOT/$CGROUP_PREFIX$$-$1"; }

# Moves a process (every thread) into a new cgroup limited to `millicores`.
cgroup_cpu_limit() {  # label, pid, millicores
  local dir
  dir=$(cgroup_dir "$1")
  local quota=$(($3 * CGROUP_PERIOD_US / 1000))
  mkdir "$dir" || return 1
  CGROUP_DIRS+=("$dir")
  if ((CGROUP_CPU_VERSION == 2)); then
    echo "$quota $CGROUP_PERIOD_US" >"$dir/cpu.max" || return 1
  else
    echo "$CGROUP_PERIOD_US" >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
  fi
  echo "$2" >"$dir/cgroup.procs"
}

# Lifts the limit of a cgroup made by cgroup_cpu_limit; its process stays in it.
cgroup_cpu_unlimit() {  # label
  local dir
  dir=$(cgroup_dir "$1")
  if ((CGROUP_CPU_VERSION == 2)); then
    echo "max $CGROUP_PERIOD_US" >"$dir/cpu.max"
  else
    echo -1 >"$dir/cpu.cfs_quota_us"
  fi
}

# How often the cgroup's quota ran out: "<throttled periods> <periods>".
cgroup_cpu_throttled() {  # label
  awk '$1 == "nr_throttled" { t = $2 } $1 == "nr_periods" { p = $2 } END { print t + 0, p + 0 }' \
    "$(cgroup_dir "$1")/cpu.stat" 2>/dev/null || echo "0 0"
}

# After bench_stop_all: the cgroups are empty once their processes are reaped.
cgroup_remove_all() {
  local dir
  for dir in "${CGROUP_DIRS[@]}"; do
    rmdir "$dir" 2>/dev/null || bench_log "cannot remove cgroup $dir"
  done
  CGROUP_DIRS=()
}
