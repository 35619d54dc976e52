# shellcheck shell=bash
# The node's network namespace and the control plane inside it: etcd,
# kube-apiserver, kube-controller-manager. Sourced after common.sh, pki.sh
# and process.sh.

# trellis-node: loopback plus the bridge that carries the node address and,
# for the pod runner, the pod CIDR's gateway. It has no link to the host.
sandbox_network_up() {
  sandbox_netns_exists || ip netns add "$SANDBOX_NETNS"
  sandbox_in_netns ip link set lo up
  sandbox_in_netns ip link show "$SANDBOX_BRIDGE" >/dev/null 2>&1 ||
    sandbox_in_netns ip link add "$SANDBOX_BRIDGE" type bridge
  sandbox_in_netns ip addr replace "$SANDBOX_NODE_IP/${SANDBOX_NODE_CIDR#*/}" dev "$SANDBOX_BRIDGE"
  sandbox_in_netns ip addr replace "$SANDBOX_POD_GATEWAY/${SANDBOX_POD_CIDR#*/}" dev "$SANDBOX_BRIDGE"
  sandbox_in_netns ip link set "$SANDBOX_BRIDGE" up
}

sandbox_network_down() {
  sandbox_netns_exists || return 0
  ip netns del "$SANDBOX_NETNS"
}

sandbox_etcd_start() {
  local bin
  bin=$(sandbox_bin_dir etcd)/etcd
  mkdir -p "$TRELLIS_SANDBOX_DIR/etcd"
  chmod 700 "$TRELLIS_SANDBOX_DIR/etcd"
  # Plain HTTP on the namespace's loopback: only processes inside trellis-node
  # can reach it. No fsync: the sandbox's data is disposable, and fsync on a
  # shared disk is what makes an etcd slow.
  sandbox_process_start etcd "$bin" \
    --name trellis-node \
    --data-dir "$TRELLIS_SANDBOX_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster trellis-node=http://127.0.0.1:2380 \
    --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync \
    --log-level warn
  sandbox_wait_for etcd 60 "health on http://127.0.0.1:2379/health" \
    sandbox_in_netns curl -sf --max-time 2 http://127.0.0.1:2379/health
}

sandbox_apiserver_start() {
  local bin pki=$SANDBOX_PKI_DIR
  bin=$(sandbox_bin_dir kubernetes)/kube-apiserver
  sandbox_process_start kube-apiserver "$bin" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address "$SANDBOX_NODE_IP" \
    --advertise-address "$SANDBOX_NODE_IP" \
    --secure-port "$SANDBOX_APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" \
    --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer "$SANDBOX_SERVICE_ACCOUNT_ISSUER" \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences "$SANDBOX_API_AUDIENCES" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy \
    --service-cluster-ip-range "$SANDBOX_SERVICE_CIDR" \
    --enable-aggregator-routing=true \
    --allow-privileged=true \
    --profiling=false \
    --cert-dir "$TRELLIS_SANDBOX_DIR/apiserver-certs"
  sandbox_wait_for kube-apiserver 180 "ok from $SANDBOX_APISERVER_URL/readyz" sandbox_apiserver_ready
}

sandbox_apiserver_ready() {
  [[ $(sandbox_in_netns curl -s --max-time 3 --cacert "$SANDBOX_PKI_DIR/ca.crt" \
    "$SANDBOX_APISERVER_URL/readyz") == ok ]]
}

sandbox_controller_manager_start() {
  local bin kubeconfig=$TRELLIS_SANDBOX_DIR/kube-controller-manager.kubeconfig
  bin=$(sandbox_bin_dir kubernetes)/kube-controller-manager
  [[ -f $kubeconfig ]] ||
    sandbox_write_kubeconfig "$kubeconfig" kube-controller-manager system:kube-controller-manager
  # Only the controllers the sandbox needs; each runs with its own service
  # account's credentials, as in a kubeadm cluster, so RBAC is exercised.
  # root-ca-certificate-publisher writes kube-root-ca.crt, which projected
  # service-account token volumes need.
  sandbox_process_start kube-controller-manager "$bin" \
    --kubeconfig "$kubeconfig" \
    --authentication-kubeconfig "$kubeconfig" \
    --authorization-kubeconfig "$kubeconfig" \
    --controllers deployment-controller,replicaset-controller,endpointslice-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller \
    --use-service-account-credentials=true \
    --root-ca-file "$SANDBOX_PKI_DIR/ca.crt" \
    --leader-elect=false \
    --bind-address 127.0.0.1 \
    --secure-port 10257 \
    --profiling=false
  sandbox_wait_for kube-controller-manager 90 "ok from https://127.0.0.1:10257/healthz" \
    sandbox_controller_manager_healthy
}

sandbox_controller_manager_healthy() {
  [[ $(sandbox_in_netns curl -sk --max-time 3 https://127.0.0.1:10257/healthz) == ok ]]
}
