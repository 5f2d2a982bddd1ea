//! Builder tests of the objects besides the mover Job: owners from a CR, point-in-time
//! PVCs' data sources and size, and the seed document's example CRs deserializing unchanged.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_controller::builders::names::Owner;
use scribe_controller::builders::pvc::{DataSource, PvcParams, build_pvc, requested_storage};

use crate::plan_builders::owner;

#[test]
fn owner_from_a_cr_uses_its_uid_and_kind() {
    let cr: ReplicationSource =
        serde_yaml::from_str(&seed("replicationsource-minimal.yaml")).expect("seed source");
    let mut cr = cr;
    cr.metadata.uid = Some("abc".into());
    let owner = Owner::of_source(&cr);
    assert_eq!(owner.owner_ref.kind, "ReplicationSource");
    assert_eq!(owner.owner_ref.api_version, "scribe.backube/v1alpha1");
    assert_eq!(owner.owner_ref.uid, "abc");
    assert_eq!(owner.owner_ref.controller, Some(true));
    assert_eq!(
        owner.selector(),
        "app.kubernetes.io/created-by=scribe,scribe.backube/owner-kind=ReplicationSource,scribe.backube/owner-name=database-source"
    );
}

#[test]
fn pvc_from_snapshot_has_snapshot_data_source_and_requested_size() {
    let owner = owner();
    let pvc = build_pvc(&PvcParams {
        name: "scribe-src-db",
        owner: &owner,
        access_modes: vec!["ReadWriteOnce".into()],
        capacity: Quantity("5Gi".into()),
        storage_class_name: Some("fast".into()),
        volume_mode: Some("Block".into()),
        data_source: Some(DataSource::Snapshot("scribe-src-db".into())),
    });
    let spec = pvc.spec.as_ref().expect("spec");
    let ds = spec.data_source.as_ref().expect("data source");
    assert_eq!(ds.api_group.as_deref(), Some("snapshot.storage.k8s.io"));
    assert_eq!(ds.kind, "VolumeSnapshot");
    assert_eq!(requested_storage(&pvc), Some(Quantity("5Gi".into())));
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    assert_eq!(
        pvc.metadata.owner_references.as_ref().expect("owner")[0].uid,
        "uid-1"
    );
    assert_eq!(pvc.metadata.namespace.as_deref(), Some("ns"));
}

#[test]
fn cloned_pvc_references_the_source_pvc_in_the_core_group() {
    let owner = owner();
    let pvc = build_pvc(&PvcParams {
        name: "scribe-src-db",
        owner: &owner,
        access_modes: vec!["ReadWriteOnce".into()],
        capacity: Quantity("1Gi".into()),
        storage_class_name: None,
        volume_mode: None,
        data_source: Some(DataSource::Pvc("data".into())),
    });
    let ds = pvc.spec.and_then(|s| s.data_source).expect("data source");
    assert_eq!(
        (ds.api_group, ds.kind.as_str(), ds.name.as_str()),
        (None, "PersistentVolumeClaim", "data")
    );
}

fn seed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn seed_source_example_deserializes_unchanged() {
    let cr: ReplicationSource =
        serde_yaml::from_str(&seed("replicationsource-minimal.yaml")).expect("seed source");
    assert_eq!(cr.spec.source_pvc, "mysql-pv-claim");
    assert_eq!(
        cr.spec.trigger.as_ref().and_then(|t| t.schedule.as_deref()),
        Some("*/6 * * * *")
    );
    assert_eq!(cr.spec.rclone.rclone_config_section, "aws-s3-bucket");
    assert_eq!(cr.spec.rclone.rclone_dest_path, "scribe-test-bucket");
    assert_eq!(cr.spec.rclone.rclone_config, "rclone-secret");
    assert_eq!(cr.spec.rclone.copy_method, SourceCopyMethod::Snapshot);
    // And round-trips: what we serialize reads back the same.
    let again: ReplicationSource =
        serde_yaml::from_str(&serde_yaml::to_string(&cr).expect("ser")).expect("de");
    assert_eq!(again.spec, cr.spec);
}

#[test]
fn seed_source_status_example_spec_and_next_sync_time_deserialize() {
    // The seed's status example omits metadata and nests status under spec; its spec and the
    // status field names must still be ours.
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&seed("replicationsource-status.yaml")).expect("yaml");
    let spec: scribe_api::ReplicationSourceSpec =
        serde_yaml::from_value(doc["spec"].clone()).expect("seed spec");
    assert_eq!(spec.rclone.copy_method, SourceCopyMethod::Snapshot);
    assert_eq!(spec.source_pvc, "mysql-pv-claim");
    let mut status = doc["spec"]["status"].clone();
    if let serde_yaml::Value::Mapping(m) = &mut status {
        m.remove("conditions");
    }
    let status: scribe_api::ReplicationSourceStatus =
        serde_yaml::from_value(status).expect("seed status");
    assert_eq!(
        status.next_sync_time.map(|t| t.0.to_string()).as_deref(),
        Some("2021-01-18T22:00:00Z")
    );
}

#[test]
fn seed_destination_example_deserializes_unchanged() {
    let cr: ReplicationDestination =
        serde_yaml::from_str(&seed("replicationdestination-minimal.yaml"))
            .expect("seed destination");
    assert_eq!(cr.spec.rclone.copy_method, DestinationCopyMethod::Snapshot);
    assert_eq!(cr.spec.rclone.access_modes, vec!["ReadWriteOnce"]);
    assert_eq!(cr.spec.rclone.capacity, Some(Quantity("10Gi".into())));
    assert_eq!(cr.metadata.namespace.as_deref(), Some("dest"));
}

#[test]
fn seed_destination_status_fields_deserialize() {
    let cr: ReplicationDestination =
        serde_yaml::from_str(&seed("replicationdestination-status.yaml"))
            .expect("seed destination status");
    let status = cr.status.expect("status");
    assert_eq!(status.last_sync_duration.as_deref(), Some("7.066022293s"));
    let image = status.latest_image.expect("latestImage");
    assert_eq!(image.api_group.as_deref(), Some("snapshot.storage.k8s.io"));
    assert_eq!(image.kind, "VolumeSnapshot");
    assert_eq!(
        image.name,
        "scribe-dest-database-destination-20210119221601"
    );
    assert_eq!(status.conditions[0].reason, "ReconcileComplete");
}
