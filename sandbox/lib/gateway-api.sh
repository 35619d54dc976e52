# shellcheck shell=bash
# Gateway API CRDs from the sigs.k8s.io/gateway-api module at the pinned
# version. Sourced after common.sh, build.sh and process.sh.

SANDBOX_GATEWAY_API_POLICY=safe-upgrades.gateway.networking.k8s.io

sandbox_kubectl() {
  KUBECONFIG=$TRELLIS_SANDBOX_DIR/kubeconfig sandbox_in_netns "$(sandbox_bin_dir kubernetes)/kubectl" "$@"
}

sandbox_gateway_api_files() {  # channel -> the channel's manifests, one a line
  ls "$SANDBOX_GATEWAY_API_DIR/config/crd/$1"/gateway.networking.*.yaml
}

# CRD names from file names: gateway.networking.k8s.io_httproutes.yaml ->
# httproutes.gateway.networking.k8s.io (the safe-upgrades policy is no CRD).
sandbox_gateway_api_crds() {  # channel
  local file base
  for file in $(sandbox_gateway_api_files "$1"); do
    base=$(basename "$file" .yaml)
    [[ $base == *_vap_* ]] && continue
    echo "${base#*_}.${base%%_*}"
  done
}

# "<name> <channel> <bundle version>" of every installed CRD, one a line.
sandbox_gateway_api_state() {
  sandbox_kubectl get crd -o 'jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.gateway\.networking\.k8s\.io/channel} {.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}{"\n"}{end}'
}

# Succeeds when every CRD of <channel> is installed from it at the pinned version.
sandbox_gateway_api_complete() {  # channel, state
  local crd
  for crd in $(sandbox_gateway_api_crds "$1"); do
    grep -qx "$crd $1 $GATEWAY_API_VERSION" <<<"$2" || return 1
  done
}

sandbox_gateway_api_served() {  # channel
  local crds=()
  mapfile -t crds < <(sandbox_gateway_api_crds "$1")
  sandbox_kubectl wait --for condition=Established --timeout 5s "${crds[@]/#/crd/}" &&
    sandbox_kubectl get "$(IFS=,; echo "${crds[*]}")" -A --request-timeout 5s
}

sandbox_gateway_api_apply() {  # channel, crds|policy
  local files=() file
  while read -r file; do
    # The safe-upgrades admission policy goes in after the CRDs: it refuses
    # experimental CRDs over standard ones, so during an upgrade it must not
    # exist yet.
    if [[ $file == *_vap_* ]]; then
      if [[ $2 == policy ]]; then files+=(-f "$file"); fi
    elif [[ $2 == crds ]]; then
      files+=(-f "$file")
    fi
  done < <(sandbox_gateway_api_files "$1")
  # Server-side apply: the HTTPRoute CRD is larger than the annotation that
  # client-side apply would store.
  sandbox_kubectl apply --server-side --force-conflicts --field-manager trellis-sandbox "${files[@]}"
}

# Installs the wanted channel ("" keeps what is installed, else standard) and
# waits until every CRD is Established and served.
sandbox_gateway_api_install() {  # channel or ""
  local want=$1 state channel
  SANDBOX_GATEWAY_API_DIR=$(sandbox_gateway_api_dir)
  state=$(sandbox_gateway_api_state)
  channel=$(awk '$1 == "httproutes.gateway.networking.k8s.io" {print $2}' <<<"$state")
  if [[ -z $want ]]; then
    want=${channel:-standard}
  elif [[ $want == standard && $channel == experimental ]]; then
    sandbox_die "the experimental Gateway API channel is installed; going back to standard needs sandbox/down first"
  fi
  if ! sandbox_gateway_api_complete "$want" "$state"; then
    sandbox_log "installing Gateway API $GATEWAY_API_VERSION CRDs ($want channel)"
    if [[ $want == experimental ]] && grep -q ' standard ' <<<"$state"; then
      # The standard channel's admission policy refuses experimental CRDs on
      # top of it; upstream's documented way up is to remove that policy.
      sandbox_kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy \
        "$SANDBOX_GATEWAY_API_POLICY" --ignore-not-found >/dev/null
    fi
    local deadline=$((SECONDS + 60)) out
    # A deleted admission policy stays in force until the apiserver's
    # informer notices, so the first tries after an upgrade may be refused.
    until out=$(sandbox_gateway_api_apply "$want" crds 2>&1); do
      if ((SECONDS >= deadline)); then
        printf '%s\n' "$out" | tail -n 20 >&2
        sandbox_tail_log kube-apiserver
        sandbox_die "applying the Gateway API CRDs failed"
      fi
      sleep 1
    done
    out=$(sandbox_gateway_api_apply "$want" policy 2>&1) || {
      printf '%s\n' "$out" | tail -n 20 >&2
      sandbox_die "applying the Gateway API safe-upgrades admission policy failed"
    }
  fi
  sandbox_wait_for kube-apiserver 120 "Established and served Gateway API CRDs" \
    sandbox_gateway_api_served "$want"
  # shellcheck disable=SC2034  # read by sandbox/up
  SANDBOX_GATEWAY_API_CHANNEL=$want
}
