//! Runtime scenarios with a scripted plan: what observe reads (and hands the plan), and the
//! exact requests apply / status / events send for a given plan, including 404, 409 and 500
//! answers. The plan itself is tested in `plan/`; the real plan drives `scenario_source.rs`
//! and `scenario_destination.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fixtures::paths::*;
use crate::support::fixtures::*;
use crate::support::passes::{
    assert_metric, assert_source_sync_counted, expect_finished_destination_reads,
    expect_finished_source_reads, expect_fresh_source_reads, expect_source_pvc_pods, now, setup,
};
use crate::support::scripted::Scripted;
use http::Method;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;
use kube::runtime::controller::Action as CtrlAction;
use scribe_api::{
    ReplicationDestination, ReplicationDestinationStatus, ReplicationSource,
    ReplicationSourceStatus,
};
use scribe_controller::plan::{Action, EventIntent, EventReason, MetricIntent, ObjectKind, Plan};
use scribe_controller::reconcile::{error_policy, reconcile};
use scribe_controller::snapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};
use serde_json::json;

fn condition(type_: &str, status: &str, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: Time(now()),
        observed_generation: Some(1),
    }
}

fn plan<S>(actions: Vec<Action>, status: S) -> Plan<S> {
    Plan {
        actions,
        status,
        events: vec![],
        metrics: vec![],
        requeue_after: None,
    }
}

fn source(copy_method: &str) -> ReplicationSource {
    serde_json::from_value(source_json(copy_method)).unwrap()
}

#[tokio::test]
async fn source_first_snapshot_sync_reads_everything_then_applies_snapshot_writes_status_and_event()
{
    let planner = Arc::new(Scripted::default());
    let snap = VolumeSnapshot {
        metadata: ObjectMeta {
            name: Some("scribe-src-db".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some("data".into()),
                ..Default::default()
            },
            volume_snapshot_class_name: None,
        },
        status: None,
    };
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        last_sync_start_time: Some(Time(now())),
        ..Default::default()
    };
    let mut p = plan(vec![Action::ApplyVolumeSnapshot(Box::new(snap))], status);
    p.events.push(EventIntent {
        warning: false,
        reason: EventReason::SyncStarted,
        action: "Synchronize".into(),
        note: "started".into(),
    });
    *planner.source.lock().unwrap() = Some(p);
    let (ctx, _, mut api) = setup(planner.clone());

    let task = tokio::spawn(reconcile(Arc::new(source("Snapshot")), ctx.clone()));
    expect_fresh_source_reads(&mut api, true).await;
    let apply = api.expect(Method::PATCH, PIT_SNAP).await;
    apply.assert_apply();
    assert_eq!(apply.body["apiVersion"], "snapshot.storage.k8s.io/v1");
    assert_eq!(apply.body["kind"], "VolumeSnapshot");
    assert_eq!(
        apply.body["spec"]["source"]["persistentVolumeClaimName"],
        "data"
    );
    apply.echo();
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    assert_eq!(
        st.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        st.body["status"]["conditions"][0]["reason"],
        "SyncInProgress"
    );
    assert_eq!(
        st.body["status"]["lastSyncStartTime"],
        "2024-05-01T10:00:10Z"
    );
    st.ok(source_json("Snapshot"));
    let ev = api.expect(Method::POST, EVENTS).await;
    assert_eq!(ev.body["reason"], "SyncStarted");
    assert_eq!(ev.body["type"], "Normal");
    assert_eq!(ev.body["action"], "Synchronize");
    assert_eq!(ev.body["regarding"]["kind"], "ReplicationSource");
    assert_eq!(ev.body["regarding"]["name"], "db");
    assert_eq!(ev.body["reportingController"], "scribe-controller");
    assert_eq!(ev.body["reportingInstance"], "test-pod");
    ev.created();

    assert_eq!(task.await.unwrap().unwrap(), CtrlAction::await_change());
    drop(ctx);
    api.done().await;

    let seen = planner.seen_source.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let o = &seen[0];
    assert!(o.secret.is_some() && o.source_pvc.is_some());
    assert!(o.snapshot.is_none() && o.pit_pvc.is_none() && o.job.is_none() && o.mover.is_none());
}

#[tokio::test]
async fn source_finished_job_hands_mover_report_to_plan_then_writes_status_deletes_and_counts_success()
 {
    let planner = Arc::new(Scripted::default());
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "False", "WaitingForSchedule")],
        last_sync_time: Some(Time(now())),
        last_sync_duration: Some("7s".into()),
        ..Default::default()
    };
    let mut p = plan(
        vec![
            Action::Delete {
                kind: ObjectKind::Job,
                name: "scribe-rclone-src-db".into(),
            },
            Action::Delete {
                kind: ObjectKind::PersistentVolumeClaim,
                name: "scribe-src-db".into(),
            },
            Action::Delete {
                kind: ObjectKind::VolumeSnapshot,
                name: "scribe-src-db".into(),
            },
        ],
        status,
    );
    p.metrics.push(MetricIntent::SyncSucceeded {
        duration: Duration::from_secs(7),
        bytes_transferred: 200,
        files_transferred: 2,
        finished_at: now(),
    });
    p.requeue_after = Some(Duration::from_secs(3590));
    *planner.source.lock().unwrap() = Some(p);
    let (ctx, metrics, mut api) = setup(planner.clone());

    let task = tokio::spawn(reconcile(Arc::new(source("Snapshot")), ctx.clone()));
    expect_finished_source_reads(&mut api).await;
    // The status first, then the deletes in plan order.
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    assert_eq!(st.body["status"]["lastSyncDuration"], "7s");
    st.ok(source_json("Snapshot"));
    let del = api.expect(Method::DELETE, SRC_JOB).await;
    assert_eq!(del.body["propagationPolicy"], "Background");
    del.ok(status_success());
    // Already gone: a 404 on delete is success and the pass goes on.
    api.expect(Method::DELETE, PIT_PVC).await.not_found();
    api.expect(Method::DELETE, PIT_SNAP)
        .await
        .ok(status_success());

    assert_eq!(
        task.await.unwrap().unwrap(),
        CtrlAction::requeue(Duration::from_secs(3590))
    );
    drop(ctx);
    api.done().await;

    let seen = planner.seen_source.lock().unwrap();
    let mover = seen[0].mover.as_ref().expect("mover report observed");
    assert_eq!(mover.exit_code, Some(0));
    assert_eq!(mover.message.as_deref(), Some(SUMMARY_OK));
    assert!(
        seen[0]
            .snapshot
            .as_ref()
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .ready_to_use
            == Some(true)
    );
    assert_source_sync_counted(&metrics);
    assert_metric(
        &metrics,
        r#"scribe_reconcile_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
    );
}

#[tokio::test]
async fn source_with_missing_secret_writes_failed_status_and_warning_without_touching_jobs() {
    let planner = Arc::new(Scripted::default());
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Reconciled", "False", "Error")],
        ..Default::default()
    };
    let mut p = plan(vec![], status);
    p.events.push(EventIntent {
        warning: true,
        reason: EventReason::ConfigError,
        action: "Validate".into(),
        note: "Secret rclone-secret not found".into(),
    });
    *planner.source.lock().unwrap() = Some(p);
    let (ctx, _, mut api) = setup(planner.clone());

    let task = tokio::spawn(reconcile(Arc::new(source("None")), ctx.clone()));
    api.expect(Method::GET, SECRET).await.not_found();
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    // copyMethod None: no PiT snapshot or PVC to look for.
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    assert_eq!(st.body["status"]["conditions"][0]["type"], "Reconciled");
    assert_eq!(st.body["status"]["conditions"][0]["status"], "False");
    st.ok(source_json("None"));
    let ev = api.expect(Method::POST, EVENTS).await;
    assert_eq!(ev.body["type"], "Warning");
    assert_eq!(ev.body["reason"], "ConfigError");
    assert_eq!(ev.body["note"], "Secret rclone-secret not found");
    ev.created();

    task.await.unwrap().unwrap();
    drop(ctx);
    api.done().await;
    assert!(planner.seen_source.lock().unwrap()[0].secret.is_none());
}

#[tokio::test]
async fn a_stale_cached_cr_never_starts_a_job_and_the_pass_is_planned_again() {
    let planner = Arc::new(Scripted::default());
    let job = Job {
        metadata: ObjectMeta {
            name: Some("scribe-rclone-src-db".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        ..Default::default()
    };
    *planner.source.lock().unwrap() = Some(plan(vec![Action::ApplyJob(Box::new(job))], status));
    let (ctx, _, mut api) = setup(planner.clone());

    let task = tokio::spawn(reconcile(Arc::new(source("None")), ctx.clone()));
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;
    // The API server has a newer CR (our last status write) than the cache gave the pass.
    let mut newer = source_json("None");
    newer["metadata"]["resourceVersion"] = "11".into();
    api.expect(Method::GET, SRC_CR).await.ok(newer);

    // No Job, no status, no Event: the pass ends and comes back soon with the fresh CR.
    assert_eq!(
        task.await.unwrap().unwrap(),
        CtrlAction::requeue(Duration::from_secs(1))
    );
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn apply_conflict_fails_the_pass_before_status_and_requeues_with_backoff() {
    let planner = Arc::new(Scripted::default());
    let job = Job {
        metadata: ObjectMeta {
            name: Some("scribe-rclone-src-db".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        ..Default::default()
    };
    *planner.source.lock().unwrap() = Some(plan(vec![Action::ApplyJob(Box::new(job))], status));
    let (ctx, metrics, mut api) = setup(planner.clone());
    let cr = Arc::new(source("None"));

    let task = tokio::spawn(reconcile(cr.clone(), ctx.clone()));
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;
    // About to start a Job: the CR is read again to make sure the cache is current.
    api.expect(Method::GET, SRC_CR)
        .await
        .ok(source_json("None"));
    let apply = api.expect(Method::PATCH, SRC_JOB).await;
    apply.assert_apply();
    assert_eq!(apply.body["kind"], "Job");
    apply.fail(409, "Conflict");

    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.category(), "conflict");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("Job apps/scribe-rclone-src-db"),
        "{err}"
    );
    assert_eq!(
        error_policy(cr.clone(), &err, ctx.clone()),
        CtrlAction::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(cr, &err, ctx.clone()),
        CtrlAction::requeue(Duration::from_secs(10))
    );
    drop(ctx);
    api.done().await;
    assert_metric(
        &metrics,
        r#"scribe_reconcile_errors_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
    );
}

#[tokio::test]
async fn server_error_while_observing_stops_the_pass_before_planning() {
    let planner = Arc::new(Scripted::default());
    let (ctx, _, mut api) = setup(planner.clone());
    let task = tokio::spawn(reconcile(Arc::new(source("None")), ctx.clone()));
    api.expect(Method::GET, SECRET)
        .await
        .fail(500, "InternalError");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.category(), "server");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("Secret apps/rclone-secret"),
        "{err}"
    );
    drop(ctx);
    api.done().await;
    assert!(planner.seen_source.lock().unwrap().is_empty());
}

#[tokio::test]
async fn forbidden_is_not_retried_quickly() {
    let planner = Arc::new(Scripted::default());
    let (ctx, _, mut api) = setup(planner.clone());
    let cr = Arc::new(source("None"));
    let task = tokio::spawn(reconcile(cr.clone(), ctx.clone()));
    api.expect(Method::GET, SECRET).await.fail(403, "Forbidden");
    let err = task.await.unwrap().unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        error_policy(cr, &err, ctx.clone()),
        CtrlAction::requeue(Duration::from_secs(300))
    );
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn unchanged_status_is_not_written() {
    let planner = Arc::new(Scripted::default());
    let mut cr = source("None");
    let status = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        ..Default::default()
    };
    cr.status = Some(status.clone());
    let mut p = plan(vec![], status);
    p.requeue_after = Some(Duration::from_secs(30));
    *planner.source.lock().unwrap() = Some(p);
    let (ctx, _, mut api) = setup(planner.clone());
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB)
        .await
        .ok(running_job("scribe-rclone-src-db"));
    // A running Job: its pods are listed for why it may not have started; no writes.
    let pods = api.expect(Method::GET, PODS).await;
    assert_eq!(
        pods.query("labelSelector"),
        Some("batch.kubernetes.io/controller-uid=uid-scribe-rclone-src-db")
    );
    pods.ok(json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "scribe-rclone-src-db-x", "namespace": "apps"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "mover", "image": "mover:test", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
            }]},
        }],
    }));
    assert_eq!(
        task.await.unwrap().unwrap(),
        CtrlAction::requeue(Duration::from_secs(30))
    );
    let seen = planner.seen_source.lock().unwrap().clone();
    let waiting = seen.last().and_then(|o| o.mover_waiting.clone());
    assert_eq!(
        waiting.map(|w| (w.reason, w.message)),
        Some(("ImagePullBackOff".into(), "Back-off pulling image".into()))
    );
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn cleared_status_fields_are_removed_with_nulls() {
    let planner = Arc::new(Scripted::default());
    let mut cr = source("None");
    cr.status = Some(ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        next_retry_time: Some(Time(now())),
        consecutive_failures: Some(2),
        ..Default::default()
    });
    let new = ReplicationSourceStatus {
        conditions: vec![condition("Synchronizing", "True", "SyncInProgress")],
        ..Default::default()
    };
    *planner.source.lock().unwrap() = Some(plan(vec![], new));
    let (ctx, _, mut api) = setup(planner.clone());
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, SRC_JOB).await.not_found();
    expect_source_pvc_pods(&mut api, vec![]).await;
    let st = api.expect(Method::PATCH, SRC_STATUS).await;
    assert_eq!(
        st.body,
        json!({"status": {"nextRetryTime": null, "consecutiveFailures": null}})
    );
    st.ok(source_json("None"));
    task.await.unwrap().unwrap();
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn deleted_resource_is_left_to_the_garbage_collector() {
    let planner = Arc::new(Scripted::default());
    let mut cr = source("Snapshot");
    cr.metadata.deletion_timestamp = Some(Time(now()));
    let (ctx, _, api) = setup(planner.clone());
    assert_eq!(
        reconcile(Arc::new(cr), ctx.clone()).await.unwrap(),
        CtrlAction::await_change()
    );
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn destination_snapshot_publish_lists_owned_snapshots_then_rotates_latest_image() {
    let planner = Arc::new(Scripted::default());
    let old = "scribe-dest-db-20240501090000";
    let new = "scribe-dest-db-20240501100008";
    let mut cr: ReplicationDestination =
        serde_json::from_value(destination_json("Snapshot")).unwrap();
    cr.status = Some(ReplicationDestinationStatus {
        latest_image: Some(TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: old.into(),
        }),
        ..Default::default()
    });
    let status = ReplicationDestinationStatus {
        latest_image: Some(TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: new.into(),
        }),
        last_sync_time: Some(Time(now())),
        ..Default::default()
    };
    let mut p = plan(
        vec![
            Action::Delete {
                kind: ObjectKind::VolumeSnapshot,
                name: old.into(),
            },
            Action::Delete {
                kind: ObjectKind::Job,
                name: "scribe-rclone-dst-db".into(),
            },
        ],
        status,
    );
    p.metrics.push(MetricIntent::OutOfSync(false));
    *planner.destination.lock().unwrap() = Some(p);
    let (ctx, metrics, mut api) = setup(planner.clone());

    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    expect_finished_destination_reads(
        &mut api,
        vec![
            ready_snapshot(
                old,
                "scribe-dest-db",
                "ReplicationDestination",
                "2024-05-01T09:00:00Z",
            ),
            ready_snapshot(
                new,
                "scribe-dest-db",
                "ReplicationDestination",
                "2024-05-01T10:00:08Z",
            ),
        ],
    )
    .await;
    // latestImage moves to the new image before the old one is deleted.
    let st = api.expect(Method::PATCH, DST_STATUS).await;
    assert_eq!(st.body["status"]["latestImage"]["name"], new);
    st.ok(destination_json("Snapshot"));
    api.expect(Method::DELETE, &format!("{SNAPS}/{old}"))
        .await
        .ok(status_success());
    let del = api.expect(Method::DELETE, DST_JOB).await;
    assert_eq!(del.body["propagationPolicy"], "Background");
    del.ok(status_success());

    task.await.unwrap().unwrap();
    drop(ctx);
    api.done().await;
    let seen = planner.seen_destination.lock().unwrap();
    assert_eq!(seen[0].snapshots.len(), 2);
    assert_eq!(seen[0].mover.as_ref().unwrap().exit_code, Some(0));
    assert_metric(
        &metrics,
        r#"scribe_volume_out_of_sync{obj_name="db",obj_namespace="apps",role="destination",method="rclone"} 0"#,
    );
}

#[tokio::test]
async fn destination_without_snapshots_does_not_list_them_and_uses_its_own_pvc() {
    let planner = Arc::new(Scripted::default());
    let mut json = destination_json("None");
    json["spec"]["rclone"]["destinationPVC"] = "restore-here".into();
    let cr: ReplicationDestination = serde_json::from_value(json).unwrap();
    *planner.destination.lock().unwrap() =
        Some(plan(vec![], ReplicationDestinationStatus::default()));
    let (ctx, _, mut api) = setup(planner.clone());
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(
        Method::GET,
        "/api/v1/namespaces/apps/persistentvolumeclaims/restore-here",
    )
    .await
    .ok(pvc("restore-here"));
    api.expect(Method::GET, DST_JOB).await.not_found();
    // An empty status over no status serializes the same: nothing to write.
    task.await.unwrap().unwrap();
    drop(ctx);
    api.done().await;
    assert!(
        planner.seen_destination.lock().unwrap()[0]
            .snapshots
            .is_empty()
    );
}
