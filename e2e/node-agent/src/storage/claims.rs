//! The provisioner's pure rules: which claims are ours, where a new volume's data
//! comes from, and what its PersistentVolume looks like; which released volumes to
//! reclaim.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::SNAPSHOT_GROUP;

/// Set by the PV controller on claims whose StorageClass names an external provisioner.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The pre-1.23 spelling of [`ANN_STORAGE_PROVISIONER`], still honoured.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Marks a PV as provisioned (and therefore to be deleted) by this driver.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set by the scheduler on `WaitForFirstConsumer` claims once a consumer is placed.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// What a claim's new volume starts from (`spec.dataSourceRef`, else `spec.dataSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    Empty,
    Claim {
        namespace: String,
        name: String,
    },
    Snapshot {
        namespace: String,
        name: String,
    },
    /// Anything else belongs to a volume populator, not to the provisioner.
    Unsupported {
        api_group: String,
        kind: String,
    },
}

/// How far a data source is from being usable.
#[derive(Debug)]
pub(super) enum Resolved {
    /// Copy this directory (or nothing) into the new volume.
    Ready(Option<PathBuf>),
    /// Not yet (source not bound / not ready): try again next pass, quietly.
    Wait(String),
    /// Cannot provision as asked: reported as a ProvisioningFailed event, retried.
    Fail(String),
}

/// `pvc-<uid>`: the PV name and volume handle of a claim, as external-provisioner names them.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| format!("pvc-{u}"))
}

/// The claim names `driver` as its provisioner, is unbound and is not being deleted.
pub fn claim_is_ours(pvc: &PersistentVolumeClaim, driver: &str) -> bool {
    let annotations = pvc.metadata.annotations.as_ref();
    let provisioner = annotations.and_then(|a| {
        a.get(ANN_STORAGE_PROVISIONER)
            .or_else(|| a.get(ANN_BETA_STORAGE_PROVISIONER))
    });
    let unbound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty);
    provisioner.map(String::as_str) == Some(driver)
        && unbound
        && pvc.metadata.deletion_timestamp.is_none()
}

fn classify(api_group: Option<&str>, kind: &str, name: &str, namespace: &str) -> DataSource {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    match (api_group.unwrap_or(""), kind) {
        ("", "PersistentVolumeClaim") => DataSource::Claim { namespace, name },
        (SNAPSHOT_GROUP, "VolumeSnapshot") => DataSource::Snapshot { namespace, name },
        (group, kind) => DataSource::Unsupported {
            api_group: group.to_string(),
            kind: kind.to_string(),
        },
    }
}

/// The claim's data source; `dataSourceRef` wins over `dataSource` (the API server mirrors them).
pub fn data_source(pvc: &PersistentVolumeClaim) -> DataSource {
    let namespace = pvc.metadata.namespace.as_deref().unwrap_or_default();
    let Some(spec) = pvc.spec.as_ref() else {
        return DataSource::Empty;
    };
    if let Some(r) = &spec.data_source_ref {
        let ns = r.namespace.as_deref().filter(|n| !n.is_empty());
        return classify(
            r.api_group.as_deref(),
            &r.kind,
            &r.name,
            ns.unwrap_or(namespace),
        );
    }
    if let Some(r) = &spec.data_source {
        return classify(r.api_group.as_deref(), &r.kind, &r.name, namespace);
    }
    DataSource::Empty
}

/// The PersistentVolume external-provisioner would create for `pvc` in `class`.
pub fn build_pv(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    driver: &str,
) -> Result<PersistentVolume, String> {
    let name = pvc.metadata.name.clone().ok_or("claim has no name")?;
    let namespace = pvc
        .metadata
        .namespace
        .clone()
        .ok_or("claim has no namespace")?;
    let uid = pvc.metadata.uid.clone().ok_or("claim has no uid")?;
    let handle = volume_name(pvc).ok_or("claim has no uid")?;
    let spec = pvc.spec.as_ref().ok_or("claim has no spec")?;
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or("claim has no spec.resources.requests.storage")?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(handle.clone()),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                driver.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_string(), storage.clone())])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(name),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: driver.to_string(),
                volume_handle: handle,
                volume_attributes: Some(BTreeMap::new()),
                ..CSIPersistentVolumeSource::default()
            }),
            mount_options: class.mount_options.clone().filter(|m| !m.is_empty()),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: spec.storage_class_name.clone(),
            volume_mode: Some(
                spec.volume_mode
                    .clone()
                    .unwrap_or_else(|| "Filesystem".into()),
            ),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

/// The volume handle of a PV this driver must now delete: provisioned by it, reclaim policy
/// `Delete`, and `Released` (or `Failed`).
pub fn reclaimable_handle<'a>(pv: &'a PersistentVolume, driver: &str) -> Option<&'a str> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .is_some_and(|d| d == driver);
    let spec = pv.spec.as_ref()?;
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let released = matches!(phase, Some("Released" | "Failed"));
    let csi = spec.csi.as_ref().filter(|c| c.driver == driver)?;
    (ours && delete && released && !csi.volume_handle.is_empty())
        .then_some(csi.volume_handle.as_str())
}

pub(super) fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default()
    )
}
