//! Table-driven tests of the plan from YAML fixtures under `tests/fixtures/plan/` (format and
//! loading in `fixture/`).
//!
//! A fixture holds the CR, the observed objects, `now`, and what the plan must produce:
//! ordered actions (`apply <Kind> <name>` / `delete <Kind> <name>` / `release VolumeSnapshot
//! <name>` / `scale Job <name> to <n>`), a partial status (objects match by subset, `null`
//! means absent), conditions (status, reason, message substring), events (`Normal|Warning
//! <Reason>`), metrics and the requeue in seconds.

use std::path::Path;

use crate::fixture::{Fixture, Outcome, fixture_files, load};
use scribe_controller::plan::{Action, MetricIntent, ObjectKind};
use serde_json::Value;

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
        Action::ScaleJob { name, parallelism } => (
            format!("scale Job {name} to {parallelism}"),
            "Job".to_string(),
            name.clone(),
            None,
        ),
        Action::ReleaseVolumeSnapshot {
            name,
            owner_references,
            ..
        } => (
            format!("release VolumeSnapshot {name}"),
            "VolumeSnapshot".to_string(),
            name.clone(),
            Some(serde_json::json!({"metadata": {"ownerReferences": owner_references}})),
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

/// Runs one fixture file and fails with every difference from its expectations.
fn run_fixture(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(file);
    let fixture = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let outcome = fixture.run();
    let errors = check(&fixture, &outcome);
    assert!(
        errors.is_empty(),
        "{file} ({}):\n    {}",
        fixture.description,
        errors.join("\n    ")
    );
}

// One named test per fixture, generated by build.rs from tests/fixtures/plan/*.yaml.
include!(concat!(env!("OUT_DIR"), "/plan_fixture_tests.rs"));

#[test]
fn the_plan_fixtures_are_there() {
    let files = fixture_files();
    assert!(
        files.len() >= 10,
        "expected the plan fixtures, found {}",
        files.len()
    );
}
