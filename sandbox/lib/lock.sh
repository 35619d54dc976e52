# shellcheck shell=bash
# One sandbox/up or sandbox/down at a time per state directory: test
# processes call up concurrently. The lock is fd 9, held until the script
# exits; processes the sandbox starts must not inherit it (process.sh closes
# it). The lock file sits beside the state directory, which down removes.
# Sourced after common.sh.
sandbox_lock() {
  mkdir -p "$(dirname "$TRELLIS_SANDBOX_DIR")"
  exec 9>"$TRELLIS_SANDBOX_DIR.lock"
  if ! flock -n 9; then
    sandbox_log "waiting for another sandbox/up or sandbox/down to finish"
    flock 9
  fi
}
