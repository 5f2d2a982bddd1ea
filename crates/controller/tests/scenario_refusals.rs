//! Writes the API server refuses (quota, admission webhook, RBAC, invalid object) reach the
//! custom resource: `Reconciled=False` with reason `ApplyFailed` and the API's own message,
//! plus a Warning Event — against a scripted API server answering 403 / 422.

use std::sync::Arc;

use crate::support::fixtures::paths::*;
use crate::support::fixtures::*;
use crate::support::passes::{
    expect_fresh_source_reads, expect_source_pvc_pods, finish_pass, setup,
};
use http::Method;
use scribe_api::ReplicationSource;
use scribe_controller::context::RealPlanner;
use scribe_controller::reconcile::reconcile;
use serde_json::{Value, json};

fn continuous_source(copy_method: &str) -> Value {
    let mut j = source_json(copy_method);
    j["spec"].as_object_mut().unwrap().remove("trigger");
    j
}

fn refusal(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn reconciled(status: &Value) -> &Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Reconciled"))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_quota_refusal_of_the_snapshot_lands_in_the_status_and_a_warning_event() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_fresh_source_reads(&mut api, true).await;
    let quota = "volumesnapshots.snapshot.storage.k8s.io \"scribe-src-db\" is forbidden: exceeded quota: snaps, requested: count/volumesnapshots.snapshot.storage.k8s.io=1, used: count/volumesnapshots.snapshot.storage.k8s.io=5, limited: count/volumesnapshots.snapshot.storage.k8s.io=5";
    api.expect(Method::PATCH, PIT_SNAP)
        .await
        .respond(403, refusal(403, "Forbidden", quota));

    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let status = &st.body["status"];
    let c = reconciled(status);
    assert_eq!(c["status"], "False", "{status}");
    assert_eq!(c["reason"], "ApplyFailed", "{status}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("VolumeSnapshot scribe-src-db") && msg.contains("exceeded quota: snaps"),
        "{msg}"
    );
    assert!(
        status.get("lastSyncStartTime").is_none(),
        "a refused iteration start is not recorded: {status}"
    );
    st.ok(continuous_source("Snapshot"));

    let (result, events) = finish_pass(api, ctx, task).await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "forbidden");
    let warning = events
        .iter()
        .find(|e| e["reason"] == "ApplyFailed")
        .unwrap_or_else(|| panic!("no ApplyFailed event in {events:?}"));
    assert_eq!(warning["type"], "Warning");
    assert!(
        warning["note"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeded quota"),
        "{warning}"
    );
}

#[tokio::test]
async fn an_admission_webhook_denial_of_the_job_lands_in_the_status() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("None")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;
    api.expect(Method::GET, SRC_CR)
        .await
        .ok(continuous_source("None"));
    let denial = "admission webhook \"policy.example.com\" denied the request: images must come from registry.example.com";
    api.expect(Method::PATCH, SRC_JOB)
        .await
        .respond(422, refusal(422, "Invalid", denial));

    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let c = reconciled(&st.body["status"]);
    assert_eq!(c["reason"], "ApplyFailed", "{}", st.body);
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("denied the request: images must come from"),
        "{c}"
    );
    st.ok(continuous_source("None"));

    let (result, events) = finish_pass(api, ctx, task).await;
    assert_eq!(result.unwrap_err().category(), "invalid");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "ApplyFailed" && e["type"] == "Warning"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_conflict_is_only_retried_not_reported() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_fresh_source_reads(&mut api, true).await;
    api.expect(Method::PATCH, PIT_SNAP)
        .await
        .fail(409, "Conflict");
    let (result, events) = finish_pass(api, ctx, task).await;
    assert_eq!(result.unwrap_err().category(), "conflict");
    assert!(events.is_empty(), "{events:?}");
}
