//! The pure core of the controller: given a custom resource, the objects observed for it
//! and `now`, decide what to do. No client, no clock, no I/O — the reconcilers in
//! `reconcile/` observe, call [`plan_source`] / [`plan_destination`], carry out the `Apply*`
//! and patch (`ScaleJob`, `ReleaseVolumeSnapshot`) actions in order, write the returned status (only when it changed), then carry out the
//! `Delete` actions in order — deletions wait for the status so a lost status write never
//! loses the objects the next pass needs. A plan never deletes and creates the same object.
//!
//! CONTRACT between the plan (owner: h4) and the runtime (owner: h5). Change only together.
//!
//! Each side (`source`, `destination`) first decides the pass's [`phase::Phase`] (Idle,
//! Blocked, CleaningUp, PreparingCopy, MoverRunning, MoverFailed, Finishing) from the
//! observation and `now` alone ([`source_phase`], [`destination_phase`]), then runs that
//! phase's handler.
//!
//! How the state machine stays restart-safe: `status.lastSyncStartTime` marks an open
//! iteration (cleared on success). Objects observed without one are adopted when created after
//! `lastSyncTime` (a status write was lost) and cleaned up otherwise; `Apply*` actions are only
//! emitted for objects that were not observed, so a pass never rebuilds an existing Job (it
//! only scales one: `ScaleJob` while paused). All times in the returned status are whole
//! seconds (what the API server stores), and none is `now` unless something happened at
//! `now`: planning the same observation later gives the same status, so a pass that changes
//! nothing writes nothing (tests/plan_stability.rs checks this for every fixture).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use scribe_api::{
    ReplicationDestination, ReplicationDestinationStatus, ReplicationSource,
    ReplicationSourceStatus,
};

use crate::snapshot::VolumeSnapshot;

mod common;
pub mod conditions;
mod destination;
pub mod mover;
pub mod phase;
pub mod placement;
pub mod schedule;
pub mod snapshots;
mod source;
mod steps;
pub mod trigger;
pub mod validate;

pub use destination::{destination_phase, plan_destination};
pub use source::{plan_source, source_phase};

/// Settings the controller was started with that shape the objects it builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Image of the mover (`--mover-image`).
    pub mover_image: String,
    /// Pull policy of the mover image (`--mover-image-pull-policy`).
    pub mover_image_pull_policy: PullPolicy,
}

/// A container image pull policy, spelled as Kubernetes spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    #[value(name = "Always")]
    Always,
    #[default]
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Never")]
    Never,
}

impl PullPolicy {
    /// The value of a container's `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The mover's outcome as read from its pod's termination message (the summary JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct MoverReport {
    /// Exit code of the mover container (0 ok, 75 transient, 78 configuration, other: transient).
    pub exit_code: Option<i32>,
    /// The termination message (summary JSON) if any.
    pub message: Option<String>,
}

/// Why a running mover Job's container has not started: a container's waiting state
/// (`ImagePullBackOff`, `CreateContainerConfigError`, …) or the pod's `PodScheduled=False`
/// condition (`Unschedulable`). Read from the Job's newest pod while the Job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoverWaiting {
    /// The Kubernetes reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    /// The Kubernetes message (may be empty).
    pub message: String,
}

/// What was observed of the objects the mover pod references besides the rclone Secret:
/// a pod naming a missing ServiceAccount is never created, and one mounting a missing
/// Secret/ConfigMap (or key) never starts, so the plan checks them before creating the Job.
/// The default (nothing missing, keys not read) is what a spec naming neither observes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoverRefs {
    /// `moverServiceAccount` is set and that ServiceAccount does not exist.
    pub service_account_missing: bool,
    /// The `customCA` Secret or ConfigMap is named and does not exist.
    pub custom_ca_missing: bool,
    /// The keys of the `customCA` Secret or ConfigMap when it exists (`None`: not read).
    pub custom_ca_keys: Option<Vec<String>>,
}

/// Everything observed for one ReplicationSource.
#[derive(Clone, Debug)]
pub struct ObservedSource {
    pub cr: ReplicationSource,
    /// The Secret named by `spec.rclone.rcloneConfig`, if it exists.
    pub secret: Option<Secret>,
    /// The ServiceAccount and custom CA the mover pod references.
    pub mover_refs: MoverRefs,
    /// `spec.sourcePVC`, if it exists.
    pub source_pvc: Option<PersistentVolumeClaim>,
    /// VolumeSnapshot `scribe-src-<name>` (copyMethod Snapshot).
    pub snapshot: Option<VolumeSnapshot>,
    /// PVC `scribe-src-<name>` (copyMethod Snapshot or Clone).
    pub pit_pvc: Option<PersistentVolumeClaim>,
    /// Job `scribe-rclone-src-<name>`.
    pub job: Option<Job>,
    /// Outcome read from the Job's finished pod, when the Job has finished.
    pub mover: Option<MoverReport>,
    /// Why the mover has not started, while the Job runs and its pod is stuck.
    pub mover_waiting: Option<MoverWaiting>,
    /// Pods in the namespace that mount `spec.sourcePVC` (copyMethod None/Direct, read while
    /// no mover Job exists): a mover reading an RWO volume must run on their node.
    pub source_pvc_pods: Vec<Pod>,
}

/// Everything observed for one ReplicationDestination.
#[derive(Clone, Debug)]
pub struct ObservedDestination {
    pub cr: ReplicationDestination,
    pub secret: Option<Secret>,
    /// The ServiceAccount and custom CA the mover pod references.
    pub mover_refs: MoverRefs,
    /// The destination PVC (`destinationPVC` or `scribe-dest-<name>`).
    pub dest_pvc: Option<PersistentVolumeClaim>,
    /// Job `scribe-rclone-dst-<name>`.
    pub job: Option<Job>,
    pub mover: Option<MoverReport>,
    /// Why the mover has not started, while the Job runs and its pod is stuck.
    pub mover_waiting: Option<MoverWaiting>,
    /// VolumeSnapshots owned by this destination, any state: list with the label selector
    /// `builders::names::Owner::of_destination(cr).selector()`. Only names
    /// `scribe-dest-<name>-<YYYYMMDDHHMMSS>` are considered.
    pub snapshots: Vec<VolumeSnapshot>,
}

/// Kinds of object the controller manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Job,
    PersistentVolumeClaim,
    VolumeSnapshot,
}

/// One step for the runtime to carry out: creations and patches in order before the status
/// write, deletions in order after it. Every action is idempotent.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Server-side apply (field manager `scribe-controller`, force) of a complete object,
    /// owner reference and labels already set by the builders.
    ApplyVolumeSnapshot(Box<VolumeSnapshot>),
    ApplyPvc(Box<PersistentVolumeClaim>),
    ApplyJob(Box<Job>),
    /// Merge-patch `spec.parallelism` of an existing mover Job: 0 suspends it while the CR
    /// is paused (the Job controller stops its pod), 1 resumes it.
    ScaleJob {
        name: String,
        parallelism: i32,
    },
    /// Give up a VolumeSnapshot labelled do-not-delete: a merge patch (guarded by
    /// `resource_version`) leaves only `owner_references` (the CR's own removed) and removes
    /// Scribe's labels, so neither Scribe nor the garbage collector deletes it.
    ReleaseVolumeSnapshot {
        name: String,
        resource_version: Option<String>,
        owner_references: Vec<OwnerReference>,
    },
    /// Delete by name in the CR's namespace (404 is success). Jobs are deleted with
    /// propagationPolicy Background so their pods go too.
    Delete {
        kind: ObjectKind,
        name: String,
    },
}

/// Why an Event is published: the closed set of reasons Scribe's Events carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// An object was created.
    Created,
    /// A VolumeSnapshot labelled do-not-delete was given up.
    Released,
    /// The snapshotter reported an error for a VolumeSnapshot.
    SnapshotFailed,
    /// A running mover Job was suspended (spec.paused).
    MoverSuspended,
    /// A suspended mover Job was resumed.
    MoverResumed,
    /// The mover pod is stuck before its container starts.
    MoverNotStarted,
    /// An iteration started.
    SyncStarted,
    /// An iteration completed.
    SyncSucceeded,
    /// A mover Job failed.
    SyncFailed,
    /// The configuration is wrong (validation, or the mover's exit 78).
    ConfigError,
    /// The API server refused a write (see `reconcile::failure`).
    ApplyFailed,
}

impl EventReason {
    /// The Event's `reason`, CamelCase as Kubernetes spells reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Released => "Released",
            Self::SnapshotFailed => "SnapshotFailed",
            Self::MoverSuspended => "MoverSuspended",
            Self::MoverResumed => "MoverResumed",
            Self::MoverNotStarted => "MoverNotStarted",
            Self::SyncStarted => "SyncStarted",
            Self::SyncSucceeded => "SyncSucceeded",
            Self::SyncFailed => "SyncFailed",
            Self::ConfigError => "ConfigError",
            Self::ApplyFailed => scribe_api::constants::REASON_APPLY_FAILED,
        }
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Event to publish about the CR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventIntent {
    pub warning: bool,
    pub reason: EventReason,
    /// CamelCase action, e.g. `Synchronize`, `Validate`, `Create`.
    pub action: String,
    pub note: String,
}

/// Something for the metrics registry to record (labels name/namespace/role come from the CR).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricIntent {
    SyncSucceeded {
        duration: Duration,
        bytes_transferred: u64,
        files_transferred: u64,
        finished_at: Timestamp,
    },
    SyncFailed,
    MissedInterval,
    /// Whether the CR is a whole interval overdue without a completed sync (gauge value;
    /// every plan ends with exactly one of these).
    OutOfSync(bool),
}

/// What a reconcile pass must do.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<S> {
    pub actions: Vec<Action>,
    /// The complete new status (conditions merged so transition times survive).
    pub status: S,
    pub events: Vec<EventIntent>,
    pub metrics: Vec<MetricIntent>,
    /// When to look again even if nothing changes (next schedule, backoff end, polling).
    pub requeue_after: Option<Duration>,
}

pub type SourcePlan = Plan<ReplicationSourceStatus>;
pub type DestinationPlan = Plan<ReplicationDestinationStatus>;
