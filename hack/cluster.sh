#!/usr/bin/env bash
# The local Kubernetes cluster for e2e tests and `make demo`: upstream etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and snapshot-controller (built from the pinned Go
# modules in e2e/upstream by hack/build-upstream.sh), the node agent (e2e/node-agent: runs Pods
# as processes, plays the hostpath CSI driver), a moto S3 server with SigV4 checks, the Scribe
# CRDs and the chart's RBAC as Helm renders them, and scribe-controller as a process
# authenticated as the chart's ServiceAccount. Everything listens on 127.0.0.1.
#
#   hack/cluster.sh up                      start (idempotent: a second `up` only checks)
#   hack/cluster.sh down                    stop what `up` started (by PID) and keep nothing
#   hack/cluster.sh status                  which processes are running
#   hack/cluster.sh env                     print the export lines (KUBECONFIG, PATH, S3 settings)
#   hack/cluster.sh volume-path NS PVC      host directory backing a bound PVC
#   hack/cluster.sh rclone-conf SECTION     an rclone.conf section for the cluster's S3 server
#   hack/cluster.sh restart-controller      stop and start the controller (replica 1)
#   hack/cluster.sh stop-controller | start-controller
#   hack/cluster.sh start-controller-replica N   another replica (own identity, metrics port)
#   hack/cluster.sh controller-pids         PIDs of running controller replicas
#   hack/cluster.sh s3-stop | s3-start      freeze / unfreeze the S3 server (SIGSTOP/SIGCONT)
#
# State lives in $SCRIBE_CLUSTER_DIR (default e2e/.cluster): pki/, logs/, pids/, kubeconfigs,
# node/ (volumes and snapshots), env.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${SCRIBE_CLUSTER_DIR:-$ROOT/e2e/.cluster}"
# Ports chosen at `up` are remembered in $DIR/ports, so later subcommands agree with them.
# shellcheck disable=SC1091
[[ -f "$DIR/ports" ]] && source "$DIR/ports"
NS_CTRL=scribe-system
NODE=scribe-e2e-node
DRIVER=hostpath.csi.k8s.io
ETCD_PORT=${SCRIBE_ETCD_PORT:-23791}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
API_PORT=${SCRIBE_API_PORT:-26443}
KCM_PORT=$((API_PORT + 1))
SCHED_PORT=$((API_PORT + 2))
S3_PORT=${SCRIBE_S3_PORT:-25555}
METRICS_BASE=${SCRIBE_METRICS_PORT:-28080}
S3_REGION=us-east-1
CARGO_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PKI="$DIR/pki"
LOGS="$DIR/logs"
PIDS="$DIR/pids"

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

alive() { local f="$PIDS/$1.pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

# start NAME CMD...: runs CMD in the background, logging to logs/NAME.log, PID in pids/NAME.pid.
start() {
  local name=$1; shift
  if alive "$name"; then return 0; fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

stop() {
  local name=$1 f="$PIDS/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_for() { # wait_for DESC TIMEOUT_S CMD...
  local desc=$1 t=$2; shift 2
  for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timed out waiting for $desc (logs in $LOGS)"
}

bin_dir() { bash "$ROOT/hack/build-upstream.sh"; }

kubectl_() { "$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }

pki() {
  [[ -f "$PKI/done" ]] && return 0
  mkdir -p "$PKI"; cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=scribe-e2e-ca" 2>/dev/null
  cat > apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EOF
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
  echo "extendedKeyUsage=clientAuth" > client.ext
  for who in "admin:/O=system:masters/CN=kubernetes-admin" \
             "kcm:/CN=system:kube-controller-manager" \
             "scheduler:/CN=system:kube-scheduler" \
             "node:/O=system:nodes/CN=system:node:$NODE"; do
    local n=${who%%:*} subj=${who#*:}
    openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subj" 2>/dev/null
    openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" -days 3650 -extfile client.ext 2>/dev/null
  done
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  touch done; cd - >/dev/null
}

kubeconfig() { # kubeconfig FILE CERT_NAME | kubeconfig FILE --token TOKEN
  local file=$1 user
  if [[ $2 == --token ]]; then
    user="    token: $3"
  else
    user="    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key"
  fi
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: $PKI/ca.crt
    server: https://127.0.0.1:$API_PORT
  name: scribe-e2e
contexts:
- context:
    cluster: scribe-e2e
    user: user
  name: scribe-e2e
current-context: scribe-e2e
users:
- name: user
  user:
$user
EOF
  chmod 600 "$file"
}

start_etcd() {
  start etcd "$BIN/etcd" --name scribe-e2e --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "scribe-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 4294967296
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota,NodeRestriction,Priority,RuntimeClass,DefaultIngressClass,TaintNodesByCondition \
    --service-account-issuer "https://127.0.0.1:$API_PORT" --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" --service-cluster-ip-range 10.0.0.0/24 \
    --allow-privileged=false --profiling=false --event-ttl 1h
  wait_for kube-apiserver 120 curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$API_PORT/readyz"
}

start_kcm_scheduler() {
  kubeconfig "$DIR/kcm.kubeconfig" kcm
  kubeconfig "$DIR/scheduler.kubeconfig" scheduler
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$DIR/kcm.kubeconfig" \
    --authentication-kubeconfig "$DIR/kcm.kubeconfig" --authorization-kubeconfig "$DIR/kcm.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --use-service-account-credentials=true --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
    --node-monitor-grace-period 60s --concurrent-gc-syncs 10
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHED_PORT"
}

install_storage() {
  kubectl_ apply -f "$BIN/crd/" >/dev/null
  kubectl_ wait --for condition=established --timeout=60s crd/volumesnapshots.snapshot.storage.k8s.io \
    crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: $DRIVER
spec:
  attachRequired: false
  podInfoOnMount: true
  fsGroupPolicy: File
  volumeLifecycleModes: [Persistent]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: csi-hostpath
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: $DRIVER
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: csi-hostpath-snapclass
  annotations:
    snapshot.storage.kubernetes.io/is-default-class: "true"
driver: $DRIVER
deletionPolicy: Delete
EOF
  start snapshot-controller "$BIN/snapshot-controller" --kubeconfig "$DIR/admin.kubeconfig" --leader-election=false
}

install_scribe() {
  kubectl_ apply --server-side --force-conflicts -f "$ROOT/charts/scribe/crds/" >/dev/null \
    || die "installing the Scribe CRDs failed (see the message above)"
  kubectl_ wait --for condition=established --timeout=60s crd/replicationsources.scribe.backube crd/replicationdestinations.scribe.backube >/dev/null
  kubectl_ get ns "$NS_CTRL" >/dev/null 2>&1 || kubectl_ create ns "$NS_CTRL" >/dev/null
  "$ROOT/.venv/bin/python" "$ROOT/hack/render_chart.py" "$DIR/chart" "$NS_CTRL"
  kubectl_ apply -f "$DIR/chart/rbac.yaml" >/dev/null
}

start_s3() {
  alive moto && return 0
  SCRIBE_MOTO_SERVER="${SCRIBE_MOTO_SERVER:-$ROOT/.venv/bin/moto_server}"
  INITIAL_NO_AUTH_ACTION_COUNT=3 start moto "$SCRIBE_MOTO_SERVER" -H 127.0.0.1 -p "$S3_PORT"
  wait_for moto 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$S3_PORT"
  "$ROOT/.venv/bin/python" - "$S3_PORT" "$DIR/s3.env" <<'EOF'
import sys, boto3, json
port, out = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="scribe-e2e")
k = iam.create_access_key(UserName="scribe-e2e")["AccessKey"]
iam.put_user_policy(UserName="scribe-e2e", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
with open(out, "w") as f:
    f.write(f"S3_ACCESS_KEY={k['AccessKeyId']}\nS3_SECRET_KEY={k['SecretAccessKey']}\n")
EOF
}

cargo_bins() {
  log "building scribe-controller, scribe-mover and scribe-node-agent"
  (cd "$ROOT" && cargo build -q -p scribe-controller -p scribe-mover -p scribe-node-agent --bins)
}

start_agent() {
  kubeconfig "$DIR/node.kubeconfig" admin
  KUBECONFIG="$DIR/node.kubeconfig" RUST_LOG="${SCRIBE_AGENT_LOG:-info,kube=warn}" \
    start node-agent "$CARGO_TARGET/debug/scribe-node-agent" --node-name "$NODE" --state-dir "$DIR/node" \
    --driver-name "$DRIVER" --image "scribe-mover=$CARGO_TARGET/debug/scribe-mover"
  wait_for "node $NODE Ready" 60 bash -c "'$BIN/kubectl' --kubeconfig '$DIR/admin.kubeconfig' get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
}

controller_token() {
  local sa
  sa=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["serviceAccount"])' "$DIR/chart/controller.json")
  kubectl_ -n "$NS_CTRL" create token "$sa" --duration=48h
}

# start_controller N: replica N (1 is the default one), metrics on METRICS_BASE+N-1.
start_controller() {
  local n=${1:-1} name="controller-$1" args
  alive "$name" && return 0
  [[ -f "$DIR/controller.kubeconfig" ]] || kubeconfig "$DIR/controller.kubeconfig" --token "$(controller_token)"
  mapfile -t args < <(python3 -c '
import json, sys
for a in json.load(open(sys.argv[1]))["args"]:
    if not a.startswith(("--metrics-bind-address", "--log-format")):
        print(a)' "$DIR/chart/controller.json")
  KUBECONFIG="$DIR/controller.kubeconfig" POD_NAMESPACE="$NS_CTRL" POD_NAME="scribe-controller-$n" \
    start "$name" "$CARGO_TARGET/debug/scribe-controller" "${args[@]}" \
    --metrics-bind-address "127.0.0.1:$((METRICS_BASE + n - 1))" --log-format text
  wait_for "controller $n /healthz" 60 curl -sf "http://127.0.0.1:$((METRICS_BASE + n - 1))/healthz"
}

write_env() {
  # shellcheck disable=SC1091
  source "$DIR/s3.env"
  cat > "$DIR/env" <<EOF
export KUBECONFIG=$DIR/admin.kubeconfig
export PATH=$BIN:\$PATH
export SCRIBE_E2E_CLUSTER_DIR=$DIR
export SCRIBE_CLUSTER_DIR=$DIR
export SCRIBE_E2E_CLUSTER_SCRIPT=$ROOT/hack/cluster.sh
export SCRIBE_E2E_STATE_DIR=$DIR/node
export SCRIBE_E2E_CONTROLLER_NAMESPACE=$NS_CTRL
export SCRIBE_E2E_METRICS_URL=http://127.0.0.1:$METRICS_BASE/metrics
export SCRIBE_E2E_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export SCRIBE_E2E_S3_REGION=$S3_REGION
export SCRIBE_E2E_S3_ACCESS_KEY=$S3_ACCESS_KEY
export SCRIBE_E2E_S3_SECRET_KEY=$S3_SECRET_KEY
EOF
}

up() {
  mkdir -p "$DIR" "$LOGS" "$PIDS" "$DIR/node"
  local t0=$SECONDS
  printf 'SCRIBE_ETCD_PORT=%s\nSCRIBE_API_PORT=%s\nSCRIBE_S3_PORT=%s\nSCRIBE_METRICS_PORT=%s\n' \
    "$ETCD_PORT" "$API_PORT" "$S3_PORT" "$METRICS_BASE" > "$DIR/ports"
  if ! alive kube-apiserver && (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null; then
    die "port $API_PORT is taken by another process (another cluster?); set SCRIBE_API_PORT, SCRIBE_ETCD_PORT, SCRIBE_S3_PORT, SCRIBE_METRICS_PORT"
  fi
  log "building the pinned upstream binaries (first run: tens of minutes; then cached)"
  BIN=$(bin_dir)
  [[ -x "$ROOT/.venv/bin/moto_server" ]] || bash "$ROOT/hack/setup-test-deps.sh"
  cargo_bins
  pki
  kubeconfig "$DIR/admin.kubeconfig" admin
  log "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
  start_etcd
  start_apiserver
  start_kcm_scheduler
  install_storage
  install_scribe
  start_s3
  start_agent
  wait_for "ServiceAccount default in $NS_CTRL" 60 "$BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" -n "$NS_CTRL" get sa default
  start_controller 1
  write_env
  log "up in $((SECONDS - t0)) s; logs in $LOGS"
  cat "$DIR/env" | grep -E 'KUBECONFIG|PATH='
}

down() {
  for f in "$PIDS"/controller-*.pid; do [[ -e "$f" ]] && stop "$(basename "$f" .pid)"; done
  for n in node-agent snapshot-controller kube-scheduler kube-controller-manager kube-apiserver moto etcd; do stop "$n"; done
  # Volumes the agent bind-mounted are gone with their processes; the state goes too.
  rm -rf "$DIR"
  log "down"
}

need_bin() { BIN=$(bash "$ROOT/hack/build-upstream.sh" 2>/dev/null); }

cmd=${1:-}
shift || true
case "$cmd" in
  up) up ;;
  down) down ;;
  env) cat "$DIR/env" ;;
  status)
    for f in "$PIDS"/*.pid; do [[ -e "$f" ]] || continue; n=$(basename "$f" .pid)
      if alive "$n"; then echo "$n running (pid $(cat "$f"))"; else echo "$n stopped"; fi; done ;;
  volume-path)
    [[ $# -eq 2 ]] || die "usage: cluster.sh volume-path NAMESPACE PVC"
    need_bin
    pv=$(kubectl_ -n "$1" get pvc "$2" -o jsonpath='{.spec.volumeName}')
    [[ -n "$pv" ]] || die "PVC $1/$2 is not bound"
    handle=$(kubectl_ get pv "$pv" -o jsonpath='{.spec.csi.volumeHandle}')
    echo "$DIR/node/volumes/$handle" ;;
  rclone-conf)
    [[ $# -eq 1 ]] || die "usage: cluster.sh rclone-conf SECTION"
    # shellcheck disable=SC1091
    source "$DIR/s3.env"
    printf '[%s]\ntype = s3\nprovider = Other\nenv_auth = false\naccess_key_id = %s\nsecret_access_key = %s\nendpoint = http://127.0.0.1:%s\nregion = %s\n' \
      "$1" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$S3_PORT" "$S3_REGION" ;;
  restart-controller) need_bin; stop controller-1; start_controller 1 ;;
  stop-controller) stop controller-1 ;;
  start-controller) need_bin; start_controller 1 ;;
  start-controller-replica) [[ $# -eq 1 ]] || die "usage: start-controller-replica N"; need_bin; start_controller "$1" ;;
  stop-controller-replica) [[ $# -eq 1 ]] || die "usage: stop-controller-replica N"; stop "controller-$1" ;;
  controller-pids)
    for f in "$PIDS"/controller-*.pid; do [[ -e "$f" ]] || continue; n=$(basename "$f" .pid); alive "$n" && cat "$f"; done; true ;;
  s3-stop) kill -STOP "$(cat "$PIDS/moto.pid")" ;;
  s3-start) kill -CONT "$(cat "$PIDS/moto.pid")" ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
