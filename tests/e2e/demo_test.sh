#!/usr/bin/env bash
# scripts/demo, end to end, as a user runs it: the sandbox's API server,
# trellis-controller, a meshed pod and real traffic. Runs the demo once and
# checks what it printed: the 80/20 split, the route status, the 50/50 change
# reaching the sidecar within a second, no failed request, nothing left behind.
# shellcheck disable=SC2317  # the cases are called by name from the table at the end
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../integration/lib/doctest.sh"
source "$here/../integration/lib/sandbox.sh"

requests=600
output=""
demo_status=0

# The share of echo-v1 in the given round (1 or 2), in tenths of a percent.
share_of_v1() {  # round
  awk -v round="$1" '
    /^  echo-v1 +[0-9]+  \(/ { n1++; if (n1 == round) v1 = $2 }
    /^  echo-v2 +[0-9]+  \(/ { n2++; if (n2 == round) v2 = $2 }
    END { if (v1 + v2 == 0) print -1; else printf "%d\n", v1 * 1000 / (v1 + v2) }' <<<"$output"
}

within() {  # value, low, high
  (($1 >= $2 && $1 <= $3))
}

admin_port_closed() {
  ! ip netns exec "$TRELLIS_SANDBOX_NETNS" curl -s -o /dev/null --max-time 1 http://127.0.0.1:15011/live
}

demo_exits_0() {
  printf '%s\n' "$output" | tail -n 40
  check_eq "scripts/demo's exit status" 0 "$demo_status"
}

split_80_20() {
  local share
  share=$(share_of_v1 1)
  echo "echo-v1 share: $share per mille of $requests"
  # ±6 points is more than 3.5 standard deviations at 600 requests.
  check "echo-v1 gets 80 % ± 6" within "$share" 740 860
}

route_status_written() {
  check "Accepted=True" grep -q '^  Accepted=True (Accepted)' <<<"$output"
  check "ResolvedRefs=True" grep -q '^  ResolvedRefs=True (ResolvedRefs)' <<<"$output"
}

change_within_a_second() {
  local ms
  ms=$(sed -n 's/.* \([0-9]*\) ms after kubectl returned$/\1/p' <<<"$output")
  echo "propagation: ${ms:-?} ms"
  check "the sidecar had the new table" test -n "$ms"
  check "within 1 s" test "$ms" -lt 1000
}

split_50_50() {
  local share
  share=$(share_of_v1 2)
  echo "echo-v1 share: $share per mille of $requests"
  check "echo-v1 gets 50 % ± 7" within "$share" 430 570
}

no_failed_request() {
  check_eq "failed requests, both rounds" 2 "$(grep -c '^  failed requests: 0$' <<<"$output")"
}

nothing_left_behind() {
  local prefix
  prefix=$(sed -n 's/^== Pods: network namespaces \(trit[0-9]*-[0-9]*-\)\* .*/\1/p' <<<"$output")
  check "the demo named its pods' namespaces" test -n "$prefix"
  check "no pod namespace $prefix*" test -z "$(ip netns list | grep -F "$prefix" || true)"
  check "trellis-controller's admin port is closed" admin_port_closed
  check "the demo namespace is going" \
    test "$(kube get namespace trellis-demo -o 'jsonpath={.status.phase}' 2>/dev/null || echo gone)" != Active
}

cases=(
  "scripts/demo exits 0:demo_exits_0"
  "the HTTPRoute splits 80/20:split_80_20"
  "trellis-controller writes Accepted and ResolvedRefs:route_status_written"
  "a weight change reaches the sidecar within 1 s:change_within_a_second"
  "the new weights split 50/50:split_50_50"
  "no request fails:no_failed_request"
  "pods, proxy, controller and namespace are removed:nothing_left_behind"
)
if missing=$(trellis_sandbox_missing_capability); then
  for c in "${cases[@]}"; do dt_skip "${c%%:*}" "$missing"; done
else
  trellis_sandbox_up || exit 1
  output=$(TRELLIS_DEMO_REQUESTS=$requests "$TRELLIS_ROOT/scripts/demo" 2>&1) || demo_status=$?
  for c in "${cases[@]}"; do dt_case "${c%%:*}" "${c##*:}"; done
fi
dt_finish
