# shellcheck shell=bash
# The report: markdown tables from $BENCH_RESULTS and the memory and
# allocation figures bench/run collected. The same tables are printed as the
# run's summary and written to the results file.

# "| label | req/s | p50 | p99 | ... |" for one config's medians.
report_load_row() {  # label, config
  local s
  read -r -a s <<<"$(load_summary "$2")"
  # s: rps p50 p99 errors proxy_us proxy_pct backend_us load1 p90 p999 max runs load_busy proxy_busy proxy_wait
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$1" "$(report_int "${s[0]}")" "${s[1]}" \
    "${s[2]}" "${s[4]}" "${s[5]}" "${s[14]}" "${s[3]}" "${s[12]}" "${s[13]}" "${s[7]}" "$(report_runs "${s[11]}")"
}

report_columns() {
  cat <<EOF
Columns: proxy CPU = the proxy process's CPU time
during the run (100 % = its whole core), also per request served; waited = the proxy threads' run-queue
delay (runnable, not yet running: other work on its CPU, and on a VM the wake-up of an idle vCPU), as % of
the run; CPU busy = how busy CPU $BENCH_LOAD_CPU (load generator, backend) and CPU $BENCH_PROXY_CPU (proxy) were, counting every
process on the machine; load = 1-minute load average at the start.
EOF
}

report_load_header() {
  printf '| path | req/s | p50 ms | p99 ms | proxy µs CPU/req | proxy CPU %% | proxy waited %% | errors | CPU busy %% (load / proxy) | load | req/s of each run |\n'
  printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
}

report_int() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v }'; }
report_runs() { tr ',' '\n' <<<"$1" | awk '{ printf "%s%s", (NR > 1 ? " / " : ""), ($1 == "-" ? "-" : sprintf("%.0f", $1)) }'; }

report_fixed_row() {  # label, config
  local s
  read -r -a s <<<"$(load_summary "$2")"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(report_int "${s[0]}")" "${s[1]}" "${s[8]}" \
    "${s[2]}" "${s[9]}" "${s[10]}" "${s[4]}" "${s[3]}"
}

report_mem_row() {  # label, "rss anon file hwm" KiB
  local v
  read -r -a v <<<"$2"
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(bench_kib_to_mib "${v[0]}")" "$(bench_kib_to_mib "${v[1]}")" \
    "$(bench_kib_to_mib "${v[2]}")" "$(bench_kib_to_mib "${v[3]}")"
}

# The ratio a/b as "0.93×", or "-".
report_ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f×", a / b }'
}

# Rounds (of 2 × runs) in which trellis-proxy served at least HAProxy's req/s.
report_limited_rounds_won() {
  awk -F'\t' '$1 == "limited-haproxy" { h[$2] = $4 } $1 == "limited-trellis" { t[$2] = $4 }
    END { for (r in h) if (r in t) { n++; if (t[r] != "-" && h[r] != "-" && t[r] >= h[r]) w++ }
          printf "%d of %d", w, n }' "$BENCH_RESULTS"
}

report_limited_section() {
  if ((!CPU_LIMITED)); then
    printf '### HTTP/1.1, each proxy limited to %sm CPU\n\nNot measured: no cgroup cpu controller on this machine, or the proxies could not be moved into one (see the run'"'"'s log).\n\n' \
      "$BENCH_CPU_LIMIT"
    return
  fi
  local haproxy trellis
  haproxy=$(load_summary limited-haproxy | cut -d' ' -f1)
  trellis=$(load_summary limited-trellis | cut -d' ' -f1)
  cat <<EOT
### HTTP/1.1, each proxy limited to ${BENCH_CPU_LIMIT}m CPU (wrk as above, $((2 * BENCH_RUNS)) alternating rounds, medians)

Each proxy in its own cgroup with a CFS quota of $((BENCH_CPU_LIMIT / 10)) ms per 100 ms, the way the kubelet enforces a
sidecar's \`resources.limits.cpu\`. The proxy is the bottleneck here, not CPU $BENCH_LOAD_CPU: these req/s are what each
proxy serves per CPU it is allowed. "proxy waited" includes the time the proxy was throttled, and the p99 shows
what a CPU limit does to the tail: a request that arrives once the period's quota is spent waits for the next period.

$(report_load_header)
$(report_load_row "HAProxy, nbthread 1, ${BENCH_CPU_LIMIT}m" limited-haproxy)
$(report_load_row "trellis-proxy, 1 worker, ${BENCH_CPU_LIMIT}m" limited-trellis)

trellis-proxy / HAProxy: $(report_ratio "$trellis" "$haproxy"); trellis-proxy served at least HAProxy's req/s in
$(report_limited_rounds_won) rounds. Throttled periods (quota used up before the period ended) / periods:
HAProxy ${THROTTLED_HAPROXY/ / \/ }, trellis-proxy ${THROTTLED_TRELLIS/ / \/ }.
EOT
}

report_tables() {
  local direct haproxy trellis
  direct=$(load_summary direct-h1 | cut -d' ' -f1)
  haproxy=$(load_summary haproxy-h1 | cut -d' ' -f1)
  trellis=$(load_summary trellis-h1 | cut -d' ' -f1)

  cat <<EOF
### HTTP/1.1 throughput (wrk -t1 -c$LOAD_CONNECTIONS --latency, ${BENCH_DURATION}s × $BENCH_RUNS runs, medians)

Backend: $BACKEND_NAME (chosen by the backend check below). $(report_columns)

$(report_load_header)
EOF
  report_load_row "direct (client → backend)" direct-h1
  report_load_row "HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'), nbthread 1 (ClusterIP, REDIRECT: the proxy's path)" haproxy-h1
  report_load_row "HAProxy, nbthread 1, dialled on 127.0.0.1 (no NAT)" haproxy-loopback-h1
  report_load_row "trellis-proxy, 1 worker" trellis-h1
  report_load_row "trellis-proxy, 1 worker, 80/20 split route with timeouts and retry policy" trellis-split
  [[ -n ${MEM_LARGE_IDLE:-} ]] && report_load_row "trellis-proxy, 1 worker, 10 000-Service table" trellis10k-h1
  cat <<EOF

trellis-proxy / HAProxy: $(report_ratio "$trellis" "$haproxy"); trellis-proxy / direct: $(report_ratio "$trellis" "$direct");
HAProxy / direct: $(report_ratio "$haproxy" "$direct"). Split route: ${SPLIT_V1:-?} requests to backend-v1,
${SPLIT_V2:-?} to backend-v2 (${SPLIT_SHARE:-?} % to v2; weights 80/20).

$(report_limited_section)

### Event batching (wrk -c$LOAD_CONNECTIONS on the same path; epoll_wait returns over 1 s, perf)

| proxy | epoll_wait calls/s | ready sockets per call |
|---|---|---|
| HAProxy, nbthread 1 | ${EPOLL_HAPROXY% *} | ${EPOLL_HAPROXY#* } |
| trellis-proxy, 1 worker | ${EPOLL_TRELLIS% *} | ${EPOLL_TRELLIS#* } |

### HTTP/2 prior knowledge (h2load -c$LOAD_H2_CLIENTS -m$LOAD_H2_STREAMS, ${BENCH_DURATION}s × $BENCH_RUNS runs, medians)

Backend: trellis-echo (h2c). Percentiles from h2load's per-request log.

$(report_load_header)
EOF
  report_load_row "direct (client → trellis-echo, h2c)" direct-h2
  report_load_row "trellis-proxy, 1 worker (h2c both sides)" trellis-h2

  if [[ -n ${FORTIO_BIN:-} ]]; then
    cat <<EOF

### Fixed rate (fortio $FORTIO_VERSION, $BENCH_FIXED_RATE req/s, -c $LOAD_FIXED_CONNECTIONS -uniform, ${BENCH_FIXED_DURATION}s × $BENCH_RUNS runs, medians)

| path | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | proxy µs CPU/req | errors |
|---|---|---|---|---|---|---|---|---|
EOF
    report_fixed_row "direct" fixed-direct
    report_fixed_row "HAProxy, nbthread 1" fixed-haproxy
    report_fixed_row "trellis-proxy, 1 worker" fixed-trellis
  else
    printf '\n### Fixed rate\n\nNot measured: fortio is not available (bench/run without --quick builds it).\n'
  fi

  cat <<EOF

### Backend check (direct, wrk as above)

| backend | req/s | p50 ms | p99 ms | backend µs CPU/req | errors |
|---|---|---|---|---|---|
EOF
  local b s
  for b in nginx trellis-echo; do
    read -r -a s <<<"$(load_summary "backend-$b")"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$b" "$(report_int "${s[0]}")" "${s[1]}" "${s[2]}" "${s[6]}" "${s[3]}"
  done

  cat <<EOF

### Memory (VmRSS etc. from /proc/<pid>/status, MiB)

| process | VmRSS | RssAnon | RssFile | VmHWM (peak) |
|---|---|---|---|---|
EOF
  report_mem_row "trellis-proxy, small table, idle after start" "$MEM_TRELLIS_IDLE"
  report_mem_row "trellis-proxy, small table, after the load runs" "$MEM_TRELLIS_AFTER"
  if [[ -n ${MEM_LARGE_IDLE:-} ]]; then
    report_mem_row "trellis-proxy, 10 000-Service table, idle after start" "$MEM_LARGE_IDLE"
    report_mem_row "trellis-proxy, 10 000-Service table, after load" "$MEM_LARGE_AFTER"
  fi
  report_mem_row "HAProxy, idle after start" "$MEM_HAPROXY_IDLE"
  report_mem_row "HAProxy, after the load runs" "$MEM_HAPROXY_AFTER"
  if [[ -n ${MEM_LARGE_IDLE:-} ]]; then
    local small large
    small=$(cut -d' ' -f1 <<<"$MEM_TRELLIS_IDLE")
    large=$(cut -d' ' -f1 <<<"$MEM_LARGE_IDLE")
    cat <<EOF

10 000-Service table: $(awk -v b="$LARGE_JSON_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB of JSON (10 000 Services, 50 000 endpoint
addresses, 1 000 HTTPRoutes), ready ${LARGE_READY_S}s after start (small table: ${SMALL_READY_S}s). Idle VmRSS
grows by $(awk -v a="$small" -v b="$large" -v n="$ROUTES_LARGE_SERVICES" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') bytes per Service (VmRSS difference / 10 000).
EOF
  fi
  local massif=$BENCH_WORK/massif-10k.txt
  if [[ -s $massif ]] && grep -q '^peak ' "$massif"; then
    cat <<EOF

Live heap with the 10 000-Service table (valgrind --tool=massif; the heap peaks once the table is installed,
so the peak is the idle heap): $(awk '$1 == "peak" { printf "%.1f MiB, %.0f bytes per Service", $2 / 1048576, $2 / 10000 }' "$massif").
By the first trellis function on the allocating stack:

| site | MiB | bytes per Service |
|---|---|---|
EOF
    awk '$1 == "site" { name = $3; for (i = 4; i <= NF; i++) name = name " " $i
           printf "| `%s` | %.1f | %.0f |\n", name, $2 / 1048576, $2 / 10000 }' "$massif"
  fi

  cat <<EOF

### Allocations per request

In-process (bench/alloc/hot_path_allocations.cc: operator new counted, plus nghttp2's heap in http2 stages; $(sed -n 's/^\[alloc\] .* requests=\([0-9]*\) .*/\1/p' "$ALLOC_BENCH_FILE" | head -1) requests per stage, after 16 warm-up requests):

| stage | allocations/request | ns/request | what |
|---|---|---|---|
EOF
  sed -n 's/^\[alloc\] \([^ ]*\) allocations\/request=\([^ ]*\) ns\/request=\([^ ]*\) requests=[0-9]* what="\(.*\)"$/| \1 | \2 | \3 | \4 |/p' \
    "$ALLOC_BENCH_FILE"
  cat <<EOF

Whole proxy (valgrind --tool=dhat, every malloc/new; marginal cost between $DHAT_N1 and $DHAT_N2 requests on one
connection):

| protocol | allocations/request | bytes/request | of which in header lookups and routing |
|---|---|---|---|
EOF
  local proto file
  for proto in h1 h2; do
    file=$BENCH_WORK/dhat-$proto.txt
    [[ -s $file ]] || { printf '| %s | (failed) | | |\n' "$proto"; continue; }
    printf '| %s | %s | %s | %s |\n' "$([[ $proto == h1 ]] && echo 'HTTP/1.1 (h2load --h1 -c1)' || echo 'HTTP/2 (h2load -c1 -m10)')" \
      "$(awk '$1 == "total" { print $2 }' "$file")" "$(awk '$1 == "total" { print $3 }' "$file")" \
      "$(awk '$1 == "lookup" { print $2 }' "$file")"
  done
  for proto in h1 h2; do
    file=$BENCH_WORK/dhat-$proto.txt
    [[ -s $file ]] || continue
    printf '\nWhere the %s allocations are (first trellis function on the stack; allocations/request, bytes/request):\n\n' \
      "$([[ $proto == h1 ]] && echo HTTP/1.1 || echo HTTP/2)"
    printf '| site | allocations/request | bytes/request |\n|---|---|---|\n'
    awk '$1 == "site" { name = $4; for (i = 5; i <= NF; i++) name = name " " $i; printf "| `%s` | %s | %s |\n", name, $2, $3 }' "$file"
  done
}

report_targets() {
  cat <<EOF
| target | measured | verdict |
|---|---|---|
EOF
  local haproxy trellis idle lookups route
  haproxy=$(load_summary haproxy-h1 | cut -d' ' -f1)
  trellis=$(load_summary trellis-h1 | cut -d' ' -f1)
  printf '| 1 worker ≥ HAProxy nbthread 1 (req/s, HTTP/1.1, medians) | %s vs %s (%s) | %s |\n' \
    "$(report_int "$trellis")" "$(report_int "$haproxy")" "$(report_ratio "$trellis" "$haproxy")" \
    "$(awk -v a="$trellis" -v b="$haproxy" 'BEGIN { print (a != "-" && b != "-" && a >= b) ? "met" : "not met" }')"
  # Interference from the rest of the host only ever slows a run down, so
  # the best run of each is the least disturbed view (for reference).
  local haproxy_best trellis_best
  haproxy_best=$(load_best haproxy-h1)
  trellis_best=$(load_best trellis-h1)
  printf '| the same, best run of each (for reference) | %s vs %s (%s) | – |\n' \
    "$(report_int "$trellis_best")" "$(report_int "$haproxy_best")" "$(report_ratio "$trellis_best" "$haproxy_best")"
  if ((CPU_LIMITED)); then
    local haproxy_limited trellis_limited
    haproxy_limited=$(load_summary limited-haproxy | cut -d' ' -f1)
    trellis_limited=$(load_summary limited-trellis | cut -d' ' -f1)
    printf '| the same with each proxy limited to %sm CPU (the proxy is the bottleneck) | %s vs %s (%s; %s rounds) | %s |\n' \
      "$BENCH_CPU_LIMIT" "$(report_int "$trellis_limited")" "$(report_int "$haproxy_limited")" \
      "$(report_ratio "$trellis_limited" "$haproxy_limited")" "$(report_limited_rounds_won)" \
      "$(awk -v a="$trellis_limited" -v b="$haproxy_limited" 'BEGIN { print (a != "-" && b != "-" && a >= b) ? "met" : "not met" }')"
  fi
  idle=$(cut -d' ' -f1 <<<"$MEM_TRELLIS_IDLE")
  printf '| idle RSS ≤ 8 MiB (small table) | %s MiB | %s |\n' "$(bench_kib_to_mib "$idle")" \
    "$( ((idle <= 8192)) && echo met || echo 'not met')"
  lookups=$(sed -n 's/^\[alloc\] header-lookups allocations\/request=\([^ ]*\) .*/\1/p' "$ALLOC_BENCH_FILE")
  route=$(sed -n 's/^\[alloc\] route allocations\/request=\([^ ]*\) .*/\1/p' "$ALLOC_BENCH_FILE")
  local dhat_lookup
  dhat_lookup=$(awk '$1 == "lookup" { print $2 }' "$BENCH_WORK/dhat-h1.txt" 2>/dev/null || true)
  printf '| no allocation per request in header lookups | bench: %s (lookups), %s (routing); dhat: %s | %s |\n' \
    "${lookups:-?}" "${route:-?}" "${dhat_lookup:-?}" \
    "$(awk -v a="${lookups:-x}" -v b="${route:-x}" -v c="${dhat_lookup:-x}" 'BEGIN { print (a == "0.000" && b == "0.000" && c == "0.00") ? "met" : "not met" }')"
}

# What the processes under test logged on stderr during the run: one row per
# (process, level, message) with a count and the first occurrence verbatim.
# JSON logs (trellis) are grouped by "msg"; other lines (HAProxy, nginx) by
# their text.
report_logs() {
  local label file
  printf '| process | level | message | count | first occurrence |\n|---|---|---|---|---|\n'
  for label in trellis-proxy trellis-proxy-10k haproxy nginx trellis-echo; do
    file=$BENCH_WORK/logs/$label.err
    [[ -s $file ]] || continue
    jq -R -r --arg p "$label" '
      (fromjson? // {level: "text", msg: .}) as $e
      | select(($e | type) == "object")
      | [$p, ($e.level // "-"), ($e.msg // "-" | tostring | .[0:80]), .] | @tsv' "$file" |
      awk -F'\t' '{ key = $1 "\t" $2 "\t" $3; if (!(key in n)) { order[++k] = key; first[key] = $4 }; n[key]++ }
        END { for (i = 1; i <= k; i++) { split(order[i], f, "\t")
          line = substr(first[order[i]], 1, 400); msg = f[3]
          gsub(/\|/, "\\|", line); gsub(/\|/, "\\|", msg)
          printf "| %s | %s | %s | %d | `%s` |\n", f[1], f[2], msg, n[order[i]], line } }'
  done
}
