# shellcheck shell=bash
# Allocations per request, two ways:
#   1. bench-hot-path-allocations (bench/alloc/): operator new counted around
#      header lookups, routing and the forwarding decision, in-process.
#   2. valgrind --tool=dhat on trellis-proxy itself: every malloc/new of the
#      whole process (C libraries included). The proxy is run twice with a
#      fixed request count over one keep-alive connection (N1, then N2
#      requests); (blocks(N2) - blocks(N1)) / (N2 - N1) is the marginal cost of
#      one request, startup and the connection set-up cancel out. Sites are
#      grouped by their first trellis:: frame; "header lookup" sites are those
#      with a HeaderMap lookup, iequals or the router's frontend/match on the
#      stack.

ALLOC_LOOKUP_FRAMES='HeaderMap::(get|contains|count|joined)|trellis::http::iequals|router::Table::(match|frontend)'

alloc_run_bench() {  # output file
  "$TRELLIS_BENCH_ALLOC_BIN" >"$1" 2>&1
}

# One dhat run: proxy under valgrind, `count` requests, SIGTERM, dhat's JSON.
alloc_dhat_run() {  # label, count, h1|h2, output json
  local label=$1 count=$2 proto=$3 json=$4
  local valgrind_out="$BENCH_USER_DIR/dhat.$label.json"
  rm -f "$valgrind_out"
  proxies_start_trellis "dhat-$label" "$BENCH_WORK/routes/small.json" 120 \
    valgrind --tool=dhat --dhat-out-file="$valgrind_out" || return 1
  local pid=$TRELLIS_PROXY_PID
  if [[ $proto == h1 ]]; then
    in_client h2load --h1 -n "$count" -c 1 "http://$ROUTES_VIP/" >"$BENCH_WORK/runs/dhat-$label.txt" 2>&1
  else
    in_client h2load -n "$count" -c 1 -m 10 "http://$ROUTES_H2_VIP/" >"$BENCH_WORK/runs/dhat-$label.txt" 2>&1
  fi
  local ok
  ok=$(awk '/^requests:/ { print $8 }' "$BENCH_WORK/runs/dhat-$label.txt")
  bench_stop "$pid" 60
  [[ -s $valgrind_out ]] || { bench_log "dhat wrote no $valgrind_out"; return 1; }
  mv "$valgrind_out" "$json"
  [[ $ok == "$count" ]] || { bench_log "dhat run $label: $ok of $count requests succeeded"; return 1; }
}

# Per-site blocks and bytes of a dhat profile: "site<TAB>blocks<TAB>bytes<TAB>lookup(0|1)".
alloc_dhat_sites() {  # dhat json
  jq -r --arg lookup "$ALLOC_LOOKUP_FRAMES" '
    .ftbl as $f
    | [ .pps[]
        | ([ .fs[] | $f[.] | sub("^0x[0-9A-Fa-f]+: "; "") ]) as $frames
        | { tbk, tb,
            # The first of our functions on the stack; a std:: template
            # instantiated on one of our types ("trellis::http::Header*
            # std::__do_uninit_copy<...>") belongs to the library.
            site: ([ $frames[] | sub("^non-virtual thunk to "; "") | sub("\\(.*$"; "")
                     | select(startswith("trellis::") and (contains(" std::") | not)) ]
                   | .[0] // "(outside trellis code)"),
            lookup: (if ($frames | any(test($lookup))) then 1 else 0 end) } ]
    | group_by([.site, .lookup])[]
    | [ .[0].site, (map(.tbk) | add), (map(.tb) | add), .[0].lookup ] | @tsv' "$1"
}

# Marginal cost per request between two profiles. Prints
#   "total <blocks/req> <bytes/req>", "lookup <blocks/req> <bytes/req>",
#   then "site <blocks/req> <bytes/req> <name>" for sites >= 0.01 blocks/request.
alloc_dhat_marginal() {  # json N1, json N2, N1, N2
  local n1=$3 n2=$4
  LC_ALL=C join -t $'\t' -a 1 -a 2 -e 0 -o 0,1.2,1.3,2.2,2.3 \
    <(alloc_dhat_sites "$1" | awk -F'\t' '{ print $1 "|" $4 "\t" $2 "\t" $3 }' | LC_ALL=C sort -t $'\t' -k1,1) \
    <(alloc_dhat_sites "$2" | awk -F'\t' '{ print $1 "|" $4 "\t" $2 "\t" $3 }' | LC_ALL=C sort -t $'\t' -k1,1) |
    awk -F'\t' -v dn=$((n2 - n1)) '{
      split($1, key, "|")
      blocks = ($4 - $2) / dn; bytes = ($5 - $3) / dn
      total_blocks += blocks; total_bytes += bytes
      if (key[2] == 1) { lookup_blocks += blocks; lookup_bytes += bytes }
      site_blocks[key[1]] += blocks; site_bytes[key[1]] += bytes
    }
    END {
      printf "total %.2f %.0f\n", total_blocks, total_bytes
      printf "lookup %.2f %.0f\n", lookup_blocks, lookup_bytes
      fflush()
      for (s in site_blocks) if (site_blocks[s] >= 0.01) printf "site %.2f %.0f %s\n", site_blocks[s], site_bytes[s], s | "sort -k2,2gr"
      close("sort -k2,2gr")
    }'
}

# Where the 10 000-Service table's memory goes: trellis-proxy under
# valgrind --tool=massif on it, stopped 2 s after /ready. The heap peaks once
# the table is installed (nothing is freed before the process ends), so the
# peak snapshot is the idle heap. Prints "peak <bytes>" then
# "site <bytes> <first trellis function on the allocating stack>" per site.
alloc_massif_large() {  # routes file
  local out="$BENCH_USER_DIR/massif.out"
  rm -f "$out"
  proxies_start_trellis massif-10k "$1" 180 valgrind --tool=massif --massif-out-file="$out" || return 1
  sleep 2
  bench_stop "$TRELLIS_PROXY_PID" 60
  [[ -s $out ]] || { bench_log "massif wrote no $out"; return 1; }
  awk '
    /^heap_tree=peak/ { inpeak = 1; next }
    /^heap_tree=/ || /^snapshot=/ { if (inpeak) exit; next }
    !inpeak || !/^ *n[0-9]+:/ { next }
    {
      depth = match($0, /[^ ]/) - 1
      if (depth == 0) { print "peak", $2; next }
      if (depth == 1) { if (site != "") print "site", bytes, name; bytes = $2; site = "?"; name = "(outside trellis code)" }
      if (site == "?" && index($0, "below massif")) { site = "!"; name = "(sites below 1 % each)" }
      if (site == "?" && match($0, /0x[0-9A-F]+: (non-virtual thunk to )?trellis::/)) {
        fn = substr($0, RSTART + RLENGTH - 9)
        sub(/ \(in .*$/, "", fn); gsub(/\(anonymous namespace\)::/, "", fn); sub(/\(.*$/, "", fn)
        name = fn; site = "!"
      }
    }
    END { if (site != "") print "site", bytes, name }' "$out" |
    awk '$1 == "peak" { print; next }
         { b = $2; $1 = ""; $2 = ""; sub(/^  /, ""); sum[$0] += b }
         END { for (s in sum) print "site", sum[s], s }' | sort -k1,1 -k2,2nr
}
