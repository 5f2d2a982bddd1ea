//! Tests of the storage stand-in's pure decisions: which claims are ours, what a PV looks
//! like, which PVs and snapshot contents to act on, and the status patches sent.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::claims::{
    DataSource, build_pv, claim_is_ours, data_source, reclaimable_handle, volume_name,
};
use super::snapshotter::{
    Action, cleared_status, error_status, finalizers_patch, next_action, quantity_bytes,
    ready_status, snapshot_handle_for,
};
use super::*;

const DRIVER: &str = "hostpath.csi.k8s.io";

fn claim(extra: Value) -> PersistentVolumeClaim {
    let mut base = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "data",
            "namespace": "app",
            "uid": "0b9f3c52-7d0e-4f55-a1c4-2c1f7e6d9a10",
            "annotations": {"volume.kubernetes.io/storage-provisioner": DRIVER},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "csi-hostpath-sc",
        },
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

/// RFC 7386 merge: objects merge recursively, `null` removes a key.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, e) => *b = e,
    }
}

fn class(extra: Value) -> StorageClass {
    let mut base = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "csi-hostpath-sc"},
        "provisioner": DRIVER,
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn volume(annotation: &str, policy: &str, phase: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {
            "name": "pvc-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": annotation},
        },
        "spec": {
            "persistentVolumeReclaimPolicy": policy,
            "csi": {"driver": DRIVER, "volumeHandle": "pvc-1"},
        },
        "status": {"phase": phase},
    }))
    .unwrap()
}

fn content(extra: Value) -> DynamicObject {
    let mut base = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {
            "name": "snapcontent-1",
            "uid": "5d1c0f1e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
        },
        "spec": {
            "driver": DRIVER,
            "deletionPolicy": "Delete",
            "source": {"volumeHandle": "pvc-1"},
            "volumeSnapshotClassName": "csi-hostpath-snapclass",
            "volumeSnapshotRef": {"name": "snap", "namespace": "app", "uid": "vs-uid"},
        },
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

#[test]
fn resources_address_the_snapshot_api() {
    let vs = volume_snapshot_resource();
    assert_eq!(vs.api_version, "snapshot.storage.k8s.io/v1");
    assert_eq!(vs.kind, "VolumeSnapshot");
    assert_eq!(vs.plural, "volumesnapshots");
    let vsc = volume_snapshot_content_resource();
    assert_eq!(vsc.group, "snapshot.storage.k8s.io");
    assert_eq!(vsc.kind, "VolumeSnapshotContent");
    assert_eq!(vsc.plural, "volumesnapshotcontents");
}

#[test]
fn json_paths() {
    let v = json!({"spec": {"source": {"volumeHandle": "pvc-1", "empty": ""}}});
    assert_eq!(
        str_at(&v, &["spec", "source", "volumeHandle"]),
        Some("pvc-1")
    );
    assert_eq!(str_at(&v, &["spec", "source", "empty"]), None);
    assert_eq!(str_at(&v, &["spec", "missing", "x"]), None);
    assert!(json_at(&v, &["spec", "source"]).unwrap().is_object());
}

#[test]
fn nanos_since_epoch() {
    let t = std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    assert_eq!(unix_nanos(t), 1_700_000_000_000_000_123);
    assert_eq!(unix_nanos(std::time::UNIX_EPOCH), 0);
}

#[test]
fn claims_annotated_for_our_driver_and_unbound_are_ours() {
    assert!(claim_is_ours(&claim(json!({})), DRIVER));
    let beta = claim(json!({"metadata": {"annotations": {
        "volume.kubernetes.io/storage-provisioner": null,
        "volume.beta.kubernetes.io/storage-provisioner": DRIVER,
    }}}));
    assert!(claim_is_ours(&beta, DRIVER));
    assert!(!claim_is_ours(&claim(json!({})), "other.csi.k8s.io"));
    let bound = claim(json!({"spec": {"volumeName": "pvc-x"}}));
    assert!(!claim_is_ours(&bound, DRIVER));
    let deleting = claim(json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}));
    assert!(!claim_is_ours(&deleting, DRIVER));
    let unannotated = claim(json!({"metadata": {"annotations": null}}));
    assert!(!claim_is_ours(&unannotated, DRIVER));
}

#[test]
fn volume_is_named_after_the_claim_uid() {
    assert_eq!(
        volume_name(&claim(json!({}))).as_deref(),
        Some("pvc-0b9f3c52-7d0e-4f55-a1c4-2c1f7e6d9a10")
    );
    assert_eq!(
        volume_name(&claim(json!({"metadata": {"uid": null}}))),
        None
    );
}

#[test]
fn data_sources_are_classified() {
    assert_eq!(data_source(&claim(json!({}))), DataSource::Empty);
    let clone =
        claim(json!({"spec": {"dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}}}));
    assert_eq!(
        data_source(&clone),
        DataSource::Claim {
            namespace: "app".into(),
            name: "src".into()
        }
    );
    let restore = claim(json!({"spec": {"dataSourceRef": {
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap",
    }}}));
    assert_eq!(
        data_source(&restore),
        DataSource::Snapshot {
            namespace: "app".into(),
            name: "snap".into()
        }
    );
    let both = claim(json!({"spec": {
        "dataSource": {"kind": "PersistentVolumeClaim", "name": "ignored"},
        "dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                          "name": "snap", "namespace": "other"},
    }}));
    assert_eq!(
        data_source(&both),
        DataSource::Snapshot {
            namespace: "other".into(),
            name: "snap".into()
        }
    );
    let populator = claim(json!({"spec": {"dataSourceRef": {
        "apiGroup": "hello.example.com", "kind": "Hello", "name": "h",
    }}}));
    assert_eq!(
        data_source(&populator),
        DataSource::Unsupported {
            api_group: "hello.example.com".into(),
            kind: "Hello".into()
        }
    );
    let wrong_group = claim(json!({"spec": {"dataSource": {
        "apiGroup": "example.com", "kind": "VolumeSnapshot", "name": "s",
    }}}));
    assert!(matches!(
        data_source(&wrong_group),
        DataSource::Unsupported { .. }
    ));
}

#[test]
fn pv_mirrors_claim_and_class() {
    let pvc = claim(
        json!({"spec": {"volumeMode": "Filesystem", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
    );
    let sc = class(json!({"reclaimPolicy": "Retain", "mountOptions": ["noatime"]}));
    let pv = build_pv(&pvc, &sc, DRIVER).unwrap();
    assert_eq!(
        serde_json::to_value(&pv).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": "pvc-0b9f3c52-7d0e-4f55-a1c4-2c1f7e6d9a10",
                "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER},
            },
            "spec": {
                "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                "capacity": {"storage": "1Gi"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": "app",
                    "name": "data",
                    "uid": "0b9f3c52-7d0e-4f55-a1c4-2c1f7e6d9a10",
                },
                "csi": {
                    "driver": DRIVER,
                    "volumeHandle": "pvc-0b9f3c52-7d0e-4f55-a1c4-2c1f7e6d9a10",
                    "volumeAttributes": {},
                },
                "mountOptions": ["noatime"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "csi-hostpath-sc",
                "volumeMode": "Filesystem",
            },
        })
    );
}

#[test]
fn pv_defaults_and_block_mode() {
    let pv = build_pv(&claim(json!({})), &class(json!({})), DRIVER).unwrap();
    let spec = pv.spec.unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(spec.mount_options, None);
    let block = build_pv(
        &claim(
            json!({"spec": {"volumeMode": "Block", "resources": {"requests": {"storage": "5Mi"}}}}),
        ),
        &class(json!({"reclaimPolicy": "Delete"})),
        DRIVER,
    )
    .unwrap()
    .spec
    .unwrap();
    assert_eq!(block.volume_mode.as_deref(), Some("Block"));
    assert_eq!(block.capacity.unwrap()["storage"].0, "5Mi");
    let no_request = claim(json!({"spec": {"resources": null}}));
    assert_eq!(
        build_pv(&no_request, &class(json!({})), DRIVER).unwrap_err(),
        "claim has no spec.resources.requests.storage"
    );
}

#[test]
fn only_released_deletable_volumes_of_ours_are_reclaimed() {
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Delete", "Released"), DRIVER),
        Some("pvc-1")
    );
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Delete", "Failed"), DRIVER),
        Some("pvc-1")
    );
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Delete", "Bound"), DRIVER),
        None
    );
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Delete", "Available"), DRIVER),
        None
    );
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Retain", "Released"), DRIVER),
        None
    );
    assert_eq!(
        reclaimable_handle(&volume("other", "Delete", "Released"), DRIVER),
        None
    );
    assert_eq!(
        reclaimable_handle(&volume(DRIVER, "Delete", "Released"), "other"),
        None
    );
}

#[test]
fn snapshot_handles_are_path_safe() {
    assert_eq!(
        snapshot_handle_for("5d1c0f1e-0000-4000-8000-000000000001"),
        "snapcontent-5d1c0f1e-0000-4000-8000-000000000001"
    );
    assert_eq!(snapshot_handle_for("a/b"), "snapcontent-a_b");
}

#[test]
fn new_dynamic_content_is_snapshotted() {
    assert_eq!(
        next_action(&content(json!({})), DRIVER),
        Action::Create {
            volume_handle: "pvc-1".into()
        }
    );
    // A recorded error does not stop retries.
    let failed = content(json!({"status": {"readyToUse": false, "error": {"message": "boom"}}}));
    assert_eq!(
        next_action(&failed, DRIVER),
        Action::Create {
            volume_handle: "pvc-1".into()
        }
    );
    assert_eq!(next_action(&content(json!({})), "other"), Action::Nothing);
    let group = content(json!({"metadata": {"annotations": {
        "groupsnapshot.storage.k8s.io/volumeGroupSnapshotHandle": "g"}}}));
    assert_eq!(next_action(&group, DRIVER), Action::Nothing);
}

#[test]
fn ready_content_is_left_alone_or_unmarked() {
    let ready = json!({"status": {"readyToUse": true, "snapshotHandle": "snapcontent-x"}});
    assert_eq!(
        next_action(&content(ready.clone()), DRIVER),
        Action::Nothing
    );
    let mut marked = ready;
    merge(
        &mut marked,
        json!({"metadata": {"annotations": {ANN_BEING_CREATED_KEY: "yes"}}}),
    );
    assert_eq!(
        next_action(&content(marked), DRIVER),
        Action::ClearBeingCreated
    );
}

const ANN_BEING_CREATED_KEY: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-created";
const ANN_BEING_DELETED_KEY: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";
const BOUND_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";

#[test]
fn pre_provisioned_content_is_imported() {
    let imported = content(
        json!({"spec": {"source": {"volumeHandle": null, "snapshotHandle": "snap-7"},
                                           "volumeSnapshotClassName": null}}),
    );
    assert_eq!(
        next_action(&imported, DRIVER),
        Action::Import {
            snapshot_handle: "snap-7".into()
        }
    );
}

#[test]
fn deletion_follows_the_sidecar() {
    let deleting = |extra: Value| {
        let mut base = json!({
            "metadata": {
                "deletionTimestamp": "2025-01-01T00:00:00Z",
                "finalizers": [BOUND_FINALIZER],
                "annotations": {ANN_BEING_DELETED_KEY: "yes"},
            },
            "status": {"readyToUse": true, "snapshotHandle": "snapcontent-x"},
        });
        merge(&mut base, extra);
        content(base)
    };
    assert_eq!(
        next_action(&deleting(json!({})), DRIVER),
        Action::Delete {
            data: Some("snapcontent-x".into())
        }
    );
    let retain = deleting(json!({"spec": {"deletionPolicy": "Retain"}}));
    assert_eq!(next_action(&retain, DRIVER), Action::Delete { data: None });
    // Data already removed and finalizer gone: nothing left to do.
    let done =
        deleting(json!({"metadata": {"finalizers": null}, "status": {"snapshotHandle": null}}));
    assert_eq!(next_action(&done, DRIVER), Action::Nothing);
    // Not yet released by the snapshot-controller: wait (nothing to create, it is ready).
    let unreleased = deleting(json!({"metadata": {"annotations": {ANN_BEING_DELETED_KEY: null}}}));
    assert_eq!(next_action(&unreleased, DRIVER), Action::Nothing);
    // Mid-creation: finish the snapshot first.
    let creating = deleting(json!({
        "metadata": {"annotations": {ANN_BEING_CREATED_KEY: "yes"}},
        "status": null,
    }));
    assert_eq!(
        next_action(&creating, DRIVER),
        Action::Create {
            volume_handle: "pvc-1".into()
        }
    );
    // An unbound pre-provisioned content may go without the controller's mark.
    let unbound = deleting(json!({
        "metadata": {"annotations": null},
        "spec": {"source": {"volumeHandle": null, "snapshotHandle": "snap-7"},
                 "volumeSnapshotRef": {"uid": null}},
        "status": {"snapshotHandle": "snap-7"},
    }));
    assert_eq!(
        next_action(&unbound, DRIVER),
        Action::Delete {
            data: Some("snap-7".into())
        }
    );
}

#[test]
fn status_patches() {
    assert_eq!(
        ready_status("snapcontent-x", 1_700_000_000_000_000_123, 1_073_741_824),
        json!({"status": {
            "snapshotHandle": "snapcontent-x",
            "creationTime": 1_700_000_000_000_000_123_i64,
            "readyToUse": true,
            "restoreSize": 1_073_741_824_i64,
            "error": null,
        }})
    );
    assert_eq!(
        ready_status("h", 5, 0),
        json!({"status": {"snapshotHandle": "h", "creationTime": 5, "readyToUse": true, "error": null}})
    );
    let when = chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
        .unwrap()
        .to_utc();
    assert_eq!(
        error_status("boom", when),
        json!({"status": {"readyToUse": false, "error": {"time": "2025-03-04T05:06:07Z", "message": "boom"}}})
    );
    assert_eq!(
        cleared_status(),
        json!({"status": {"snapshotHandle": null, "readyToUse": null, "creationTime": null, "restoreSize": null}})
    );
}

#[test]
fn finalizer_removal_keeps_foreign_finalizers() {
    let c = content(json!({"metadata": {"finalizers": [
        "example.com/keep",
        BOUND_FINALIZER,
        "snapshot.storage.kubernetes.io/volumesnapshotcontent-cleanup",
    ]}}));
    assert_eq!(
        finalizers_patch(&c),
        json!({"metadata": {"resourceVersion": "42", "finalizers": ["example.com/keep"]}})
    );
    let only = content(json!({"metadata": {"finalizers": [BOUND_FINALIZER]}}));
    assert_eq!(
        finalizers_patch(&only),
        json!({"metadata": {"resourceVersion": "42", "finalizers": []}})
    );
}

#[test]
fn quantities_in_bytes() {
    let cases = [
        ("1Gi", Some(1_073_741_824)),
        ("1Mi", Some(1_048_576)),
        ("100", Some(100)),
        ("1G", Some(1_000_000_000)),
        ("500M", Some(500_000_000)),
        ("1.5Gi", Some(1_610_612_736)),
        ("1.5", Some(2)),
        ("2e3", Some(2000)),
        ("1E", Some(1_000_000_000_000_000_000)),
        ("100m", Some(1)),
        ("1500m", Some(2)),
        ("8Ei", None),
        ("", None),
        ("1Xi", None),
        ("1.2.3", None),
        ("-1", None),
    ];
    for (q, want) in cases {
        assert_eq!(quantity_bytes(q), want, "{q}");
    }
}
