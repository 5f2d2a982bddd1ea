#!/usr/bin/env python3
"""Renders charts/scribe with Helm's own SDK (helm-python-sdk) exactly as `helm install scribe
charts/scribe -n scribe-system` would, for hack/cluster.sh.

Writes to OUT_DIR:
  rbac.yaml        every rendered object except the controller Deployment, its Service and
                   ServiceMonitor (the local cluster runs the controller as a process instead)
  controller.json  {"serviceAccount": ..., "args": [...], "env": {...}} of the Deployment's
                   container, so the process runs with the same flags and identity
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm
import yaml
from helm_python import _native

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "scribe"
SKIP = {"Deployment", "Service", "ServiceMonitor"}


def main() -> int:
    out_dir = Path(sys.argv[1])
    namespace = sys.argv[2] if len(sys.argv) > 2 else "scribe-system"
    with helm.Chart.load(str(CHART)) as chart:
        opts = {"name": "scribe", "namespace": namespace, "is_install": True, "kube_version": "v1.36.3"}
        raw = _native.call_string("helm_render", chart._raw(), json.dumps({}), json.dumps(opts))
    manifests = json.loads(raw)
    kept, deployment = [], None
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            if doc["kind"] == "Deployment":
                deployment = doc
            if doc["kind"] in SKIP:
                continue
            doc.setdefault("metadata", {}).setdefault("namespace", namespace) if doc["kind"] in (
                "ServiceAccount", "Role", "RoleBinding") else None
            kept.append(doc)
    if deployment is None:
        print("render_chart: the chart rendered no Deployment", file=sys.stderr)
        return 1
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value", "") for e in c.get("env", []) if "value" in e}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rbac.yaml").write_text(yaml.safe_dump_all(kept, sort_keys=False))
    (out_dir / "controller.json").write_text(json.dumps(
        {"serviceAccount": pod.get("serviceAccountName", "default"), "args": c.get("args", []), "env": env},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
