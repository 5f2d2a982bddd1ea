//! Types shared by both kinds: trigger, copy methods, custom CA, mover status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cron schedule: five fields (numbers, names, `*`, ranges, steps, lists) or an
/// `@hourly`-style descriptor. The controller parses it fully; this catches typos at apply time.
/// The PVC access modes Kubernetes knows.
pub const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// Schema of `accessModes`: at most four items, each one of [`ACCESS_MODES`]. An enum and a
/// bound rather than a CEL rule: the API server estimates a rule's cost against the longest list
/// the schema allows and rejects the CRD at install time when the list is unbounded.
pub fn access_modes_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 4,
        "items": { "type": "string", "enum": ACCESS_MODES },
    })
}

pub const SCHEDULE_PATTERN: &str = r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*(\s+(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*){4})$";

/// When to synchronize. No trigger at all means: sync continuously.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// Cron schedule (5 fields, or `@hourly`, `@daily`, …), evaluated in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// Any new value starts one synchronization; once done, `status.lastManualSync` equals it.
    /// While set (non-empty) it replaces the schedule: no scheduled syncs, no `nextSyncTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

/// How the source makes its point-in-time copy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceCopyMethod {
    /// Clone the source PVC (dataSource = the PVC).
    Clone,
    /// Use the source PVC directly (VolSync's name for `None`).
    Direct,
    /// No point-in-time copy: the mover reads the source PVC directly.
    None,
    /// VolumeSnapshot of the source PVC, then a PVC restored from it.
    Snapshot,
}

/// How the destination preserves each synchronized state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DestinationCopyMethod {
    /// Same as `None` (VolSync's name).
    Direct,
    /// No point-in-time copy: `latestImage` is the destination PVC.
    None,
    /// A VolumeSnapshot after every synchronization, published as `latestImage`.
    Snapshot,
}

/// Where the mover finds an extra CA bundle to trust (for S3 endpoints with a private CA).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomCaSpec {
    /// Secret (in the CR's namespace) holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// ConfigMap (in the CR's namespace) holding the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Key inside the Secret or ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Settings of the mover Job shared by both kinds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverOptions {
    /// Pod security context for the mover (defaults: non-root, fsGroup so the Secret is readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_security_context: Option<PodSecurityContext>,
    /// ServiceAccount the mover runs as (default: the namespace's `default`, token not mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_service_account: Option<String>,
    /// Resources of the mover container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_resources: Option<ResourceRequirements>,
    /// Extra labels on the mover pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_pod_labels: Option<BTreeMap<String, String>>,
    /// Extra CA bundle for the object store endpoint.
    #[serde(default, rename = "customCA", skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<CustomCaSpec>,
}

/// Outcome of the last mover run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MoverResult {
    Successful,
    Failed,
}

/// The mover's own account of its last run: its final summary, not raw logs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<MoverResult>,
    /// The mover's summary line (files and bytes checked, transferred, deleted; duration; error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

/// Quantity helper used by both specs.
pub type Capacity = Quantity;
