# shellcheck shell=bash
# The sandbox's PKI, made with the openssl CLI: one CA that signs the
# apiserver's serving certificate and every client certificate, plus the
# service-account signing key pair. Sourced after common.sh.

SANDBOX_PKI_DIR=$TRELLIS_SANDBOX_DIR/pki

# A P-256 key and a certificate signed by the sandbox CA.
sandbox_pki_sign() {  # name, subject, extensions (openssl x509 v3 config lines)
  local name=$1 subject=$2 extensions=$3 dir=$SANDBOX_PKI_DIR
  [[ -f $dir/$name.crt && -f $dir/$name.key ]] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>/dev/null
  openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile <(printf '%s\n' "$extensions") -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr"
}

# A client certificate: Kubernetes takes the user from CN and groups from O.
sandbox_pki_client() {  # name, user, [group]
  local subject="/CN=$2"
  [[ -n ${3:-} ]] && subject="/O=$3$subject"
  sandbox_pki_sign "$1" "$subject" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
}

sandbox_pki_create() {
  local dir=$SANDBOX_PKI_DIR
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [[ ! -f $dir/ca.crt || ! -f $dir/ca.key ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=trellis-sandbox-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.crt"
  fi
  sandbox_pki_sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$SANDBOX_NODE_IP,IP:$SANDBOX_KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sandbox_pki_client admin trellis-admin system:masters
  sandbox_pki_client kube-controller-manager system:kube-controller-manager
  # Service-account tokens: RSA, because RS256 is what every JWT verifier accepts.
  if [[ ! -f $dir/sa.key || ! -f $dir/sa.pub ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null
    openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub"
  fi
}

# A kubeconfig with the CA and the client credentials embedded, so the file
# alone is enough to reach the apiserver from inside trellis-node.
sandbox_write_kubeconfig() {  # path, client cert name, user name
  local path=$1 cert=$2 user=$3 dir=$SANDBOX_PKI_DIR
  umask 077
  cat >"$path.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: trellis-sandbox
  cluster:
    server: $SANDBOX_APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$dir/$cert.crt")
    client-key-data: $(base64 -w0 "$dir/$cert.key")
contexts:
- name: trellis-sandbox
  context:
    cluster: trellis-sandbox
    user: $user
current-context: trellis-sandbox
KUBECONFIG
  mv "$path.tmp" "$path"
}
