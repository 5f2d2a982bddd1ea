#!/usr/bin/env python3
"""Tests of the Helm chart in charts/scribe, with Helm's own Go SDK (helm-python-sdk).

Lints the chart, renders it with the default values and with charts/scribe/ci/all-on-values.yaml,
validates every rendered manifest (and every CRD in charts/scribe/crds/) against the Kubernetes
1.33 schemas, and checks what a reviewer would check by hand: the RBAC is exactly the contract's
rule set with no wildcard, the controller runs locked down, labels and selectors line up, values
reach the manifests, and bad values are refused.

Run from the repository root:  python3 hack/chart_test.py
Needs: pip install helm-python-sdk kubernetes-validate pyyaml   (the repo's .venv is used if present)
The last line printed is "N passed, N failed"; the exit code is non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
# SCRIBE_CHART lets the tests run against a copy of the chart (used to check that they catch breakage).
CHART = Path(os.environ.get("SCRIBE_CHART", REPO / "charts" / "scribe")).resolve()
ALL_ON = CHART / "ci" / "all-on-values.yaml"
KUBE_VERSION = "1.33"
NAMESPACE = "scribe-system"
RELEASE = "scribe"
MONITORING_API = "monitoring.coreos.com/v1"

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
    from helm_python import _native
except ImportError:
    # Why: CI and developers run `python3 hack/chart_test.py`; the packages live in the repo's venv.
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    raise

# The controller's permissions as agreed in CONTRACTS.md ("RBAC the controller needs"), one
# (apiGroup, resource, verb) triple per permission, so rule grouping in the YAML does not matter.
def _triples(groups: list[str], resources: list[str], verbs: list[str]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g in groups for r in resources for v in verbs}


EXPECTED_CLUSTER_RULES = (
    _triples(["scribe.backube"], ["replicationsources", "replicationdestinations"], ["get", "list", "watch"])
    | _triples(
        ["scribe.backube"],
        ["replicationsources/status", "replicationdestinations/status"],
        ["get", "patch", "update"],
    )
    | _triples(["batch"], ["jobs"], ["get", "list", "watch", "create", "patch", "delete"])
    | _triples([""], ["persistentvolumeclaims"], ["get", "list", "watch", "create", "patch", "delete"])
    | _triples([""], ["secrets"], ["get", "list", "watch"])
    | _triples([""], ["pods"], ["get", "list", "watch"])
    # get only: the mover's moverServiceAccount must exist before its Job is created (polled, not watched).
    | _triples([""], ["serviceaccounts"], ["get"])
    # get only: the mover's customCA ConfigMap and key must exist before its Job is created (polled, not watched).
    | _triples([""], ["configmaps"], ["get"])
    | _triples(["", "events.k8s.io"], ["events"], ["create", "patch"])
    | _triples(
        ["snapshot.storage.k8s.io"], ["volumesnapshots"], ["get", "list", "watch", "create", "patch", "delete"]
    )
)
EXPECTED_LEADER_RULES = _triples(["coordination.k8s.io"], ["leases"], ["get", "create", "update", "patch"])

REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


# ---------------------------------------------------------------------------------------------
# Rendering helpers


class Rendered:
    """One render of the chart: parsed objects plus NOTES.txt."""

    def __init__(self, manifests: dict[str, str]):
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    doc.setdefault("__template__", path)
                    self.objects.append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected exactly one {kind}, rendered {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)


def load_values(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def render(values: dict[str, Any] | None = None, api_versions: list[str] | None = None) -> Rendered:
    """Render offline as `helm template` would for an install into NAMESPACE on Kubernetes 1.33.

    Why the private call: Chart.render() does not expose the capability options, but the native
    helm_render takes `api_versions` and `kube_version` (as `helm template --api-versions
    --kube-version` do), which is what the ServiceMonitor gate needs.
    """
    with helm.Chart.load(CHART) as chart:
        opts: dict[str, Any] = {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "is_install": True,
            "kube_version": f"v{KUBE_VERSION}.0",
        }
        if api_versions:
            opts["api_versions"] = api_versions
        raw = _native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts))
    return Rendered(json.loads(raw))


def container(rendered: Rendered) -> dict[str, Any]:
    containers = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"expected one controller container, got {len(containers)}"
    return containers[0]


def args_map(c: dict[str, Any]) -> dict[str, list[str]]:
    """--flag=value arguments as {flag: [values]} (a flag given twice shows up twice)."""
    out: dict[str, list[str]] = {}
    for a in c.get("args", []):
        assert a.startswith("--") and "=" in a, f"argument {a!r} is not of the form --flag=value"
        flag, value = a.split("=", 1)
        out.setdefault(flag, []).append(value)
    return out


def strip_private(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("__")}


def k8s_validate(obj: dict[str, Any]) -> None:
    """Strict schema validation (unknown fields are errors) against the nearest supported version."""
    kubernetes_validate.validate(strip_private(obj), KUBE_VERSION, strict=True)


def rule_triples(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for rule in role.get("rules", []):
        assert not rule.get("resourceNames"), f"rule {rule} unexpectedly restricts resourceNames"
        assert not rule.get("nonResourceURLs"), f"rule {rule} grants nonResourceURLs"
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    out.add((g, r, v))
    return out


def find_wildcards(node: Any, path: str = "") -> list[str]:
    """Every place a '*' appears in a string value (wildcards in RBAC grant far more than named)."""
    hits: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            hits += find_wildcards(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            hits += find_wildcards(v, f"{path}[{i}]")
    elif isinstance(node, str) and "*" in node:
        hits.append(f"{path}={node!r}")
    return hits


def crd_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((CHART / "crds").glob("*.yaml")) + sorted((CHART / "crds").glob("*.yml")):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((path.name, doc))
    return docs


# ---------------------------------------------------------------------------------------------
# Tests: each is a function named after the behaviour it checks; an AssertionError fails it.

TESTS: list[Callable[[], str | None]] = []


def test(fn: Callable[[], str | None]) -> Callable[[], str | None]:
    TESTS.append(fn)
    return fn


@test
def lint_passes_strict_with_default_values() -> None:
    report = helm.lint(CHART, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == [], f"lint errors: {report['errors']}"
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert not bad, f"lint warnings/errors: {bad}"


@test
def lint_passes_strict_with_all_on_values() -> None:
    report = helm.lint(
        CHART, load_values(ALL_ON), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0"
    )
    assert report["errors"] == [], f"lint errors: {report['errors']}"
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert not bad, f"lint warnings/errors: {bad}"


@test
def chart_metadata_is_scribe_0_1_0() -> None:
    with helm.Chart.load(CHART) as chart:
        md = chart.metadata
    assert md["apiVersion"] == "v2", md["apiVersion"]
    assert md["name"] == "scribe", md["name"]
    assert md["version"] == "0.1.0", md["version"]
    assert md["appVersion"] == "0.1.0", md["appVersion"]


@test
def default_render_has_expected_objects_and_no_servicemonitor() -> None:
    r = render()
    assert r.kinds() == sorted(
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    ), r.kinds()


@test
def all_on_render_has_servicemonitor_when_monitoring_api_served() -> None:
    r = render(load_values(ALL_ON), api_versions=[MONITORING_API])
    assert len(r.of_kind("ServiceMonitor")) == 1, r.kinds()


@test
def servicemonitor_skipped_when_monitoring_api_not_served() -> None:
    r = render(load_values(ALL_ON))
    assert r.of_kind("ServiceMonitor") == [], "ServiceMonitor rendered although the cluster lacks its API"
    assert "no ServiceMonitor was created" in r.notes, "NOTES should tell the user the ServiceMonitor was skipped"


@test
def servicemonitor_skipped_when_disabled_even_if_api_served() -> None:
    r = render({}, api_versions=[MONITORING_API])
    assert r.of_kind("ServiceMonitor") == [], r.kinds()


@test
def every_default_manifest_validates_against_kubernetes_schema() -> str:
    r = render()
    for obj in r.objects:
        k8s_validate(obj)
    return f"{len(r.objects)} objects"


@test
def every_all_on_manifest_validates_against_kubernetes_schema() -> str:
    r = render(load_values(ALL_ON), api_versions=[MONITORING_API])
    checked = 0
    for obj in r.objects:
        if obj["kind"] == "ServiceMonitor":
            continue  # not a built-in kind: checked structurally in servicemonitor_structure_*
        k8s_validate(obj)
        checked += 1
    return f"{checked} objects"


@test
def servicemonitor_structure_targets_metrics_service() -> None:
    r = render(load_values(ALL_ON), api_versions=[MONITORING_API])
    sm, svc = r.one("ServiceMonitor"), r.one("Service")
    assert sm["apiVersion"] == MONITORING_API, sm["apiVersion"]
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "serviceMonitor.labels not applied"
    spec = sm["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}, spec["namespaceSelector"]
    for k, v in spec["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"].get(k) == v, f"ServiceMonitor selects {k}={v}, Service has no such label"
    [ep] = spec["endpoints"]
    port_names = [p["name"] for p in svc["spec"]["ports"]]
    assert ep["port"] in port_names, f"endpoint port {ep['port']} not among Service ports {port_names}"
    assert ep["path"] == "/metrics"
    assert ep["interval"] == "30s" and ep["scrapeTimeout"] == "10s", ep
    assert ep["metricRelabelings"][0]["action"] == "drop" and ep["relabelings"][0]["targetLabel"] == "cluster"


@test
def crds_in_chart_validate_as_customresourcedefinitions() -> str:
    docs = crd_docs()
    with helm.Chart.load(CHART) as chart:
        helm_crds = chart.crds
    if not docs:
        return "SKIPPED: charts/scribe/crds/ has no *.yaml yet (generated by crates/api)"
    assert len(helm_crds) >= 1, "Helm does not see the files in crds/"
    kinds = set()
    for name, doc in docs:
        assert doc.get("apiVersion") == "apiextensions.k8s.io/v1", f"{name}: apiVersion {doc.get('apiVersion')}"
        assert doc.get("kind") == "CustomResourceDefinition", f"{name}: kind {doc.get('kind')}"
        k8s_validate(doc)
        spec = doc["spec"]
        assert spec["group"] == "scribe.backube", f"{name}: group {spec['group']}"
        assert any(v["name"] == "v1alpha1" and v.get("served") for v in spec["versions"]), f"{name}: no v1alpha1"
        kinds.add(spec["names"]["kind"])
    assert kinds == {"ReplicationSource", "ReplicationDestination"}, f"CRD kinds {kinds}"
    return f"{len(docs)} CRDs"


@test
def clusterrole_covers_every_crd_plural_and_status() -> str:
    docs = crd_docs()
    if not docs:
        return "SKIPPED: no CRDs in charts/scribe/crds/ yet"
    granted = rule_triples(render().one("ClusterRole"))
    for _, doc in docs:
        plural = doc["spec"]["names"]["plural"]
        for verb in ("get", "list", "watch"):
            assert ("scribe.backube", plural, verb) in granted, f"ClusterRole lacks {verb} on {plural}"
        assert ("scribe.backube", f"{plural}/status", "patch") in granted, f"ClusterRole lacks patch on {plural}/status"
    return None


@test
def rbac_has_no_wildcard_anywhere() -> None:
    for values in ({}, load_values(ALL_ON)):
        r = render(values)
        for kind in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"):
            for obj in r.of_kind(kind):
                hits = find_wildcards(strip_private(obj))
                assert not hits, f"{kind} {obj['metadata']['name']} has wildcards: {hits}"


@test
def clusterrole_grants_exactly_the_contract_rules() -> None:
    got = rule_triples(render().one("ClusterRole"))
    missing, extra = EXPECTED_CLUSTER_RULES - got, got - EXPECTED_CLUSTER_RULES
    assert not missing and not extra, f"missing {sorted(missing)}; extra {sorted(extra)}"


@test
def leader_election_role_grants_exactly_leases_in_release_namespace() -> None:
    r = render()
    role = r.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE, role["metadata"]
    got = rule_triples(role)
    assert got == EXPECTED_LEADER_RULES, f"missing {EXPECTED_LEADER_RULES - got}; extra {got - EXPECTED_LEADER_RULES}"


@test
def bindings_bind_the_controller_serviceaccount_to_the_rendered_roles() -> None:
    for values in ({}, load_values(ALL_ON)):
        r = render(values)
        sa = r.one("ServiceAccount")["metadata"]
        dep_sa = r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        assert dep_sa == sa["name"], f"Deployment uses SA {dep_sa}, chart creates {sa['name']}"
        for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
            b, role = r.one(binding_kind), r.one(role_kind)
            assert b["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": role["metadata"]["name"],
            }, b["roleRef"]
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}], b[
                "subjects"
            ]


@test
def rbac_create_false_renders_no_rbac() -> None:
    r = render({"rbac": {"create": False}})
    kinds = set(r.kinds())
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}, kinds


@test
def serviceaccount_create_false_uses_given_name_and_requires_one() -> None:
    r = render({"serviceAccount": {"create": False, "name": "existing-sa"}})
    assert r.of_kind("ServiceAccount") == []
    dep_sa = r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert dep_sa == "existing-sa", f"Deployment uses SA {dep_sa!r}, not the given existing-sa"
    assert r.one("ClusterRoleBinding")["subjects"][0]["name"] == "existing-sa"
    try:
        render({"serviceAccount": {"create": False}})
    except helm.HelmError as e:
        assert "serviceAccount.name is required" in str(e), str(e)
    else:
        raise AssertionError("render without serviceAccount.name succeeded")


@test
def deployment_runs_locked_down() -> None:
    for values in ({}, load_values(ALL_ON)):
        r = render(values)
        pod = r.one("Deployment")["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532, psc
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, psc
        csc = container(r)["securityContext"]
        assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 65532, csc
        assert csc["allowPrivilegeEscalation"] is False, csc
        assert csc["readOnlyRootFilesystem"] is True, csc
        assert csc["capabilities"] == {"drop": ["ALL"]}, csc
        assert csc["seccompProfile"] == {"type": "RuntimeDefault"}, csc
        assert "privileged" not in csc or csc["privileged"] is False, csc
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), pod


@test
def deployment_default_flags_follow_controller_cli_contract() -> None:
    c = container(render())
    args = args_map(c)
    for flag, values in args.items():
        assert len(values) == 1, f"{flag} given {len(values)} times (clap rejects repeats)"
    assert args["--mover-image"] == ["ghcr.io/backube/scribe-mover:0.1.0"], args
    assert args["--mover-image-pull-policy"] == ["IfNotPresent"], args
    assert args["--metrics-bind-address"] == ["0.0.0.0:8080"], args
    assert args["--leader-elect"] == ["true"], args
    assert args["--leader-election-id"] == ["scribe-controller-leader"], args
    assert args["--log-level"] == ["info"] and args["--log-format"] == ["json"], args
    assert c["image"] == "ghcr.io/backube/scribe-controller:0.1.0", c["image"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", env
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", env


@test
def deployment_probes_and_port_use_metrics_server() -> None:
    for values, port in (({}, 8080), (load_values(ALL_ON), 9090)):
        c = container(render(values))
        [p] = c["ports"]
        assert p == {"name": "metrics", "containerPort": port, "protocol": "TCP"}, p
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c["livenessProbe"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, c["readinessProbe"]
        assert args_map(c)["--metrics-bind-address"] == [f"0.0.0.0:{port}"]
        assert c["resources"]["requests"] and c["resources"]["limits"], c.get("resources")


@test
def all_on_values_reach_the_deployment() -> None:
    values = load_values(ALL_ON)
    r = render(values)
    dep = r.one("Deployment")
    pod_tpl = dep["spec"]["template"]
    pod = pod_tpl["spec"]
    c = container(r)
    args = args_map(c)
    assert dep["metadata"]["name"] == "scribe-all-on" and dep["spec"]["replicas"] == 2, dep["metadata"]
    assert c["image"] == (
        "registry.example.com/scribe/scribe-controller:0.1.0-ci@" + values["image"]["digest"]
    ), c["image"]
    assert c["imagePullPolicy"] == "Always"
    assert args["--mover-image"] == ["registry.example.com/scribe/scribe-mover:0.1.0-ci"], args
    assert args["--mover-image-pull-policy"] == ["Always"], args
    assert args["--leader-election-id"] == ["scribe-ci-leader"], args
    assert args["--log-level"] == ["debug,kube=info"] and args["--log-format"] == ["text"], args
    assert args["--leader-election-namespace"] == [NAMESPACE], "extraArgs not appended"
    assert {"name": "RUST_BACKTRACE", "value": "1"} in c["env"], "extraEnv not applied"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["serviceAccountName"] == "scribe-ci", f"serviceAccount.name ignored: {pod['serviceAccountName']}"
    assert pod_tpl["metadata"]["annotations"] == values["podAnnotations"]
    assert pod_tpl["metadata"]["labels"]["example.com/tier"] == "infra"
    assert c["resources"] == values["resources"]
    sa = r.one("ServiceAccount")
    assert sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    svc = r.one("Service")
    assert svc["metadata"]["annotations"] == values["metrics"]["service"]["annotations"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8443, "targetPort": "metrics", "protocol": "TCP"}]


@test
def selectors_match_pod_labels_and_every_object_is_labelled() -> None:
    for values in ({}, load_values(ALL_ON)):
        r = render(values, api_versions=[MONITORING_API])
        dep = r.one("Deployment")
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        for k, v in dep["spec"]["selector"]["matchLabels"].items():
            assert pod_labels.get(k) == v, f"Deployment selector {k}={v} does not match its pods"
        for k, v in r.one("Service")["spec"]["selector"].items():
            assert pod_labels.get(k) == v, f"Service selector {k}={v} does not match the controller pods"
        for obj in r.objects:
            labels = obj["metadata"].get("labels", {})
            missing = [l for l in REQUIRED_LABELS if l not in labels]
            assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks labels {missing}"
            assert labels["app.kubernetes.io/version"] == "0.1.0"
            assert obj["kind"] in ("ClusterRole", "ClusterRoleBinding") or obj["metadata"].get(
                "namespace"
            ) == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']} not in the release namespace"


@test
def leader_election_disabled_drops_role_and_flag() -> None:
    r = render({"leaderElection": {"enabled": False}})
    assert r.of_kind("Role") == [] and r.of_kind("RoleBinding") == [], r.kinds()
    assert args_map(container(r))["--leader-elect"] == ["false"]


@test
def several_replicas_without_leader_election_are_refused() -> None:
    try:
        render({"replicaCount": 2, "leaderElection": {"enabled": False}})
    except helm.HelmError as e:
        assert "leaderElection.enabled" in str(e), str(e)
    else:
        raise AssertionError("replicaCount=2 without leader election rendered")


@test
def schema_accepts_default_and_all_on_values() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values({}))
        chart.validate_schema(chart.merge_values(load_values(ALL_ON)))


@test
def schema_rejects_typos_and_bad_values() -> str:
    bad_cases = [
        ({"replicaCount": 1, "imge": {}}, "imge"),
        ({"image": {"tags": "v1"}}, "tags"),
        ({"mover": {"imag": {}}}, "imag"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"log": {"format": "xml"}}, "format"),
        ({"metrics": {"port": 70000}}, "port"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"image": {"digest": "latest"}}, "digest"),
    ]
    with helm.Chart.load(CHART) as chart:
        for override, needle in bad_cases:
            try:
                chart.validate_schema(chart.merge_values(override))
            except helm.HelmValuesError as e:
                assert needle in str(e), f"error for {override} does not name {needle!r}: {e}"
            else:
                raise AssertionError(f"schema accepted {override}")
    return f"{len(bad_cases)} cases"


@test
def notes_explain_rclone_secret_and_first_replicationsource() -> None:
    notes = render().notes
    assert "rclone.conf" in notes and "create secret generic" in notes, notes
    assert "type = s3" in notes, "NOTES lacks an example S3 section"
    # The example ReplicationSource must be valid YAML with the seed's fields.
    start = notes.index("apiVersion: scribe.backube/v1alpha1")
    end = notes.index("YAML", start)
    block = notes[start:end]
    indent = len(notes[:start].rsplit("\n", 1)[1])
    doc = yaml.safe_load("\n".join(line[indent:] for line in block.splitlines()))
    assert doc["kind"] == "ReplicationSource", doc
    spec = doc["spec"]
    assert spec["sourcePVC"] and spec["trigger"]["schedule"], spec
    assert set(spec["rclone"]) == {"rcloneConfigSection", "rcloneDestPath", "rcloneConfig", "copyMethod"}, spec
    assert spec["rclone"]["rcloneConfig"] in notes.split("create secret generic", 1)[1].split()[0], (
        "the ReplicationSource must reference the Secret the NOTES create"
    )


# ---------------------------------------------------------------------------------------------


def main() -> int:
    helm.disable_logging() if hasattr(helm, "disable_logging") else None
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes schemas {KUBE_VERSION}, chart {CHART}")
    passed = failed = 0
    for fn in TESTS:
        try:
            note = fn()
        except Exception as e:  # noqa: BLE001 - any error fails this test, the others still run
            failed += 1
            detail = str(e) if isinstance(e, (AssertionError, helm.HelmError)) else traceback.format_exc()
            print(f"FAIL {fn.__name__}: {detail}")
        else:
            passed += 1
            print(f"ok   {fn.__name__}" + (f" ({note})" if note else ""))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
