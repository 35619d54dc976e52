# shellcheck shell=bash
# Starting and stopping the sandbox's processes. Each runs inside trellis-node
# in its own session (so it outlives the shell that started it), logs to
# $TRELLIS_SANDBOX_DIR/logs/<name>.log, and is recorded in
# $TRELLIS_SANDBOX_DIR/pids/<name>.pid as "<pid> <start time>": the start time
# (field 22 of /proc/<pid>/stat) tells a live process from a reused pid.
# Sourced after common.sh.

SANDBOX_PID_DIR=$TRELLIS_SANDBOX_DIR/pids
SANDBOX_LOG_DIR=$TRELLIS_SANDBOX_DIR/logs

sandbox_proc_start_time() {  # pid -> start time, nothing if gone or a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }  # after "pid (comm) ", whatever comm contains
  # shellcheck disable=SC2086
  set -- $stat
  [[ $1 == Z || $1 == X ]] && return 0
  echo "${20}"
}

# Succeeds when the process recorded for <name> is alive.
sandbox_process_alive() {  # name
  local pidfile=$SANDBOX_PID_DIR/$1.pid pid start
  [[ -f $pidfile ]] || return 1
  read -r pid start <"$pidfile" || return 1
  [[ -n $pid && -n $start && $(sandbox_proc_start_time "$pid") == "$start" ]]
}

sandbox_process_pid() {  # name
  local pid _
  read -r pid _ <"$SANDBOX_PID_DIR/$1.pid"
  echo "$pid"
}

# Starts <command> as <name> inside trellis-node unless it is already running.
sandbox_process_start() {  # name, command...
  local name=$1 pidfile=$SANDBOX_PID_DIR/$1.pid pid start i
  shift
  sandbox_process_alive "$name" && return 0
  mkdir -p "$SANDBOX_PID_DIR" "$SANDBOX_LOG_DIR"
  rm -f "$pidfile" "$pidfile.tmp"
  printf '\n==== %s: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$SANDBOX_LOG_DIR/$name.log"
  # The inner shell records its own pid, then execs `ip netns exec`, which
  # execs the component: the recorded pid is the component's.
  # It closes every inherited descriptor above stderr first: up's lock (fd 9,
  # lib/lock.sh) or a caller's pipe would otherwise live as long as the
  # component.
  # shellcheck disable=SC2016  # expanded by the inner shell
  setsid bash -c 'for fd in /proc/self/fd/*; do fd=${fd##*/}; ((fd > 2)) && exec {fd}>&-; done
    echo $$ >"$0.tmp"; exec ip netns exec "$1" "${@:2}"' \
    "$pidfile" "$SANDBOX_NETNS" "$@" </dev/null >>"$SANDBOX_LOG_DIR/$name.log" 2>&1 &
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidfile.tmp ]] && break
    sleep 0.05
  done
  read -r pid <"$pidfile.tmp" || sandbox_die "$name did not start (log: $SANDBOX_LOG_DIR/$name.log)"
  start=$(sandbox_proc_start_time "$pid")
  [[ -n $start ]] || { rm -f "$pidfile.tmp"; sandbox_tail_log "$name"; sandbox_die "$name exited at once"; }
  echo "$pid $start" >"$pidfile"
  rm -f "$pidfile.tmp"
}

sandbox_tail_log() {  # name
  local log=$SANDBOX_LOG_DIR/$1.log
  [[ -f $log ]] || return 0
  sandbox_log "last lines of $log:"
  tail -n "${SANDBOX_LOG_TAIL:-40}" "$log" | sed 's/^/  | /' >&2
}

# Polls <check> until it succeeds; fails with the component's log tail when
# the component dies or <seconds> pass.
sandbox_wait_for() {  # name, seconds, what, check command...
  local name=$1 seconds=$2 what=$3 deadline
  shift 3
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! sandbox_process_alive "$name"; then
      sandbox_tail_log "$name"
      sandbox_die "$name exited before $what"
    fi
    if ((SECONDS >= deadline)); then
      sandbox_tail_log "$name"
      sandbox_die "$name: no $what after ${seconds}s"
    fi
    sleep 0.3
  done
}

# Stops the named processes together: SIGTERM, up to <grace> seconds, then
# SIGKILL. Names without a live process are skipped.
sandbox_process_stop() {  # grace seconds, names...
  local grace=$1 name alive=() still deadline killed=0
  shift
  for name in "$@"; do
    if sandbox_process_alive "$name"; then
      kill -TERM "$(sandbox_process_pid "$name")" 2>/dev/null || true
      alive+=("$name")
    fi
  done
  deadline=$((SECONDS + grace))
  while ((${#alive[@]} > 0)); do
    still=()
    for name in "${alive[@]}"; do
      if sandbox_process_alive "$name"; then still+=("$name"); fi
    done
    alive=("${still[@]}")
    ((${#alive[@]} > 0)) || break
    if ((SECONDS >= deadline)); then
      if ((killed)); then
        sandbox_log "error: still running after SIGKILL: ${alive[*]}"
        return 1
      fi
      for name in "${alive[@]}"; do
        sandbox_log "$name did not stop within ${grace}s: killing pid $(sandbox_process_pid "$name")"
        kill -KILL "$(sandbox_process_pid "$name")" 2>/dev/null || true
      done
      killed=1
      deadline=$((SECONDS + 10))
    fi
    sleep 0.2
  done
  for name in "$@"; do rm -f "$SANDBOX_PID_DIR/$name.pid"; done
}

# Stops every recorded process, clients before servers: whatever else runs
# (controller manager, pods), then the apiserver, then etcd last, because an
# apiserver that loses etcd first hangs in its shutdown.
sandbox_process_stop_all() {  # grace seconds
  local grace=$1 pidfile name others=() status=0
  shopt -s nullglob
  for pidfile in "$SANDBOX_PID_DIR"/*.pid; do
    name=$(basename "$pidfile" .pid)
    [[ $name == kube-apiserver || $name == etcd ]] || others+=("$name")
  done
  shopt -u nullglob
  sandbox_process_stop "$grace" "${others[@]}" || status=1
  sandbox_process_stop "$grace" kube-apiserver || status=1
  sandbox_process_stop "$grace" etcd || status=1
  return "$status"
}
