#!/usr/bin/env bash
# `make demo`: the operator replicating a volume on a local control plane.
#
# Starts the local cluster (hack/cluster.sh up: upstream kube-apiserver, etcd, controller-manager,
# scheduler, snapshot-controller, the node agent, a moto S3 server and scribe-controller running
# as the chart's ServiceAccount), writes a sample tree into a source PVC, applies the seed
# document's two examples (ReplicationSource database-source, ReplicationDestination
# database-destination; only the Secret's contents are ours), waits for the destination's
# latestImage, restores a PVC from that VolumeSnapshot and checks it holds the same tree.
# The cluster stays up for exploring; `hack/cluster.sh down` stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
t0=$SECONDS
say() { printf '\n==> %s\n' "$*"; }

say "starting the local cluster (the first run builds the upstream binaries: ~20-30 min on 2 cores)"
bash hack/cluster.sh up
# shellcheck disable=SC1091
source e2e/.cluster/env

wait_jsonpath() { # wait_jsonpath DESC TIMEOUT KUBECTL-ARGS... -- JSONPATH
  local desc=$1 timeout=$2; shift 2
  local args=() path
  while [[ $1 != -- ]]; do args+=("$1"); shift; done
  path=$2
  for _ in $(seq 1 "$timeout"); do
    out=$(kubectl "${args[@]}" -o "jsonpath=$path" 2>/dev/null || true)
    [[ -n "$out" ]] && { echo "$out"; return 0; }
    sleep 1
  done
  echo "demo: timed out waiting for $desc" >&2
  kubectl "${args[@]}" -o yaml >&2 || true
  exit 1
}

say "namespaces, the rclone Secret and the source PVC"
# A fresh start: a previous demo's namespaces (and everything in them) go first.
kubectl delete ns source dest --ignore-not-found --wait=true --timeout=180s >/dev/null
for ns in source dest; do kubectl get ns $ns >/dev/null 2>&1 || kubectl create ns $ns >/dev/null; done
bash hack/cluster.sh rclone-conf aws-s3-bucket > e2e/.cluster/demo-rclone.conf
for ns in source dest; do
  kubectl -n $ns create secret generic rclone-secret --from-file=rclone.conf=e2e/.cluster/demo-rclone.conf \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: mysql-pv-claim
  namespace: source
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
EOF
wait_jsonpath "PVC source/mysql-pv-claim bound" 60 -n source get pvc mysql-pv-claim -- '{.spec.volumeName}' >/dev/null
src=$(bash hack/cluster.sh volume-path source mysql-pv-claim)

say "writing a sample tree into source/mysql-pv-claim ($src)"
mkdir -p "$src/mysql/db1" "$src/mysql/empty" "$src/logs"
for i in $(seq 1 50); do head -c $((i * 997)) /dev/urandom > "$src/mysql/db1/table$i.ibd"; done
echo "[mysqld]" > "$src/my.cnf"; chmod 0600 "$src/my.cnf"
ln -sfn mysql/db1 "$src/current"
touch -d '2024-01-02 03:04:05' "$src/my.cnf"
chown -R 65532:65532 "$src"

say "applying the seed's ReplicationSource"
kubectl apply -f - <<'EOF'
---
apiVersion: scribe.backube/v1alpha1
kind: ReplicationSource
metadata:
  name: database-source
  namespace: source
spec:
  sourcePVC: mysql-pv-claim
  trigger:
    schedule: "*/6 * * * *"
  rclone:
    rcloneConfigSection: "aws-s3-bucket"
    rcloneDestPath: "scribe-test-bucket"
    rcloneConfig: "rclone-secret"
    copyMethod: Snapshot
EOF
wait_jsonpath "the source's first sync" 300 -n source get replicationsource database-source -- '{.status.lastSyncTime}' >/dev/null

say "applying the seed's ReplicationDestination"
kubectl apply -f - <<'EOF'
---
apiVersion: scribe.backube/v1alpha1
kind: ReplicationDestination
metadata:
  name: database-destination
  namespace: dest
spec:
  trigger:
    schedule: "*/6 * * * *"
  rclone:
    rcloneConfigSection: "aws-s3-bucket"
    rcloneDestPath: "scribe-test-bucket"
    rcloneConfig: "rclone-secret"
    copyMethod: Snapshot
    accessModes: [ReadWriteOnce]
    capacity: 10Gi
EOF
image=$(wait_jsonpath "the destination's latestImage" 300 -n dest get replicationdestination database-destination -- '{.status.latestImage.name}')
echo "latestImage: $image"
wait_jsonpath "VolumeSnapshot $image ready" 120 -n dest get volumesnapshot "$image" -- '{.status.readyToUse}' | grep -q true

say "restoring a PVC from $image and comparing it with the source"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: restored
  namespace: dest
spec:
  accessModes: [ReadWriteOnce]
  dataSource:
    apiGroup: snapshot.storage.k8s.io
    kind: VolumeSnapshot
    name: $image
  resources:
    requests:
      storage: 10Gi
EOF
wait_jsonpath "PVC dest/restored bound" 120 -n dest get pvc restored -- '{.spec.volumeName}' >/dev/null
restored=$(bash hack/cluster.sh volume-path dest restored)
# path, type, mode, owner, size (files), mtime (seconds), link target
listing() { (cd "$1" && find . -mindepth 1 -printf '%p\t%y\t%m\t%U:%G\t%s\t%T@\t%l\n' | LC_ALL=C sort |
  awk -F'\t' -v OFS='\t' '{ if ($2 != "f") $5 = "-"; split($6, t, "."); $6 = t[1]; print }'); }
if diff <(listing "$src") <(listing "$restored") && diff -r --no-dereference "$src" "$restored"; then
  echo "restored tree == source tree ($(find "$src" -mindepth 1 | wc -l) entries: content, types, modes, owners, mtimes, symlinks, empty dirs)"
else
  echo "demo: the restored tree differs from the source" >&2
  exit 1
fi

say "kubectl get replicationsources,replicationdestinations,volumesnapshots -A"
kubectl get replicationsources,replicationdestinations,volumesnapshots -A

say "done in $((SECONDS - t0)) s. The cluster is still running; explore it with:"
grep -E 'KUBECONFIG|PATH=' e2e/.cluster/env
echo "  kubectl -n source describe replicationsource database-source"
echo "  kubectl -n dest get replicationdestination database-destination -o yaml"
echo "logs: e2e/.cluster/logs/   stop everything: hack/cluster.sh down"
