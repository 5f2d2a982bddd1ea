//! The csi-snapshotter sidecar + csi-hostpath `CreateSnapshot`/`DeleteSnapshot` stand-in.
//!
//! The upstream snapshot-controller creates a VolumeSnapshotContent for each dynamic
//! VolumeSnapshot, binds the two and puts its `…-bound-protection` finalizer on the content;
//! this loop does the sidecar's part for contents whose `spec.driver` is ours:
//! - `spec.source.volumeHandle` and not ready: mark the content
//!   `volumesnapshot-being-created`, copy `volumes/<volumeHandle>` to
//!   `snapshots/snapcontent-<content uid>` (via a temporary directory), set `status`
//!   (`snapshotHandle`, `creationTime`, `readyToUse: true`, `restoreSize`) and drop the mark;
//!   failures land in `status.error` and a `SnapshotCreationFailed` event, and are retried.
//! - `spec.source.snapshotHandle` (pre-provisioned) and not ready: `status` from the existing
//!   snapshot directory, or an error if there is none.
//! - being deleted and released by the snapshot-controller (`volumesnapshot-being-deleted`):
//!   with `deletionPolicy: Delete` remove the directory and clear the status, then (either
//!   policy) remove the finalizer, exactly as the sidecar does.

use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource as _};
use serde_json::{Value, json};

use super::{
    CONCURRENCY, Events, copy, json_at, reconcile_forever, str_at, unix_nanos,
    volume_snapshot_content_resource,
};
use crate::config::AgentConfig;
use crate::error::AgentError;

/// The snapshot-controller's finalizer on bound contents; the sidecar removes it on deletion.
pub const CONTENT_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
/// Never added by upstream nor by us; removed too, should an older agent have left it.
pub const CLEANUP_FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshotcontent-cleanup";
/// Set by the sidecar while `CreateSnapshot` is in flight: the content must not be deleted.
pub const ANN_BEING_CREATED: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-created";
/// Set by the snapshot-controller once the VolumeSnapshot is being deleted.
pub const ANN_BEING_DELETED: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";
/// Marks members of a VolumeGroupSnapshot, which are not snapshotted individually.
const ANN_GROUP_SNAPSHOT_HANDLE: &str = "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle";

/// What one pass does about one VolumeSnapshotContent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the snapshot data behind this handle (if any), then our finalizers.
    Delete {
        data: Option<String>,
    },
    /// Snapshot this volume handle.
    Create {
        volume_handle: String,
    },
    /// Report the status of a pre-provisioned snapshot handle.
    Import {
        snapshot_handle: String,
    },
    /// Ready, but a crash left the being-created mark behind.
    ClearBeingCreated,
    Nothing,
}

/// The handle of the snapshot taken for a content (characters `[A-Za-z0-9._-]` only).
pub fn snapshot_handle_for(content_uid: &str) -> String {
    crate::config::safe_component(&format!("snapcontent-{content_uid}"))
}

fn has_annotation(obj: &DynamicObject, key: &str) -> bool {
    obj.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn is_our_finalizer(f: &str) -> bool {
    f == CONTENT_FINALIZER || f == CLEANUP_FINALIZER
}

fn has_our_finalizer(obj: &DynamicObject) -> bool {
    obj.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| is_our_finalizer(f))
}

/// The sidecar's `shouldDelete`: deleted, not mid-creation, and released by the
/// snapshot-controller (or an unbound pre-provisioned content).
fn should_delete(content: &DynamicObject) -> bool {
    if content.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let d = &content.data;
    if str_at(d, &["spec", "source", "snapshotHandle"]).is_some()
        && str_at(d, &["spec", "volumeSnapshotRef", "uid"]).is_none()
    {
        return true;
    }
    !has_annotation(content, ANN_BEING_CREATED) && has_annotation(content, ANN_BEING_DELETED)
}

/// Decides what to do about a content; anything not of `driver` is left alone.
pub fn next_action(content: &DynamicObject, driver: &str) -> Action {
    let d = &content.data;
    if str_at(d, &["spec", "driver"]) != Some(driver) {
        return Action::Nothing;
    }
    let ready = json_at(d, &["status", "readyToUse"]).and_then(Value::as_bool) == Some(true);
    if should_delete(content) {
        let delete_data = str_at(d, &["spec", "deletionPolicy"]) == Some("Delete")
            && str_at(d, &["status", "volumeGroupSnapshotHandle"]).is_none();
        let data = str_at(d, &["status", "snapshotHandle"])
            .filter(|_| delete_data)
            .map(String::from);
        if data.is_none() && !has_our_finalizer(content) {
            return Action::Nothing;
        }
        return Action::Delete { data };
    }
    if ready {
        return if has_annotation(content, ANN_BEING_CREATED) {
            Action::ClearBeingCreated
        } else {
            Action::Nothing
        };
    }
    if let Some(volume_handle) = str_at(d, &["spec", "source", "volumeHandle"]) {
        if has_annotation(content, ANN_GROUP_SNAPSHOT_HANDLE) {
            return Action::Nothing;
        }
        return Action::Create {
            volume_handle: volume_handle.to_string(),
        };
    }
    if let Some(snapshot_handle) = str_at(d, &["spec", "source", "snapshotHandle"]) {
        return Action::Import {
            snapshot_handle: snapshot_handle.to_string(),
        };
    }
    Action::Nothing
}

/// Merge patch of `/status` for a cut snapshot; `restoreSize` is left out when 0 (as the
/// sidecar does), `error` is cleared.
pub fn ready_status(snapshot_handle: &str, creation_time_ns: i64, restore_size: i64) -> Value {
    let mut status = json!({
        "snapshotHandle": snapshot_handle,
        "creationTime": creation_time_ns,
        "readyToUse": true,
        "error": null,
    });
    if restore_size > 0 {
        status["restoreSize"] = json!(restore_size);
    }
    json!({ "status": status })
}

/// Merge patch of `/status` recording a failure.
pub fn error_status(message: &str, now: DateTime<Utc>) -> Value {
    json!({ "status": {
        "readyToUse": false,
        "error": {
            "time": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "message": message,
        },
    }})
}

/// Merge patch of `/status` after the snapshot data is gone (the sidecar's
/// `clearVolumeContentStatus`).
pub fn cleared_status() -> Value {
    json!({ "status": {
        "snapshotHandle": null,
        "readyToUse": null,
        "creationTime": null,
        "restoreSize": null,
    }})
}

/// Merge patch dropping our finalizers, guarded by the object's resourceVersion.
pub fn finalizers_patch(content: &DynamicObject) -> Value {
    let kept: Vec<&String> = content
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| !is_our_finalizer(f))
        .collect();
    json!({ "metadata": {
        "resourceVersion": content.metadata.resource_version,
        "finalizers": kept,
    }})
}

/// Bytes in a Kubernetes quantity (`1Gi`, `500M`, `1.5Gi`, `2e3`), rounded up like
/// `Quantity.Value()`; `None` for anything unparsable or out of range.
pub fn quantity_bytes(q: &str) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() + frac.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let (factor, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse().ok()?),
        _ => return None,
    };
    let exp = exp10.checked_sub(i32::try_from(frac.len()).ok()?)?;
    let n = digits.checked_mul(factor)?;
    let n = if exp >= 0 {
        n.checked_mul(10i128.checked_pow(exp.unsigned_abs())?)?
    } else {
        let d = 10i128.checked_pow(exp.unsigned_abs())?;
        (n + d - 1) / d
    };
    i64::try_from(n).ok()
}

struct Ctx {
    client: kube::Client,
    cfg: Arc<AgentConfig>,
    events: Events,
    resource: ApiResource,
    contents: Api<DynamicObject>,
}

fn content_name(content: &DynamicObject) -> &str {
    content.metadata.name.as_deref().unwrap_or_default()
}

impl Ctx {
    async fn patch_status(&self, name: &str, patch: &Value) -> Result<DynamicObject, AgentError> {
        self.contents
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(AgentError::kube(format!(
                "updating VolumeSnapshotContent {name} status"
            )))
    }

    async fn patch(&self, name: &str, patch: &Value) -> Result<DynamicObject, AgentError> {
        self.contents
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(AgentError::kube(format!(
                "updating VolumeSnapshotContent {name}"
            )))
    }

    /// Records a failure in `status.error` with a Warning event, unless already recorded.
    async fn set_error(
        &self,
        content: &DynamicObject,
        reason: &str,
        message: String,
    ) -> Result<(), AgentError> {
        let name = content_name(content);
        if str_at(&content.data, &["status", "error", "message"]) == Some(message.as_str()) {
            return Ok(());
        }
        tracing::info!(content = name, %message, "snapshot failed; will retry");
        let result = self
            .patch_status(name, &error_status(&message, Utc::now()))
            .await;
        let regarding = content.object_ref(&self.resource);
        self.events
            .publish(&regarding, EventType::Warning, reason, message)
            .await;
        result.map(drop)
    }

    async fn set_annotation(
        &self,
        content: &DynamicObject,
        key: &str,
        value: Option<&str>,
    ) -> Result<DynamicObject, AgentError> {
        let patch = json!({ "metadata": { "annotations": { key: value } } });
        self.patch(content_name(content), &patch).await
    }

    /// What csi-hostpath reports as a snapshot's size: the capacity of the volume it was cut
    /// from. Falls back to the bytes in the snapshot when the PV cannot be found.
    async fn restore_size(&self, volume_handle: &str, snapshot: &std::path::Path) -> i64 {
        let driver = &self.cfg.driver_name;
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let capacity = match pvs.list(&ListParams::default()).await {
            Ok(list) => list.items.into_iter().find_map(|pv| {
                let spec = pv.spec?;
                let csi = spec.csi?;
                (&csi.driver == driver && csi.volume_handle == volume_handle)
                    .then(|| {
                        spec.capacity?
                            .get("storage")
                            .and_then(|q| quantity_bytes(&q.0))
                    })
                    .flatten()
            }),
            Err(e) => {
                tracing::debug!(error = %e, "listing PersistentVolumes for restoreSize");
                None
            }
        };
        if let Some(bytes) = capacity {
            return bytes;
        }
        let dir = snapshot.to_path_buf();
        let size = tokio::task::spawn_blocking(move || copy::tree_size(&dir)).await;
        match size {
            Ok(Ok(n)) => i64::try_from(n).unwrap_or(i64::MAX),
            _ => 0,
        }
    }

    async fn create(&self, content: &DynamicObject, volume_handle: &str) -> Result<(), AgentError> {
        let name = content_name(content);
        if str_at(&content.data, &["spec", "volumeSnapshotClassName"]).is_none() {
            let msg = format!(
                "Failed to create snapshot: failed to get input parameters to create snapshot for \
                 content {name}: \"failed to take snapshot {name} without a snapshot class\""
            );
            return self.set_error(content, "SnapshotCreationFailed", msg).await;
        }
        let uid = content.metadata.uid.as_deref().unwrap_or_default();
        if uid.is_empty() {
            return Err(AgentError::Invalid(format!(
                "VolumeSnapshotContent {name} has no uid"
            )));
        }
        let content = if has_annotation(content, ANN_BEING_CREATED) {
            content.clone()
        } else {
            self.set_annotation(content, ANN_BEING_CREATED, Some("yes"))
                .await?
        };
        let handle = snapshot_handle_for(uid);
        let src = self.cfg.volume_dir(volume_handle);
        let dst = self.cfg.snapshot_dir(&handle);
        let started = SystemTime::now();
        let copied = if !dst.is_dir() && !src.is_dir() {
            Err(format!(
                "rpc error: code = NotFound desc = source volume {volume_handle} not found"
            ))
        } else {
            copy::materialize(Some(&src), &dst)
                .await
                .map_err(|e| format!("rpc error: code = Internal desc = {e}"))
        };
        if let Err(msg) = copied {
            // A final error: the storage system is not working on it any more.
            let content = self
                .set_annotation(&content, ANN_BEING_CREATED, None)
                .await?;
            let msg = format!(
                "Failed to create snapshot: failed to take snapshot of the volume \
                 {volume_handle}: {msg:?}"
            );
            return self
                .set_error(&content, "SnapshotCreationFailed", msg)
                .await;
        }
        let size = self.restore_size(volume_handle, &dst).await;
        self.patch_status(name, &ready_status(&handle, unix_nanos(started), size))
            .await?;
        self.set_annotation(&content, ANN_BEING_CREATED, None)
            .await?;
        tracing::info!(content = name, volume = volume_handle, snapshot = %handle, restore_size = size, "snapshot cut");
        Ok(())
    }

    async fn import(&self, content: &DynamicObject, handle: &str) -> Result<(), AgentError> {
        let dir = self.cfg.snapshot_dir(handle);
        let meta = match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => m,
            _ => return self.import_missing(content, handle).await,
        };
        let created = unix_nanos(meta.modified().unwrap_or_else(|_| SystemTime::now()));
        let size = tokio::task::spawn_blocking(move || copy::tree_size(&dir))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let name = content_name(content);
        self.patch_status(name, &ready_status(handle, created, size))
            .await?;
        tracing::info!(
            content = name,
            snapshot = handle,
            "pre-provisioned snapshot ready"
        );
        Ok(())
    }

    async fn import_missing(
        &self,
        content: &DynamicObject,
        handle: &str,
    ) -> Result<(), AgentError> {
        let msg = format!(
            "Failed to check and update snapshot content: can not find snapshot for snapshotID {handle}"
        );
        self.set_error(content, "SnapshotContentCheckandUpdateFailed", msg)
            .await
    }

    async fn delete(&self, content: &DynamicObject, data: Option<&str>) -> Result<(), AgentError> {
        let name = content_name(content);
        let mut content = content.clone();
        if let Some(handle) = data {
            let dir = self.cfg.snapshot_dir(handle);
            copy::remove_dir_if_exists(&copy::tmp_path(&dir)).await?;
            copy::remove_dir_if_exists(&dir).await?;
            content = self.patch_status(name, &cleared_status()).await?;
            tracing::info!(content = name, snapshot = handle, "snapshot deleted");
        }
        if has_our_finalizer(&content) {
            self.patch(name, &finalizers_patch(&content)).await?;
        }
        Ok(())
    }

    async fn apply(&self, content: &DynamicObject, action: &Action) -> Result<(), AgentError> {
        match action {
            Action::Delete { data } => self.delete(content, data.as_deref()).await,
            Action::Create { volume_handle } => self.create(content, volume_handle).await,
            Action::Import { snapshot_handle } => self.import(content, snapshot_handle).await,
            Action::ClearBeingCreated => self
                .set_annotation(content, ANN_BEING_CREATED, None)
                .await
                .map(drop),
            Action::Nothing => Ok(()),
        }
    }

    async fn pass(&self) -> Result<(), AgentError> {
        let list = self
            .contents
            .list(&ListParams::default())
            .await
            .map_err(AgentError::kube("listing VolumeSnapshotContents"))?;
        let driver = self.cfg.driver_name.as_str();
        let work = list
            .items
            .iter()
            .map(|c| (c, next_action(c, driver)))
            .filter(|(_, a)| *a != Action::Nothing);
        futures::stream::iter(work)
            .for_each_concurrent(CONCURRENCY, |(content, action)| async move {
                if let Err(e) = self.apply(content, &action).await {
                    tracing::warn!(content = content_name(content), ?action, error = %e, "snapshot step failed; will retry");
                }
            })
            .await;
        Ok(())
    }
}

/// Cuts, reports and deletes snapshots until the process ends.
pub async fn run(client: kube::Client, cfg: Arc<AgentConfig>, events: Events) {
    let resource = volume_snapshot_content_resource();
    let ctx = Ctx {
        contents: Api::all_with(client.clone(), &resource),
        resource,
        client,
        cfg,
        events,
    };
    let wake = watcher(ctx.contents.clone(), watcher::Config::default())
        .default_backoff()
        .map(|r| r.map(drop));
    reconcile_forever("snapshotter", wake, || ctx.pass()).await;
}
