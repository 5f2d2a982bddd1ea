//! ReplicationDestination scenarios with the real plan: publishing a synchronized state as a
//! VolumeSnapshot over two passes (create the image, then rotate `latestImage` once it is ready).

mod support;

use std::sync::Arc;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use scribe_api::ReplicationDestination;
use scribe_controller::context::{Context, RealPlanner};
use scribe_controller::metrics::Metrics;
use scribe_controller::plan::Settings;
use scribe_controller::reconcile::reconcile;
use serde_json::{Value, json};
use support::fixtures::paths::*;
use support::fixtures::*;
use support::{ApiServer, mock_api};

const OLD: &str = "scribe-dest-db-20240501090007";
const NEW: &str = "scribe-dest-db-20240501100007";

fn now() -> Timestamp {
    "2024-05-01T10:00:10Z".parse().unwrap()
}

fn setup() -> (Arc<Context>, Arc<Metrics>, ApiServer) {
    let (client, server) = mock_api();
    let metrics = Arc::new(Metrics::new());
    let settings = Settings {
        mover_image: "quay.io/scribe/mover:test".into(),
        mover_image_pull_policy: "IfNotPresent".into(),
    };
    let ctx = Context::new(
        client,
        settings,
        Arc::new(RealPlanner),
        metrics.clone(),
        Some("test-pod".into()),
    )
    .with_clock(Arc::new(now));
    (Arc::new(ctx), metrics, server)
}

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

async fn observe_finished_job(api: &mut ApiServer, snapshots: Vec<Value>) {
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, DST_PVC)
        .await
        .ok(pvc("scribe-dest-db"));
    api.expect(Method::GET, DST_JOB)
        .await
        .ok(finished_job("scribe-rclone-dst-db", true));
    let pods = api.expect(Method::GET, PODS).await;
    assert_eq!(
        pods.query("labelSelector"),
        Some("job-name=scribe-rclone-dst-db")
    );
    pods.ok(pods_terminated("scribe-rclone-dst-db", 0, SUMMARY_OK));
    let ls = api.expect(Method::GET, SNAPS).await;
    let selector = ls.query("labelSelector").unwrap_or_default().to_string();
    assert!(
        selector.contains("scribe.backube/owner-name=db"),
        "{selector}"
    );
    assert!(
        selector.contains("scribe.backube/owner-kind=ReplicationDestination"),
        "{selector}"
    );
    ls.ok(list(
        "VolumeSnapshotList",
        "snapshot.storage.k8s.io/v1",
        snapshots,
    ));
}

#[tokio::test]
async fn finished_job_first_creates_the_new_image_snapshot_of_the_destination_pvc() {
    let (ctx, _, mut api) = setup();
    let task = tokio::spawn(reconcile(Arc::new(syncing_destination()), ctx.clone()));
    observe_finished_job(
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
    let (result, _) = api.events_until(task).await;
    result.unwrap();
    drop(ctx);
    api.done().await;
}

#[tokio::test]
async fn ready_new_image_is_published_and_the_previous_one_and_the_job_are_deleted() {
    let (ctx, metrics, mut api) = setup();
    let task = tokio::spawn(reconcile(Arc::new(syncing_destination()), ctx.clone()));
    observe_finished_job(
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

    let mut deleted = Vec::new();
    let st = loop {
        let req = api.next().await;
        if req.method != Method::DELETE {
            break req;
        }
        if req.path == DST_JOB {
            assert_eq!(req.body["propagationPolicy"], "Background");
        }
        deleted.push(req.path.clone());
        req.ok(status_success());
    };
    deleted.sort();
    assert_eq!(deleted, vec![DST_JOB.to_string(), format!("{SNAPS}/{OLD}")]);
    assert_eq!((&st.method, st.path.as_str()), (&Method::PATCH, DST_STATUS));
    let status = &st.body["status"];
    assert_eq!(status["latestImage"]["name"], NEW, "{status}");
    // A merge patch: unchanged kind and apiGroup of latestImage are not resent.
    assert!(status["latestImage"].get("kind").is_none(), "{status}");
    assert_eq!(
        status["latestMoverStatus"]["result"], "Successful",
        "{status}"
    );
    st.ok(destination_json("Snapshot"));
    let (result, _) = api.events_until(task).await;
    result.unwrap();
    drop(ctx);
    api.done().await;
    let text = metrics.render();
    assert!(
        text.contains(
            r#"scribe_sync_success_total{name="db",namespace="apps",role="destination"} 1"#
        ),
        "{text}"
    );
}
