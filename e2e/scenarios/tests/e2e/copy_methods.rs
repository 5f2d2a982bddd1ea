//! Copy methods and volume options: a source with `Clone` (PiT PVC cloned from the source with
//! the requested capacity and access modes, in the source's StorageClass), one with `Snapshot`
//! (the requested StorageClass and VolumeSnapshotClass) and one with `None` (the mover reads
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

/// The PiT PVC a source created (recorded while it existed).
fn recorded_pvc(
    pvcs: &Recorder<PersistentVolumeClaim>,
    name: &str,
) -> Result<PersistentVolumeClaim> {
    pvcs.named(|n| n == name)
        .into_iter()
        .next()
        .map(|p| p.first)
        .with_context(|| format!("no PVC {name} was ever created"))
}

#[tokio::test]
async fn clone_and_snapshot_sources_and_none_destination_honour_volume_options() -> Result<()> {
    let s = Scenario::start("copy_clone_none").await?;
    let vols = volumes(&s.cluster)?;
    let class = common::extra_storage_class(&s).await?;
    let snap_class = common::extra_snapshot_class(&s).await?;
    let src = common::secret_namespace(&s, "cm-clone-src").await?;
    let dst = common::secret_namespace(&s, "cm-none-dst").await?;
    let remote = common::remote(&src, "clone")?;
    let tree = tree::sample_tree(2);
    // The source lives in the extra class: a clone must stay in it (CSI cloning needs the
    // same class), a restored snapshot may go elsewhere.
    objects::create_pvc(
        s.client(),
        objects::pvc_object(&src, "data", "1Gi", &["ReadWriteOnce"], Some(&class), None),
    )
    .await?;
    vols.write_tree(&src, "data", &tree).await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &src).await?;
    let snapshots = Recorder::<VolumeSnapshot>::start(s.client(), &src).await?;
    let jobs = Recorder::<Job>::start(s.client(), &src).await?;

    // Clone: capacity and access modes overridden, class inherited from the source PVC.
    let mut rs = crs::source("cloner", "data", &remote, SourceCopyMethod::Clone);
    rs.spec.trigger = crs::manual("clone-1");
    rs.spec.rclone.capacity = Some(Quantity("2Gi".into()));
    rs.spec.rclone.access_modes = vec!["ReadOnlyMany".into()];
    crs::create(s.client(), &src, &rs).await?;
    // Snapshot: class and snapshot class overridden, capacity and modes from the source.
    let mut snapper = crs::source(
        "snapper",
        "data",
        &common::remote(&src, "snap")?,
        SourceCopyMethod::Snapshot,
    );
    snapper.spec.trigger = crs::manual("snap-1");
    snapper.spec.rclone.storage_class_name = Some("csi-hostpath".into());
    snapper.spec.rclone.volume_snapshot_class_name = Some(snap_class.clone());
    crs::create(s.client(), &src, &snapper).await?;
    let (a, b) = tokio::join!(
        s.wait_manual_synced::<ReplicationSource>(&src, "cloner", "clone-1", SYNC),
        s.wait_manual_synced::<ReplicationSource>(&src, "snapper", "snap-1", SYNC),
    );
    ensure!(
        a?.mover_summary()?.result == "Successful",
        "cloner did not succeed"
    );
    ensure!(
        b?.mover_summary()?.result == "Successful",
        "snapper did not succeed"
    );
    common::wait_source_cleaned_up(&s, &src, "cloner").await?;
    common::wait_source_cleaned_up(&s, &src, "snapper").await?;

    let pit = names::source_pit("cloner");
    let clone = recorded_pvc(&pvcs, &pit)?;
    let spec = clone.spec.clone().unwrap_or_default();
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
        requested_storage(&clone).as_deref() == Some("2Gi"),
        "capacity 2Gi not honoured: {pit} requests {:?}",
        requested_storage(&clone)
    );
    ensure!(
        spec.access_modes == Some(vec!["ReadOnlyMany".to_string()]),
        "accessModes [ReadOnlyMany] not honoured: {pit} has {:?}",
        spec.access_modes
    );
    ensure!(
        spec.storage_class_name.as_deref() == Some(class.as_str()),
        "without storageClassName the clone should use the source PVC's class {class}: {pit} has {:?}",
        spec.storage_class_name
    );
    let job = jobs
        .named(|n| n == names::source_job("cloner"))
        .into_iter()
        .next()
        .context("no source Job recorded")?;
    ensure!(
        common::job_data_claim(&job.first).map(|(claim, _)| claim) == Some(pit.clone()),
        "the source Job should mount the clone {pit}, mounts {:?}",
        common::job_data_claim(&job.first)
    );

    let snap_pit = names::source_pit("snapper");
    let cut: Vec<String> = snapshots.all().iter().map(|s| s.name()).collect();
    ensure!(
        cut == [snap_pit.clone()],
        "only the Snapshot source may take a VolumeSnapshot ({snap_pit}); saw {cut:?}"
    );
    let snap = &snapshots.all()[0].first;
    ensure!(
        snap.spec.volume_snapshot_class_name.as_deref() == Some(snap_class.as_str()),
        "volumeSnapshotClassName {snap_class} not honoured: {:?}",
        snap.spec
    );
    let restored = recorded_pvc(&pvcs, &snap_pit)?;
    let spec = restored.spec.clone().unwrap_or_default();
    ensure!(
        spec.storage_class_name.as_deref() == Some("csi-hostpath"),
        "storageClassName csi-hostpath not honoured: {snap_pit} has {:?}",
        spec.storage_class_name
    );
    ensure!(
        requested_storage(&restored).as_deref() == Some("1Gi")
            && spec.access_modes == Some(vec!["ReadWriteOnce".to_string()]),
        "without overrides {snap_pit} should take the source's 1Gi RWO: {spec:?}"
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
        common::job_data_claim(&job.first).map(|(claim, _)| claim) == Some("data".to_string()),
        "copyMethod None: the Job should mount the source PVC data itself, mounts {:?}",
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
    // A sync reads the source: it must leave the user's volume exactly as it was.
    assert_volume_matches(&vols, &src, "data", &tree)
        .await
        .with_context(|| {
            format!(
                "copyMethod None: the sync modified the source PVC itself (Job mounts {:?}, readOnly second)",
                common::job_data_claim(&job.first)
            )
        })?;

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
    s.finish().await
}
