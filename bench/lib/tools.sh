# shellcheck shell=bash
# What bench/run needs on the machine, and what it builds.

TOOLS_REQUIRED=(ip iptables setpriv taskset curl jq wrk h2load haproxy nginx valgrind meson ninja)

tools_check() {
  local t missing=()
  for t in "${TOOLS_REQUIRED[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]} == 0)) ||
    bench_die "missing tools: ${missing[*]} (Debian: iproute2 iptables util-linux curl jq wrk nghttp2-client haproxy nginx valgrind meson ninja-build)"
}

# Configures (once) and builds the release build dir bench/run measures,
# with the project's -Werror like every other build.
tools_build() {  # build dir
  local dir=$1
  if [[ ! -f $dir/build.ninja ]]; then
    bench_log "configuring $dir (release)"
    meson setup "$dir" "$BENCH_ROOT" -Dbuildtype=release >"$BENCH_WORK/logs/meson-setup.log" 2>&1 ||
      { tail -20 "$BENCH_WORK/logs/meson-setup.log" >&2; bench_die "meson setup $dir failed"; }
  else
    # A directory an older bench/run configured may lack -Werror.
    meson configure "$dir" -Dbuildtype=release -Dwerror=true >/dev/null ||
      bench_die "meson configure $dir failed"
  fi
  bench_log "building trellis-proxy, trellis-init, trellis-echo, bench-hot-path-allocations in $dir (-j1)"
  ninja -C "$dir" -j1 proxy/trellis-proxy proxy/init/trellis-init tests/support/echo/trellis-echo \
    bench/bench-hot-path-allocations >"$BENCH_WORK/logs/build.log" 2>&1 ||
    { grep -E 'error|FAILED' "$BENCH_WORK/logs/build.log" | head -20 >&2; bench_die "build failed (log: $BENCH_WORK/logs/build.log)"; }
}

# The build's settings, for the report: "buildtype=release optimization=3 ...".
tools_build_settings() {  # build dir
  meson introspect --buildoptions "$1" 2>/dev/null |
    jq -r '[.[] | select(.name == "buildtype" or .name == "optimization" or .name == "debug" or .name == "b_ndebug" or .name == "werror") | "\(.name)=\(.value)"] | join(" ")'
}

# fortio, for the fixed-rate runs: built once from the Go module proxy at the
# version pinned in bench/versions.env, cached under ~/.cache/trellis.
# Sets FORTIO_BIN, or leaves it empty when it is neither cached nor (with
# `build` = no) built.
tools_fortio() {  # build: yes | no
  # shellcheck source=bench/versions.env
  source "$BENCH_HOME/versions.env"
  local cache=${TRELLIS_CACHE_DIR:-$HOME/.cache/trellis}
  local dir=$cache/bin/fortio-$FORTIO_VERSION
  FORTIO_BIN=
  if [[ -x $dir/fortio ]]; then FORTIO_BIN=$dir/fortio; return 0; fi
  [[ $1 == yes ]] || return 0
  command -v go >/dev/null || { bench_log "no Go toolchain: fixed-rate runs skipped"; return 0; }
  bench_log "building fortio $FORTIO_VERSION into $dir (once)"
  mkdir -p "$dir" "$cache/logs"
  if env GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOBIN="$dir" GOFLAGS="-buildvcs=false -p=1" \
      CGO_ENABLED=0 go install "fortio.org/fortio@$FORTIO_VERSION" >"$cache/logs/build-fortio.log" 2>&1; then
    FORTIO_BIN=$dir/fortio
  else
    bench_log "building fortio failed (log: $cache/logs/build-fortio.log): fixed-rate runs skipped"
  fi
}

tools_versions() {
  local fortio="not available"
  [[ -n ${FORTIO_BIN:-} ]] && fortio=$FORTIO_VERSION
  printf 'wrk %s; h2load %s; HAProxy %s; nginx %s; valgrind %s; fortio %s; %s' \
    "$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')" \
    "$(h2load --version | awk '{ print $2 }')" \
    "$(haproxy -v | awk 'NR == 1 { print $3 }')" \
    "$(nginx -v 2>&1 | sed 's|.*nginx/||')" \
    "$(valgrind --version | sed 's/valgrind-//')" \
    "$fortio" "$(c++ --version | head -1)"
}
