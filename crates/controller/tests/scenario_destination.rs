//! ReplicationDestination scenarios with the real plan: publishing a synchronized state as a
//! VolumeSnapshot over two passes (create the image, then rotate `latestImage` once it is ready),
//! and releasing an image labelled do-not-delete (a merge patch of its owner references).

use std::sync::Arc;

use crate::support::fixtures::paths::*;
use crate::support::fixtures::*;
use crate::support::passes::{
    assert_metric, expect_deletes, expect_finished_destination_reads, finish_pass, setup,
};
use http::Method;
use scribe_api::ReplicationDestination;
use scribe_controller::context::RealPlanner;
use scribe_controller::reconcile::reconcile;
use serde_json::json;

const OLD: &str = "scribe-dest-db-20240501090007";
const NEW: &str = "scribe-dest-db-20240501100007";

/// A destination in the middle of an iteration whose latest image is OLD.
fn syncing_destination() -> ReplicationDestination {
    let mut j = destination_json("Snapshot");
    j["status"] = json!({
        "lastSyncStartTime": "2024-05-01T10:00:00Z",
        "lastSyncTime": "2024-05-01T09:00:07Z",
        "latestImage": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": OLD}
    });
    serde_json::from_value(j).unwrap()
}

#[tokio::test]
async fn finished_job_first_creates_the_new_image_snapshot_of_the_destination_pvc() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let task = tokio::spawn(reconcile(Arc::new(syncing_destination()), ctx.clone()));
    expect_finished_destination_reads(
        &mut api,
        vec![ready_snapshot(
            OLD,
            "scribe-dest-db",
            "ReplicationDestination",
            "2024-05-01T09:00:08Z",
        )],
    )
    .await;

    let apply = api.expect(Method::PATCH, &format!("{SNAPS}/{NEW}")).await;
    apply.assert_apply();
    assert_eq!(
        apply.body["spec"]["source"]["persistentVolumeClaimName"],
        "scribe-dest-db"
    );
    assert_eq!(
        apply.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-dst"
    );
    apply.echo();
    let st = api.expect(Method::PATCH, DST_STATUS).await;
    // Not published before it is ready.
    assert!(
        st.body["status"].get("latestImage").is_none(),
        "{}",
        st.body
    );
    st.ok(destination_json("Snapshot"));
    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();
}

#[tokio::test]
async fn ready_new_image_is_published_and_the_previous_one_and_the_job_are_deleted() {
    let (ctx, metrics, mut api) = setup(Arc::new(RealPlanner));
    let task = tokio::spawn(reconcile(Arc::new(syncing_destination()), ctx.clone()));
    expect_finished_destination_reads(
        &mut api,
        vec![
            ready_snapshot(
                OLD,
                "scribe-dest-db",
                "ReplicationDestination",
                "2024-05-01T09:00:08Z",
            ),
            ready_snapshot(
                NEW,
                "scribe-dest-db",
                "ReplicationDestination",
                "2024-05-01T10:00:08Z",
            ),
        ],
    )
    .await;

    // The new image is published before the previous one is deleted, so latestImage never
    // names a deleted snapshot even when this status write fails.
    let st = api.expect(Method::PATCH, DST_STATUS).await;
    let status = &st.body["status"];
    assert_eq!(status["latestImage"]["name"], NEW, "{status}");
    // A merge patch: unchanged kind and apiGroup of latestImage are not resent.
    assert!(status["latestImage"].get("kind").is_none(), "{status}");
    assert_eq!(
        status["latestMoverStatus"]["result"], "Successful",
        "{status}"
    );
    st.ok(destination_json("Snapshot"));
    let deleted = expect_deletes(&mut api, DST_JOB, 2).await;
    assert_eq!(deleted, vec![DST_JOB.to_string(), format!("{SNAPS}/{OLD}")]);
    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();
    assert_metric(
        &metrics,
        r#"scribe_sync_success_total{obj_name="db",obj_namespace="apps",role="destination",method="rclone"} 1"#,
    );
}

#[tokio::test]
async fn an_image_labelled_do_not_delete_is_released_by_a_guarded_merge_patch() {
    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let mut j = destination_json("Snapshot");
    j["status"] = json!({
        "lastSyncTime": "2024-05-01T09:30:07Z",
        "latestImage": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": OLD}
    });
    let cr: ReplicationDestination = serde_json::from_value(j).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));

    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, DST_PVC)
        .await
        .ok(pvc("scribe-dest-db"));
    api.expect(Method::GET, DST_JOB).await.not_found();
    let mut kept = ready_snapshot(
        OLD,
        "scribe-dest-db",
        "ReplicationDestination",
        "2024-05-01T09:00:07Z",
    );
    kept["metadata"]["labels"]["volsync.backube/do-not-delete"] = json!("true");
    kept["metadata"]["resourceVersion"] = json!("314");
    api.expect(Method::GET, SNAPS).await.ok(list(
        "VolumeSnapshotList",
        "snapshot.storage.k8s.io/v1",
        vec![kept.clone()],
    ));

    let patch = api.expect(Method::PATCH, &format!("{SNAPS}/{OLD}")).await;
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.query("fieldManager"), Some("scribe-controller"));
    assert_eq!(
        patch.body,
        json!({"metadata": {"ownerReferences": null, "resourceVersion": "314"}})
    );
    kept["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    patch.ok(kept);
    api.expect(Method::PATCH, DST_STATUS)
        .await
        .ok(destination_json("Snapshot"));
    let (result, events) = finish_pass(api, ctx, task).await;
    result.unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "Released"),
        "{events:?}"
    );
}
