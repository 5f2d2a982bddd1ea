//! VolumeSnapshots the controller takes: the source's point-in-time copy and the
//! destination's per-iteration image.

use crate::snapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};

use super::names::Owner;

/// A snapshot of `pvc` named `name`; `class` None means the cluster's default class.
pub fn build_volume_snapshot(
    name: &str,
    owner: &Owner,
    pvc: &str,
    class: Option<&str>,
) -> VolumeSnapshot {
    VolumeSnapshot {
        metadata: owner.object_meta(name),
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc.to_string()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: class.map(str::to_string),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn snapshot_of_a_pvc_omits_the_class_for_the_cluster_default() {
        let owner = Owner {
            kind: "ReplicationDestination",
            name: "db".into(),
            namespace: "ns".into(),
            owner_ref: OwnerReference {
                name: "db".into(),
                uid: "u".into(),
                ..OwnerReference::default()
            },
        };
        let snap = build_volume_snapshot(
            "scribe-dest-db-20260101000000",
            &owner,
            "scribe-dest-db",
            None,
        );
        assert_eq!(
            snap.spec.source.persistent_volume_claim_name.as_deref(),
            Some("scribe-dest-db")
        );
        let yaml = serde_yaml::to_string(&snap).expect("serializes");
        assert!(!yaml.contains("volumeSnapshotClassName"), "{yaml}");
        assert!(
            yaml.contains("apiVersion: snapshot.storage.k8s.io/v1"),
            "{yaml}"
        );
        let labels = snap.metadata.labels.expect("labels");
        assert_eq!(
            labels.get("scribe.backube/owner-kind").map(String::as_str),
            Some("ReplicationDestination")
        );
        let classed = build_volume_snapshot("s", &owner, "p", Some("csi-snapclass"));
        assert_eq!(
            classed.spec.volume_snapshot_class_name.as_deref(),
            Some("csi-snapclass")
        );
    }
}
