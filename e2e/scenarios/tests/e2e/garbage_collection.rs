//! Garbage collection: everything the controller creates carries an owner reference to its
//! CR, so deleting a ReplicationSource mid-sync removes its Job (and pods) and its PiT
//! VolumeSnapshot and PVC, and deleting a ReplicationDestination removes its provisioned PVC
//! and its image snapshots — through the cluster's garbage collector, not the controller.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource, ResourceExt as _};
use scribe_api::{
    DestinationCopyMethod, ReplicationDestination, ReplicationSource, SourceCopyMethod,
};
use scribe_e2e::crs;
use scribe_e2e::objects::{VolumeSnapshot, api, names};
use scribe_e2e::{Scenario, Tree, tree, volumes};

use crate::common::{self, SYNC};

const GC: Duration = Duration::from_secs(120);

/// Checks that `obj` is owned (controller reference) by the CR with `uid`.
fn owned_by<K: Resource>(obj: &K, uid: &str) -> Result<()> {
    let refs = obj.owner_references();
    ensure!(
        refs.iter()
            .any(|r| r.uid == uid && r.controller == Some(true)),
        "{} has no controller owner reference to uid {uid}: {refs:?}",
        obj.name_any()
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_source_mid_sync_removes_its_job_and_pit_copies() -> Result<()> {
    let s = Scenario::start("gc_source").await?;
    let vols = volumes(&s.cluster)?;
    let ns = s.namespace("gc-src").await?;
    common::slow_source(&s, &vols, &ns, Tree::new(), 100).await?;
    let mut rs = crs::source(
        "gc",
        "data",
        &common::remote(&ns, "gc")?,
        SourceCopyMethod::Snapshot,
    );
    rs.spec.trigger = crs::manual("gc-1");
    let created = crs::create(s.client(), &ns, &rs).await?;
    let uid = created.metadata.uid.clone().context("no uid")?;
    let (job, pit) = (names::source_job("gc"), names::source_pit("gc"));

    let c = s.client().clone();
    s.wait_for(
        "the Job's pod running, with the PiT snapshot and PVC in place",
        SYNC,
        || {
            let (c, ns, job, pit, uid) =
                (c.clone(), ns.clone(), job.clone(), pit.clone(), uid.clone());
            async move {
                let (Some(j), Some(v), Some(p)) = (
                    api::<Job>(&c, &ns).get_opt(&job).await?,
                    api::<VolumeSnapshot>(&c, &ns).get_opt(&pit).await?,
                    api::<PersistentVolumeClaim>(&c, &ns).get_opt(&pit).await?,
                ) else {
                    return Ok(None);
                };
                owned_by(&j, &uid)?;
                owned_by(&v, &uid)?;
                owned_by(&p, &uid)?;
                let pods = api::<Pod>(&c, &ns)
                    .list(&ListParams::default().labels(&format!("job-name={job}")))
                    .await?;
                let running = pods
                    .items
                    .iter()
                    .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
                Ok(running.then_some(()))
            }
        },
    )
    .await?;
    api::<ReplicationSource>(s.client(), &ns)
        .delete("gc", &DeleteParams::background())
        .await?;
    s.step("deleted ReplicationSource gc mid-sync");
    s.wait_for(
        "the Job, its pods, the PiT VolumeSnapshot and PVC garbage-collected",
        GC,
        || {
            let (c, ns, job, pit) = (c.clone(), ns.clone(), job.clone(), pit.clone());
            async move {
                let j = api::<Job>(&c, &ns).get_opt(&job).await?;
                let v = api::<VolumeSnapshot>(&c, &ns).get_opt(&pit).await?;
                let p = api::<PersistentVolumeClaim>(&c, &ns).get_opt(&pit).await?;
                let pods = api::<Pod>(&c, &ns)
                    .list(&ListParams::default().labels(&format!("job-name={job}")))
                    .await?;
                Ok(
                    (j.is_none() && v.is_none() && p.is_none() && pods.items.is_empty())
                        .then_some(()),
                )
            }
        },
    )
    .await?;
    let data = api::<PersistentVolumeClaim>(s.client(), &ns)
        .get_opt("data")
        .await?;
    ensure!(
        data.is_some(),
        "the source PVC itself must survive (not owned by the CR)"
    );
    s.finish().await
}

#[tokio::test]
async fn deleting_a_destination_removes_its_pvc_and_images() -> Result<()> {
    let s = Scenario::start("gc_destination").await?;
    let vols = volumes(&s.cluster)?;
    let src = common::secret_namespace(&s, "gc-dsrc").await?;
    let dst = common::secret_namespace(&s, "gc-dst").await?;
    let remote = common::remote(&src, "gc")?;
    common::pvc_with_tree(&s, &vols, &src, "data", &tree::sample_tree(6)).await?;
    let mut rs = crs::source("gc", "data", &remote, SourceCopyMethod::None);
    rs.spec.trigger = crs::manual("1");
    crs::create(s.client(), &src, &rs).await?;
    let _: ReplicationSource = s.wait_manual_synced(&src, "gc", "1", SYNC).await?;
    let mut rd = crs::destination("gc", &remote, DestinationCopyMethod::Snapshot, "1Gi");
    rd.spec.trigger = crs::manual("1");
    let created = crs::create(s.client(), &dst, &rd).await?;
    let uid = created.metadata.uid.clone().context("no uid")?;
    let rd: ReplicationDestination = s.wait_manual_synced(&dst, "gc", "1", SYNC).await?;
    let image = rd
        .status
        .and_then(|s| s.latest_image)
        .context("no latestImage")?
        .name;
    let pvc_name = names::destination_pvc("gc");
    let pvc = api::<PersistentVolumeClaim>(s.client(), &dst)
        .get(&pvc_name)
        .await?;
    owned_by(&pvc, &uid)?;
    let snap = api::<VolumeSnapshot>(s.client(), &dst).get(&image).await?;
    owned_by(&snap, &uid)?;

    api::<ReplicationDestination>(s.client(), &dst)
        .delete("gc", &DeleteParams::background())
        .await?;
    s.step("deleted ReplicationDestination gc");
    let c = s.client().clone();
    s.wait_for(
        "the destination PVC and image garbage-collected",
        GC,
        || {
            let (c, dst, pvc_name, image) =
                (c.clone(), dst.clone(), pvc_name.clone(), image.clone());
            async move {
                let p = api::<PersistentVolumeClaim>(&c, &dst)
                    .get_opt(&pvc_name)
                    .await?;
                let v = api::<VolumeSnapshot>(&c, &dst).get_opt(&image).await?;
                let jobs: Api<Job> = api(&c, &dst);
                let j = jobs.list(&ListParams::default()).await?;
                Ok((p.is_none() && v.is_none() && j.items.is_empty()).then_some(()))
            }
        },
    )
    .await?;
    s.finish().await
}
