//! Scale: 50 ReplicationSources with manual triggers in one namespace all complete, and the
//! Jobs are cleaned up. Prints the controller's resident memory (local cluster: PIDs from
//! `cluster.sh controller-pids`), its own reconcile counters (`SCRIBE_E2E_METRICS_URL`) and the
//! API server's request counts during the run (`apiserver_request_total`, cluster-wide: it has
//! no per-client label, so it includes this test's own polling).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use scribe_api::{ReplicationSource, SourceCopyMethod};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::metrics::{self, Sample};
use scribe_e2e::objects::api;
use scribe_e2e::{Cluster, Scenario, Tree, volumes};

use crate::common;

const SOURCES: usize = 50;
/// A sanity bound on the controller's memory with 50 CRs (it idles far below).
const MAX_RSS_MIB: u64 = 512;

async fn rss_mib(cluster: &Cluster) -> Result<Vec<(u32, u64)>> {
    let pids = cluster.controller_pids().await?;
    ensure!(
        !pids.is_empty(),
        "`cluster.sh controller-pids` printed no PID"
    );
    pids.into_iter()
        .map(|p| Ok((p, metrics::rss_kib(p)? / 1024)))
        .collect()
}

fn requests(text: &str, pred: impl Fn(&Sample) -> bool) -> f64 {
    metrics::sum(text, "apiserver_request_total", pred)
}

#[tokio::test]
async fn fifty_manual_sources_complete() -> Result<()> {
    let s = Scenario::start_exclusive("scale").await?;
    let rss_before = rss_mib(&s.cluster).await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "scale").await?;
    let tree =
        Tree::new()
            .file("a.txt", "scale\n", 0o644)
            .file("b/c.txt", "fifty sources\n", 0o600);
    common::pvc_with_tree(&s, &vols, &ns, "data", &tree).await?;
    let api_before = metrics::apiserver_metrics(&s.cluster).await?;
    let started = Instant::now();
    for i in 0..SOURCES {
        let name = format!("rs-{i:02}");
        let mut rs = crs::source(
            &name,
            "data",
            &common::remote(&ns, &name)?,
            SourceCopyMethod::None,
        );
        rs.spec.trigger = crs::manual("s-1");
        crs::create(s.client(), &ns, &rs).await?;
    }
    s.step(format!("created {SOURCES} ReplicationSources"));
    let rs_api = api::<ReplicationSource>(s.client(), &ns);
    let reported = std::cell::Cell::new(0usize);
    s.wait_for(
        &format!("all {SOURCES} sources synced"),
        Duration::from_secs(300),
        || {
            let rs_api = rs_api.clone();
            let reported = &reported;
            async move {
                let list = rs_api.list(&Default::default()).await?.items;
                let done = list
                    .iter()
                    .filter(|r| r.last_manual_sync().as_deref() == Some("s-1"))
                    .count();
                if done >= reported.get() + 10 {
                    reported.set(done);
                    eprintln!("[scale] {done}/{SOURCES} synced");
                }
                Ok((done == SOURCES).then_some(()))
            }
        },
    )
    .await?;
    let took = started.elapsed();
    let jobs = api::<Job>(s.client(), &ns);
    s.wait_for("every mover Job cleaned up", common::CLEANUP, || {
        let jobs = jobs.clone();
        async move {
            Ok(jobs
                .list(&Default::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        }
    })
    .await?;
    let api_after = metrics::apiserver_metrics(&s.cluster).await?;
    let rss_after = rss_mib(&s.cluster).await?;

    let delta =
        |pred: &dyn Fn(&Sample) -> bool| requests(&api_after, pred) - requests(&api_before, pred);
    let scribe = delta(&|x| x.label("group") == Some("scribe.backube"));
    let scribe_writes = delta(&|x| {
        x.label("group") == Some("scribe.backube")
            && matches!(x.label("verb"), Some("PATCH" | "PUT" | "APPLY"))
    });
    let jobs_req = delta(&|x| x.label("resource") == Some("jobs"));
    let events = delta(&|x| x.label("resource") == Some("events"));
    let total = delta(&|_| true);
    eprintln!(
        "[scale] {SOURCES} sources synced in {:.1}s",
        took.as_secs_f64()
    );
    eprintln!("[scale] controller RSS MiB before {rss_before:?}, after {rss_after:?} (pid, MiB)");
    eprintln!(
        "[scale] API requests during the run (cluster-wide): total {total}, scribe.backube {scribe} (writes {scribe_writes}), jobs {jobs_req}, events {events}"
    );
    match &s.cluster.metrics_url {
        Some(url) => match metrics::http_get(url).await {
            Ok(text) => {
                let reconciles = metrics::sum(&text, "scribe_reconcile_total", |x| {
                    x.label("obj_namespace") == Some(ns.as_str())
                });
                let successes = metrics::sum(&text, "scribe_sync_success_total", |x| {
                    x.label("obj_namespace") == Some(ns.as_str())
                });
                eprintln!(
                    "[scale] controller metrics for {ns}: scribe_reconcile_total {reconciles}, scribe_sync_success_total {successes}"
                );
                // The controller's own counters agree with what the API shows.
                ensure!(
                    successes >= SOURCES as f64,
                    "scribe_sync_success_total{{obj_namespace={ns}}} is {successes}, expected at least {SOURCES}"
                );
            }
            Err(e) => eprintln!("[scale] controller metrics unavailable: {e:#}"),
        },
        None => eprintln!("[scale] SCRIBE_E2E_METRICS_URL not set: no controller metrics"),
    }
    let peak = rss_after.iter().map(|(_, m)| *m).max().context("no RSS")?;
    ensure!(
        peak < MAX_RSS_MIB,
        "the controller uses {peak} MiB with {SOURCES} sources (bound {MAX_RSS_MIB} MiB)"
    );
    s.finish().await
}
