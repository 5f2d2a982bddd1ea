//! Failures and recovery: a missing Secret and a missing section are named in the Reconciled
//! condition and an Event before any Job exists; wrong credentials make the mover exit 78
//! (configuration error), which fails the Job at once and stops retries until the Secret
//! changes; a mover pod deleted mid-run is replaced and the sync completes.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use scribe_api::constants::CONDITION_RECONCILED;
use scribe_api::{ReplicationSource, SourceCopyMethod};
use scribe_e2e::cluster::replace_conf_value;
use scribe_e2e::crs::{self, SECRET, SECTION, ScribeCr};
use scribe_e2e::diag::{event_line, events_about};
use scribe_e2e::objects::{self, api, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::{Scenario, Tree, tree, volumes};

use crate::common::{self, SYNC};

const QUICK: Duration = Duration::from_secs(60);

fn small_tree() -> Tree {
    Tree::new()
        .file("f.txt", "failure scenarios\n", 0o644)
        .file("d/g.bin", tree::noise(9, 10_000), 0o600)
}

/// Waits for an Event about the ReplicationSource `name` whose line contains every `parts`.
async fn wait_event(s: &Scenario, ns: &str, name: &str, parts: &[&str]) -> Result<String> {
    let desc = format!("an Event about ReplicationSource {name} containing {parts:?}");
    s.wait_for(&desc, QUICK, || async {
        let events = events_about(&s.cluster, ns, "ReplicationSource", name).await?;
        Ok(events
            .iter()
            .map(event_line)
            .find(|l| parts.iter().all(|p| l.contains(p))))
    })
    .await
}

fn no_jobs(jobs: &Recorder<Job>) -> Result<()> {
    let all = jobs.all();
    ensure!(
        all.is_empty(),
        "no Job may start while the configuration is invalid, saw {:?}",
        all.iter().map(|j| j.name()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn missing_secret_is_named_then_recovers_when_created() -> Result<()> {
    let s = Scenario::start("failure_missing_secret").await?;
    let vols = volumes(&s.cluster)?;
    let ns = s.namespace("fail-nosecret").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree()).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "nosecret",
        "data",
        &common::remote(&ns, "x")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("m-1");
    crs::create(s.client(), &ns, &rs).await?;
    let expected = format!("Secret {SECRET} (spec.rclone.rcloneConfig) not found");
    s.wait_condition::<ReplicationSource>(
        &ns,
        "nosecret",
        CONDITION_RECONCILED,
        "False",
        &expected,
        QUICK,
    )
    .await?;
    let event = wait_event(&s, &ns, "nosecret", &["Warning", SECRET]).await?;
    s.step(format!("event: {event}"));
    s.holds_for("no Job without the Secret", Duration::from_secs(15), || {
        let jobs = &jobs;
        async move { no_jobs(jobs) }
    })
    .await?;
    objects::rclone_secret(&s.cluster, &ns, SECRET, SECTION, &[]).await?;
    s.step("created the Secret");
    let rs: ReplicationSource = s.wait_recovered(&ns, "nosecret", None, SYNC).await?;
    ensure!(
        rs.last_manual_sync().as_deref() == Some("m-1"),
        "{:?}",
        rs.status
    );
    s.wait_condition::<ReplicationSource>(
        &ns,
        "nosecret",
        CONDITION_RECONCILED,
        "True",
        "Reconcile complete",
        QUICK,
    )
    .await?;
    s.finish().await
}

#[tokio::test]
async fn missing_section_is_named_with_the_sections_found() -> Result<()> {
    let s = Scenario::start("failure_section").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "fail-section").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree()).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "section",
        "data",
        &common::remote(&ns, "x")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("s-1");
    rs.spec.rclone.rclone_config_section = "no-such-section".into();
    crs::create(s.client(), &ns, &rs).await?;
    let rs: ReplicationSource = s
        .wait_condition(
            &ns,
            "section",
            CONDITION_RECONCILED,
            "False",
            "[no-such-section]",
            QUICK,
        )
        .await?;
    let message = rs
        .condition(CONDITION_RECONCILED)
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(
        message.contains(SECRET) && message.contains(SECTION),
        "the condition should name the Secret and the sections it has: {message}"
    );
    wait_event(&s, &ns, "section", &["Warning", "no-such-section"]).await?;
    s.holds_for(
        "no Job with a missing section",
        Duration::from_secs(10),
        || {
            let jobs = &jobs;
            async move { no_jobs(jobs) }
        },
    )
    .await?;
    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "section",
        serde_json::json!({ "rclone": { "rcloneConfigSection": SECTION } }),
    )
    .await?;
    let _: ReplicationSource = s.wait_recovered(&ns, "section", None, SYNC).await?;
    s.finish().await
}

#[tokio::test]
async fn wrong_credentials_fail_once_with_exit_78_then_recover() -> Result<()> {
    let s = Scenario::start("failure_credentials").await?;
    let vols = volumes(&s.cluster)?;
    let ns = s.namespace("fail-creds").await?;
    let good = s.cluster.rclone_conf(SECTION).await?;
    let bad = replace_conf_value(&good, "secret_access_key", "this-is-not-the-secret-key");
    objects::create_secret(
        s.client(),
        &ns,
        SECRET,
        [("rclone.conf".to_string(), bad)].into(),
    )
    .await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree()).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let pods = Recorder::<Pod>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "creds",
        "data",
        &common::remote(&ns, "x")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("c-1");
    crs::create(s.client(), &ns, &rs).await?;

    let rs: ReplicationSource = s
        .wait_condition(
            &ns,
            "creds",
            CONDITION_RECONCILED,
            "False",
            "configuration error (exit 78)",
            SYNC,
        )
        .await?;
    let mover = rs.latest_mover_status().context("no latestMoverStatus")?;
    ensure!(
        mover.result == Some(scribe_api::MoverResult::Failed),
        "latestMoverStatus should say Failed: {mover:?}"
    );
    let failed = wait_event(&s, &ns, "creds", &["Warning", "SyncFailed", "exit code 78"]).await?;
    s.step(format!("event: {failed}"));
    wait_event(&s, &ns, "creds", &["Warning", "ConfigError"]).await?;
    let exit_78 = pods.all().iter().any(|p| {
        p.last
            .status
            .as_ref()
            .and_then(|st| st.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 78)
            })
    });
    ensure!(
        exit_78,
        "no mover pod was seen terminating with exit code 78"
    );
    s.holds_for(
        "no retry storm after the configuration error",
        Duration::from_secs(30),
        || {
            let (jobs, pods) = (&jobs, &pods);
            async move {
                let (j, p) = (jobs.all().len(), pods.all().len());
                ensure!(
                    j == 1,
                    "{j} Jobs for one configuration error (expected 1, no retry)"
                );
                ensure!(
                    p <= 2,
                    "{p} mover pods for one configuration error (expected at most 2)"
                );
                Ok(())
            }
        },
    )
    .await?;

    objects::update_rclone_conf(s.client(), &ns, SECRET, &good).await?;
    s.step("fixed the Secret's credentials");
    let rs: ReplicationSource = s.wait_recovered(&ns, "creds", None, SYNC).await?;
    ensure!(
        rs.mover_summary()?.result == "Successful",
        "{:?}",
        rs.status
    );
    s.wait_condition::<ReplicationSource>(
        &ns,
        "creds",
        CONDITION_RECONCILED,
        "True",
        "Reconcile complete",
        QUICK,
    )
    .await?;
    ensure!(
        jobs.all().len() == 2,
        "expected exactly one new Job after the fix, saw {}",
        jobs.all().len()
    );
    s.finish().await
}

#[tokio::test]
async fn mover_pod_deleted_mid_run_is_replaced_and_the_sync_completes() -> Result<()> {
    let s = Scenario::start("failure_pod_deleted").await?;
    let vols = volumes(&s.cluster)?;
    let ns = s.namespace("fail-poddel").await?;
    // One transfer at a time over many files: long enough to delete the pod mid-run.
    common::slow_source(&s, &vols, &ns, Tree::new(), 0).await?;
    let pods = Recorder::<Pod>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "poddel",
        "data",
        &common::remote(&ns, "x")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("d-1");
    crs::create(s.client(), &ns, &rs).await?;

    let job = names::source_job("poddel");
    let pod_api = api::<Pod>(s.client(), &ns);
    let victim: Pod = s
        .wait_for("the mover pod running", SYNC, || {
            let (pod_api, job) = (pod_api.clone(), job.clone());
            async move {
                let list = pod_api
                    .list(&ListParams::default().labels(&format!("job-name={job}")))
                    .await?;
                Ok(list.items.into_iter().find(|p| {
                    let st = p.status.as_ref();
                    st.and_then(|s| s.phase.as_deref()) == Some("Running")
                        || st
                            .and_then(|s| s.container_statuses.as_ref())
                            .into_iter()
                            .flatten()
                            .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
                }))
            }
        })
        .await?;
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let victim_uid = victim.metadata.uid.clone().unwrap_or_default();
    pod_api
        .delete(&victim_name, &DeleteParams::default())
        .await?;
    s.step(format!("deleted running mover pod {victim_name}"));
    let rs: ReplicationSource = s.wait_synced(&ns, "poddel", None, SYNC).await?;
    let victim_seen = pods
        .all()
        .into_iter()
        .find(|p| p.first.metadata.uid.as_deref() == Some(victim_uid.as_str()))
        .context("the deleted pod was not recorded")?;
    let finished_ok_before = victim_seen
        .last
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .is_some_and(|p| p == "Succeeded");
    if finished_ok_before {
        bail!(
            "inconclusive: pod {victim_name} had already succeeded when it was deleted; the tree must be larger"
        );
    }
    let others: Vec<String> = pods
        .all()
        .iter()
        .filter(|p| p.first.metadata.uid.as_deref() != Some(victim_uid.as_str()))
        .map(|p| p.name())
        .collect();
    ensure!(
        !others.is_empty(),
        "the sync completed but no replacement pod was seen after {victim_name} was deleted"
    );
    let summary = rs.mover_summary()?;
    ensure!(
        summary.result == "Successful" && summary.files_checked >= 120,
        "the completed sync should have checked all 120 files: {summary:?}"
    );
    s.step(format!("replacement pod(s): {others:?}"));
    s.finish().await
}
