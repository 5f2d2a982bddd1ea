//! The seed document's two examples, unchanged but for names, namespaces and the remote
//! path: a ReplicationSource `database-source` (copyMethod Snapshot, `*/6 * * * *`) and a
//! ReplicationDestination `database-destination` (copyMethod Snapshot, RWO, 10Gi). A tree
//! written into the source PVC must come back, byte for byte and with modes, owners, mtimes,
//! symlinks, hardlinks and empty directories, from a PVC restored from `status.latestImage`.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use scribe_api::constants::{CONDITION_RECONCILED, REASON_RECONCILE_COMPLETE};
use scribe_api::{ReplicationDestination, ReplicationSource};
use scribe_e2e::crs::ScribeCr;
use scribe_e2e::diag::{event_line, events_about};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names, requested_storage};
use scribe_e2e::record::Recorder;
use scribe_e2e::status::{self, on_minute_grid, parse_compact_utc, parse_go_duration};
use scribe_e2e::{Scenario, tree, volumes};

use crate::common::{self, SYNC};

const SOURCE_YAML: &str = r#"
apiVersion: scribe.backube/v1alpha1
kind: ReplicationSource
metadata:
  name: database-source
  namespace: source
spec:
  sourcePVC: mysql-pv-claim
  trigger:
    schedule: "*/6 * * * *"
  rclone:
    rcloneConfigSection: "aws-s3-bucket"
    rcloneDestPath: "REMOTE"
    rcloneConfig: "rclone-secret"
    copyMethod: Snapshot
"#;

const DESTINATION_YAML: &str = r#"
apiVersion: scribe.backube/v1alpha1
kind: ReplicationDestination
metadata:
  name: database-destination
  namespace: dest
spec:
  trigger:
    schedule: "*/6 * * * *"
  rclone:
    rcloneConfigSection: "aws-s3-bucket"
    rcloneDestPath: "REMOTE"
    rcloneConfig: "rclone-secret"
    copyMethod: Snapshot
    accessModes: [ReadWriteOnce]
    capacity: 10Gi
"#;

/// Checks the schedule-related status of a CR that just synced on `*/6 * * * *`.
fn check_schedule_status<K: ScribeCr>(cr: &K, what: &str) -> Result<()> {
    let last = cr
        .last_sync_time()
        .with_context(|| format!("{what}: status.lastSyncTime is not set"))?;
    let now = status::now();
    ensure!(
        last <= now + Duration::from_secs(5),
        "{what}: lastSyncTime {last} is in the future (now {now})"
    );
    let duration = cr
        .last_sync_duration()
        .with_context(|| format!("{what}: status.lastSyncDuration is not set"))?;
    let secs = parse_go_duration(&duration)?;
    ensure!(
        secs > 0.0 && secs < SYNC.as_secs_f64(),
        "{what}: lastSyncDuration {duration} should be positive and shorter than the {SYNC:?} the sync was given"
    );
    let next = cr
        .next_sync_time()
        .with_context(|| format!("{what}: status.nextSyncTime is not set"))?;
    ensure!(
        on_minute_grid(next, 6),
        "{what}: nextSyncTime {next} is not on the */6 grid (second 0, minute divisible by 6)"
    );
    ensure!(
        next > last && next.as_second() - last.as_second() <= 360,
        "{what}: nextSyncTime {next} should be the first */6 firing after lastSyncTime {last}"
    );
    ensure!(
        next.as_second() + 10 > now.as_second(),
        "{what}: nextSyncTime {next} is in the past (now {now})"
    );
    let reconciled = cr
        .condition(CONDITION_RECONCILED)
        .with_context(|| format!("{what}: no Reconciled condition"))?;
    ensure!(
        reconciled.status == "True"
            && reconciled.reason == REASON_RECONCILE_COMPLETE
            && reconciled.message == "Reconcile complete",
        "{what}: expected Reconciled=True ReconcileComplete \"Reconcile complete\", got {}={} {}: {}",
        reconciled.type_,
        reconciled.status,
        reconciled.reason,
        reconciled.message
    );
    let summary = cr.mover_summary()?;
    ensure!(
        summary.result == "Successful",
        "{what}: latestMoverStatus says {summary:?}"
    );
    Ok(())
}

#[tokio::test]
async fn seed_examples_replicate_a_tree_to_a_restorable_snapshot() -> Result<()> {
    let s = Scenario::start("seed").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "seed-src").await?;
    let dst = common::secret_namespace(&s, "seed-dst").await?;
    let remote = common::remote(&src, "database")?;
    let tree = tree::sample_tree(1);
    common::pvc_with_tree(&s, &vols, &src, "mysql-pv-claim", &tree).await?;

    let snapshots = Recorder::<VolumeSnapshot>::start(s.client(), &src).await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &src).await?;
    let yaml = SOURCE_YAML.replace("REMOTE", &remote);
    let created: ReplicationSource = objects::create_from_yaml(s.client(), &src, &yaml).await?;
    let created_at = created
        .metadata
        .creation_timestamp
        .map(|t| t.0)
        .context("no creationTimestamp")?;
    s.step("created ReplicationSource database-source (seed YAML)");

    let rs: ReplicationSource = s.wait_synced(&src, "database-source", None, SYNC).await?;
    check_schedule_status(&rs, "ReplicationSource database-source")?;
    let last_src = rs.last_sync_time().context("lastSyncTime")?;
    ensure!(
        last_src >= created_at,
        "source lastSyncTime {last_src} is before the CR was created ({created_at})"
    );
    let summary = rs.mover_summary()?;
    ensure!(
        summary.direction == "source" && summary.bytes_transferred >= 3 * 1024 * 1024,
        "the first source sync should upload the 3 MiB blob at least: {summary:?}"
    );

    // The point-in-time copy: a VolumeSnapshot of the source PVC, a PVC restored from it,
    // both named scribe-src-database-source and deleted once the sync is recorded.
    let pit = names::source_pit("database-source");
    common::wait_source_cleaned_up(&s, &src, "database-source").await?;
    let snap = snapshots
        .named(|n| n == pit)
        .into_iter()
        .next()
        .with_context(|| format!("no VolumeSnapshot {pit} was ever created in {src}"))?;
    ensure!(
        snap.first
            .spec
            .source
            .persistent_volume_claim_name
            .as_deref()
            == Some("mysql-pv-claim"),
        "VolumeSnapshot {pit} should snapshot mysql-pv-claim: {:?}",
        snap.first.spec
    );
    let pit_pvc = pvcs
        .named(|n| n == pit)
        .into_iter()
        .next()
        .with_context(|| format!("no PVC {pit} was ever created in {src}"))?;
    let ds = pit_pvc
        .first
        .spec
        .as_ref()
        .and_then(|s| s.data_source.clone())
        .with_context(|| format!("PVC {pit} has no dataSource"))?;
    ensure!(
        ds.kind == "VolumeSnapshot" && ds.name == pit,
        "PVC {pit} should be restored from VolumeSnapshot {pit}, got {ds:?}"
    );
    let events: Vec<String> =
        events_about(&s.cluster, &src, "ReplicationSource", "database-source")
            .await?
            .iter()
            .map(event_line)
            .collect();
    ensure!(
        events.iter().any(|e| e.contains("SyncSucceeded")),
        "no SyncSucceeded Event about database-source; events: {events:#?}"
    );

    // The destination, created once the source has uploaded: it syncs at once (no lastSyncTime).
    let yaml = DESTINATION_YAML.replace("REMOTE", &remote);
    let _: ReplicationDestination = objects::create_from_yaml(s.client(), &dst, &yaml).await?;
    s.step("created ReplicationDestination database-destination (seed YAML)");
    let rd: ReplicationDestination = s
        .wait_object(
            &dst,
            "database-destination",
            "status.latestImage and lastSyncTime set",
            SYNC,
            |rd: Option<&ReplicationDestination>| {
                Ok(rd
                    .filter(|rd| {
                        rd.last_sync_time().is_some()
                            && rd.status.as_ref().is_some_and(|s| s.latest_image.is_some())
                    })
                    .cloned())
            },
        )
        .await?;
    check_schedule_status(&rd, "ReplicationDestination database-destination")?;
    let last_dst = rd.last_sync_time().context("lastSyncTime")?;
    ensure!(
        last_dst > last_src,
        "destination lastSyncTime {last_dst} should be after the source's {last_src}"
    );
    let image = rd
        .status
        .as_ref()
        .and_then(|s| s.latest_image.clone())
        .context("latestImage")?;
    ensure!(
        image.api_group.as_deref() == Some("snapshot.storage.k8s.io")
            && image.kind == "VolumeSnapshot",
        "latestImage should be a snapshot.storage.k8s.io VolumeSnapshot: {image:?}"
    );
    let prefix = names::destination_image_prefix("database-destination");
    let stamp = image
        .name
        .strip_prefix(&prefix)
        .with_context(|| format!("latestImage {} does not start with {prefix}", image.name))?;
    let at = parse_compact_utc(stamp)?;
    ensure!(
        at >= last_src && at.as_second() <= last_dst.as_second() + 1,
        "latestImage {} is stamped {at}, expected between the source sync {last_src} and the destination sync {last_dst}",
        image.name
    );
    let snap = api::<VolumeSnapshot>(s.client(), &dst)
        .get(&image.name)
        .await?;
    let data_pvc = names::destination_pvc("database-destination");
    ensure!(
        snap.spec.source.persistent_volume_claim_name.as_deref() == Some(data_pvc.as_str()),
        "latestImage should snapshot {data_pvc}: {:?}",
        snap.spec
    );
    let pvc = api::<PersistentVolumeClaim>(s.client(), &dst)
        .get(&data_pvc)
        .await?;
    let spec = pvc.spec.clone().unwrap_or_default();
    ensure!(
        requested_storage(&pvc).as_deref() == Some("10Gi")
            && spec.access_modes == Some(vec!["ReadWriteOnce".to_string()]),
        "destination PVC {data_pvc} should request 10Gi ReadWriteOnce: {spec:?}"
    );
    let summary = rd.mover_summary()?;
    ensure!(
        summary.direction == "destination" && summary.bytes_transferred >= 3 * 1024 * 1024,
        "the first restore should download the 3 MiB blob at least: {summary:?}"
    );

    common::restore_and_compare(&s, &vols, &dst, &image.name, "restored", "10Gi", &tree).await?;
    s.finish().await
}
