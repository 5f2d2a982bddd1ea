//! `ReplicationDestination`: the side that pulls the replicated data into a PVC and
//! preserves each synchronized state (a VolumeSnapshot, or the PVC itself).
// kube's `printcolumn(type_ = …)` repeats keys across columns, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{DestinationCopyMethod, MoverOptions, MoverStatus, TriggerSpec};

/// Desired state of a ReplicationDestination.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "scribe.backube",
    version = "v1alpha1",
    kind = "ReplicationDestination",
    namespaced,
    status = "ReplicationDestinationStatus",
    shortname = "rdst",
    category = "scribe",
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
        name = "Latest image",
        type_ = "string",
        json_path = ".status.latestImage.name"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synchronizing\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationSpec {
    /// When to pull; absent means continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// Start no new synchronization, and suspend a running mover (its Job scaled to no pods)
    /// until unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Rclone-style replication through object storage.
    pub rclone: ReplicationDestinationRcloneSpec,
}

/// `spec.rclone` of a ReplicationDestination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.destinationPVC) || (has(self.capacity) && has(self.accessModes))").message("either destinationPVC, or capacity and accessModes (to provision the destination volume), must be set"))]
pub struct ReplicationDestinationRcloneSpec {
    /// Section of rclone.conf that describes the object store.
    pub rclone_config_section: String,
    /// `bucket/prefix` on the object store the data is read from.
    pub rclone_dest_path: String,
    /// Secret (same namespace) with the key `rclone.conf`; keys starting `RCLONE_` become mover env vars.
    pub rclone_config: String,
    /// How each synchronized state is preserved: Snapshot, or None (latestImage is the PVC).
    pub copy_method: DestinationCopyMethod,
    /// Access modes of the provisioned destination volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::access_modes_schema")]
    pub access_modes: Vec<String>,
    /// Size of the provisioned destination volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the provisioned destination volume (default: the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// VolumeSnapshotClass for copyMethod Snapshot (default: the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Use this existing PVC instead of provisioning `scribe-dest-<name>`.
    #[serde(
        default,
        rename = "destinationPVC",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_pvc: Option<String>,
    /// Delete the provisioned destination PVC after each synchronization (copyMethod Snapshot only).
    #[serde(
        default,
        rename = "cleanupTempPVC",
        skip_serializing_if = "Option::is_none"
    )]
    pub cleanup_temp_pvc: Option<bool>,
    #[serde(flatten)]
    pub mover: MoverOptions,
}

/// Observed state of a ReplicationDestination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
    /// The object holding the most recent synchronized data: a VolumeSnapshot
    /// (copyMethod Snapshot) or the destination PVC (copyMethod None).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<TypedLocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error_fingerprint: Option<String>,
}
