//! Names shared between the API, the controller and the chart.

/// API group of Scribe's custom resources.
pub const GROUP: &str = "scribe.backube";
/// API version of Scribe's custom resources.
pub const VERSION: &str = "v1alpha1";
/// Field manager used for every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "scribe-controller";

/// Label put on everything the controller creates.
pub const LABEL_CREATED_BY: &str = "app.kubernetes.io/created-by";
/// Value of [`LABEL_CREATED_BY`].
pub const CREATED_BY_VALUE: &str = "scribe";
/// Label naming the owning custom resource (possibly shortened to 63 characters).
pub const LABEL_OWNER_NAME: &str = "scribe.backube/owner-name";
/// Label naming the owning custom resource's kind (`ReplicationSource` / `ReplicationDestination`).
pub const LABEL_OWNER_KIND: &str = "scribe.backube/owner-kind";
/// Label on a VolumeSnapshot the user wants kept: Scribe never deletes it and releases it
/// (removes its owner reference and Scribe's labels) so the garbage collector keeps it too.
pub const LABEL_DO_NOT_DELETE: &str = "scribe.backube/do-not-delete";
/// VolSync's name for [`LABEL_DO_NOT_DELETE`], honoured the same way.
pub const LABEL_DO_NOT_DELETE_VOLSYNC: &str = "volsync.backube/do-not-delete";

/// Condition type from the seed: did the last reconcile succeed?
pub const CONDITION_RECONCILED: &str = "Reconciled";
/// Condition type saying where the sync cycle is.
pub const CONDITION_SYNCHRONIZING: &str = "Synchronizing";

pub const REASON_RECONCILE_COMPLETE: &str = "ReconcileComplete";
pub const REASON_ERROR: &str = "Error";
pub const REASON_SYNC_IN_PROGRESS: &str = "SyncInProgress";
pub const REASON_WAITING_FOR_SCHEDULE: &str = "WaitingForSchedule";
pub const REASON_WAITING_FOR_MANUAL: &str = "WaitingForManual";
pub const REASON_CLEANING_UP: &str = "CleaningUp";
pub const REASON_PAUSED: &str = "Paused";
/// Reconciled=False: the API server refused to create, patch or delete an object (quota,
/// admission webhook, RBAC, invalid object, a kind not installed); the message is the API's.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";

/// Key in the Secret named by `rcloneConfig` that holds rclone.conf.
pub const RCLONE_CONFIG_KEY: &str = "rclone.conf";
/// Secret keys with this prefix become environment variables of the mover.
pub const RCLONE_ENV_PREFIX: &str = "RCLONE_";
