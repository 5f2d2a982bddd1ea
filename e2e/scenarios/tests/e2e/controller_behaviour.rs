//! Controller behaviours on the real API server: `paused: true` suspends a running mover
//! (Job `parallelism` 0, its pod deleted by the Job controller) and resumes it; a destination
//! image labelled do-not-delete is released and outlives rotation and the CR; a Direct source
//! whose RWO volume is in use pins the mover to that pod's node; a missing
//! `moverServiceAccount` is named before any Job starts; a snapshot in error (wrong class) is
//! retaken once the spec is fixed; switching Snapshot → Clone leaves no PiT VolumeSnapshot;
//! a write refused by a ResourceQuota shows as `Reconciled=False` / `ApplyFailed`.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, ServiceAccount};
use kube::ResourceExt as _;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use scribe_api::constants::{CONDITION_RECONCILED, LABEL_DO_NOT_DELETE, REASON_APPLY_FAILED};
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs::{self, ScribeCr};
use scribe_e2e::diag::{event_line, events_about};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names};
use scribe_e2e::record::Recorder;
use scribe_e2e::status::describe_conditions;
use scribe_e2e::{Scenario, Tree, tree, volumes};

use crate::common::{self, SYNC};

const QUICK: Duration = Duration::from_secs(60);

fn small_tree(seed: u64) -> Tree {
    Tree::new()
        .file("a.txt", format!("controller behaviour {seed}\n"), 0o644)
        .file("d/b.bin", tree::noise(seed, 8192), 0o600)
}

/// Waits for an Event about `kind` `name` whose line contains every one of `parts`.
async fn wait_event(
    s: &Scenario,
    ns: &str,
    kind: &str,
    name: &str,
    parts: &[&str],
) -> Result<String> {
    let desc = format!("an Event about {kind} {name} containing {parts:?}");
    s.wait_for(&desc, QUICK, || async {
        let events = events_about(&s.cluster, ns, kind, name).await?;
        Ok(events
            .iter()
            .map(event_line)
            .find(|l| parts.iter().all(|p| l.contains(p))))
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

async fn job_pods(c: &kube::Client, ns: &str, job: &str) -> Result<Vec<Pod>> {
    Ok(api::<Pod>(c, ns)
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?
        .items)
}

fn parallelism(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.parallelism)
}

#[tokio::test]
async fn paused_suspends_a_running_mover_and_unpausing_resumes_it() -> Result<()> {
    let s = Scenario::start("behaviour_pause").await?;
    let vols = volumes(&s.cluster)?;
    let ns = s.namespace("cb-pause").await?;
    // One transfer at a time over many files: the mover runs long enough to pause it.
    common::slow_source(&s, &vols, &ns, Tree::new(), 300).await?;
    let mut rs = crs::source(
        "pause",
        "data",
        &common::remote(&ns, "p")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("p-1");
    crs::create(s.client(), &ns, &rs).await?;
    let job = names::source_job("pause");
    let c = s.client().clone();
    s.wait_for("the mover pod running", SYNC, || {
        let (c, ns, job) = (c.clone(), ns.clone(), job.clone());
        async move {
            let pods = job_pods(&c, &ns, &job).await?;
            Ok(pods.iter().any(|p| phase(p) == "Running").then_some(()))
        }
    })
    .await?;

    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "pause",
        serde_json::json!({ "paused": true }),
    )
    .await?;
    s.step("set paused: true while the mover runs");
    s.wait_for(
        "the Job suspended (parallelism 0) and its pod gone",
        QUICK,
        || {
            let (c, ns, job) = (c.clone(), ns.clone(), job.clone());
            async move {
                let j = api::<Job>(&c, &ns)
                    .get_opt(&job)
                    .await?
                    .context("the Job was deleted instead of suspended")?;
                let pods = job_pods(&c, &ns, &job).await?;
                Ok((parallelism(&j) == Some(0) && pods.is_empty()).then_some(()))
            }
        },
    )
    .await?;
    s.holds_for(
        "no mover pod and no sync while paused",
        Duration::from_secs(10),
        || {
            let (c, ns, job) = (c.clone(), ns.clone(), job.clone());
            async move {
                let pods = job_pods(&c, &ns, &job).await?;
                ensure!(pods.is_empty(), "{} mover pods while paused", pods.len());
                let rs = api::<ReplicationSource>(&c, &ns).get("pause").await?;
                ensure!(
                    rs.last_manual_sync().is_none(),
                    "the sync completed while paused: {:?}",
                    rs.status
                );
                Ok(())
            }
        },
    )
    .await?;

    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "pause",
        serde_json::json!({ "paused": false }),
    )
    .await?;
    s.step("set paused: false");
    s.wait_for("the Job resumed (parallelism 1)", QUICK, || {
        let (c, ns, job) = (c.clone(), ns.clone(), job.clone());
        async move {
            let j = api::<Job>(&c, &ns).get_opt(&job).await?;
            Ok(j.filter(|j| parallelism(j) == Some(1)).map(|_| ()))
        }
    })
    .await?;
    let _: ReplicationSource = s.wait_manual_synced(&ns, "pause", "p-1", SYNC).await?;
    common::wait_source_cleaned_up(&s, &ns, "pause").await?;
    s.finish().await
}

#[tokio::test]
async fn do_not_delete_image_outlives_rotation_and_the_destination() -> Result<()> {
    let s = Scenario::start("behaviour_keep").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "cb-keep-src").await?;
    let dst = common::secret_namespace(&s, "cb-keep-dst").await?;
    let remote = common::remote(&src, "keep")?;
    common::pvc_with_tree(&s, &vols, &src, "data", &small_tree(2)).await?;
    let mut rs = crs::source("keep", "data", &remote, SourceCopyMethod::None);
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &src, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&src, "keep", "1", SYNC).await?;

    let mut rd = crs::destination("keep", &remote, DestinationCopyMethod::Snapshot, "1Gi");
    rd.spec.trigger = crs::manual("1");
    let created = crs::create(s.client(), &dst, &rd).await?;
    let uid = created.metadata.uid.clone().context("no uid")?;
    let rd: ReplicationDestination = s.wait_manual_synced(&dst, "keep", "1", SYNC).await?;
    let old = rd
        .status
        .and_then(|s| s.latest_image)
        .context("no latestImage")?
        .name;
    let label = serde_json::json!({ "metadata": { "labels": { LABEL_DO_NOT_DELETE: "true" } } });
    api::<VolumeSnapshot>(s.client(), &dst)
        .patch(&old, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .with_context(|| format!("labelling VolumeSnapshot {old}"))?;
    s.step(format!("labelled {old} {LABEL_DO_NOT_DELETE}=true"));

    objects::set_manual::<ReplicationDestination>(s.client(), &dst, "keep", "2").await?;
    let rd: ReplicationDestination = s.wait_manual_synced(&dst, "keep", "2", SYNC).await?;
    let new = rd
        .status
        .and_then(|s| s.latest_image)
        .context("no latestImage")?
        .name;
    ensure!(
        new != old,
        "the second sync should make a new image, still {old}"
    );
    let c = s.client().clone();
    s.wait_for(
        &format!("{old} kept without an owner reference to the destination"),
        QUICK,
        || {
            let (c, dst, old, uid) = (c.clone(), dst.clone(), old.clone(), uid.clone());
            async move {
                let snap = api::<VolumeSnapshot>(&c, &dst)
                    .get_opt(&old)
                    .await?
                    .context("the labelled image was deleted")?;
                ensure!(
                    snap.metadata.deletion_timestamp.is_none(),
                    "the labelled image is being deleted"
                );
                Ok((!snap.owner_references().iter().any(|r| r.uid == uid)).then_some(()))
            }
        },
    )
    .await?;

    api::<ReplicationDestination>(s.client(), &dst)
        .delete("keep", &DeleteParams::background())
        .await?;
    s.step("deleted ReplicationDestination keep");
    let pvc_name = names::destination_pvc("keep");
    s.wait_for(
        "the destination PVC and the unlabelled image garbage-collected",
        Duration::from_secs(120),
        || {
            let (c, dst, new, pvc_name) = (c.clone(), dst.clone(), new.clone(), pvc_name.clone());
            async move {
                let p = api::<PersistentVolumeClaim>(&c, &dst)
                    .get_opt(&pvc_name)
                    .await?;
                let v = api::<VolumeSnapshot>(&c, &dst).get_opt(&new).await?;
                Ok((p.is_none() && v.is_none()).then_some(()))
            }
        },
    )
    .await?;
    s.holds_for(
        &format!("{old} survives the destination's deletion"),
        Duration::from_secs(10),
        || {
            let (c, dst, old) = (c.clone(), dst.clone(), old.clone());
            async move {
                let snap = api::<VolumeSnapshot>(&c, &dst)
                    .get_opt(&old)
                    .await?
                    .context("the labelled image was deleted with the destination")?;
                ensure!(
                    snap.metadata.deletion_timestamp.is_none() && snap.ready(),
                    "the labelled image is being deleted or not ready: {:?}",
                    snap.status
                );
                Ok(())
            }
        },
    )
    .await?;
    s.finish().await
}

#[tokio::test]
async fn direct_source_in_use_pins_the_mover_to_the_pods_node() -> Result<()> {
    let s = Scenario::start("behaviour_placement").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "cb-place").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(3)).await?;
    // An application pod using the RWO volume (its image is not runnable here: it stays
    // Pending with ErrImagePull, but it is scheduled, which is what placement looks at).
    let app: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "app" },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example/app:1",
                "volumeMounts": [{ "name": "data", "mountPath": "/data" }]
            }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }],
            "tolerations": [{ "key": "e2e/app", "operator": "Exists", "effect": "NoSchedule" }]
        }
    }))?;
    api::<Pod>(s.client(), &ns)
        .create(&PostParams::default(), &app)
        .await
        .context("creating Pod app")?;
    let node: String = s
        .wait_object(&ns, "app", "scheduled", QUICK, |p: Option<&Pod>| {
            Ok(p.and_then(|p| p.spec.as_ref()?.node_name.clone()))
        })
        .await?;
    s.step(format!("Pod app scheduled on {node}"));

    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "place",
        "data",
        &common::remote(&ns, "p")?,
        SourceCopyMethod::None,
    );
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &ns, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&ns, "place", "1", SYNC).await?;
    let seen = jobs.named(|n| n == names::source_job("place"));
    ensure!(
        seen.len() == 1,
        "expected one mover Job, saw {}",
        seen.len()
    );
    let spec = seen[0]
        .first
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .context("the Job has no pod template spec")?;
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone())
        .context("the mover Job has no required node affinity")?;
    let pinned = terms.iter().all(|t| {
        let fields = t.match_fields.iter().flatten();
        let exprs = t.match_expressions.iter().flatten();
        fields.chain(exprs).any(|r| {
            r.operator == "In" && r.values.as_ref().is_some_and(|v| v == &vec![node.clone()])
        })
    });
    ensure!(
        !terms.is_empty() && pinned,
        "every node selector term should require node {node}: {terms:?}"
    );
    let tolerated = spec
        .tolerations
        .iter()
        .flatten()
        .any(|t| t.key.as_deref() == Some("e2e/app"));
    ensure!(
        tolerated,
        "the mover should carry the app pod's tolerations: {:?}",
        spec.tolerations
    );
    s.step(format!("the mover Job requires node {node}: {terms:?}"));
    s.finish().await
}

#[tokio::test]
async fn missing_mover_service_account_is_named_then_recovers() -> Result<()> {
    let s = Scenario::start("behaviour_mover_sa").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "cb-sa").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(4)).await?;
    let jobs = Recorder::<Job>::start(s.client(), &ns).await?;
    let mut rs = crs::source(
        "sa",
        "data",
        &common::remote(&ns, "sa")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("1");
    rs.spec.rclone.mover.mover_service_account = Some("mover-sa".into());
    crs::create(s.client(), &ns, &rs).await?;
    s.wait_condition::<ReplicationSource>(
        &ns,
        "sa",
        CONDITION_RECONCILED,
        "False",
        "ServiceAccount mover-sa (spec.rclone.moverServiceAccount) not found",
        QUICK,
    )
    .await?;
    let event = wait_event(&s, &ns, "ReplicationSource", "sa", &["Warning", "mover-sa"]).await?;
    s.step(format!("event: {event}"));
    s.holds_for(
        "no Job without the ServiceAccount",
        Duration::from_secs(10),
        || {
            let jobs = &jobs;
            async move {
                let all = jobs.all();
                ensure!(all.is_empty(), "{} Jobs started", all.len());
                Ok(())
            }
        },
    )
    .await?;
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "mover-sa" } }))?;
    api::<ServiceAccount>(s.client(), &ns)
        .create(&PostParams::default(), &sa)
        .await?;
    s.step("created ServiceAccount mover-sa");
    let rs: ReplicationSource = s.wait_recovered(&ns, "sa", None, SYNC).await?;
    ensure!(
        rs.last_manual_sync().as_deref() == Some("1"),
        "{:?}",
        rs.status
    );
    let seen = jobs.all();
    ensure!(seen.len() == 1, "expected one Job, saw {}", seen.len());
    let account = seen[0]
        .first
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.service_account_name.clone());
    ensure!(
        account.as_deref() == Some("mover-sa"),
        "the mover should run as mover-sa, got {account:?}"
    );
    s.finish().await
}

#[tokio::test]
async fn wrong_snapshot_class_is_reported_and_fixing_it_recovers() -> Result<()> {
    let s = Scenario::start("behaviour_snapclass").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "cb-vsc").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(5)).await?;
    let mut rs = crs::source(
        "vsc",
        "data",
        &common::remote(&ns, "v")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("1");
    rs.spec.rclone.volume_snapshot_class_name = Some("no-such-class".into());
    crs::create(s.client(), &ns, &rs).await?;
    let rs: ReplicationSource = s
        .wait_object(
            &ns,
            "vsc",
            "a condition reporting the snapshot error",
            QUICK,
            |rs: Option<&ReplicationSource>| {
                let Some(rs) = rs else { return Ok(None) };
                Ok(rs
                    .conditions()
                    .iter()
                    .any(|c| c.message.contains("snapshot error"))
                    .then(|| rs.clone()))
            },
        )
        .await?;
    s.step(format!("status: {}", describe_conditions(&rs.conditions())));
    ensure!(
        rs.last_manual_sync().is_none(),
        "no sync can complete without a snapshot"
    );
    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "vsc",
        serde_json::json!({ "rclone": { "volumeSnapshotClassName": null } }),
    )
    .await?;
    s.step("removed volumeSnapshotClassName (the default class)");
    let event = wait_event(
        &s,
        &ns,
        "ReplicationSource",
        "vsc",
        &["Warning", "SnapshotFailed"],
    )
    .await?;
    s.step(format!("event: {event}"));
    let _: ReplicationSource = s.wait_manual_synced(&ns, "vsc", "1", SYNC).await?;
    common::wait_source_cleaned_up(&s, &ns, "vsc").await?;
    s.finish().await
}

#[tokio::test]
async fn switching_snapshot_to_clone_leaves_no_pit_snapshot() -> Result<()> {
    let s = Scenario::start("behaviour_switch").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "cb-switch").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(6)).await?;
    let mut rs = crs::source(
        "switch",
        "data",
        &common::remote(&ns, "s")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &ns, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&ns, "switch", "1", SYNC).await?;
    // The Snapshot iteration's PiT PVC (same name) goes after the sync: record only
    // what the Clone iteration makes.
    common::wait_source_cleaned_up(&s, &ns, "switch").await?;
    let pvcs = Recorder::<PersistentVolumeClaim>::start(s.client(), &ns).await?;
    objects::patch_spec::<ReplicationSource>(
        s.client(),
        &ns,
        "switch",
        serde_json::json!({ "rclone": { "copyMethod": "Clone" }, "trigger": { "manual": "2" } }),
    )
    .await?;
    s.step("switched copyMethod to Clone with manual 2");
    let _: ReplicationSource = s.wait_manual_synced(&ns, "switch", "2", SYNC).await?;
    common::wait_source_cleaned_up(&s, &ns, "switch").await?;
    let pit = names::source_pit("switch");
    let clone = pvcs
        .named(|n| n == pit)
        .into_iter()
        .next()
        .context("no PiT PVC recorded in the Clone iteration")?;
    let source = clone
        .first
        .spec
        .as_ref()
        .and_then(|s| s.data_source.clone())
        .context("the PiT PVC has no dataSource")?;
    ensure!(
        source.kind == "PersistentVolumeClaim" && source.name == "data",
        "the Clone iteration's PiT PVC should clone PVC data, its dataSource is {source:?}"
    );
    let snaps = api::<VolumeSnapshot>(s.client(), &ns)
        .list(&ListParams::default())
        .await?;
    ensure!(
        snaps.items.is_empty(),
        "no VolumeSnapshot may be left after the Clone iteration: {:?}",
        snaps.items.iter().map(|v| v.name_any()).collect::<Vec<_>>()
    );
    s.finish().await
}

#[tokio::test]
async fn quota_refusal_is_reported_as_apply_failed() -> Result<()> {
    let s = Scenario::start("behaviour_quota").await?;
    let vols = volumes(&s.cluster)?;
    let ns = common::secret_namespace(&s, "cb-quota").await?;
    common::pvc_with_tree(&s, &vols, &ns, "data", &small_tree(7)).await?;
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "no-snapshots" },
        "spec": { "hard": { "count/volumesnapshots.snapshot.storage.k8s.io": "0" } }
    }))?;
    api::<ResourceQuota>(s.client(), &ns)
        .create(&PostParams::default(), &quota)
        .await?;
    s.step("ResourceQuota no-snapshots: count/volumesnapshots.snapshot.storage.k8s.io 0");
    let mut rs = crs::source(
        "quota",
        "data",
        &common::remote(&ns, "q")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &ns, &rs).await?;
    let rs: ReplicationSource = s
        .wait_condition(
            &ns,
            "quota",
            CONDITION_RECONCILED,
            "False",
            "exceeded quota",
            QUICK,
        )
        .await?;
    let cond = rs.condition(CONDITION_RECONCILED).context("Reconciled")?;
    ensure!(
        cond.reason == REASON_APPLY_FAILED && cond.message.contains("no-snapshots"),
        "Reconciled should be ApplyFailed naming the quota: {cond:?}"
    );
    s.step(format!("Reconciled: {}", cond.message));
    let event = wait_event(
        &s,
        &ns,
        "ReplicationSource",
        "quota",
        &["Warning", "exceeded quota"],
    )
    .await?;
    s.step(format!("event: {event}"));
    api::<ResourceQuota>(s.client(), &ns)
        .delete("no-snapshots", &DeleteParams::default())
        .await?;
    s.step("deleted the ResourceQuota");
    let _: ReplicationSource = s.wait_recovered(&ns, "quota", None, SYNC).await?;
    s.wait_condition::<ReplicationSource>(&ns, "quota", CONDITION_RECONCILED, "True", "", QUICK)
        .await?;
    s.finish().await
}
