# shellcheck shell=bash
# Load generators, pinned to the load CPU, and their parsed results. Every
# measurement appends one line to $BENCH_RESULTS (tab-separated):
#   config round tool rps p50_ms p99_ms errors proxy_cpu_us_per_req proxy_cpu_pct
#   backend_cpu_us_per_req load1 requests p90_ms p999_ms max_ms
#   load_cpu_busy_pct proxy_cpu_busy_pct proxy_runq_wait_pct
# ("-" where a tool does not give a value). The last three show contention on
# the shared machine: how busy each CPU was (everyone's work, not only ours),
# and the proxy's run-queue delay (runnable, not yet running).
#
#   wrk -t1 -c$LOAD_CONNECTIONS --latency      HTTP/1.1 keep-alive, closed loop
#   h2load -c4 -m10                            HTTP/2 prior knowledge, closed loop;
#                                              percentiles from its --log-file
#   fortio load -qps R -c4 -uniform            HTTP/1.1 at a fixed rate (open loop)

LOAD_CONNECTIONS=32
LOAD_H2_CLIENTS=4
LOAD_H2_STREAMS=10
LOAD_FIXED_CONNECTIONS=4

# wrk's "1.21ms" / "339.00us" / "1.02s" → milliseconds.
load_to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v == "") print "-"
    else if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else { sub(/s$/, "", v); printf "%.3f", v * 1000 } }'
}

# The runner for a load generator: as root (intercepted by the client's
# iptables) or as the proxy uid (not intercepted: the direct path).
load_runner() {  # intercepted | direct
  if [[ $1 == direct ]]; then echo in_client_bypass; else echo in_client; fi
}

# Runs one measurement of `config` and records it. The proxy and backend pids
# (or "-") are sampled for CPU time around the run. A load generator that
# fails is recorded as a failed run (errors "run-failed"), not fatal.
load_measure() {  # config, round, tool (wrk|h2load|fortio), path (intercepted|direct), url, proxy pid, backend pid
  local config=$1 round=$2 tool=$3 path=$4 url=$5 proxy_pid=$6 backend_pid=$7
  local runner out load1 proxy_cpu0 backend_cpu0 proxy_cpu1 backend_cpu1
  runner=$(load_runner "$path")
  out=$BENCH_WORK/runs/$config.$round.$tool
  load1=$(bench_load1)
  local load_jiffies0 proxy_jiffies0 wait0=0 wait1=0
  load_jiffies0=$(bench_cpu_jiffies "$BENCH_LOAD_CPU")
  proxy_jiffies0=$(bench_cpu_jiffies "$BENCH_PROXY_CPU")
  if [[ $proxy_pid != - ]]; then
    proxy_cpu0=$(bench_cpu_us "$proxy_pid")
    wait0=$(bench_runq_wait_us "$proxy_pid")
  fi
  [[ $backend_pid != - ]] && backend_cpu0=$(bench_cpu_us "$backend_pid")
  case $tool in
    wrk)
      $runner taskset -c "$BENCH_LOAD_CPU" wrk -t1 -c"$LOAD_CONNECTIONS" -d"${BENCH_DURATION}s" \
        --latency "$url" >"$out.txt" 2>&1 || true ;;
    h2load)
      rm -f "$BENCH_USER_DIR/h2load.log"
      $runner taskset -c "$BENCH_LOAD_CPU" h2load -c"$LOAD_H2_CLIENTS" -m"$LOAD_H2_STREAMS" \
        -D "$BENCH_DURATION" --log-file="$BENCH_USER_DIR/h2load.log" "$url" >"$out.txt" 2>&1 || true
      mv "$BENCH_USER_DIR/h2load.log" "$out.log" 2>/dev/null || true ;;
    fortio)
      $runner taskset -c "$BENCH_LOAD_CPU" "$FORTIO_BIN" load -qps "$BENCH_FIXED_RATE" \
        -c "$LOAD_FIXED_CONNECTIONS" -uniform -t "${BENCH_FIXED_DURATION}s" -r 0.00001 \
        -p 50,90,99,99.9 -json "$BENCH_USER_DIR/fortio.json" -quiet "$url" >"$out.txt" 2>&1 || true
      mv "$BENCH_USER_DIR/fortio.json" "$out.json" 2>/dev/null || true ;;
  esac
  local load_busy proxy_busy
  load_busy=$(bench_cpu_busy_pct "$load_jiffies0" "$(bench_cpu_jiffies "$BENCH_LOAD_CPU")")
  proxy_busy=$(bench_cpu_busy_pct "$proxy_jiffies0" "$(bench_cpu_jiffies "$BENCH_PROXY_CPU")")
  if [[ $proxy_pid != - ]]; then
    proxy_cpu1=$(bench_cpu_us "$proxy_pid")
    wait1=$(bench_runq_wait_us "$proxy_pid")
  fi
  [[ $backend_pid != - ]] && backend_cpu1=$(bench_cpu_us "$backend_pid")

  local rps p50 p99 errors requests p90=- p999=- max=- seconds
  case $tool in
    wrk)
      rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out.txt")
      p50=$(load_to_ms "$(awk '$1 == "50%" { print $2 }' "$out.txt")")
      p99=$(load_to_ms "$(awk '$1 == "99%" { print $2 }' "$out.txt")")
      p90=$(load_to_ms "$(awk '$1 == "90%" { print $2 }' "$out.txt")")
      max=$(load_to_ms "$(awk '$1 == "Latency" && NF >= 4 { print $4; exit }' "$out.txt")")
      requests=$(awk '/requests in/ { print $1 }' "$out.txt")
      errors=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                    /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out.txt")
      seconds=$BENCH_DURATION ;;
    h2load)
      rps=$(awk '/^finished in/ { gsub(/,/, ""); print $4 }' "$out.txt")
      # "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
      requests=$(awk '/^requests:/ { print $6 }' "$out.txt")
      errors=$(awk '/^requests:/ { print $6 - $8 }' "$out.txt")
      if [[ -s $out.log ]]; then
        read -r p50 p99 p90 p999 max < <(cut -f3 "$out.log" | sort -n | awk '{ v[NR] = $1 } END {
          if (NR == 0) { print "- - - - -"; exit }
          printf "%.3f %.3f %.3f %.3f %.3f\n", v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000,
                 v[int(NR * 0.90) + 1] / 1000, v[int(NR * 0.999) + 1] / 1000, v[NR] / 1000 }')
      else
        p50=- p99=-
      fi
      seconds=$BENCH_DURATION ;;
    fortio)
      if [[ -s $out.json ]]; then
        read -r rps requests errors p50 p90 p99 p999 max < <(jq -r '
          def p(x): ((.DurationHistogram.Percentiles // []) | map(select(.Percentile == x)) | .[0].Value // 0) * 1000;
          [ .ActualQPS, .DurationHistogram.Count,
            (.DurationHistogram.Count - (.RetCodes."200" // 0)),
            p(50), p(90), p(99), p(99.9), .DurationHistogram.Max * 1000 ]
          | map(if type == "number" then (. * 1000 | round / 1000) else . end) | @tsv' "$out.json")
      else
        rps=- requests=0 errors=- p50=- p99=-
      fi
      seconds=$BENCH_FIXED_DURATION ;;
  esac
  [[ -n $requests && $requests != - ]] || requests=0
  # No rate or no request done means the run itself failed (nothing
  # listening, a crash).
  if [[ -z $rps || $rps == - || $requests == 0 ]]; then rps=- errors=run-failed; fi

  local proxy_per_req=- proxy_pct=- backend_per_req=- proxy_wait=-
  if [[ $proxy_pid != - && $requests -gt 0 ]]; then
    proxy_per_req=$(awk -v c=$((proxy_cpu1 - proxy_cpu0)) -v n="$requests" 'BEGIN { printf "%.1f", c / n }')
    proxy_pct=$(awk -v c=$((proxy_cpu1 - proxy_cpu0)) -v s="$seconds" 'BEGIN { printf "%.0f", c / (s * 10000) }')
    proxy_wait=$(awk -v w=$((wait1 - wait0)) -v s="$seconds" 'BEGIN { printf "%.0f", w / (s * 10000) }')
  fi
  if [[ $backend_pid != - && $requests -gt 0 ]]; then
    backend_per_req=$(awk -v c=$((backend_cpu1 - backend_cpu0)) -v n="$requests" 'BEGIN { printf "%.1f", c / n }')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$round" \
    "$tool" "$rps" "$p50" "$p99" "$errors" "$proxy_per_req" "$proxy_pct" "$backend_per_req" "$load1" \
    "$requests" "$p90" "$p999" "$max" "$load_busy" "$proxy_busy" "$proxy_wait" >>"$BENCH_RESULTS"
  bench_log "$config run $round: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, errors $errors, proxy CPU ${proxy_pct}% (${proxy_per_req} us/req, waited ${proxy_wait}%), CPUs busy ${load_busy}%/${proxy_busy}%, load $load1"
  if [[ $errors != 0 ]]; then
    bench_log "$config run $round had errors; the load generator said:"
    sed 's/^/    /' "$out.txt" >&2
  fi
}

# The medians of a config's runs: "rps p50 p99 errors(sum) proxy_us proxy_pct
# backend_us load1 p90 p999 max runs load_busy proxy_busy proxy_wait".
load_summary() {  # config
  local col
  local -a v=()
  for col in 4 5 6; do
    v+=("$(awk -F'\t' -v c="$1" -v k="$col" '$1 == c { print $k }' "$BENCH_RESULTS" | bench_median)")
  done
  v+=("$(awk -F'\t' -v c="$1" '$1 == c { if ($7 ~ /^[0-9]+$/) n += $7; else failed = 1 }
                                  END { print failed ? "run-failed" : n + 0 }' "$BENCH_RESULTS")")
  for col in 8 9 10 11 13 14 15; do
    v+=("$(awk -F'\t' -v c="$1" -v k="$col" '$1 == c { print $k }' "$BENCH_RESULTS" | bench_median)")
  done
  v+=("$(awk -F'\t' -v c="$1" '$1 == c { printf "%s%s", (n++ ? "," : ""), $4 } END { print "" }' "$BENCH_RESULTS")")
  for col in 16 17 18; do
    v+=("$(awk -F'\t' -v c="$1" -v k="$col" '$1 == c { print $k }' "$BENCH_RESULTS" | bench_median)")
  done
  echo "${v[*]}"
}

# A config's highest req/s over its runs, or "-".
load_best() {  # config
  awk -F'\t' -v c="$1" '$1 == c && $4 ~ /^[0-9.]+$/ { if (!n++ || $4 > best) best = $4 }
                         END { print n ? best : "-" }' "$BENCH_RESULTS"
}

# How many ready sockets a proxy handles per epoll_wait under wrk load: the
# returns of epoll_wait over one second, from the syscall tracepoint (perf,
# root). A proxy that is busy all the time collects more events per wait,
# and its client and backend then see bigger bursts (bench/README.md, "The
# last 2 %"). Prints "calls_per_s events_per_call", or "- -" without perf.
load_epoll_batching() {  # url, proxy pid
  local url=$1 pid=$2 wrk_pid
  local data=$BENCH_WORK/epoll.$pid.data
  command -v perf >/dev/null || { echo "- -"; return 0; }
  in_client taskset -c "$BENCH_LOAD_CPU" wrk -t1 -c"$LOAD_CONNECTIONS" -d3s "$url" >/dev/null 2>&1 &
  wrk_pid=$!
  sleep 1
  perf record -q -o "$data" -e syscalls:sys_exit_epoll_wait -p "$pid" -- sleep 1 >/dev/null 2>&1 || true
  wait "$wrk_pid" || true
  perf script -i "$data" 2>/dev/null | awk '
    function hex(s,   i, n) { n = 0; s = tolower(substr(s, 3))
      for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return n }
    /sys_exit_epoll_wait/ { r = $NF; if (r !~ /^0x/) next; calls++; events += hex(r) }
    END { if (calls) printf "%d %.1f\n", calls, events / calls; else print "- -" }'
}
