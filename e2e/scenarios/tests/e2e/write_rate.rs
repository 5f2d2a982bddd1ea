//! Write rate: a CR with nothing to do must not be rewritten over and over. An idle scheduled
//! ReplicationSource and ReplicationDestination (after their first sync, next firing far
//! away) and a source blocked on a missing Secret are each watched for 60 s: at most 4 writes
//! (new resourceVersions) each.

use std::time::Duration;

use anyhow::{Result, bail};
use scribe_api::constants::CONDITION_RECONCILED;
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs;
use scribe_e2e::objects::api;
use scribe_e2e::writes::{WriteLog, count_writes};
use scribe_e2e::{Scenario, Tree, volumes};

use crate::common::{self, SYNC};

/// Most writes allowed per CR in the window.
const MAX_WRITES: usize = 4;
const WINDOW: Duration = Duration::from_secs(60);
/// A schedule that does not fire during the test (once a year, January 1st 00:00 UTC).
const YEARLY: &str = "0 0 1 1 *";

#[tokio::test]
async fn idle_and_blocked_crs_are_written_at_most_a_few_times_a_minute() -> Result<()> {
    let s = Scenario::start("write_rate").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "wr-src").await?;
    let dst = common::secret_namespace(&s, "wr-dst").await?;
    let blocked_ns = s.namespace("wr-blocked").await?;
    let remote = common::remote(&src, "idle")?;
    let tree = Tree::new().file("x.txt", "idle\n", 0o644);
    common::pvc_with_tree(&s, &vols, &src, "data", &tree).await?;
    common::pvc_with_tree(&s, &vols, &blocked_ns, "data", &tree).await?;

    let mut rs = crs::source("idle", "data", &remote, SourceCopyMethod::Snapshot);
    rs.spec.trigger = crs::schedule(YEARLY);
    crs::create(s.client(), &src, &rs).await?;
    let mut blocked = crs::source(
        "blocked",
        "data",
        &common::remote(&blocked_ns, "b")?,
        SourceCopyMethod::Snapshot,
    );
    blocked.spec.trigger = crs::schedule("*/6 * * * *");
    crs::create(s.client(), &blocked_ns, &blocked).await?;
    let _: ReplicationSource = s.wait_synced(&src, "idle", None, SYNC).await?;
    common::wait_source_cleaned_up(&s, &src, "idle").await?;
    let mut rd = crs::destination("idle", &remote, DestinationCopyMethod::Snapshot, "1Gi");
    rd.spec.trigger = crs::schedule(YEARLY);
    crs::create(s.client(), &dst, &rd).await?;
    let _: ReplicationDestination = s.wait_synced(&dst, "idle", None, SYNC).await?;
    let _: ReplicationSource = s
        .wait_condition(
            &blocked_ns,
            "blocked",
            CONDITION_RECONCILED,
            "False",
            "not found",
            Duration::from_secs(60),
        )
        .await?;
    // Let the last post-sync cleanup passes settle before counting.
    tokio::time::sleep(Duration::from_secs(10)).await;
    s.step(format!("counting writes for {WINDOW:?}"));

    let (src_api, dst_api, blocked_api) = (
        api::<ReplicationSource>(s.client(), &src),
        api::<ReplicationDestination>(s.client(), &dst),
        api::<ReplicationSource>(s.client(), &blocked_ns),
    );
    let (a, b, c) = tokio::join!(
        count_writes(&src_api, "idle", WINDOW),
        count_writes(&dst_api, "idle", WINDOW),
        count_writes(&blocked_api, "blocked", WINDOW),
    );
    let results: [(&str, WriteLog); 3] = [
        ("idle ReplicationSource", a?),
        ("idle ReplicationDestination", b?),
        ("ReplicationSource blocked on a missing Secret", c?),
    ];
    let mut failures = Vec::new();
    for (what, log) in &results {
        s.step(format!(
            "{what}: {} write(s) in {WINDOW:?}",
            log.writes.len()
        ));
        if log.writes.len() > MAX_WRITES {
            failures.push(format!(
                "{what}: {} writes in {WINDOW:?} (at most {MAX_WRITES} expected):\n  {}",
                log.writes.len(),
                log.describe()
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}\n{}", failures.join("\n"), s.dump().await);
    }
    s.finish().await
}
