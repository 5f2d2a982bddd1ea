//! PersistentVolumeClaims the controller provisions: the source's point-in-time copy
//! (from a VolumeSnapshot or a clone of the source PVC) and the destination volume.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::names::Owner;

/// What a new PVC is populated from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// Restore the named VolumeSnapshot.
    Snapshot(String),
    /// Clone the named PVC.
    Pvc(String),
}

/// Everything that shapes a PVC the controller creates.
#[derive(Clone, Debug)]
pub struct PvcParams<'a> {
    pub name: &'a str,
    pub owner: &'a Owner,
    pub access_modes: Vec<String>,
    pub capacity: Quantity,
    /// None: the cluster's default StorageClass.
    pub storage_class_name: Option<String>,
    /// `Filesystem` or `Block`; None: the cluster's default (Filesystem). A point-in-time copy
    /// takes its source's.
    pub volume_mode: Option<String>,
    pub data_source: Option<DataSource>,
}

/// The complete PVC, ready for server-side apply.
pub fn build_pvc(p: &PvcParams<'_>) -> PersistentVolumeClaim {
    let data_source = p.data_source.as_ref().map(|ds| match ds {
        DataSource::Snapshot(name) => TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".to_string()),
            kind: "VolumeSnapshot".to_string(),
            name: name.clone(),
        },
        DataSource::Pvc(name) => TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".to_string(),
            name: name.clone(),
        },
    });
    PersistentVolumeClaim {
        metadata: p.owner.object_meta(p.name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(p.access_modes.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    p.capacity.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: p.storage_class_name.clone(),
            volume_mode: p.volume_mode.clone(),
            data_source,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The storage request of a PVC, if it has one.
pub fn requested_storage(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

/// The size of the volume bound to a PVC (`status.capacity.storage`), once it is bound.
pub fn bound_capacity(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    pvc.status
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .cloned()
}
