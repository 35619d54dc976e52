# shellcheck shell=bash
# bench/run's shared state and helpers: logging, the processes it started,
# sanity checks (counted in doctest's summary format), numbers.
# Sourced by bench/run; every function is prefixed by its file's topic.

BENCH_PIDS=()       # every process bench/run started, stopped by pid on exit
BENCH_CHECKS=0
BENCH_CHECKS_FAILED=0
BENCH_FAILURES=()   # "name: why" of each failed check

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# A sanity check of the harness or of a proxy's behaviour (never a
# performance target): counted, and a failure makes bench/run exit 1.
bench_check() {  # name, command...
  local name=$1
  shift
  BENCH_CHECKS=$((BENCH_CHECKS + 1))
  if "$@"; then
    bench_log "check passed: $name"
  else
    BENCH_CHECKS_FAILED=$((BENCH_CHECKS_FAILED + 1))
    BENCH_FAILURES+=("$name")
    bench_log "CHECK FAILED: $name"
  fi
}

# Starts a command (not a shell function) in the background with its output
# in $BENCH_WORK/logs and remembers its pid: every wrapper in front of the
# program (ip netns exec, setpriv, taskset, valgrind) execs, so the pid is the
# program's. Sets BENCH_LAST_PID.
bench_spawn() {  # label, command...
  local label=$1
  shift
  "$@" >"$BENCH_WORK/logs/$label.out" 2>"$BENCH_WORK/logs/$label.err" &
  BENCH_LAST_PID=$!
  BENCH_PIDS+=("$BENCH_LAST_PID")
}

# SIGTERM, up to `grace` seconds to exit, then SIGKILL; then reaps it and
# forgets it (a reaped pid may be reused by someone else's process).
bench_stop() {  # pid, grace seconds (default 5)
  local pid=$1 grace=${2:-5}
  bench_signal_and_reap "$pid" "$grace"
  local kept=() p
  for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  BENCH_PIDS=("${kept[@]}")
}

bench_signal_and_reap() {  # pid, grace seconds
  local pid=$1 grace=$2 i
  if bench_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      bench_alive "$pid" || break
      sleep 0.1
    done
    if bench_alive "$pid"; then
      bench_log "pid $pid did not exit within ${grace}s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# Whether our child is still running: an exited child stays a zombie (state
# Z), and keeps its pid, until it is waited for.
bench_alive() {  # pid
  local state
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

bench_stop_all() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do bench_signal_and_reap "$pid" 3; done
  BENCH_PIDS=()
}

# Polls a command until it succeeds. Returns 1 after `timeout` seconds.
bench_wait_for() {  # timeout seconds, command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# The median of the numbers on stdin ("-" lines, i.e. missing values, are
# skipped; prints "-" when there is none).
bench_median() {
  grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "-"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The 1-minute load average.
bench_load1() { cut -d' ' -f1 /proc/loadavg; }

# CPU time (user + system, every thread) a process has used, in microseconds.
bench_cpu_us() {  # pid
  local ticks
  ticks=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  echo $((ticks * 1000000 / BENCH_CLK_TCK))
}

# Time a process's threads spent runnable but waiting for a CPU, in
# microseconds (schedstat's run-queue delay): the proxy competing with other
# work on its CPU.
bench_runq_wait_us() {  # pid
  awk '{ n += $2 } END { printf "%.0f", n / 1000 }' /proc/"$1"/task/*/schedstat 2>/dev/null || echo 0
}

# "<busy> <total>" jiffies of one CPU from /proc/stat (busy: not idle nor iowait).
bench_cpu_jiffies() {  # cpu number
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# Busy percentage of a CPU between two bench_cpu_jiffies samples.
bench_cpu_busy_pct() {  # "busy total" before, "busy total" after
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
    if (y[2] > x[2]) printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]); else print "-" }'
}

# "<VmRSS> <RssAnon> <RssFile> <VmHWM>" of a process, in KiB ("0 0 0 0" once
# it has exited).
bench_rss_kib() {  # pid
  awk '/^VmRSS:/ { rss = $2 } /^RssAnon:/ { anon = $2 } /^RssFile:/ { file = $2 }
       /^VmHWM:/ { hwm = $2 } END { print rss + 0, anon + 0, file + 0, hwm + 0 }' "/proc/$1/status" 2>/dev/null ||
    echo "0 0 0 0"
}

bench_kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }
