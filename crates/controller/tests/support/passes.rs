//! Shared steps of reconcile scenarios: a Context over the scripted API with a fixed clock,
//! and the request sequences one pass makes for the `apps/db` fixtures (what observe reads,
//! the deletes of a finished iteration), each request asserted and answered.

use std::sync::Arc;

use http::Method;
use k8s_openapi::jiff::Timestamp;
use scribe_controller::context::{Context, Planner};
use scribe_controller::metrics::Metrics;
use scribe_controller::plan::Settings;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::fixtures::paths::*;
use super::fixtures::*;
use super::{ApiServer, mock_api};

/// The scenarios' clock: ten seconds after the fixtures' Jobs finished.
pub fn now() -> Timestamp {
    "2024-05-01T10:00:10Z".parse().unwrap()
}

/// A Context planning with `planner` over a new scripted API server, clock fixed at [`now`].
pub fn setup(planner: Arc<dyn Planner>) -> (Arc<Context>, Arc<Metrics>, ApiServer) {
    let (client, server) = mock_api();
    let metrics = Arc::new(Metrics::new());
    let settings = Settings {
        mover_image: "mover:test".into(),
        mover_image_pull_policy: scribe_controller::plan::PullPolicy::IfNotPresent,
    };
    let ctx = Context::new(
        client,
        settings,
        planner,
        metrics.clone(),
        Some("test-pod".into()),
    )
    .with_clock(Arc::new(now));
    (Arc::new(ctx), metrics, server)
}

/// Observing a copyMethod Snapshot source that has nothing of an iteration yet: the Secret
/// (404 unless `secret_found`), the source PVC, then 404 for PiT snapshot, PiT PVC and Job.
pub async fn expect_fresh_source_reads(api: &mut ApiServer, secret_found: bool) {
    let get_secret = api.expect(Method::GET, SECRET).await;
    if secret_found {
        get_secret.ok(secret());
    } else {
        get_secret.not_found();
    }
    api.expect(Method::GET, SRC_PVC).await.ok(pvc("data"));
    api.expect(Method::GET, PIT_SNAP).await.not_found();
    api.expect(Method::GET, PIT_PVC).await.not_found();
    api.expect(Method::GET, SRC_JOB).await.not_found();
}

/// For a copyMethod None source without a Job: the namespace's pods are listed (pods cannot
/// be selected by volume) to find a node already using its RWO volume; answered with `pods`.
pub async fn expect_source_pvc_pods(api: &mut ApiServer, pods: Vec<Value>) {
    let seen = api.expect(Method::GET, PODS).await;
    assert_eq!(seen.query("labelSelector"), None, "{:?}", seen.query);
    seen.ok(list("PodList", "v1", pods));
}

/// Observing a copyMethod Snapshot source whose mover Job succeeded: ready PiT snapshot,
/// PiT PVC, the Job, and its pod's report.
pub async fn expect_finished_source_reads(api: &mut ApiServer) {
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
    expect_succeeded_job(api, SRC_JOB, "scribe-rclone-src-db").await;
}

/// Observing a destination whose mover Job succeeded: the provisioned PVC, the Job, its
/// pod's report, then the owned snapshots (listed by owner labels) answered with `snapshots`.
pub async fn expect_finished_destination_reads(api: &mut ApiServer, snapshots: Vec<Value>) {
    api.expect(Method::GET, SECRET).await.ok(secret());
    api.expect(Method::GET, DST_PVC)
        .await
        .ok(pvc("scribe-dest-db"));
    expect_succeeded_job(api, DST_JOB, "scribe-rclone-dst-db").await;
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

/// The GET of Job `name` at `path` (answered: succeeded), then the listing of its pods by the
/// Job's uid label (answered: exit 0 with [`SUMMARY_OK`]).
async fn expect_succeeded_job(api: &mut ApiServer, path: &str, name: &str) {
    api.expect(Method::GET, path)
        .await
        .ok(finished_job(name, true));
    let pods = api.expect(Method::GET, PODS).await;
    let selector = format!("batch.kubernetes.io/controller-uid=uid-{name}");
    assert_eq!(pods.query("labelSelector"), Some(selector.as_str()));
    pods.ok(pods_terminated(name, 0, SUMMARY_OK));
}

/// Answers the `count` DELETEs that come next, in any order (asserting Background
/// propagation for the Job at `job_path`); returns their paths, sorted.
pub async fn expect_deletes(api: &mut ApiServer, job_path: &str, count: usize) -> Vec<String> {
    let mut deleted = Vec::new();
    for _ in 0..count {
        let req = api.next().await;
        assert_eq!(
            req.method,
            Method::DELETE,
            "expected a DELETE, got {} {}",
            req.method,
            req.path
        );
        if req.path == job_path {
            assert_eq!(req.body["propagationPolicy"], "Background");
        }
        deleted.push(req.path.clone());
        req.ok(status_success());
    }
    deleted.sort();
    deleted
}

/// Answers Events until the pass `task` ends, then drops the test's context and asserts that
/// no other request follows. Returns the pass's output and the Events' bodies.
pub async fn finish_pass<T>(
    mut api: ApiServer,
    ctx: Arc<Context>,
    task: JoinHandle<T>,
) -> (T, Vec<Value>) {
    let out = api.events_until(task).await;
    drop(ctx);
    api.done().await;
    out
}

/// Asserts that the metrics exposition has the sample line `sample` (name, labels, value).
pub fn assert_metric(metrics: &Metrics, sample: &str) {
    let text = metrics.render();
    assert!(text.contains(sample), "no `{sample}` in:\n{text}");
}

/// Asserts that the `apps/db` source's successful sync of [`SUMMARY_OK`] (200 bytes) counted.
pub fn assert_source_sync_counted(metrics: &Metrics) {
    assert_metric(
        metrics,
        r#"scribe_sync_success_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
    );
    assert_metric(
        metrics,
        r#"scribe_bytes_transferred_total{obj_name="db",obj_namespace="apps",role="source",method="rclone"} 200"#,
    );
}
