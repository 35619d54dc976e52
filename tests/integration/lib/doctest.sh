# shellcheck shell=bash
# Runs the cases of a shell-driven test and prints doctest's summary line,
# `[doctest] test cases: N | P passed | F failed | S skipped`, which
# scripts/test counts. Sourced; usage:
#
#   source tests/integration/lib/doctest.sh
#   case_one() { check "the answer" test "$(answer)" = 42; }
#   dt_case "answer is 42" case_one
#   dt_finish                       # exits 0 only when no case failed
#
# Each case runs in a subshell with `set -e`: its first failing command ends
# it. Its output is shown only when it fails.

dt_total=0
dt_passed=0
dt_failed=0
dt_skipped=0

# Fails the current case, naming the check, when the command fails.
check() {  # description, command...
  local what=$1
  shift
  if ! "$@"; then
    printf 'CHECK FAILED: %s\n  command: %s\n' "$what" "$*"
    return 1
  fi
}

# Fails the current case unless <actual> equals <expected>.
check_eq() {  # description, expected, actual
  if [[ $2 != "$3" ]]; then
    printf 'CHECK FAILED: %s\n  expected: %s\n  actual:   %s\n' "$1" "$2" "$3"
    return 1
  fi
}

dt_case() {  # name, function, arguments...
  local name=$1 out status started=$SECONDS errexit=0
  shift
  dt_total=$((dt_total + 1))
  [[ $- == *e* ]] && errexit=1
  # A plain assignment, not an `if` or `&&`: there bash would ignore the
  # case's `set -e`.
  set +e
  out=$(set -e; "$@" 2>&1)
  status=$?
  ((errexit)) && set -e
  if ((status == 0)); then
    dt_passed=$((dt_passed + 1))
    printf '[case] %s: passed (%ss)\n' "$name" "$((SECONDS - started))"
  else
    dt_failed=$((dt_failed + 1))
    printf '[case] %s: FAILED (exit %s, %ss)\n' "$name" "$status" "$((SECONDS - started))"
    printf '%s\n' "$out" | sed 's/^/  | /'
  fi
}

# A skip must name the capability the machine lacks (docs/contributing.md).
dt_skip() {  # name, missing capability
  dt_total=$((dt_total + 1))
  dt_skipped=$((dt_skipped + 1))
  printf '[case] %s: skipped: this machine lacks %s\n' "$1" "$2"
}

dt_finish() {
  printf '[doctest] test cases: %d | %d passed | %d failed | %d skipped\n' \
    "$dt_total" "$dt_passed" "$dt_failed" "$dt_skipped"
  # Skips (each naming what the machine lacks) are counted in the summary
  # line above, not hidden behind meson's "skipped" exit status.
  if ((dt_failed > 0)); then exit 1; fi
  exit 0
}
