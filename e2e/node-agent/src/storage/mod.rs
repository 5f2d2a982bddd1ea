//! Hostpath CSI stand-in: the provisioner (external-provisioner + csi-hostpath `CreateVolume` /
//! `DeleteVolume`) and the snapshotter (csi-snapshotter sidecar + `CreateSnapshot` /
//! `DeleteSnapshot`). Volumes are directories `<state>/volumes/<handle>`, snapshots are copies
//! `<state>/snapshots/<handle>`.
//!
//! Both loops are level-triggered: each pass lists everything and repairs whatever is not yet as
//! it should be, so the agent can be restarted at any moment. A watch wakes a pass early; a
//! 5 s resync catches anything a watch missed. Errors are logged and retried, never fatal.

mod claims;
mod copy;
mod provisioner;
mod snapshotter;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use kube::api::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::AgentConfig;
use crate::error::AgentError;

/// Full resync period of every loop.
const RESYNC: Duration = Duration::from_secs(5);
/// Pause after a watch wake-up so a burst of events is handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Objects worked on concurrently within one pass (copies may take a while).
const CONCURRENCY: usize = 4;

/// API group of VolumeSnapshots and VolumeSnapshotContents.
const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

fn snapshot_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", kind), plural)
}

/// `snapshot.storage.k8s.io/v1` VolumeSnapshot (namespaced).
fn volume_snapshot_resource() -> ApiResource {
    snapshot_resource("VolumeSnapshot", "volumesnapshots")
}

/// `snapshot.storage.k8s.io/v1` VolumeSnapshotContent (cluster-scoped).
fn volume_snapshot_content_resource() -> ApiResource {
    snapshot_resource("VolumeSnapshotContent", "volumesnapshotcontents")
}

/// The value at a path of object keys, if every step exists.
fn json_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The string at a path of object keys (empty strings count as absent).
fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    json_at(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Events emitted on behalf of the driver (as the sidecars do), deduplicated into series.
#[derive(Clone)]
struct Events {
    recorder: Recorder,
}

impl Events {
    fn new(client: kube::Client, cfg: &AgentConfig) -> Self {
        let reporter = Reporter {
            controller: cfg.driver_name.clone(),
            instance: Some(format!("scribe-node-agent-{}", cfg.node_name)),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an event; failing to is logged, never an error of the caller.
    async fn publish(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::debug!(error = %e, reason, "publishing event failed");
        }
    }
}

/// Starts the provisioner and the snapshotter; runs until the process ends.
pub async fn run(client: kube::Client, cfg: Arc<AgentConfig>) -> Result<(), AgentError> {
    let events = Events::new(client.clone(), &cfg);
    tracing::info!(driver = %cfg.driver_name, "storage: provisioner and snapshotter starting");
    tokio::join!(
        provisioner::run(client.clone(), cfg.clone(), events.clone()),
        snapshotter::run(client, cfg, events),
    );
    Ok(())
}

/// Logs an error at `warn` the first time it is seen and at `debug` while it repeats, so a
/// missing CRD or an unreachable API server does not flood the log every few seconds.
fn log_repeated(last: &mut Option<String>, what: &'static str, err: String) {
    if last.as_deref() == Some(err.as_str()) {
        tracing::debug!(error = %err, "{what} failed again");
    } else {
        tracing::warn!(error = %err, "{what} failed; retrying");
        *last = Some(err);
    }
}

/// Runs `pass` forever: again after each burst of `wake` items, and at least every
/// [`RESYNC`]. `wake` should be a backed-off watcher stream mapped to `()`.
async fn reconcile_forever<W, P, F>(what: &'static str, wake: W, mut pass: P)
where
    W: Stream<Item = Result<(), watcher::Error>>,
    P: FnMut() -> F,
    F: Future<Output = Result<(), AgentError>>,
{
    let notify = Notify::new();
    let watch = async {
        let mut wake = pin!(wake);
        let mut last_err = None;
        while let Some(item) = wake.next().await {
            match item {
                Ok(()) => {
                    last_err = None;
                    notify.notify_one();
                }
                Err(e) => log_repeated(&mut last_err, what, format!("watch: {e}")),
            }
        }
        tracing::warn!("{what}: watch ended; continuing on periodic resync only");
    };
    let work = async {
        let mut last_err = None;
        loop {
            match pass().await {
                Ok(()) => last_err = None,
                Err(e) => log_repeated(&mut last_err, what, e.to_string()),
            }
            tokio::select! {
                () = notify.notified() => tokio::time::sleep(DEBOUNCE).await,
                () = tokio::time::sleep(RESYNC) => {}
            }
        }
    };
    let ((), ()) = tokio::join!(watch, work);
}

/// Whether a kube error is the API's 404.
fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is the API's 409 (already exists / conflict).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Nanoseconds since the Unix epoch, as CSI timestamps are reported.
fn unix_nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
