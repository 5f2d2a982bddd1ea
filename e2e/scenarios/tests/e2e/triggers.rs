//! Triggers: a manual value syncs exactly once (and `lastManualSync` records it), a
//! `*/1 * * * *` schedule runs iteration after iteration on the minute grid and carries an
//! incremental change to the destination (only the changed files move), and `paused: true`
//! starts nothing until it is lifted.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use scribe_api::constants::{CONDITION_SYNCHRONIZING, REASON_PAUSED, REASON_WAITING_FOR_MANUAL};
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::status::{on_minute_grid, parse_go_duration};
use scribe_e2e::volumes::{VolumeAccess as _, assert_volume_matches};
use scribe_e2e::{Scenario, Tree, tree, volumes};

use crate::common::{self, SYNC};

fn small_tree(seed: u64) -> Tree {
    Tree::new()
        .file("a.txt", format!("a {seed}\n"), 0o644)
        .file("dir/b.bin", tree::noise(seed, 4096), 0o600)
        .dir("empty", 0o755)
}

/// Source Jobs recorded so far (distinct objects, i.e. distinct uids).
fn job_count(jobs: &Recorder<Job>, cr: &str) -> usize {
    jobs.named(|n| n == names::source_job(cr)).len()
}

#[tokio::test]
async fn manual_trigger_syncs_once_per_distinct_value() -> Result<()> {
    let s = Scenario::start("trigger_manual").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "trg-manual").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(1)).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "manual",
        "data",
        &common::remote(&ns, "m")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("one");
    crs::create(s.client(), &ns, &rs).await?;

    let rs: ReplicationSource = s.wait_manual_synced(&ns, "manual", "one", SYNC).await?;
    let first = rs.last_sync_time().context("lastSyncTime")?;
    ensure!(
        rs.next_sync_time().is_none(),
        "a manual-only trigger has no nextSyncTime, got {:?}",
        rs.next_sync_time()
    );
    common::wait_source_cleaned_up(&s, &ns, "manual").await?;
    s.wait_condition::<ReplicationSource>(
        &ns,
        "manual",
        CONDITION_SYNCHRONIZING,
        "False",
        "waiting for spec.trigger.manual to change",
        Duration::from_secs(30),
    )
    .await?;
    let c = s.client().clone();
    s.holds_for(
        "no second sync for the same manual value",
        Duration::from_secs(20),
        || {
            let (c, ns, jobs) = (c.clone(), ns.clone(), &jobs);
            async move {
                let n = job_count(jobs, "manual");
                ensure!(n == 1, "{n} source Jobs for one manual value");
                let rs = api::<ReplicationSource>(&c, &ns).get("manual").await?;
                ensure!(
                    rs.last_sync_time() == Some(first),
                    "lastSyncTime moved: {:?}",
                    rs.last_sync_time()
                );
                let sync = rs
                    .condition(CONDITION_SYNCHRONIZING)
                    .context("Synchronizing")?;
                ensure!(
                    sync.reason == REASON_WAITING_FOR_MANUAL,
                    "Synchronizing is {sync:?}"
                );
                Ok(())
            }
        },
    )
    .await?;

    objects::set_manual::<ReplicationSource>(s.client(), &ns, "manual", "two").await?;
    let rs: ReplicationSource = s.wait_manual_synced(&ns, "manual", "two", SYNC).await?;
    ensure!(
        rs.last_sync_time().is_some_and(|t| t > first),
        "the second manual sync should move lastSyncTime past {first}: {:?}",
        rs.last_sync_time()
    );
    common::wait_source_cleaned_up(&s, &ns, "manual").await?;
    // Writing the same value again is not a new trigger.
    objects::set_manual::<ReplicationSource>(s.client(), &ns, "manual", "two").await?;
    s.holds_for(
        "no sync when the manual value is rewritten unchanged",
        Duration::from_secs(15),
        || {
            let jobs = &jobs;
            async move {
                let n = job_count(jobs, "manual");
                ensure!(n == 2, "{n} source Jobs after two distinct manual values");
                Ok(())
            }
        },
    )
    .await?;
    s.finish().await
}

#[tokio::test]
async fn schedule_every_minute_carries_an_incremental_change() -> Result<()> {
    let s = Scenario::start("trigger_schedule").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "trg-cron-src").await?;
    let dst = common::secret_namespace(&s, "trg-cron-dst").await?;
    let remote = common::remote(&src, "cron")?;
    let base = tree::sample_tree(4);
    common::pvc_with_tree(&s, &vols, &src, "data", &base).await?;
    let mut rs = crs::source("cron", "data", &remote, SourceCopyMethod::Snapshot);
    rs.spec.trigger = crs::schedule("*/1 * * * *");
    crs::create(s.client(), &src, &rs).await?;
    let rs: ReplicationSource = s.wait_synced(&src, "cron", None, SYNC).await?;
    let t1 = rs.last_sync_time().context("lastSyncTime")?;
    let next = rs.next_sync_time().context("nextSyncTime")?;
    ensure!(
        on_minute_grid(next, 1) && next > t1 && next.as_second() - t1.as_second() <= 60,
        "nextSyncTime {next} should be the first minute boundary after lastSyncTime {t1}"
    );

    // The incremental change: one file changed, one added, one removed.
    let changed_at = tree::now_secs();
    let overlay = Tree::new()
        .file_at(
            "README.md",
            "changed between iterations\n",
            0o644,
            changed_at,
        )
        .file_at(
            "data/new.txt",
            "added between iterations\n",
            0o640,
            changed_at,
        );
    vols.write_tree(&src, "data", &overlay).await?;
    vols.remove(&src, "data", &["config/secret.key"]).await?;
    let mut changed = base.clone().remove("config/secret.key");
    changed.entries.extend(overlay.entries.clone());
    s.step("changed the source: README.md modified, data/new.txt added, config/secret.key removed");

    let mut rd = crs::destination("cron", &remote, DestinationCopyMethod::None, "1Gi");
    rd.spec.trigger = crs::schedule("*/1 * * * *");
    crs::create(s.client(), &dst, &rd).await?;

    // The first iteration that started after the change carries it.
    let changed_ts = k8s_openapi::jiff::Timestamp::from_second(changed_at)?;
    let rs: ReplicationSource = s
        .wait_object(
            &src,
            "cron",
            "a scheduled sync started after the change",
            Duration::from_secs(200),
            |rs: Option<&ReplicationSource>| {
                let Some(rs) = rs else { return Ok(None) };
                let (Some(last), Some(d)) = (rs.last_sync_time(), rs.last_sync_duration()) else {
                    return Ok(None);
                };
                let start = last.as_second() - parse_go_duration(&d)?.ceil() as i64;
                Ok((start >= changed_at).then(|| rs.clone()))
            },
        )
        .await?;
    let t2 = rs.last_sync_time().context("lastSyncTime")?;
    let d2 = parse_go_duration(&rs.last_sync_duration().unwrap_or_default())?;
    let start2 = t2.as_second() - d2.ceil() as i64;
    ensure!(
        start2.rem_euclid(60) <= 15,
        "the scheduled sync should start at a minute boundary; it started at {} (finished {t2}, took {d2}s)",
        k8s_openapi::jiff::Timestamp::from_second(start2)?
    );
    let summary = rs.mover_summary()?;
    ensure!(
        summary.files_transferred == 2 && summary.files_deleted == 1,
        "the incremental sync should upload 2 files and delete 1 (changed {changed_ts}): {summary:?}"
    );

    let rd: ReplicationDestination = s
        .wait_object(
            &dst,
            "cron",
            "a scheduled restore started after the source's second sync",
            Duration::from_secs(200),
            |rd: Option<&ReplicationDestination>| {
                let Some(rd) = rd else { return Ok(None) };
                let (Some(last), Some(d)) = (rd.last_sync_time(), rd.last_sync_duration()) else {
                    return Ok(None);
                };
                let start = last.as_second() - parse_go_duration(&d)?.ceil() as i64;
                Ok((start >= t2.as_second()).then(|| rd.clone()))
            },
        )
        .await?;
    let summary = rd.mover_summary()?;
    ensure!(
        summary.files_deleted == 1,
        "the destination should delete the removed file: {summary:?}"
    );
    assert_volume_matches(&vols, &dst, &names::destination_pvc("cron"), &changed).await?;
    let snaps = api::<VolumeSnapshot>(s.client(), &dst)
        .list(&Default::default())
        .await?;
    ensure!(snaps.items.is_empty(), "copyMethod None took snapshots");
    s.finish().await
}

#[tokio::test]
async fn paused_source_starts_no_job_until_resumed() -> Result<()> {
    let s = Scenario::start("trigger_paused").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "trg-paused").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(2)).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "paused",
        "data",
        &common::remote(&ns, "p")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("p-1");
    rs.spec.paused = Some(true);
    crs::create(s.client(), &ns, &rs).await?;
    s.wait_object(
        &ns,
        "paused",
        "Synchronizing=False reason Paused",
        Duration::from_secs(60),
        |rs: Option<&ReplicationSource>| {
            Ok(rs
                .and_then(|r| r.condition(CONDITION_SYNCHRONIZING))
                .filter(|c| c.status == "False" && c.reason == REASON_PAUSED)
                .map(|_| ()))
        },
    )
    .await?;
    let c = s.client().clone();
    s.holds_for(
        "nothing starts while paused",
        Duration::from_secs(20),
        || {
            let (c, ns, jobs, pvcs) = (c.clone(), ns.clone(), &jobs, &pvcs);
            async move {
                ensure!(
                    jobs.all().is_empty(),
                    "a Job was created while paused: {:?}",
                    jobs.all().iter().map(|j| j.name()).collect::<Vec<_>>()
                );
                let extra: Vec<String> = pvcs
                    .all()
                    .iter()
                    .map(|p| p.name())
                    .filter(|n| n != "data")
                    .collect();
                ensure!(
                    extra.is_empty(),
                    "PVCs were created while paused: {extra:?}"
                );
                let snaps = api::<VolumeSnapshot>(&c, &ns)
                    .list(&Default::default())
                    .await?;
                ensure!(
                    snaps.items.is_empty(),
                    "a VolumeSnapshot was created while paused"
                );
                let rs = api::<ReplicationSource>(&c, &ns).get("paused").await?;
                ensure!(
                    rs.last_sync_time().is_none(),
                    "lastSyncTime set while paused"
                );
                Ok(())
            }
        },
    )
    .await?;
    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "paused",
        serde_json::json!({ "paused": false }),
    )
    .await?;
    s.step("unpaused");
    let _: ReplicationSource = s.wait_manual_synced(&ns, "paused", "p-1", SYNC).await?;
    ensure!(
        job_count(&jobs, "paused") == 1,
        "one Job expected after resuming, saw {}",
        job_count(&jobs, "paused")
    );
    s.finish().await
}
