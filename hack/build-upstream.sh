#!/usr/bin/env bash
# Builds the pinned upstream control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, snapshot-controller) from the Go wrapper modules under
# e2e/upstream/ into e2e/.bin/<hash of the go.sum files>/, once; later runs reuse them.
# Prints the binary directory on stdout. Go's module and build caches stay in their default
# places (outside the clone) so a machine that built them before only links.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
UP="$ROOT/e2e/upstream"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
KEY="$(cat "$UP"/kube/go.mod "$UP"/kube/go.sum "$UP"/snapshot/go.mod "$UP"/snapshot/go.sum "$0" | sha256sum | cut -c1-16)"
BIN="$ROOT/e2e/.bin/$KEY"
NEED=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd snapshot-controller)
have_all() { for b in "${NEED[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
# One build at a time (CI starts one in the background while the Rust tests run); whoever
# waited finds the binaries there.
exec 9>"$ROOT/e2e/.bin/.lock"
flock 9
if have_all; then echo "$BIN"; exit 0; fi
start=$(date +%s)
KV=v1.36.3
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$KV -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/client-go/pkg/version.gitVersion=$KV -X k8s.io/component-base/version.gitTreeState=clean"
( cd "$UP/kube"
  echo "build-upstream: downloading modules (first run only)" >&2
  go mod download >&2
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$BIN/$c" ]] && continue
    echo "build-upstream: building $c" >&2
    go build -trimpath -ldflags "$LDF" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
  if [[ ! -x "$BIN/etcd" ]]; then
    echo "build-upstream: building etcd" >&2
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  fi )
( cd "$UP/snapshot"
  go mod download >&2
  if [[ ! -x "$BIN/snapshot-controller" ]]; then
    echo "build-upstream: building snapshot-controller" >&2
    go build -trimpath -ldflags "-s -w" -o "$BIN/snapshot-controller.tmp" \
      github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller >&2
    mv "$BIN/snapshot-controller.tmp" "$BIN/snapshot-controller"
  fi
  # The snapshot CRDs ship in the client module; copy them beside the binaries.
  CLIENT="$(go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8 2>/dev/null || true)"
  if [[ -z "$CLIENT" ]]; then
    go mod download github.com/kubernetes-csi/external-snapshotter/client/v8 >&2
    CLIENT="$(go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)"
  fi
  ls "$CLIENT/config/crd" >&2 || true
  mkdir -p "$BIN/crd" && cp "$CLIENT"/config/crd/snapshot.storage.k8s.io_*.yaml "$BIN/crd/" )
echo "build-upstream: done in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
