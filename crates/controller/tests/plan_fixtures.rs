//! Table-driven tests of the plan from YAML fixtures under `tests/fixtures/plan/`.
//!
//! A fixture holds the CR, the observed objects, `now`, and what the plan must produce:
//! ordered actions (`apply <Kind> <name>` / `delete <Kind> <name>`), a partial status
//! (objects match by subset, `null` means absent), conditions (status, reason, message
//! substring), events (`Normal|Warning <Reason>`), metrics and the requeue in seconds.
//! Defaults keep fixtures short: a valid rclone Secret and a bound 10Gi source PVC are
//! observed unless listed in `missing`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::jiff::Timestamp;
use scribe_controller::plan::{
    Action, MetricIntent, MoverReport, MoverWaiting, ObjectKind, ObservedDestination,
    ObservedSource, Settings, plan_destination, plan_source,
};
use scribe_controller::snapshot::VolumeSnapshot;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fixture {
    description: String,
    now: String,
    #[serde(default)]
    source: Option<SourceInput>,
    #[serde(default)]
    destination: Option<DestinationInput>,
    #[serde(default)]
    missing: Vec<String>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceInput {
    cr: Value,
    #[serde(default)]
    secret: Option<Value>,
    #[serde(default, rename = "sourcePVC")]
    source_pvc: Option<Value>,
    #[serde(default)]
    snapshot: Option<Value>,
    #[serde(default, rename = "pitPVC")]
    pit_pvc: Option<Value>,
    #[serde(default)]
    job: Option<Value>,
    #[serde(default)]
    mover: Option<Mover>,
    #[serde(default)]
    mover_waiting: Option<Waiting>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DestinationInput {
    cr: Value,
    #[serde(default)]
    secret: Option<Value>,
    #[serde(default, rename = "destPVC")]
    dest_pvc: Option<Value>,
    #[serde(default)]
    job: Option<Value>,
    #[serde(default)]
    mover: Option<Mover>,
    #[serde(default)]
    mover_waiting: Option<Waiting>,
    #[serde(default)]
    snapshots: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Mover {
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    message: Option<String>,
}

/// Why the running Job's pod has not started (`moverWaiting: {reason, message}`).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Waiting {
    reason: String,
    #[serde(default)]
    message: String,
}

fn waiting(w: Option<&Waiting>) -> Option<MoverWaiting> {
    w.map(|w| MoverWaiting {
        reason: w.reason.clone(),
        message: w.message.clone(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    actions: Vec<String>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    conditions: Vec<ExpectCondition>,
    events: Vec<String>,
    #[serde(default)]
    metrics: Option<Vec<String>>,
    requeue_seconds: Option<u64>,
    /// Fields of applied objects: `{name, path (JSON pointer), value}`.
    #[serde(default)]
    object_fields: Vec<ObjectField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    reason: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    last_transition_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectField {
    kind: String,
    name: String,
    path: String,
    value: Value,
}

fn settings() -> Settings {
    Settings {
        mover_image: "quay.io/backube/scribe-mover:test".into(),
        mover_image_pull_policy: "IfNotPresent".into(),
    }
}

/// Deserializes a Kubernetes object, filling apiVersion/kind so fixtures can omit them.
fn object<T: serde::de::DeserializeOwned>(mut v: Value, api_version: &str, kind: &str) -> T {
    if let Value::Object(map) = &mut v {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(api_version.into()));
        map.entry("kind")
            .or_insert_with(|| Value::String(kind.into()));
    }
    serde_json::from_value(v).unwrap_or_else(|e| panic!("fixture {kind} does not deserialize: {e}"))
}

/// Objects the controller made carry an owner reference to the CR (uid-1, see [`fill_cr`]);
/// fixtures set `ownerReferences` themselves to model an object someone else created.
fn owned(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry("ownerReferences").or_insert_with(|| {
                serde_json::json!([{"apiVersion": "scribe.backube/v1alpha1", "kind": "Owner",
                    "name": "owner", "uid": "uid-1", "controller": true}])
            });
        }
    }
    v
}

fn fill_cr(mut cr: Value) -> Value {
    let meta = cr
        .as_object_mut()
        .expect("cr is a mapping")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let meta = meta.as_object_mut().expect("metadata is a mapping");
    meta.entry("namespace").or_insert_with(|| "ns".into());
    meta.entry("uid").or_insert_with(|| "uid-1".into());
    cr
}

fn default_secret(name: &str, section: &str) -> Secret {
    object(
        serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "100"},
            "stringData": {"rclone.conf": format!("[{section}]\ntype = s3\nprovider = Minio\nendpoint = http://minio:9000\n")},
        }),
        "v1",
        "Secret",
    )
}

fn default_source_pvc(name: &str) -> PersistentVolumeClaim {
    object(
        serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                     "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound"},
        }),
        "v1",
        "PersistentVolumeClaim",
    )
}

fn mover(m: Option<Mover>) -> Option<MoverReport> {
    m.map(|m| MoverReport {
        exit_code: m.exit_code,
        message: m.message,
    })
}

struct Outcome {
    actions: Vec<Action>,
    status: Value,
    events: Vec<String>,
    metrics: Vec<MetricIntent>,
    requeue: Option<std::time::Duration>,
}

fn run(f: &Fixture) -> Outcome {
    let now: Timestamp = f.now.parse().expect("fixture now is RFC 3339");
    let missing = |what: &str| f.missing.iter().any(|m| m == what);
    let events = |ev: &[scribe_controller::plan::EventIntent]| {
        ev.iter()
            .map(|e| {
                format!(
                    "{} {}",
                    if e.warning { "Warning" } else { "Normal" },
                    e.reason
                )
            })
            .collect()
    };
    if let Some(src) = &f.source {
        let cr: scribe_api::ReplicationSource = object(
            fill_cr(src.cr.clone()),
            "scribe.backube/v1alpha1",
            "ReplicationSource",
        );
        let secret = if missing("secret") {
            None
        } else {
            Some(src.secret.clone().map_or_else(
                || {
                    default_secret(
                        &cr.spec.rclone.rclone_config,
                        &cr.spec.rclone.rclone_config_section,
                    )
                },
                |v| object(v, "v1", "Secret"),
            ))
        };
        let source_pvc = if missing("sourcePVC") {
            None
        } else {
            Some(src.source_pvc.clone().map_or_else(
                || default_source_pvc(&cr.spec.source_pvc),
                |v| object(v, "v1", "PersistentVolumeClaim"),
            ))
        };
        let obs = ObservedSource {
            secret,
            source_pvc,
            snapshot: src.snapshot.clone().map(|v| {
                object::<VolumeSnapshot>(owned(v), "snapshot.storage.k8s.io/v1", "VolumeSnapshot")
            }),
            pit_pvc: src
                .pit_pvc
                .clone()
                .map(|v| object(owned(v), "v1", "PersistentVolumeClaim")),
            job: src
                .job
                .clone()
                .map(|v| object::<Job>(owned(v), "batch/v1", "Job")),
            mover: mover(src.mover.as_ref().map(|m| Mover {
                exit_code: m.exit_code,
                message: m.message.clone(),
            })),
            mover_waiting: waiting(src.mover_waiting.as_ref()),
            cr,
        };
        let plan = plan_source(&obs, &settings(), now);
        return Outcome {
            actions: plan.actions,
            status: serde_json::to_value(&plan.status).expect("status serializes"),
            events: events(&plan.events),
            metrics: plan.metrics,
            requeue: plan.requeue_after,
        };
    }
    let dst = f
        .destination
        .as_ref()
        .expect("fixture has source or destination");
    let cr: scribe_api::ReplicationDestination = object(
        fill_cr(dst.cr.clone()),
        "scribe.backube/v1alpha1",
        "ReplicationDestination",
    );
    let secret = if missing("secret") {
        None
    } else {
        Some(dst.secret.clone().map_or_else(
            || {
                default_secret(
                    &cr.spec.rclone.rclone_config,
                    &cr.spec.rclone.rclone_config_section,
                )
            },
            |v| object(v, "v1", "Secret"),
        ))
    };
    let obs = ObservedDestination {
        secret,
        dest_pvc: dst
            .dest_pvc
            .clone()
            .map(|v| object(owned(v), "v1", "PersistentVolumeClaim")),
        job: dst
            .job
            .clone()
            .map(|v| object::<Job>(owned(v), "batch/v1", "Job")),
        mover: mover(dst.mover.as_ref().map(|m| Mover {
            exit_code: m.exit_code,
            message: m.message.clone(),
        })),
        mover_waiting: waiting(dst.mover_waiting.as_ref()),
        snapshots: dst
            .snapshots
            .iter()
            .map(|v| {
                object::<VolumeSnapshot>(
                    owned(v.clone()),
                    "snapshot.storage.k8s.io/v1",
                    "VolumeSnapshot",
                )
            })
            .collect(),
        cr,
    };
    let plan = plan_destination(&obs, &settings(), now);
    Outcome {
        actions: plan.actions,
        status: serde_json::to_value(&plan.status).expect("status serializes"),
        events: events(&plan.events),
        metrics: plan.metrics,
        requeue: plan.requeue_after,
    }
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Job => "Job",
        ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
        ObjectKind::VolumeSnapshot => "VolumeSnapshot",
    }
}

/// `(summary, kind, name, object as JSON)` of an action.
fn describe(a: &Action) -> (String, String, String, Option<Value>) {
    let applied = |kind: &str, name: Option<&String>, v: Value| {
        let name = name.cloned().unwrap_or_default();
        (
            format!("apply {kind} {name}"),
            kind.to_string(),
            name,
            Some(v),
        )
    };
    match a {
        Action::ApplyVolumeSnapshot(s) => applied(
            "VolumeSnapshot",
            s.metadata.name.as_ref(),
            serde_json::to_value(s).expect("json"),
        ),
        Action::ApplyPvc(p) => applied(
            "PersistentVolumeClaim",
            p.metadata.name.as_ref(),
            serde_json::to_value(p).expect("json"),
        ),
        Action::ApplyJob(j) => applied(
            "Job",
            j.metadata.name.as_ref(),
            serde_json::to_value(j).expect("json"),
        ),
        Action::Delete { kind, name } => (
            format!("delete {} {name}", kind_name(*kind)),
            kind_name(*kind).to_string(),
            name.clone(),
            None,
        ),
    }
}

fn metric_name(m: &MetricIntent) -> String {
    match m {
        MetricIntent::SyncSucceeded { .. } => "SyncSucceeded".into(),
        MetricIntent::SyncFailed => "SyncFailed".into(),
        MetricIntent::MissedInterval => "MissedInterval".into(),
        MetricIntent::OutOfSync(b) => format!("OutOfSync({b})"),
    }
}

/// Expected ⊆ actual for objects; exact for everything else; `null` matches absent.
fn partial_match(path: &str, expected: &Value, actual: Option<&Value>, errors: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Object(exp), Some(Value::Object(act))) => {
            for (k, v) in exp {
                partial_match(&format!("{path}.{k}"), v, act.get(k), errors);
            }
        }
        (exp, Some(act)) if exp == act => {}
        (exp, act) => errors.push(format!(
            "{path}: expected {exp}, got {}",
            act.map_or("<absent>".into(), Value::to_string)
        )),
    }
}

fn check(f: &Fixture, o: &Outcome) -> Vec<String> {
    let mut errors = Vec::new();
    let described: Vec<_> = o.actions.iter().map(describe).collect();
    let actions: Vec<&String> = described.iter().map(|d| &d.0).collect();
    if actions
        .iter()
        .map(|s| s.as_str())
        .ne(f.expect.actions.iter().map(String::as_str))
    {
        errors.push(format!(
            "actions: expected {:?}, got {actions:?}",
            f.expect.actions
        ));
    }
    if o.events != f.expect.events {
        errors.push(format!(
            "events: expected {:?}, got {:?}",
            f.expect.events, o.events
        ));
    }
    if let Some(expected) = &f.expect.metrics {
        let got: Vec<String> = o.metrics.iter().map(metric_name).collect();
        if &got != expected {
            errors.push(format!("metrics: expected {expected:?}, got {got:?}"));
        }
    }
    let requeue = o.requeue.map(|d| d.as_secs());
    if requeue != f.expect.requeue_seconds {
        errors.push(format!(
            "requeue: expected {:?}s, got {requeue:?}s",
            f.expect.requeue_seconds
        ));
    }
    if let Some(status) = &f.expect.status {
        partial_match("status", status, Some(&o.status), &mut errors);
    }
    let conditions = o
        .status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &f.expect.conditions {
        let Some(actual) = conditions.iter().find(|a| a["type"] == c.type_.as_str()) else {
            errors.push(format!("condition {} missing", c.type_));
            continue;
        };
        if actual["status"] != c.status.as_str() || actual["reason"] != c.reason.as_str() {
            errors.push(format!(
                "condition {}: expected {}/{}, got {}/{} ({})",
                c.type_, c.status, c.reason, actual["status"], actual["reason"], actual["message"]
            ));
        }
        if let Some(m) = &c.message
            && !actual["message"]
                .as_str()
                .unwrap_or_default()
                .contains(m.as_str())
        {
            errors.push(format!(
                "condition {} message {:?} does not contain {m:?}",
                c.type_, actual["message"]
            ));
        }
        if let Some(t) = &c.last_transition_time
            && actual["lastTransitionTime"] != t.as_str()
        {
            errors.push(format!(
                "condition {} lastTransitionTime: expected {t}, got {}",
                c.type_, actual["lastTransitionTime"]
            ));
        }
    }
    for field in &f.expect.object_fields {
        let Some((_, _, _, Some(obj))) = described
            .iter()
            .find(|d| d.1 == field.kind && d.2 == field.name && d.3.is_some())
        else {
            errors.push(format!("no applied {} {}", field.kind, field.name));
            continue;
        };
        let got = obj.pointer(&field.path);
        let absent_ok = field.value.is_null() && got.is_none_or(Value::is_null);
        if !absent_ok && got != Some(&field.value) {
            errors.push(format!(
                "{} {} {}: expected {}, got {got:?}",
                field.kind, field.name, field.path, field.value
            ));
        }
    }
    errors
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_plan_fixture_produces_its_expected_plan() {
    let files = fixture_files();
    assert!(
        files.len() >= 10,
        "expected the plan fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable fixture");
        let fixture: Fixture = match serde_yaml::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}: invalid fixture: {e}", path.display()));
                continue;
            }
        };
        let outcome = run(&fixture);
        let errors = check(&fixture, &outcome);
        if !errors.is_empty() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            failures.push(format!(
                "{name} ({}):\n    {}",
                fixture.description,
                errors.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
