//! Steps shared by the scenarios: a namespace holding the rclone Secret, a source namespace
//! with a PVC holding a tree, unique remote paths, and checks on what a completed iteration
//! must have left behind (nothing) and what a destination image must hold (the tree).

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use scribe_e2e::crs::{SECRET, SECTION};
use scribe_e2e::objects::{self, VolumeSnapshot, api, names};
use scribe_e2e::volumes::{VolumeAccess, assert_volume_matches};
use scribe_e2e::{Scenario, Tree};

/// Longest a single sync may take in these scenarios.
pub const SYNC: Duration = Duration::from_secs(180);
/// Longest the cleanup after a sync may take.
pub const CLEANUP: Duration = Duration::from_secs(90);

/// A fresh namespace with the seed's rclone Secret.
pub async fn secret_namespace(s: &Scenario, prefix: &str) -> Result<String> {
    let ns = s.namespace(prefix).await?;
    objects::rclone_secret(&s.cluster, &ns, SECRET, SECTION, &[]).await?;
    Ok(ns)
}

/// A remote path unique to this namespace: bucket `e2e-<ns>`, prefix `name`.
pub fn remote(ns: &str, name: &str) -> Result<String> {
    let bucket = objects::bucket_name(&format!("e2e-{ns}"))?;
    Ok(format!("{bucket}/{name}"))
}

/// Creates PVC `pvc` (1Gi) in `ns` and writes `tree` into it.
pub async fn pvc_with_tree(
    s: &Scenario,
    vols: &impl VolumeAccess,
    ns: &str,
    pvc: &str,
    tree: &Tree,
) -> Result<()> {
    objects::pvc(s.client(), ns, pvc, "1Gi").await?;
    vols.write_tree(ns, pvc, tree).await?;
    s.step(format!(
        "wrote {} entries into {ns}/{pvc}",
        tree.entries.len()
    ));
    Ok(())
}

/// A source that keeps its mover busy for several seconds, long enough to act on it mid-run:
/// the namespace's rclone Secret with `SCRIBE_TRANSFERS=1`, and PVC `data` holding `base` plus
/// 120 files of 512 KiB (content seeded by `seed`). Returns the tree written.
pub async fn slow_source(
    s: &Scenario,
    vols: &impl VolumeAccess,
    ns: &str,
    base: Tree,
    seed: u64,
) -> Result<Tree> {
    objects::rclone_secret(
        &s.cluster,
        ns,
        SECRET,
        SECTION,
        &[("SCRIBE_TRANSFERS", "1")],
    )
    .await?;
    let mut tree = base;
    for i in 0..SLOW_FILES {
        tree = tree.file(
            &format!("chunk/{i:03}.bin"),
            scribe_e2e::tree::noise(seed + i, 512 * 1024),
            0o644,
        );
    }
    pvc_with_tree(s, vols, ns, "data", &tree).await?;
    Ok(tree)
}

/// How many 512 KiB files [`slow_source`] writes.
pub const SLOW_FILES: u64 = 120;

/// Waits until the source's Job and PiT VolumeSnapshot/PVC are gone (deleted after a sync).
pub async fn wait_source_cleaned_up(s: &Scenario, ns: &str, cr: &str) -> Result<()> {
    let c = s.client().clone();
    let (job, pit) = (names::source_job(cr), names::source_pit(cr));
    s.wait_for(
        &format!("Job {job}, VolumeSnapshot and PVC {pit} deleted after the sync"),
        CLEANUP,
        || {
            let (c, job, pit) = (c.clone(), job.clone(), pit.clone());
            async move {
                let j = api::<Job>(&c, ns).get_opt(&job).await?;
                let v = api::<VolumeSnapshot>(&c, ns).get_opt(&pit).await?;
                let p = api::<PersistentVolumeClaim>(&c, ns).get_opt(&pit).await?;
                Ok((j.is_none() && v.is_none() && p.is_none()).then_some(()))
            }
        },
    )
    .await
}

/// Restores the VolumeSnapshot `snapshot` into a new PVC and compares it with `tree`.
pub async fn restore_and_compare(
    s: &Scenario,
    vols: &impl VolumeAccess,
    ns: &str,
    snapshot: &str,
    restored: &str,
    size: &str,
    tree: &Tree,
) -> Result<()> {
    let snap = api::<VolumeSnapshot>(s.client(), ns)
        .get(snapshot)
        .await
        .with_context(|| format!("reading VolumeSnapshot {ns}/{snapshot}"))?;
    ensure!(
        snap.ready(),
        "VolumeSnapshot {ns}/{snapshot} (status.latestImage) is not readyToUse: {:?}",
        snap.status
    );
    objects::pvc_from_snapshot(s.client(), ns, restored, size, snapshot).await?;
    assert_volume_matches(vols, ns, restored, tree).await?;
    s.step(format!(
        "{ns}/{restored} restored from {snapshot} matches the source tree"
    ));
    Ok(())
}

/// A second StorageClass copying the default one (same provisioner, parameters and binding
/// mode) but not the default, so a scenario can show `storageClassName` is honoured. Deleted
/// when the scenario finishes.
pub async fn extra_storage_class(s: &Scenario) -> Result<String> {
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::{ApiResource, ListParams, PostParams};
    let classes: kube::Api<StorageClass> = kube::Api::all(s.client().clone());
    let default = classes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|c| {
            c.metadata.annotations.as_ref().is_some_and(|a| {
                a.get("storageclass.kubernetes.io/is-default-class")
                    .is_some_and(|v| v == "true")
            })
        })
        .context("the cluster has no default StorageClass")?;
    let name = format!("e2e-sc-{}", scribe_e2e::scenario::unique_suffix());
    let mut copy = default.clone();
    copy.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        labels: Some([("scribe-e2e".to_string(), "true".to_string())].into()),
        ..Default::default()
    };
    classes.create(&PostParams::default(), &copy).await?;
    s.delete_at_finish(ApiResource::erase::<StorageClass>(&()), &name);
    s.step(format!(
        "StorageClass {name} (a copy of {}, provisioner {})",
        default.metadata.name.unwrap_or_default(),
        default.provisioner
    ));
    Ok(name)
}

/// A second VolumeSnapshotClass copying the default one, deleted when the scenario finishes.
pub async fn extra_snapshot_class(s: &Scenario) -> Result<String> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass"),
        "volumesnapshotclasses",
    );
    let classes: kube::Api<DynamicObject> = kube::Api::all_with(s.client().clone(), &ar);
    let default = classes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|c| {
            c.metadata.annotations.as_ref().is_some_and(|a| {
                a.get("snapshot.storage.kubernetes.io/is-default-class")
                    .is_some_and(|v| v == "true")
            })
        })
        .context("the cluster has no default VolumeSnapshotClass")?;
    let name = format!("e2e-vsc-{}", scribe_e2e::scenario::unique_suffix());
    let mut copy = DynamicObject::new(&name, &ar);
    copy.metadata.labels = Some([("scribe-e2e".to_string(), "true".to_string())].into());
    for key in ["driver", "deletionPolicy", "parameters"] {
        if let Some(v) = default.data.get(key) {
            copy.data[key] = v.clone();
        }
    }
    classes.create(&PostParams::default(), &copy).await?;
    s.delete_at_finish(ar, &name);
    s.step(format!(
        "VolumeSnapshotClass {name} (a copy of {})",
        default.metadata.name.unwrap_or_default()
    ));
    Ok(name)
}

/// The claim the mover Job mounts at /data, and whether read-only.
pub fn job_data_claim(job: &Job) -> Option<(String, bool)> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == "data")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|p| (p.claim_name.clone(), p.read_only.unwrap_or(false)))
}
