//! Kubernetes objects the scenarios create and read: the rclone Secret, PVCs (empty, or
//! restored from a VolumeSnapshot), the snapshot.storage.k8s.io VolumeSnapshot type, the
//! Scribe custom resources (created from YAML, so scenarios read like the seed's examples),
//! trigger and spec patches, and the names the controller gives what it creates
//! (`crates/controller/src/builders/names.rs`, for names short enough not to be shortened).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResource, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;

/// Longest name Scribe keeps verbatim (longer ones get a hash suffix).
pub const MAX_NAME_LEN: usize = 63;

/// Names of what the controller creates for a CR named `cr`.
pub mod names {
    use super::MAX_NAME_LEN;

    fn checked(name: String) -> String {
        assert!(
            name.len() <= MAX_NAME_LEN,
            "{name} is longer than {MAX_NAME_LEN}: the controller would shorten it; use a shorter CR name"
        );
        name
    }

    /// Source PiT VolumeSnapshot and PVC.
    pub fn source_pit(cr: &str) -> String {
        checked(format!("scribe-src-{cr}"))
    }

    /// Source mover Job.
    pub fn source_job(cr: &str) -> String {
        checked(format!("scribe-rclone-src-{cr}"))
    }

    /// Provisioned destination PVC.
    pub fn destination_pvc(cr: &str) -> String {
        checked(format!("scribe-dest-{cr}"))
    }

    /// Destination mover Job.
    pub fn destination_job(cr: &str) -> String {
        checked(format!("scribe-rclone-dst-{cr}"))
    }

    /// Prefix of the destination's image snapshots (`scribe-dest-<cr>-`), followed by
    /// `YYYYMMDDHHMMSS`.
    pub fn destination_image_prefix(cr: &str) -> String {
        assert!(
            cr.len() + "scribe-dest-".len() <= MAX_NAME_LEN - 15,
            "{cr}: name too long for a verbatim image name"
        );
        format!("scribe-dest-{cr}-")
    }
}

/// The external-snapshotter's VolumeSnapshot (only the fields the scenarios read).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    namespaced,
    status = "VolumeSnapshotStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    pub source: VolumeSnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// What a VolumeSnapshot is taken of.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

/// Status of a VolumeSnapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// A VolumeSnapshot's error.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

impl VolumeSnapshot {
    /// Whether the snapshot controller reports it ready to use.
    pub fn ready(&self) -> bool {
        self.status.as_ref().and_then(|s| s.ready_to_use) == Some(true)
    }
}

/// A namespaced typed API.
pub fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), ns)
}

/// Creates a Secret from string values.
pub async fn create_secret(
    client: &Client,
    ns: &str,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<Secret> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..ObjectMeta::default()
        },
        string_data: Some(data),
        ..Secret::default()
    };
    api::<Secret>(client, ns)
        .create(&PostParams::default(), &secret)
        .await
        .with_context(|| format!("creating Secret {ns}/{name}"))
}

/// Creates the Secret `name` with key `rclone.conf` holding the S3 server's section
/// `section`, plus any extra keys (e.g. `SCRIBE_TRANSFERS`).
pub async fn rclone_secret(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    section: &str,
    extra: &[(&str, &str)],
) -> Result<Secret> {
    let conf = cluster.rclone_conf(section).await?;
    let mut data = BTreeMap::from([("rclone.conf".to_string(), conf)]);
    for (k, v) in extra {
        data.insert(k.to_string(), v.to_string());
    }
    create_secret(&cluster.client, ns, name, data).await
}

/// Replaces the `rclone.conf` of an existing Secret (a new resourceVersion, which is what lets
/// the controller retry after a configuration error).
pub async fn update_rclone_conf(client: &Client, ns: &str, name: &str, conf: &str) -> Result<()> {
    let patch = serde_json::json!({ "stringData": { "rclone.conf": conf } });
    api::<Secret>(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("updating Secret {ns}/{name}"))?;
    Ok(())
}

/// A PVC spec: `modes`, `size`, optional class and data source.
pub fn pvc_object(
    ns: &str,
    name: &str,
    size: &str,
    modes: &[&str],
    storage_class: Option<&str>,
    data_source: Option<TypedLocalObjectReference>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: storage_class.map(str::to_string),
            data_source,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Creates an empty ReadWriteOnce PVC of `size` with the default StorageClass.
pub async fn pvc(
    client: &Client,
    ns: &str,
    name: &str,
    size: &str,
) -> Result<PersistentVolumeClaim> {
    create_pvc(
        client,
        pvc_object(ns, name, size, &["ReadWriteOnce"], None, None),
    )
    .await
}

/// Creates a PVC restored from the VolumeSnapshot `snapshot` (same namespace).
pub async fn pvc_from_snapshot(
    client: &Client,
    ns: &str,
    name: &str,
    size: &str,
    snapshot: &str,
) -> Result<PersistentVolumeClaim> {
    let source = TypedLocalObjectReference {
        api_group: Some("snapshot.storage.k8s.io".to_string()),
        kind: "VolumeSnapshot".to_string(),
        name: snapshot.to_string(),
    };
    create_pvc(
        client,
        pvc_object(ns, name, size, &["ReadWriteOnce"], None, Some(source)),
    )
    .await
}

/// Creates `pvc`.
pub async fn create_pvc(
    client: &Client,
    pvc: PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim> {
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    api::<PersistentVolumeClaim>(client, &ns)
        .create(&PostParams::default(), &pvc)
        .await
        .with_context(|| format!("creating PersistentVolumeClaim {ns}/{name}"))
}

/// Creates a namespaced object from YAML, in namespace `ns` (whatever the YAML says).
pub async fn create_from_yaml<K>(client: &Client, ns: &str, yaml: &str) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let mut obj: K =
        serde_yaml::from_str(yaml).with_context(|| format!("parsing YAML:\n{yaml}"))?;
    obj.meta_mut().namespace = Some(ns.to_string());
    let name = obj.meta().name.clone().unwrap_or_default();
    api::<K>(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {} {ns}/{name}", K::kind(&())))
}

/// Merge-patches `spec` of a namespaced object.
pub async fn patch_spec<K>(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let patch = serde_json::json!({ "spec": spec });
    api::<K>(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching spec of {} {ns}/{name}", K::kind(&())))
}

/// Sets `spec.trigger.manual` to `value`.
pub async fn set_manual<K>(client: &Client, ns: &str, name: &str, value: &str) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    patch_spec::<K>(
        client,
        ns,
        name,
        serde_json::json!({ "trigger": { "manual": value } }),
    )
    .await
}

/// The storage request of a PVC, as written.
pub fn requested_storage(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// Checks that a name can serve as an S3 bucket (3–63 lowercase letters, digits, `-`).
pub fn bucket_name(name: &str) -> Result<String> {
    ensure!(
        (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-'),
        "{name:?} is not a valid bucket name"
    );
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_controller_contract() {
        assert_eq!(
            names::source_pit("database-source"),
            "scribe-src-database-source"
        );
        assert_eq!(
            names::source_job("database-source"),
            "scribe-rclone-src-database-source"
        );
        assert_eq!(
            names::destination_pvc("database-destination"),
            "scribe-dest-database-destination"
        );
        assert_eq!(
            names::destination_image_prefix("database-destination"),
            "scribe-dest-database-destination-"
        );
    }

    #[test]
    fn bucket_names_are_checked() {
        assert!(bucket_name("e2e-seed-1a2b3").is_ok());
        assert!(bucket_name("E2E").is_err());
        assert!(bucket_name("ab").is_err());
        assert!(bucket_name("a_b_c").is_err());
    }

    #[test]
    fn volume_snapshot_reads_the_snapshotter_fields() {
        let v: VolumeSnapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"source": {"persistentVolumeClaimName": "p"}, "volumeSnapshotClassName": "c"},
            "status": {"readyToUse": true, "restoreSize": "1Gi", "boundVolumeSnapshotContentName": "snapcontent-1"}
        }))
        .expect("parses");
        assert!(v.ready());
        assert_eq!(v.spec.volume_snapshot_class_name.as_deref(), Some("c"));
    }
}
