//! Access to what is inside a PVC, behind [`VolumeAccess`] so that scenarios do not care how:
//! [`LocalVolumes`] reads and writes the host directory the local cluster's hostpath CSI
//! stand-in backs a volume with (PVC → PV → `spec.csi.volumeHandle` →
//! `$SCRIBE_E2E_STATE_DIR/volumes/<handle>`). Against a real cluster (no state directory)
//! [`volumes`] is an explicit error until a portable implementation (helper pods) exists.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{Api, Client};

use crate::cluster::Cluster;
use crate::objects::api;
use crate::tree::{self, Listing, Tree};

/// Reading and writing the files of a bound PVC.
pub trait VolumeAccess: Send + Sync {
    /// Writes `tree` into the volume (adding to and replacing what is there).
    fn write_tree(
        &self,
        ns: &str,
        pvc: &str,
        tree: &Tree,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Removes paths (files, symlinks or whole directories) from the volume.
    fn remove(
        &self,
        ns: &str,
        pvc: &str,
        paths: &[&str],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Lists everything in the volume.
    fn read_tree(&self, ns: &str, pvc: &str) -> impl Future<Output = Result<Listing>> + Send;
}

/// The volume backend for `cluster`: [`LocalVolumes`] when `SCRIBE_E2E_STATE_DIR` is set.
pub fn volumes(cluster: &Cluster) -> Result<LocalVolumes> {
    match &cluster.state_dir {
        Some(dir) => Ok(LocalVolumes {
            client: cluster.client.clone(),
            state_dir: dir.clone(),
        }),
        None => bail!(
            "reading or writing volume contents needs SCRIBE_E2E_STATE_DIR (the local cluster's \
             hostpath volumes); no portable volume access (helper pods) is implemented yet, so \
             this scenario cannot run against this cluster and counts as failed"
        ),
    }
}

/// Volumes as host directories of the local cluster's hostpath CSI stand-in.
#[derive(Clone)]
pub struct LocalVolumes {
    client: Client,
    state_dir: PathBuf,
}

/// How the node agent turns a volume handle into one path component.
fn safe_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        out = format!("_{out}");
    }
    out
}

impl LocalVolumes {
    /// The host directory of a PVC, waiting up to 60 s for it to be bound.
    pub async fn host_path(&self, ns: &str, pvc: &str) -> Result<PathBuf> {
        let pvcs: Api<PersistentVolumeClaim> = api(&self.client, ns);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let volume = loop {
            let claim = pvcs
                .get_opt(pvc)
                .await
                .with_context(|| format!("reading PVC {ns}/{pvc}"))?
                .with_context(|| format!("PVC {ns}/{pvc} does not exist"))?;
            let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
            let bound = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
            if let (Some("Bound"), Some(v)) = (phase.as_deref(), bound) {
                break v;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "PVC {ns}/{pvc} is not bound after 60 s (phase {phase:?}, storageClassName {:?}): \
                     its volume cannot be read or written. A StorageClass with volumeBindingMode \
                     WaitForFirstConsumer binds only once a pod uses the claim.",
                    claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.storage_class_name.clone())
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get(&volume)
            .await
            .with_context(|| format!("reading PersistentVolume {volume} of PVC {ns}/{pvc}"))?;
        let handle = pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .map(|c| c.volume_handle.clone())
            .with_context(|| format!("PersistentVolume {volume} has no spec.csi.volumeHandle"))?;
        let dir = self.state_dir.join("volumes").join(safe_component(&handle));
        if !dir.is_dir() {
            bail!(
                "PVC {ns}/{pvc} is bound to {volume} (volumeHandle {handle}) but {} is not a directory",
                dir.display()
            );
        }
        Ok(dir)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("filesystem task panicked")?
}

impl VolumeAccess for LocalVolumes {
    async fn write_tree(&self, ns: &str, pvc: &str, tree: &Tree) -> Result<()> {
        let dir = self.host_path(ns, pvc).await?;
        let tree = tree.clone();
        blocking(move || {
            tree::write_tree(&dir, &tree)
                .with_context(|| format!("writing a tree into {}", dir.display()))
        })
        .await
        .with_context(|| format!("writing into PVC {ns}/{pvc}"))
    }

    async fn remove(&self, ns: &str, pvc: &str, paths: &[&str]) -> Result<()> {
        let dir = self.host_path(ns, pvc).await?;
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        blocking(move || {
            for p in &paths {
                tree::remove_path(&dir, p)?;
            }
            Ok(())
        })
        .await
        .with_context(|| format!("removing paths from PVC {ns}/{pvc}"))
    }

    async fn read_tree(&self, ns: &str, pvc: &str) -> Result<Listing> {
        let dir = self.host_path(ns, pvc).await?;
        blocking(move || tree::read_tree(&dir))
            .await
            .with_context(|| format!("listing PVC {ns}/{pvc}"))
    }
}

/// Compares a volume with what `expected` describes; the error lists every difference.
pub async fn assert_volume_matches(
    volumes: &impl VolumeAccess,
    ns: &str,
    pvc: &str,
    expected: &Tree,
) -> Result<Listing> {
    let found = volumes.read_tree(ns, pvc).await?;
    let diffs = tree::compare(&expected.expected(), &found);
    if !diffs.is_empty() {
        bail!(
            "PVC {ns}/{pvc} differs from the source tree in {} place(s):\n  {}",
            diffs.len(),
            diffs.join("\n  ")
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_map_to_one_component_like_the_node_agent() {
        assert_eq!(safe_component("pvc-1234_ab.c"), "pvc-1234_ab.c");
        assert_eq!(safe_component("a/b"), "a_b");
        assert_eq!(safe_component(".."), "_..");
    }
}
