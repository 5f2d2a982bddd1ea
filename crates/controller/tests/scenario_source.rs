//! ReplicationSource scenarios with the real plan: the exact requests one reconcile pass makes
//! against a scripted API server, for the flows of a sync iteration.

use std::sync::Arc;

use crate::support::fixtures::paths::*;
use crate::support::fixtures::*;
use crate::support::passes::{
    assert_metric, assert_source_sync_counted, expect_deletes, expect_finished_source_reads,
    expect_fresh_source_reads, expect_source_pvc_pods, finish_pass, setup,
};
use http::Method;
use kube::runtime::controller::Action as CtrlAction;
use scribe_api::ReplicationSource;
use scribe_controller::context::RealPlanner;
use scribe_controller::reconcile::reconcile;
use serde_json::{Value, json};

/// A source that syncs continuously (no trigger), so the first pass starts at once.
fn continuous_source(copy_method: &str) -> Value {
    let mut j = source_json(copy_method);
    j["spec"].as_object_mut().unwrap().remove("trigger");
    j
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn first_snapshot_sync_creates_the_owned_snapshot_and_records_the_start() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_fresh_source_reads(&mut api, true).await;

    let apply = api.expect(Method::PATCH, PIT_SNAP).await;
    apply.assert_apply();
    let b = &apply.body;
    assert_eq!(b["kind"], "VolumeSnapshot");
    assert_eq!(b["spec"]["source"]["persistentVolumeClaimName"], "data");
    assert_eq!(
        b["metadata"]["ownerReferences"][0]["kind"],
        "ReplicationSource"
    );
    assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "uid-src");
    assert_eq!(
        b["metadata"]["labels"]["app.kubernetes.io/created-by"],
        "scribe"
    );
    apply.echo();

    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let status = &st.body["status"];
    assert_eq!(
        status["lastSyncStartTime"], "2024-05-01T10:00:10Z",
        "{status}"
    );
    assert_eq!(
        condition(status, "Synchronizing")["status"],
        "True",
        "{status}"
    );
    st.ok(continuous_source("Snapshot"));

    let (result, events) = finish_pass(api, ctx, task).await;
    let action = result.unwrap();
    assert_ne!(
        action,
        CtrlAction::await_change(),
        "waiting for the snapshot must poll"
    );
    assert!(events.iter().all(|e| e["regarding"]["name"] == "db"));
}

#[tokio::test]
async fn succeeded_job_records_the_sync_deletes_job_and_pit_copies_and_counts_it() {
    let (ctx, metrics, mut api) = setup(Arc::new(RealPlanner));
    let mut j = continuous_source("Snapshot");
    j["status"] = json!({"lastSyncStartTime": "2024-05-01T10:00:00Z"});
    let cr: ReplicationSource = serde_json::from_value(j).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_finished_source_reads(&mut api).await;

    // The status is written before anything is deleted: had the write failed, the Job and
    // the PiT copies would still be there for the next pass to finish the same iteration.
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let status = &st.body["status"];
    assert_eq!(status["lastSyncTime"], "2024-05-01T10:00:07Z", "{status}");
    assert!(status["lastSyncDuration"].is_string(), "{status}");
    assert_eq!(
        status["latestMoverStatus"]["result"], "Successful",
        "{status}"
    );
    st.ok(continuous_source("Snapshot"));

    // Then the deletes, in any order the plan chose, each with Background propagation for the Job.
    let deleted = expect_deletes(&mut api, SRC_JOB, 3).await;
    let mut want = vec![
        SRC_JOB.to_string(),
        PIT_PVC.to_string(),
        PIT_SNAP.to_string(),
    ];
    want.sort();
    assert_eq!(deleted, want);

    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();
    assert_source_sync_counted(&metrics);
}

#[tokio::test]
async fn failed_status_write_of_a_finished_iteration_deletes_nothing() {
    let (ctx, metrics, mut api) = setup(Arc::new(RealPlanner));
    let mut j = continuous_source("Snapshot");
    j["status"] = json!({"lastSyncStartTime": "2024-05-01T10:00:00Z"});
    let cr: ReplicationSource = serde_json::from_value(j).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_finished_source_reads(&mut api).await;
    api.expect(Method::PATCH, SRC_STATUS)
        .await
        .fail(500, "InternalError");

    // No DELETE, no Event: the Job and its PiT copies stay for the next pass to record.
    let (result, events) = finish_pass(api, ctx, task).await;
    assert!(result.is_err());
    assert!(events.is_empty(), "{events:?}");
    let text = metrics.render();
    assert!(
        !text.contains(r#"scribe_sync_success_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn missing_secret_reports_reconciled_false_with_a_warning_and_creates_no_job() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    expect_fresh_source_reads(&mut api, false).await;
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let status = &st.body["status"];
    assert_eq!(
        condition(status, "Reconciled")["status"],
        "False",
        "{status}"
    );
    assert!(
        condition(status, "Reconciled")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("rclone-secret"),
        "{status}"
    );
    st.ok(continuous_source("Snapshot"));

    // Only Events may follow: no Job, PVC or snapshot request.
    let (result, events) = finish_pass(api, ctx, task).await;
    result.unwrap();
    assert!(events.iter().any(|e| e["type"] == "Warning"), "{events:?}");
}

#[tokio::test]
async fn api_conflict_on_the_snapshot_apply_fails_the_pass_without_a_status_write() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    expect_fresh_source_reads(&mut api, true).await;
    api.expect(Method::PATCH, PIT_SNAP)
        .await
        .fail(409, "Conflict");
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is_retryable());
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn failed_status_write_fails_the_pass_and_publishes_no_event() {
    let (ctx, metrics, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    expect_fresh_source_reads(&mut api, true).await;
    api.expect(Method::PATCH, PIT_SNAP).await.echo();
    api.expect(Method::PATCH, SRC_STATUS)
        .await
        .fail(503, "ServiceUnavailable");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.category(), "server");
    assert!(
        err.to_string()
            .contains("status of ReplicationSource apps/db"),
        "{err}"
    );
    // Events and metrics describe a recorded transition: the next pass repeats it instead.
    drop(ctx);
    api.done().await;
    assert_metric(
        &metrics,
        r#"scribe_reconcile_errors_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
    );
}

#[tokio::test]
async fn direct_copy_of_a_volume_in_use_runs_the_mover_on_the_node_of_the_pod_using_it() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("None")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB).await.not_found();
    let app = |name: &str, claim: &str, node: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]},
            "status": {"phase": "Running"}
        })
    };
    expect_source_pvc_pods(
        &mut api,
        vec![
            app("logs-0", "logs", "node-a"),
            app("db-0", "data", "node-b"),
        ],
    )
    .await;
    // About to start a Job: the CR is read again to make sure the cache is current.
    api.expect(Method::GET, SRC_CR)
        .await
        .ok(continuous_source("None"));

    let apply = api.expect(Method::PATCH, SRC_JOB).await;
    apply.assert_apply();
    let spec = &apply.body["spec"]["template"]["spec"];
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"],
        json!(["node-b"]),
        "{spec}"
    );
    assert_eq!(spec["tolerations"][0]["key"], "dedicated", "{spec}");
    assert_eq!(
        spec["volumes"][0]["persistentVolumeClaim"],
        json!({"claimName": "data", "readOnly": false})
    );
    apply.echo();
    api.expect(Method::PATCH, SRC_STATUS)
        .await
        .ok(continuous_source("None"));
    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();
}

#[tokio::test]
async fn pausing_suspends_the_running_mover_job_by_a_merge_patch_of_its_parallelism() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let mut j = continuous_source("Snapshot");
    j["spec"]["paused"] = json!(true);
    j["status"] = json!({"lastSyncStartTime": "2024-05-01T10:00:00Z"});
    let cr: ReplicationSource = serde_json::from_value(j.clone()).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, PIT_SNAP).await.ok(ready_snapshot(
        "scribe-src-db",
        "data",
        "ReplicationSource",
        "2024-05-01T10:00:00Z",
    ));
    api.expect(Method::GET, PIT_PVC)
        .await
        .ok(pvc("scribe-src-db"));
    api.expect(Method::GET, SRC_JOB)
        .await
        .ok(running_job("scribe-rclone-src-db"));
    // No pod yet: listed by the Job's uid label, then the legacy one.
    for _ in 0..2 {
        api.expect(Method::GET, PODS)
            .await
            .ok(list("PodList", "v1", vec![]));
    }

    let scale = api.expect(Method::PATCH, SRC_JOB).await;
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(scale.body, json!({"spec": {"parallelism": 0}}));
    let mut suspended = running_job("scribe-rclone-src-db");
    suspended["spec"]["parallelism"] = json!(0);
    scale.ok(suspended);
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    let status = &st.body["status"];
    assert_eq!(
        condition(status, "Synchronizing")["reason"],
        "Paused",
        "{status}"
    );
    st.ok(j);
    let (result, events) = finish_pass(api, ctx, task).await;
    result.unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "MoverSuspended"),
        "{events:?}"
    );
}

#[tokio::test]
async fn after_a_switch_to_none_mid_iteration_the_old_snapshot_and_pvc_are_read_and_deleted() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let mut j = continuous_source("None");
    j["status"] = json!({"lastSyncStartTime": "2024-05-01T10:00:00Z"});
    let cr: ReplicationSource = serde_json::from_value(j.clone()).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    // An open iteration: the PiT objects are read although copyMethod None makes none.
    api.expect(Method::GET, PIT_SNAP).await.ok(ready_snapshot(
        "scribe-src-db",
        "data",
        "ReplicationSource",
        "2024-05-01T10:00:00Z",
    ));
    let mut restored = pvc("scribe-src-db");
    restored["spec"]["dataSource"] = json!({"apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot", "name": "scribe-src-db"});
    api.expect(Method::GET, PIT_PVC).await.ok(restored);
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;

    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    assert_eq!(
        condition(&st.body["status"], "Synchronizing")["reason"],
        "CleaningUp",
        "{}",
        st.body
    );
    st.ok(j);
    let deleted = expect_deletes(&mut api, SRC_JOB, 2).await;
    assert_eq!(deleted, vec![PIT_PVC.to_string(), PIT_SNAP.to_string()]);
    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();
}
