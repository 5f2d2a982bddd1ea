//! Copy methods and volume options: a source with `Clone` (PiT PVC cloned from the source with
//! the requested capacity, access modes and StorageClass) and one with `None` (the mover reads
//! the source PVC itself, read-only, and nothing else is created); a destination with `None`
//! (latestImage is the provisioned PVC, with the requested capacity, access modes and class)
//! and one with a pre-existing `destinationPVC` snapshotted with the requested
//! VolumeSnapshotClass.

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names, requested_storage};
use scribe_e2e::record::Recorder;
use scribe_e2e::volumes::{VolumeAccess as _, assert_volume_matches};
use scribe_e2e::{Scenario, tree, volumes};

use crate::common::{self, SYNC};

#[tokio::test]
async fn clone_source_and_none_destination_honour_capacity_modes_and_class() -> Result<()> {
    let s = Scenario::start("copy_clone_none").await?;
    let vols = volumes(&s.cluster)?;
    let class = common::extra_storage_class(&s).await?;
    let src = common::secret_namespace(&s, "cm-clone-src").await?;
    let dst = common::secret_namespace(&s, "cm-none-dst").await?;
    let remote = common::remote(&src, "clone")?;
    let tree = tree::sample_tree(2);
    common::pvc_with_tree(&s, &vols, &src, "data", &tree).await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &src).await?;
    let snapshots = Recorder::<VolumeSnapshot>::start(s.client(), &src).await?;
    let jobs = Recorder::<Job>::start(s.client(), &src).await?;

    let mut rs = crs::source("cloner", "data", &remote, SourceCopyMethod::Clone);
    rs.spec.trigger = crs::manual("clone-1");
    rs.spec.rclone.capacity = Some(Quantity("2Gi".into()));
    rs.spec.rclone.access_modes = vec!["ReadOnlyMany".into()];
    rs.spec.rclone.storage_class_name = Some(class.clone());
    crs::create(s.client(), &src, &rs).await?;
    let rs: ReplicationSource = s
        .wait_manual_synced(&src, "cloner", "clone-1", SYNC)
        .await?;
    ensure!(
        rs.mover_summary()?.result == "Successful",
        "{:?}",
        rs.status
    );
    common::wait_source_cleaned_up(&s, &src, "cloner").await?;

    let pit = names::source_pit("cloner");
    let clone = pvcs
        .named(|n| n == pit)
        .into_iter()
        .next()
        .with_context(|| format!("no PVC {pit} was created for copyMethod Clone"))?;
    let spec = clone.first.spec.clone().unwrap_or_default();
    let ds = spec
        .data_source
        .clone()
        .context("the clone has no dataSource")?;
    ensure!(
        ds.kind == "PersistentVolumeClaim"
            && ds.name == "data"
            && ds.api_group.unwrap_or_default().is_empty(),
        "PVC {pit} should be cloned from PVC data, dataSource is {:?}",
        spec.data_source
    );
    ensure!(
        requested_storage(&clone.first).as_deref() == Some("2Gi"),
        "capacity 2Gi not honoured: {pit} requests {:?}",
        requested_storage(&clone.first)
    );
    ensure!(
        spec.access_modes == Some(vec!["ReadOnlyMany".to_string()]),
        "accessModes [ReadOnlyMany] not honoured: {pit} has {:?}",
        spec.access_modes
    );
    ensure!(
        spec.storage_class_name.as_deref() == Some(class.as_str()),
        "storageClassName {class} not honoured: {pit} has {:?}",
        spec.storage_class_name
    );
    ensure!(
        snapshots.all().is_empty(),
        "copyMethod Clone must not take VolumeSnapshots, saw {:?}",
        snapshots.all().iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    let job = jobs
        .named(|n| n == names::source_job("cloner"))
        .into_iter()
        .next()
        .context("no source Job recorded")?;
    ensure!(
        common::job_data_claim(&job.first) == Some((pit.clone(), true)),
        "the source Job should mount {pit} read-only, mounts {:?}",
        common::job_data_claim(&job.first)
    );

    let mut rd = crs::destination("plain", &remote, DestinationCopyMethod::None, "3Gi");
    rd.spec.trigger = crs::manual("dst-1");
    rd.spec.rclone.storage_class_name = Some(class.clone());
    crs::create(s.client(), &dst, &rd).await?;
    let rd: ReplicationDestination = s.wait_manual_synced(&dst, "plain", "dst-1", SYNC).await?;
    let data_pvc = names::destination_pvc("plain");
    let image = rd
        .status
        .as_ref()
        .and_then(|s| s.latest_image.clone())
        .context("copyMethod None: no latestImage")?;
    ensure!(
        image.kind == "PersistentVolumeClaim"
            && image.name == data_pvc
            && image.api_group.clone().unwrap_or_default().is_empty(),
        "copyMethod None: latestImage should be PVC {data_pvc}, got {image:?}"
    );
    let pvc = api::<PersistentVolumeClaim>(s.client(), &dst)
        .get(&data_pvc)
        .await?;
    let spec = pvc.spec.clone().unwrap_or_default();
    ensure!(
        requested_storage(&pvc).as_deref() == Some("3Gi")
            && spec.access_modes == Some(vec!["ReadWriteOnce".to_string()])
            && spec.storage_class_name.as_deref() == Some(class.as_str()),
        "{data_pvc} should request 3Gi RWO of class {class}: {spec:?}"
    );
    let dst_snaps = api::<VolumeSnapshot>(s.client(), &dst)
        .list(&Default::default())
        .await?;
    ensure!(
        dst_snaps.items.is_empty(),
        "copyMethod None must not take snapshots, found {:?}",
        dst_snaps
            .items
            .iter()
            .map(|v| v.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    assert_volume_matches(&vols, &dst, &data_pvc, &tree).await?;
    s.finish().await
}

#[tokio::test]
async fn none_source_and_existing_destination_pvc_with_snapshot_class() -> Result<()> {
    let s = Scenario::start("copy_direct_dpvc").await?;
    let vols = volumes(&s.cluster)?;
    let snap_class = common::extra_snapshot_class(&s).await?;
    let src = common::secret_namespace(&s, "cm-none-src").await?;
    let dst = common::secret_namespace(&s, "cm-dpvc-dst").await?;
    let remote = common::remote(&src, "direct")?;
    let tree = tree::sample_tree(3);
    common::pvc_with_tree(&s, &vols, &src, "data", &tree).await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &src).await?;
    let snapshots = Recorder::<VolumeSnapshot>::start(s.client(), &src).await?;
    let jobs = Recorder::<Job>::start(s.client(), &src).await?;

    let mut rs = crs::source("direct", "data", &remote, SourceCopyMethod::None);
    rs.spec.trigger = crs::manual("direct-1");
    crs::create(s.client(), &src, &rs).await?;
    let _: ReplicationSource = s
        .wait_manual_synced(&src, "direct", "direct-1", SYNC)
        .await?;
    let job = jobs
        .named(|n| n == names::source_job("direct"))
        .into_iter()
        .next()
        .context("no source Job recorded")?;
    ensure!(
        common::job_data_claim(&job.first) == Some(("data".to_string(), true)),
        "copyMethod None: the Job should mount the source PVC data read-only, mounts {:?}",
        common::job_data_claim(&job.first)
    );
    let other: Vec<String> = pvcs
        .all()
        .iter()
        .map(|p| p.name())
        .filter(|n| n != "data")
        .collect();
    ensure!(
        other.is_empty(),
        "copyMethod None must create no PVC, saw {other:?}"
    );
    ensure!(
        snapshots.all().is_empty(),
        "copyMethod None must take no VolumeSnapshot, saw {:?}",
        snapshots.all().iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    // The source volume itself is untouched by a read-only mover.
    assert_volume_matches(&vols, &src, "data", &tree).await?;

    objects::pvc(s.client(), &dst, "restore-target", "1Gi").await?;
    let mut rd = crs::destination(
        "into-existing",
        &remote,
        DestinationCopyMethod::Snapshot,
        "1Gi",
    );
    rd.spec.trigger = crs::manual("dst-1");
    rd.spec.rclone.capacity = None;
    rd.spec.rclone.access_modes = Vec::new();
    rd.spec.rclone.destination_pvc = Some("restore-target".into());
    rd.spec.rclone.volume_snapshot_class_name = Some(snap_class.clone());
    crs::create(s.client(), &dst, &rd).await?;
    let rd: ReplicationDestination = s
        .wait_manual_synced(&dst, "into-existing", "dst-1", SYNC)
        .await?;
    let image = rd
        .status
        .as_ref()
        .and_then(|s| s.latest_image.clone())
        .context("no latestImage")?;
    ensure!(
        image.kind == "VolumeSnapshot",
        "latestImage should be a VolumeSnapshot: {image:?}"
    );
    let snap = api::<VolumeSnapshot>(s.client(), &dst)
        .get(&image.name)
        .await?;
    ensure!(
        snap.spec.source.persistent_volume_claim_name.as_deref() == Some("restore-target"),
        "the image should snapshot destinationPVC restore-target: {:?}",
        snap.spec
    );
    ensure!(
        snap.spec.volume_snapshot_class_name.as_deref() == Some(snap_class.as_str()),
        "volumeSnapshotClassName {snap_class} not honoured: {:?}",
        snap.spec.volume_snapshot_class_name
    );
    let provisioned = api::<PersistentVolumeClaim>(s.client(), &dst)
        .get_opt(&names::destination_pvc("into-existing"))
        .await?;
    ensure!(
        provisioned.is_none(),
        "with destinationPVC no {} may be provisioned",
        names::destination_pvc("into-existing")
    );
    assert_volume_matches(&vols, &dst, "restore-target", &tree).await?;
    common::restore_and_compare(&s, &vols, &dst, &image.name, "restored", "1Gi", &tree).await?;
    let listing = vols.read_tree(&dst, "restore-target").await?;
    ensure!(listing.files() > 0, "restore-target is empty");
    s.finish().await
}
