//! An S3 outage during a sync (local cluster only: the S3 server is frozen through
//! `hack/cluster.sh s3-stop`, SIGSTOP, so requests hang rather than fail): the running mover
//! stalls or fails, the ReplicationSource says so (the Synchronizing condition of a running
//! Job, or `consecutiveFailures`/`nextRetryTime` and an Error condition once it failed), no
//! storm of Jobs or pods follows, and when the server returns the same manual iteration
//! completes and a destination restores the tree intact. Freezing S3 stalls every other
//! scenario, so this one runs alone; the server is resumed even when it fails.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use scribe_api::constants::{CONDITION_SYNCHRONIZING, REASON_ERROR, REASON_SYNC_IN_PROGRESS};
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::metrics::http_get;
use scribe_e2e::objects::{api, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::status::{describe_conditions, parse_go_duration};
use scribe_e2e::{Scenario, Tree, volumes};

use crate::common::{self, SYNC};

/// How long S3 stays frozen: shorter than the mover's per-request timeouts (60 s for bucket
/// requests, 300 s for object uploads), so the mover is expected to stall, not fail.
const FROZEN: Duration = Duration::from_secs(45);
/// `BACKOFF_LIMIT` of the mover Jobs (crates/controller/src/builders/job.rs) + 1.
const PODS_PER_JOB: usize = 3;
const FILES: u64 = common::SLOW_FILES;

/// What the ReplicationSource says while S3 is frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// The mover Job is still running (its requests hang).
    Stalled,
    /// A mover Job failed: consecutiveFailures and nextRetryTime are set.
    BackingOff,
}

/// Whether the S3 endpoint answers an HTTP request within `within` (any status counts).
async fn s3_answers(endpoint: &str, within: Duration) -> bool {
    tokio::time::timeout(within, http_get(&format!("{endpoint}/")))
        .await
        .is_ok()
}

/// Classifies the source's status during the outage; an error for anything else (the
/// iteration completing while S3 is frozen, or no report of the failure).
fn outage_state(rs: &ReplicationSource, value: &str) -> Result<Outage> {
    let st = rs.status.clone().unwrap_or_default();
    ensure!(
        st.last_manual_sync.as_deref() != Some(value),
        "the iteration {value:?} completed while S3 was frozen: the mover must have finished \
         before the freeze (inconclusive: the tree must be larger)"
    );
    let syncing = rs
        .condition(CONDITION_SYNCHRONIZING)
        .with_context(|| format!("no Synchronizing condition: {st:?}"))?;
    match st.consecutive_failures {
        None => {
            ensure!(
                st.next_retry_time.is_none(),
                "nextRetryTime without consecutiveFailures: {st:?}"
            );
            ensure!(
                syncing.status == "True"
                    && syncing.reason == REASON_SYNC_IN_PROGRESS
                    && syncing.message.contains("is running"),
                "with no failure recorded the condition should say the mover Job is running: {}",
                describe_conditions(&rs.conditions())
            );
            Ok(Outage::Stalled)
        }
        Some(n) => {
            ensure!(n >= 1, "consecutiveFailures {n}");
            ensure!(
                st.next_retry_time.is_some(),
                "consecutiveFailures {n} without nextRetryTime: {st:?}"
            );
            let failed = st.latest_mover_status.as_ref().and_then(|m| m.result)
                == Some(scribe_api::MoverResult::Failed);
            ensure!(failed, "latestMoverStatus should say Failed: {st:?}");
            // Between the retry time and the next Job the condition says SyncInProgress.
            ensure!(
                syncing.reason == REASON_ERROR || syncing.reason == REASON_SYNC_IN_PROGRESS,
                "after a failure: {}",
                describe_conditions(&rs.conditions())
            );
            Ok(Outage::BackingOff)
        }
    }
}

#[tokio::test]
async fn s3_frozen_during_a_sync_stalls_then_the_same_iteration_completes() -> Result<()> {
    let s = Scenario::start_exclusive("outage_s3_frozen").await?;
    s.cluster.script_path("freezing the S3 server")?;
    let vols = volumes(&s.cluster)?;
    let src = s.namespace("out-src").await?;
    let dst = common::secret_namespace(&s, "out-dst").await?;
    // One transfer at a time over many files: the mover is still uploading when S3 freezes.
    let big = common::slow_source(
        &s,
        &vols,
        &src,
        Tree::new().file("top.txt", "s3 outage\n", 0o644),
        1000,
    )
    .await?;
    let jobs = Recorder::<Job>::start(s.client(), &src).await?;
    let pods = Recorder::<Pod>::start(s.client(), &src).await?;
    let remote = common::remote(&src, "outage")?;
    let mut rs = crs::source("outage", "data", &remote, SourceCopyMethod::Clone);
    rs.spec.trigger = crs::manual("o-1");
    crs::create(s.client(), &src, &rs).await?;

    let job = names::source_job("outage");
    let pod_api = api::<Pod>(s.client(), &src);
    let mover: Pod = s
        .wait_for("the mover pod running", SYNC, || {
            let (pod_api, job) = (pod_api.clone(), job.clone());
            async move {
                let list = pod_api
                    .list(&ListParams::default().labels(&format!("job-name={job}")))
                    .await?;
                Ok(list.items.into_iter().find(|p| {
                    p.status
                        .as_ref()
                        .and_then(|st| st.container_statuses.as_ref())
                        .into_iter()
                        .flatten()
                        .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
                }))
            }
        })
        .await?;
    let mover_name = mover.metadata.name.clone().unwrap_or_default();

    let freeze = s.cluster.s3_stop().await?;
    let frozen_at = Instant::now();
    s.step(format!("S3 frozen (s3-stop) while {mover_name} runs"));
    ensure!(
        !s3_answers(&s.cluster.s3.endpoint, Duration::from_secs(3)).await,
        "the S3 endpoint {} still answers after s3-stop",
        s.cluster.s3.endpoint
    );

    let seen = std::sync::Mutex::new(Vec::<Outage>::new());
    let rs_api = api::<ReplicationSource>(s.client(), &src);
    s.holds_for(
        "the outage reported, no Job or pod storm",
        FROZEN.saturating_sub(frozen_at.elapsed()),
        || {
            let (rs_api, jobs, pods, seen) = (&rs_api, &jobs, &pods, &seen);
            async move {
                let rs = rs_api.get("outage").await?;
                let state = outage_state(&rs, "o-1")?;
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
                drop(seen);
                let (j, p) = (jobs.all().len(), pods.all().len());
                let failures = rs
                    .status
                    .as_ref()
                    .and_then(|st| st.consecutive_failures)
                    .unwrap_or(0);
                let max_jobs = 1 + usize::try_from(failures).unwrap_or(0);
                ensure!(
                    j <= max_jobs,
                    "{j} mover Jobs with {failures} failure(s) recorded (at most {max_jobs})"
                );
                ensure!(
                    p <= j * PODS_PER_JOB,
                    "{p} mover pods for {j} Job(s) (at most {PODS_PER_JOB} per Job)"
                );
                Ok(())
            }
        },
    )
    .await?;
    let seen = seen.into_inner().unwrap_or_default();
    let (jobs_frozen, pods_frozen) = (jobs.all().len(), pods.all().len());
    s.step(format!(
        "while frozen: {seen:?}; {jobs_frozen} Job(s), {pods_frozen} pod(s)"
    ));
    if seen == [Outage::Stalled] {
        // A stall: the very pod that was running when S3 froze is still running.
        let pod = pod_api.get(&mover_name).await?;
        let phase = pod.status.and_then(|st| st.phase).unwrap_or_default();
        ensure!(
            phase == "Running",
            "the stalled mover pod {mover_name} should still run after {FROZEN:?} frozen: {phase}"
        );
    }

    freeze.resume().await?;
    let frozen_for = frozen_at.elapsed();
    s.step(format!(
        "S3 resumed (s3-start) after {:.1}s",
        frozen_for.as_secs_f64()
    ));
    ensure!(
        s3_answers(&s.cluster.s3.endpoint, Duration::from_secs(15)).await,
        "the S3 endpoint {} does not answer after s3-start",
        s.cluster.s3.endpoint
    );

    let rs: ReplicationSource = s.wait_manual_synced(&src, "outage", "o-1", SYNC).await?;
    let st = rs.status.clone().unwrap_or_default();
    let summary = rs.mover_summary()?;
    ensure!(
        summary.result == "Successful" && summary.files_checked > FILES,
        "the completed sync should have checked all {} files: {summary:?}",
        FILES + 1
    );
    ensure!(
        st.consecutive_failures.is_none() && st.next_retry_time.is_none(),
        "a success clears consecutiveFailures and nextRetryTime: {st:?}"
    );
    let duration = parse_go_duration(st.last_sync_duration.as_deref().unwrap_or("0s"))?;
    s.step(format!(
        "o-1 synced: lastSyncDuration {duration:.1}s, {} Job(s), {} pod(s)",
        jobs.all().len(),
        pods.all().len()
    ));
    ensure!(
        duration >= frozen_for.as_secs_f64() - 1.0,
        "lastSyncDuration {duration:.1}s should include the {:.1}s S3 was frozen",
        frozen_for.as_secs_f64()
    );
    if !seen.contains(&Outage::BackingOff) {
        ensure!(
            jobs.all().len() == 1 && pods.all().len() == 1,
            "with no failure reported, the one Job and its pod should have completed the \
             iteration: saw Jobs {:?}, pods {:?}",
            jobs.all().iter().map(|j| j.name()).collect::<Vec<_>>(),
            pods.all().iter().map(|p| p.name()).collect::<Vec<_>>()
        );
    }
    common::wait_source_cleaned_up(&s, &src, "outage").await?;

    let mut rd = crs::destination("outage", &remote, DestinationCopyMethod::Snapshot, "1Gi");
    rd.spec.trigger = crs::manual("o-1");
    crs::create(s.client(), &dst, &rd).await?;
    let rd: ReplicationDestination = s.wait_manual_synced(&dst, "outage", "o-1", SYNC).await?;
    let image = rd
        .status
        .as_ref()
        .and_then(|st| st.latest_image.clone())
        .context("no latestImage")?;
    if image.kind != "VolumeSnapshot" {
        bail!("latestImage should be a VolumeSnapshot: {image:?}");
    }
    common::restore_and_compare(&s, &vols, &dst, &image.name, "restored", "1Gi", &big).await?;
    s.finish().await
}
