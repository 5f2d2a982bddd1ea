#!/usr/bin/env bash
# Runs the end-to-end scenarios (e2e/scenarios) against the local cluster: brings it up
# (hack/cluster.sh up; a no-op when it is already up), runs `cargo test -p scribe-e2e`, and
# stops the cluster again if this script started it. With SCRIBE_E2E_EXTERNAL=1 it uses the
# caller's KUBECONFIG and SCRIBE_E2E_* variables instead (a real cluster, see e2e/README.md).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [[ "${SCRIBE_E2E_EXTERNAL:-0}" == 1 ]]; then
  exec cargo test -p scribe-e2e --test e2e -- "$@"
fi
started=0
if ! bash hack/cluster.sh status 2>/dev/null | grep -q "kube-apiserver running"; then
  started=1
fi
cleanup() {
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "e2e: failed; last lines of the component logs:" >&2
    for f in e2e/.cluster/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "----- $f" >&2; tail -n 25 "$f" >&2
    done
  fi
  if [[ $started == 1 && "${SCRIBE_E2E_KEEP:-0}" != 1 ]]; then bash hack/cluster.sh down || true; fi
  exit $rc
}
trap cleanup EXIT
bash hack/cluster.sh up
# shellcheck disable=SC1091
source e2e/.cluster/env
cargo test -p scribe-e2e --test e2e -- --test-threads "${SCRIBE_E2E_THREADS:-6}" "$@"
