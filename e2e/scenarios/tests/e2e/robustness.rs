//! Controller robustness (local cluster only: the controller is restarted through
//! `hack/cluster.sh`): restarts at random moments while manual iterations run lose nothing
//! and duplicate nothing — every requested value is synced by exactly one Job and nothing is
//! left behind; with two replicas one holds the Lease `scribe-controller-leader`, and when it
//! stops the other takes over and syncs continue.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::rng::Rng;
use scribe_e2e::volumes::VolumeAccess as _;
use scribe_e2e::{Cluster, Scenario, Tree, tree, volumes};

use crate::common;

/// A sync while the controller is being restarted may wait for a Lease to expire.
const STORMY_SYNC: Duration = Duration::from_secs(240);
const RESTARTS: usize = 20;
const LEASE: &str = "scribe-controller-leader";
/// Number of the extra replica (`cluster.sh start-controller-replica 2`).
const REPLICA: &str = "2";

fn names_of<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items.iter().filter_map(|o| o.meta().name.clone()).collect()
}

#[tokio::test]
async fn random_controller_restarts_lose_and_duplicate_no_iteration() -> Result<()> {
    let s = Scenario::start_exclusive("robust_restarts").await?;
    s.cluster
        .script_path("restarting the controller at random moments")?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "rob-src").await?;
    let dst = common::secret_namespace(&s, "rob-dst").await?;
    let remote = common::remote(&src, "robust")?;
    let mut expected = tree::sample_tree(8);
    common::pvc_with_tree(&s, &vols, &src, "data", &expected).await?;
    let src_jobs = Recorder::<Job>::start(s.client(), &src).await?;
    let dst_jobs = Recorder::<Job>::start(s.client(), &dst).await?;

    let (mut rng, seed) = Rng::from_clock();
    s.step(format!("restart schedule seed {seed}"));
    let cluster: Cluster = s.cluster.clone();
    let restarts = tokio::spawn(async move {
        for k in 1..=RESTARTS {
            tokio::time::sleep(rng.duration(Duration::from_millis(500), Duration::from_secs(5)))
                .await;
            cluster
                .script(&["restart-controller"])
                .await
                .with_context(|| format!("restart {k} of {RESTARTS}"))?;
            eprintln!("[robust_restarts] controller restart {k}/{RESTARTS} done");
        }
        anyhow::Ok(())
    });

    let mut rs = crs::source("robust", "data", &remote, SourceCopyMethod::Snapshot);
    rs.spec.trigger = crs::manual("it-1");
    crs::create(s.client(), &src, &rs).await?;
    let mut iterations = 0;
    while iterations < 4 || (!restarts.is_finished() && iterations < 10) {
        iterations += 1;
        let value = format!("it-{iterations}");
        if iterations > 1 {
            let overlay = Tree::new().file_at(
                &format!("iterations/{iterations}.txt"),
                value.clone(),
                0o644,
                tree::now_secs(),
            );
            vols.write_tree(&src, "data", &overlay).await?;
            expected.entries.extend(overlay.entries);
            objects::set_manual::<ReplicationSource>(s.client(), &src, "robust", &value).await?;
        }
        let _: ReplicationSource = s
            .wait_manual_synced(&src, "robust", &value, STORMY_SYNC)
            .await?;
        if iterations == 1 {
            let mut rd =
                crs::destination("robust", &remote, DestinationCopyMethod::Snapshot, "1Gi");
            rd.spec.trigger = crs::manual(&value);
            crs::create(s.client(), &dst, &rd).await?;
        } else {
            objects::set_manual::<ReplicationDestination>(s.client(), &dst, "robust", &value)
                .await?;
        }
        let _: ReplicationDestination = s
            .wait_manual_synced(&dst, "robust", &value, STORMY_SYNC)
            .await?;
        s.step(format!("iteration {value} synced on both sides"));
    }
    restarts.await.context("the restart task panicked")??;
    let pids = s.cluster.controller_pids().await?;
    ensure!(
        !pids.is_empty(),
        "no controller is running after the restarts"
    );

    // Exactly one Job per requested iteration on each side.
    let (sj, dj) = (
        src_jobs.named(|n| n == names::source_job("robust")).len(),
        dst_jobs
            .named(|n| n == names::destination_job("robust"))
            .len(),
    );
    ensure!(
        sj == iterations && dj == iterations,
        "{iterations} iterations should take exactly {iterations} Jobs per side; saw {sj} source and {dj} destination Jobs"
    );
    // Nothing leaked: only the source PVC, the destination PVC and the latest image remain.
    let c = s.client().clone();
    let image = s
        .wait_for(
            "no leftover Jobs, PiT copies or old images",
            common::CLEANUP,
            || {
                let (c, src, dst) = (c.clone(), src.clone(), dst.clone());
                async move {
                    let jobs = api::<Job>(&c, &src).list(&Default::default()).await?.items;
                    let djobs = api::<Job>(&c, &dst).list(&Default::default()).await?.items;
                    let snaps = api::<VolumeSnapshot>(&c, &src)
                        .list(&Default::default())
                        .await?
                        .items;
                    let pvcs = api::<PersistentVolumeClaim>(&c, &src)
                        .list(&Default::default())
                        .await?
                        .items;
                    let dsnaps = api::<VolumeSnapshot>(&c, &dst)
                        .list(&Default::default())
                        .await?
                        .items;
                    let dpvcs = api::<PersistentVolumeClaim>(&c, &dst)
                        .list(&Default::default())
                        .await?
                        .items;
                    let rd = api::<ReplicationDestination>(&c, &dst)
                        .get("robust")
                        .await?;
                    let latest = rd
                        .status
                        .and_then(|s| s.latest_image)
                        .map(|i| i.name)
                        .unwrap_or_default();
                    let clean = jobs.is_empty()
                        && djobs.is_empty()
                        && snaps.is_empty()
                        && names_of(&pvcs) == ["data"]
                        && names_of(&dsnaps) == [latest.clone()]
                        && names_of(&dpvcs) == [names::destination_pvc("robust")];
                    Ok(clean.then_some(latest))
                }
            },
        )
        .await?;
    common::restore_and_compare(&s, &vols, &dst, &image, "restored", "1Gi", &expected).await?;
    s.finish().await
}

/// The holder of the leader Lease, if any.
async fn holder(cluster: &Cluster) -> Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(cluster.client.clone(), &cluster.controller_namespace)
        .get_opt(LEASE)
        .await
        .with_context(|| format!("reading Lease {}/{LEASE}", cluster.controller_namespace))?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Puts the cluster back as it was (main controller running, extra replica stopped) even
/// when the scenario fails half-way, so the scenarios after it find a working controller.
struct ReplicaGuard {
    script: PathBuf,
    replica_started: bool,
    main_stopped: bool,
}

impl ReplicaGuard {
    fn restore(&mut self) {
        if self.main_stopped {
            let _ = std::process::Command::new(&self.script)
                .arg("start-controller")
                .status();
            self.main_stopped = false;
        }
        if self.replica_started {
            let _ = std::process::Command::new(&self.script)
                .args(["stop-controller-replica", REPLICA])
                .status();
            self.replica_started = false;
        }
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

#[tokio::test]
async fn standby_replica_takes_over_the_lease_and_syncs_continue() -> Result<()> {
    let s = Scenario::start_exclusive("robust_leader").await?;
    let script = s
        .cluster
        .script_path("running a second controller replica")?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "rob-leader").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &tree::sample_tree(9)).await?;
    let before = s.cluster.controller_pids().await?;
    ensure!(
        before.len() == 1,
        "expected one controller before the scenario, found PIDs {before:?}"
    );
    let mut guard = ReplicaGuard {
        script,
        replica_started: true,
        main_stopped: false,
    };
    s.cluster
        .script(&["start-controller-replica", REPLICA])
        .await?;
    let cluster = s.cluster.clone();
    let replica = s
        .wait_for(
            "a second controller process",
            Duration::from_secs(60),
            || {
                let (cluster, before) = (cluster.clone(), before.clone());
                async move {
                    let pids = cluster.controller_pids().await?;
                    Ok(pids.into_iter().find(|p| !before.contains(p)))
                }
            },
        )
        .await?;
    let leader = s
        .wait_for("a Lease holder", Duration::from_secs(60), || {
            holder(&s.cluster)
        })
        .await?;
    s.step(format!("leader {leader}, standby PID {replica}"));
    s.holds_for(
        "one leader while two replicas run",
        Duration::from_secs(20),
        || async {
            let h = holder(&s.cluster).await?;
            ensure!(
                h.as_deref() == Some(leader.as_str()),
                "the Lease moved from {leader} to {h:?} with both replicas up"
            );
            Ok(())
        },
    )
    .await?;
    let mut rs = crs::source(
        "leader",
        "data",
        &common::remote(&ns, "l")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("r-1");
    crs::create(s.client(), &ns, &rs).await?;
    let _: ReplicationSource = s
        .wait_manual_synced(&ns, "leader", "r-1", common::SYNC)
        .await?;

    // Stop whichever replica leads (normally the main one, which was up first).
    let replica_leads = leader == format!("scribe-controller-{REPLICA}");
    let survivor = if replica_leads {
        s.cluster
            .script(&["stop-controller-replica", REPLICA])
            .await?;
        guard.replica_started = false;
        before[0]
    } else {
        s.cluster.script(&["stop-controller"]).await?;
        guard.main_stopped = true;
        replica
    };
    s.step(format!("stopped the leader {leader}"));
    let pids = s.cluster.controller_pids().await?;
    if pids != [survivor] {
        bail!(
            "after stopping the leader {leader}, PIDs are {pids:?}; expected only the standby {survivor}: cannot test a takeover"
        );
    }
    let new_leader = s
        .wait_for(
            "the standby taking the Lease",
            Duration::from_secs(60),
            || async { Ok(holder(&s.cluster).await?.filter(|h| *h != leader)) },
        )
        .await?;
    s.step(format!("new leader {new_leader}"));
    objects::set_manual::<ReplicationSource>(s.client(), &ns, "leader", "r-2").await?;
    let rs: ReplicationSource = s
        .wait_manual_synced(&ns, "leader", "r-2", common::SYNC)
        .await?;
    ensure!(
        rs.mover_summary()?.result == "Successful",
        "{:?}",
        rs.status
    );

    guard.restore();
    let cluster = s.cluster.clone();
    s.wait_for(
        "only the main controller running again",
        Duration::from_secs(60),
        || {
            let cluster = cluster.clone();
            async move {
                let pids = cluster.controller_pids().await?;
                Ok((pids.len() == 1 && !pids.contains(&replica)).then_some(()))
            }
        },
    )
    .await?;
    objects::set_manual::<ReplicationSource>(s.client(), &ns, "leader", "r-3").await?;
    let _: ReplicationSource = s
        .wait_manual_synced(&ns, "leader", "r-3", common::SYNC)
        .await?;
    s.finish().await
}
