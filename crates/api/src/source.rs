//! `ReplicationSource`: the side that pushes a point-in-time copy of a PVC to object storage.
// kube's `printcolumn(type_ = …)` repeats keys across columns, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{MoverOptions, MoverStatus, SourceCopyMethod, TriggerSpec};

/// Desired state of a ReplicationSource.
///
/// Time columns are strings (as VolSync prints them): kubectl renders `date` columns as ages,
/// which turns a future `nextSyncTime` into `<invalid>`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "scribe.backube",
    version = "v1alpha1",
    kind = "ReplicationSource",
    namespaced,
    status = "ReplicationSourceStatus",
    shortname = "rsrc",
    category = "scribe",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourcePVC"),
    printcolumn(
        name = "Last sync",
        type_ = "string",
        format = "date-time",
        json_path = ".status.lastSyncTime"
    ),
    printcolumn(
        name = "Duration",
        type_ = "string",
        json_path = ".status.lastSyncDuration"
    ),
    printcolumn(
        name = "Next sync",
        type_ = "string",
        format = "date-time",
        json_path = ".status.nextSyncTime"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synchronizing\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceSpec {
    /// The PVC to replicate (in the same namespace).
    #[serde(rename = "sourcePVC")]
    #[x_kube(validation = Rule::new("self != ''").message("sourcePVC must not be empty"))]
    pub source_pvc: String,
    /// When to synchronize; absent means continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// Start no new synchronization, and suspend a running mover (its Job scaled to no pods)
    /// until unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Rclone-style replication through object storage.
    pub rclone: ReplicationSourceRcloneSpec,
}

/// `spec.rclone` of a ReplicationSource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceRcloneSpec {
    /// Section of rclone.conf that describes the object store.
    pub rclone_config_section: String,
    /// `bucket/prefix` on the object store where the data is written.
    pub rclone_dest_path: String,
    /// Secret (same namespace) with the key `rclone.conf`; keys starting `RCLONE_` become mover env vars.
    pub rclone_config: String,
    /// How the point-in-time copy is made: Clone, Snapshot, or None (the source PVC itself).
    pub copy_method: SourceCopyMethod,
    /// Access modes of the point-in-time volume (default: the source PVC's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::access_modes_schema")]
    pub access_modes: Vec<String>,
    /// Capacity of the point-in-time volume (default: the source's, or the snapshot's restore size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the point-in-time volume (default: the source PVC's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// VolumeSnapshotClass for copyMethod Snapshot (default: the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    #[serde(flatten)]
    pub mover: MoverOptions,
}

/// Observed state of a ReplicationSource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the next synchronization is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// When the last successful synchronization finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// When the current (or last) synchronization started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// Duration of the last successful synchronization, e.g. `7.066022293s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// The `trigger.manual` value of the last synchronization that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
    /// Failed mover runs since the last success (drives the retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// Earliest time the next retry of a failed synchronization may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// Set after a configuration error: a fingerprint of the spec and Secret it happened with.
    /// No retry until either changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error_fingerprint: Option<String>,
}
