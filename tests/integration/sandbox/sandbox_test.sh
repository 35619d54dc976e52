#!/usr/bin/env bash
# The sandbox control plane, end to end: sandbox/up (idempotent, CRDs served),
# Deployments -> ReplicaSets -> Pods, TokenRequest -> TokenReview with the
# `trellis` audience, the experimental Gateway API channel, and sandbox/down
# leaving nothing behind. Uses the shared sandbox, plus one private sandbox
# (own state directory and namespace) for the up-from-nothing and down cases.
# The cases are called by name from the table at the end; none takes the script's arguments.
# shellcheck disable=SC2317,SC2119
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib/doctest.sh"
source "$here/../lib/sandbox.sh"

ns=it-sandbox-$$
private_dir=$(mktemp -d /tmp/trellis-sandbox-test.XXXXXX)
private_netns=trellis-it-$$

cleanup() {
  kube delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  TRELLIS_SANDBOX_DIR=$private_dir/state TRELLIS_SANDBOX_NETNS=$private_netns \
    "$TRELLIS_ROOT/sandbox/down" >/dev/null 2>&1 || true
  rm -rf "$private_dir"
}
trap cleanup EXIT

# Polls a command until it succeeds, for at most <seconds>.
eventually() {  # seconds, command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { echo "still failing after the deadline: $*"; return 1; }
    sleep 0.5
  done
}

netns_inode() { stat -L -c %i "/run/netns/$1"; }

# A killed process whose parent has not reaped it yet is a zombie: it runs
# nothing and holds nothing, so it counts as gone.
process_gone() {  # pid
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} == Z ]]
}

# ---- cases ---------------------------------------------------------------

up_is_idempotent() {
  trellis_sandbox_up
  local started=$SECONDS out
  out=$("$TRELLIS_ROOT/sandbox/up")
  echo "$out"
  check "up prints the kubeconfig path" grep -qx "kubeconfig: $KUBECONFIG" <<<"$out"
  check "up says how to use kubectl" grep -q "sandbox/kubectl get pods -A" <<<"$out"
  check "a second up takes seconds, not minutes" test $((SECONDS - started)) -lt 30
  check_eq "readyz" ok "$(kube get --raw /readyz)"
  local state=${TRELLIS_SANDBOX_DIR:-$HOME/.local/state/trellis-sandbox} name pid
  for name in etcd kube-apiserver kube-controller-manager; do
    read -r pid _ <"$state/pids/$name.pid"
    check "$name (pid $pid) runs" test -d "/proc/$pid"
    check_eq "$name runs inside trellis-node" "$(netns_inode trellis-node)" "$(stat -L -c %i "/proc/$pid/ns/net")"
  done
}

binaries_are_pinned() {
  trellis_sandbox_up
  source "$TRELLIS_ROOT/sandbox/versions.env"
  check_eq "kubectl and kube-apiserver versions" "$KUBERNETES_VERSION $KUBERNETES_VERSION" \
    "$(kube version -o json | python3 -c '
import json, sys
v = json.load(sys.stdin)
print(v["clientVersion"]["gitVersion"], v["serverVersion"]["gitVersion"])')"
  local state=${TRELLIS_SANDBOX_DIR:-$HOME/.local/state/trellis-sandbox} pid
  read -r pid _ <"$state/pids/kube-controller-manager.pid"
  check_eq "kube-controller-manager binary" "$TRELLIS_SANDBOX_KUBECTL" \
    "$(dirname "$(readlink "/proc/$pid/exe")")/kubectl"
  check_eq "helm version" "$HELM_VERSION" "$("$TRELLIS_ROOT/sandbox/helm" version --template '{{.Version}}')"
  check "sandbox/helm reaches the apiserver" "$TRELLIS_ROOT/sandbox/helm" list -A
  check "etcd is $ETCD_VERSION" grep -q "/etcd-$ETCD_VERSION/etcd\$" <<<"$(readlink "/proc/$(cut -d' ' -f1 "$state/pids/etcd.pid")/exe")"
}

node_network_is_isolated() {
  trellis_sandbox_up
  check_eq "links in trellis-node" "lo trellis0" \
    "$(ip -n trellis-node -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | xargs)"
  check "the bridge has the node address" grep -q "inet 10.77.0.1/24" <<<"$(ip -n trellis-node addr show trellis0)"
  check "the namespace has no default route off the node" \
    test -z "$(ip -n trellis-node route show default)"
}

gateway_api_crds_are_served() {
  trellis_sandbox_up
  check "kubectl get crd httproutes" kube get crd httproutes.gateway.networking.k8s.io
  check_eq "bundle version" v1.6.1 \
    "$(kube get crd httproutes.gateway.networking.k8s.io -o 'jsonpath={.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}')"
  local crd
  for crd in httproutes grpcroutes gateways gatewayclasses referencegrants backendtlspolicies; do
    check_eq "$crd Established" True \
      "$(kube get crd "$crd.gateway.networking.k8s.io" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')"
  done
  kube create namespace "$ns" --dry-run=client -o yaml | kube apply -f - >/dev/null
  kube -n "$ns" apply -f - <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
    port: 8080
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v1}
    backendRefs:
    - name: echo-v1
      port: 8080
YAML
  check_eq "an HTTPRoute round-trips" "/v1" \
    "$(kube -n "$ns" get httproute echo -o 'jsonpath={.spec.rules[0].matches[0].path.value}')"
}

two_pending_pods() {
  local phases
  phases=$(kube -n "$ns" get pods -l app=web -o 'jsonpath={range .items[*]}{.status.phase}{" "}{end}')
  [[ $phases == "Pending Pending " ]]
}

web_is_gone() { [[ -z $(kube -n "$ns" get deployment,rs,pods -l app=web -o name) ]]; }

deployment_makes_pending_pods() {
  trellis_sandbox_up
  kube create namespace "$ns" --dry-run=client -o yaml | kube apply -f - >/dev/null
  kube -n "$ns" create deployment web --image=trellis.test/echo:1 --replicas=2
  # The replicaset and serviceaccount controllers must both work: pods are
  # refused until the namespace's `default` service account exists.
  eventually 60 two_pending_pods
  local rs owner
  rs=$(kube -n "$ns" get rs -l app=web -o 'jsonpath={.items[0].metadata.name}')
  check "a ReplicaSet exists" test -n "$rs"
  check_eq "the ReplicaSet belongs to the Deployment" Deployment/web \
    "$(kube -n "$ns" get rs "$rs" -o 'jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
  for owner in $(kube -n "$ns" get pods -l app=web -o 'jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{" "}{end}'); do
    check_eq "each Pod belongs to the ReplicaSet" "$rs" "$owner"
  done
  check_eq "no node yet" "" "$(kube -n "$ns" get pods -l app=web -o 'jsonpath={.items[*].spec.nodeName}')"
  # Garbage collector: deleting the Deployment removes its ReplicaSet and Pods.
  kube -n "$ns" delete deployment web --wait=false
  eventually 60 web_is_gone
}

jwt_claims() {  # token -> "aud iss sub" of its payload
  python3 -c '
import base64, json, sys
payload = sys.argv[1].split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(",".join(claims["aud"]), claims["iss"], claims["sub"])' "$1"
}

token_review() {  # token, audience -> "authenticated username audiences"
  kube create -o 'jsonpath={.status.authenticated} {.status.user.username} {.status.audiences}' -f - <<JSON
{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
 "spec": {"token": "$1", "audiences": ["$2"]}}
JSON
}

token_request_and_review() {
  trellis_sandbox_up
  kube create namespace "$ns" --dry-run=client -o yaml | kube apply -f - >/dev/null
  kube -n "$ns" create serviceaccount reviewer
  local token other
  token=$(kube -n "$ns" create token reviewer --audience trellis --duration 10m)
  check_eq "the token's claims" "trellis https://kubernetes.default.svc.cluster.local system:serviceaccount:$ns:reviewer" \
    "$(jwt_claims "$token")"
  check_eq "TokenReview accepts it for audience trellis" \
    "true system:serviceaccount:$ns:reviewer [\"trellis\"]" "$(token_review "$token" trellis)"
  other=$(kube -n "$ns" create token reviewer --audience someone-else --duration 10m)
  # A refused token's status has no `authenticated: true`, only an error.
  local refused
  refused=$(kube create -o 'jsonpath={.status.authenticated}|{.status.error}' -f - <<JSON
{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
 "spec": {"token": "$other", "audiences": ["trellis"]}}
JSON
)
  check "TokenReview refuses a token for another audience: $refused" \
    grep -q '^|.*token audiences \["someone-else"\] is invalid for the target audiences \["trellis"\]' <<<"$refused"
  # RBAC is on: a fresh service account may not list pods.
  check_eq "RBAC" no "$(kube auth can-i list pods -n "$ns" --as "system:serviceaccount:$ns:reviewer" || true)"
}

private() { TRELLIS_SANDBOX_DIR=$private_dir/state TRELLIS_SANDBOX_NETNS=$private_netns "$@"; }

private_sandbox_from_nothing() {
  local started=$SECONDS
  private "$TRELLIS_ROOT/sandbox/up" --quiet
  echo "private sandbox up in $((SECONDS - started))s"
  check_eq "standard channel first" standard \
    "$(private "$TRELLIS_ROOT/sandbox/kubectl" get crd httproutes.gateway.networking.k8s.io -o 'jsonpath={.metadata.annotations.gateway\.networking\.k8s\.io/channel}')"
  # --experimental upgrades a running sandbox (through Gateway API's
  # safe-upgrades admission policy) and brings HTTPRoute retry.
  private "$TRELLIS_ROOT/sandbox/up" --quiet --experimental
  check_eq "experimental channel" experimental \
    "$(private "$TRELLIS_ROOT/sandbox/kubectl" get crd httproutes.gateway.networking.k8s.io -o 'jsonpath={.metadata.annotations.gateway\.networking\.k8s\.io/channel}')"
  check "HTTPRoute has retry" grep -q "retry" \
    <<<"$(private "$TRELLIS_ROOT/sandbox/kubectl" explain httproute.spec.rules)"
  check "the shared sandbox still answers" test "$(kube get --raw /readyz)" = ok
}

private_up_reports_a_failing_component() {
  local state=$private_dir/state pid out
  private "$TRELLIS_ROOT/sandbox/up" --quiet
  read -r pid _ <"$state/pids/kube-apiserver.pid"
  kill -KILL "$pid"
  eventually 10 process_gone "$pid"
  # A serving certificate that does not parse: the apiserver exits at start.
  cp "$state/pki/apiserver.crt" "$private_dir/apiserver.crt"
  echo "not a certificate" >"$state/pki/apiserver.crt"
  out=$(private "$TRELLIS_ROOT/sandbox/up" --quiet 2>&1) && { echo "up succeeded: $out"; return 1; }
  echo "$out"
  # Depending on how fast it dies, up sees the process gone at start or
  # while waiting for readyz; both name the component.
  check "names the component that failed" \
    grep -qE "sandbox: error: kube-apiserver exited (at once|before ok from https://10.77.0.1:6443/readyz)" <<<"$out"
  check "shows the component's log" grep -q "last lines of $state/logs/kube-apiserver.log" <<<"$out"
  check "the log tail says why" grep -q "apiserver.crt" <<<"$out"
  cp "$private_dir/apiserver.crt" "$state/pki/apiserver.crt"
  check "up recovers once the cause is gone" private "$TRELLIS_ROOT/sandbox/up" --quiet
}

private_down_after_crash() {
  local state=$private_dir/state pids=() name pid
  private "$TRELLIS_ROOT/sandbox/up" --quiet
  for name in etcd kube-apiserver kube-controller-manager; do
    read -r pid _ <"$state/pids/$name.pid"
    pids+=("$pid")
  done
  # A crash: the apiserver dies and the controller manager's pid file is lost.
  kill -KILL "${pids[1]}"
  rm "$state/pids/kube-controller-manager.pid"
  private "$TRELLIS_ROOT/sandbox/down"
  for pid in "${pids[@]}"; do
    check "pid $pid is gone" process_gone "$pid"
  done
  check "no namespace left" test ! -e "/run/netns/$private_netns"
  check "no state left" test ! -e "$state"
  check "down again is a no-op" private "$TRELLIS_ROOT/sandbox/down"
  check "the shared sandbox still answers" test "$(kube get --raw /readyz)" = ok
}

# ---- run -------------------------------------------------------------------

cases=(
  "sandbox/up starts the control plane and is idempotent:up_is_idempotent"
  "etcd, Kubernetes and Helm are the pinned releases:binaries_are_pinned"
  "trellis-node holds only loopback and the bridge:node_network_is_isolated"
  "Gateway API v1.6.1 CRDs are Established and served:gateway_api_crds_are_served"
  "kubectl create deployment produces a ReplicaSet and Pending Pods:deployment_makes_pending_pods"
  "a TokenRequest token passes TokenReview with audience trellis:token_request_and_review"
  "a private sandbox starts from nothing and upgrades to the experimental channel:private_sandbox_from_nothing"
  "sandbox/up reports a component that fails, with its log:private_up_reports_a_failing_component"
  "sandbox/down after a crash leaves no process, namespace or state:private_down_after_crash"
)
if missing=$(trellis_sandbox_missing_capability); then
  for c in "${cases[@]}"; do dt_skip "${c%%:*}" "$missing"; done
else
  for c in "${cases[@]}"; do dt_case "${c%%:*}" "${c##*:}"; done
fi
dt_finish
