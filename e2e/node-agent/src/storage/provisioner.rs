//! The external-provisioner + csi-hostpath `CreateVolume`/`DeleteVolume` stand-in.
//!
//! A claim is ours once kube-controller-manager's PV controller has annotated it with
//! `volume.kubernetes.io/storage-provisioner: <driver>` and while it is unbound. Provisioning
//! makes the directory `volumes/pvc-<claim uid>` (empty, a clone of a bound source claim's
//! volume, or a copy of a ready VolumeSnapshot) and creates the PersistentVolume `pvc-<claim
//! uid>` pre-bound through `claimRef`; the PV controller does the binding. Released volumes
//! whose reclaim policy is `Delete` lose their directory, then their PV.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource as _};

use super::claims::{
    ANN_SELECTED_NODE, DataSource, Resolved, build_pv, claim_is_ours, claim_key, data_source,
    reclaimable_handle, volume_name,
};
use super::{
    CONCURRENCY, Events, copy, is_conflict, json_at, reconcile_forever, str_at,
    volume_snapshot_content_resource, volume_snapshot_resource,
};
use crate::config::AgentConfig;
use crate::error::AgentError;

/// Re-announce an unchanged provisioning failure at most this often (external-provisioner
/// backs off its retries, so its events thin out too).
const FAILURE_REPEAT: Duration = Duration::from_secs(60);

struct Ctx {
    client: kube::Client,
    cfg: Arc<AgentConfig>,
    events: Events,
    pvs: Api<PersistentVolume>,
    classes: Api<StorageClass>,
    /// Last failure announced per claim uid, and when.
    failures: Mutex<HashMap<String, (String, Instant)>>,
}

impl Ctx {
    /// Reports a failure as a ProvisioningFailed event (and a log line); an unchanged one is
    /// repeated only every [`FAILURE_REPEAT`].
    async fn failed(&self, pvc: &PersistentVolumeClaim, message: String) {
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        let now = Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((last, at)) = failures.get(&uid)
                && *last == message
                && now.duration_since(*at) < FAILURE_REPEAT
            {
                tracing::debug!(claim = %claim_key(pvc), %message, "provisioning still failing");
                return;
            }
            failures.insert(uid, (message.clone(), now));
        }
        tracing::info!(claim = %claim_key(pvc), %message, "provisioning failed; will retry");
        self.events
            .publish(
                &pvc.object_ref(&()),
                EventType::Warning,
                "ProvisioningFailed",
                message,
            )
            .await;
    }

    /// Locates the source claim's volume directory (same StorageClass, bound, ours).
    async fn resolve_claim(
        &self,
        pvc: &PersistentVolumeClaim,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, AgentError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let Some(source) = api.get_opt(name).await.map_err(AgentError::kube(format!(
            "getting source claim {namespace}/{name}"
        )))?
        else {
            return Ok(Resolved::Fail(format!(
                "error getting handle for DataSource Type PersistentVolumeClaim by Name {name}: \
                 persistentvolumeclaims \"{name}\" not found"
            )));
        };
        let class_of = |c: &PersistentVolumeClaim| {
            c.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default()
        };
        if class_of(&source) != class_of(pvc) {
            return Ok(Resolved::Fail(format!(
                "the source PVC and destination PVCs must be in the same storage class for \
                 cloning. Source is in {:?}, but new PVC is in {:?}",
                class_of(&source),
                class_of(pvc)
            )));
        }
        let phase = source.status.as_ref().and_then(|s| s.phase.as_deref());
        let volume = source
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty());
        let (Some("Bound"), Some(volume)) = (phase, volume) else {
            return Ok(Resolved::Wait(format!(
                "source claim {namespace}/{name} is not bound yet"
            )));
        };
        let Some(pv) = self
            .pvs
            .get_opt(volume)
            .await
            .map_err(AgentError::kube(format!(
                "getting PersistentVolume {volume}"
            )))?
        else {
            return Ok(Resolved::Wait(format!(
                "source volume {volume} not found yet"
            )));
        };
        let driver = &self.cfg.driver_name;
        let Some(csi) = pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .filter(|c| &c.driver == driver)
        else {
            return Ok(Resolved::Fail(format!(
                "the source PVC {name} is not a volume of driver {driver}"
            )));
        };
        let dir = self.cfg.volume_dir(&csi.volume_handle);
        if !dir.is_dir() {
            return Ok(Resolved::Fail(format!(
                "source volume {} not found",
                csi.volume_handle
            )));
        }
        Ok(Resolved::Ready(Some(dir)))
    }

    /// Locates the snapshot directory behind a ready VolumeSnapshot.
    async fn resolve_snapshot(&self, namespace: &str, name: &str) -> Result<Resolved, AgentError> {
        let prefix =
            format!("error getting handle for DataSource Type VolumeSnapshot by Name {name}");
        let snapshots: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &volume_snapshot_resource());
        let Some(snapshot) = snapshots
            .get_opt(name)
            .await
            .map_err(AgentError::kube(format!(
                "getting VolumeSnapshot {namespace}/{name}"
            )))?
        else {
            return Ok(Resolved::Fail(format!(
                "{prefix}: error getting snapshot {name} from api server: \
                 volumesnapshots.snapshot.storage.k8s.io \"{name}\" not found"
            )));
        };
        if snapshot.metadata.deletion_timestamp.is_some() {
            return Ok(Resolved::Fail(format!(
                "{prefix}: snapshot {name} is currently being deleted"
            )));
        }
        let ready = json_at(&snapshot.data, &["status", "readyToUse"]).and_then(|v| v.as_bool());
        let bound = str_at(
            &snapshot.data,
            &["status", "boundVolumeSnapshotContentName"],
        );
        let (Some(true), Some(content_name)) = (ready, bound) else {
            return Ok(Resolved::Wait(format!(
                "snapshot {namespace}/{name} is not ready yet"
            )));
        };
        let contents: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &volume_snapshot_content_resource());
        let Some(content) = contents
            .get_opt(content_name)
            .await
            .map_err(AgentError::kube(format!(
                "getting VolumeSnapshotContent {content_name}"
            )))?
        else {
            return Ok(Resolved::Wait(format!(
                "snapshot content {content_name} not found yet"
            )));
        };
        let driver = &self.cfg.driver_name;
        if str_at(&content.data, &["spec", "driver"]) != Some(driver.as_str()) {
            return Ok(Resolved::Fail(format!(
                "{prefix}: snapshot content {content_name} is not a snapshot of driver {driver}"
            )));
        }
        let Some(handle) = str_at(&content.data, &["status", "snapshotHandle"]) else {
            return Ok(Resolved::Wait(format!(
                "snapshot content {content_name} has no snapshot handle yet"
            )));
        };
        let dir = self.cfg.snapshot_dir(handle);
        if !dir.is_dir() {
            return Ok(Resolved::Fail(format!(
                "{prefix}: snapshot {handle} not found"
            )));
        }
        Ok(Resolved::Ready(Some(dir)))
    }

    async fn resolve_source(&self, pvc: &PersistentVolumeClaim) -> Result<Resolved, AgentError> {
        match data_source(pvc) {
            DataSource::Empty => Ok(Resolved::Ready(None)),
            DataSource::Claim { namespace, name } => {
                self.resolve_claim(pvc, &namespace, &name).await
            }
            DataSource::Snapshot { namespace, name } => {
                self.resolve_snapshot(&namespace, &name).await
            }
            DataSource::Unsupported { api_group, kind } => Ok(Resolved::Wait(format!(
                "data source {kind}.{api_group} is left to its volume populator"
            ))),
        }
    }

    /// Creates the volume directory and the PV of one claim; every step may be repeated.
    async fn provision(&self, pvc: &PersistentVolumeClaim) -> Result<(), AgentError> {
        let key = claim_key(pvc);
        let class_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .unwrap_or_default();
        if class_name.is_empty() {
            self.failed(pvc, "claim has no storageClassName".into())
                .await;
            return Ok(());
        }
        let Some(class) = self
            .classes
            .get_opt(class_name)
            .await
            .map_err(AgentError::kube(format!(
                "getting StorageClass {class_name}"
            )))?
        else {
            self.failed(
                pvc,
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            )
            .await;
            return Ok(());
        };
        if class.provisioner != self.cfg.driver_name {
            tracing::debug!(claim = %key, class = class_name, "class names another provisioner");
            return Ok(());
        }
        let selected_node = pvc
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANN_SELECTED_NODE));
        if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") && !selected_node {
            tracing::debug!(claim = %key, "waiting for first consumer");
            return Ok(());
        }
        let pv = match build_pv(pvc, &class, &self.cfg.driver_name) {
            Ok(pv) => pv,
            Err(msg) => {
                self.failed(pvc, msg).await;
                return Ok(());
            }
        };
        let source = match self.resolve_source(pvc).await? {
            Resolved::Ready(source) => source,
            Resolved::Wait(why) => {
                tracing::debug!(claim = %key, %why, "not provisioning yet");
                return Ok(());
            }
            Resolved::Fail(msg) => {
                self.failed(
                    pvc,
                    format!("failed to provision volume with StorageClass \"{class_name}\": {msg}"),
                )
                .await;
                return Ok(());
            }
        };
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        self.events
            .publish(
                &pvc.object_ref(&()),
                EventType::Normal,
                "Provisioning",
                format!("External provisioner is provisioning volume for claim \"{key}\""),
            )
            .await;
        let dir = self.cfg.volume_dir(&pv_name);
        if let Err(e) = copy::materialize(source.as_deref(), &dir).await {
            self.failed(
                pvc,
                format!("failed to provision volume with StorageClass \"{class_name}\": {e}"),
            )
            .await;
            return Err(e);
        }
        match self.pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {}
            Err(e) => {
                return Err(AgentError::kube(format!(
                    "creating PersistentVolume {pv_name}"
                ))(e));
            }
        }
        tracing::info!(claim = %key, volume = %pv_name, source = ?source, "volume provisioned");
        self.events
            .publish(
                &pvc.object_ref(&()),
                EventType::Normal,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {pv_name}"),
            )
            .await;
        Ok(())
    }

    /// Deletes a released volume's directory, then its PV.
    async fn reclaim(&self, pv: &PersistentVolume, handle: &str) -> Result<(), AgentError> {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        let dir = self.cfg.volume_dir(handle);
        copy::remove_dir_if_exists(&copy::tmp_path(&dir)).await?;
        copy::remove_dir_if_exists(&dir).await?;
        if pv.metadata.deletion_timestamp.is_some() {
            // Already deleted; the pv-protection finalizer is still letting go.
            return Ok(());
        }
        match self.pvs.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => {
                return Err(AgentError::kube(format!(
                    "deleting PersistentVolume {name}"
                ))(e));
            }
        }
        tracing::info!(volume = name, "released volume deleted");
        Ok(())
    }

    async fn pass(&self) -> Result<(), AgentError> {
        let driver = self.cfg.driver_name.as_str();
        let pvs = self
            .pvs
            .list(&ListParams::default())
            .await
            .map_err(AgentError::kube("listing PersistentVolumes"))?;
        let existing: HashSet<&str> = pvs
            .items
            .iter()
            .filter_map(|pv| pv.metadata.name.as_deref())
            .collect();
        let claims: Api<PersistentVolumeClaim> = Api::all(self.client.clone());
        let claims = claims
            .list(&ListParams::default())
            .await
            .map_err(AgentError::kube("listing PersistentVolumeClaims"))?;
        let todo: Vec<&PersistentVolumeClaim> = claims
            .items
            .iter()
            .filter(|c| {
                claim_is_ours(c, driver)
                    && volume_name(c).is_some_and(|v| !existing.contains(v.as_str()))
            })
            .collect();
        {
            // Forget failures of claims that are gone or provisioned.
            let pending: HashSet<&str> = todo
                .iter()
                .filter_map(|c| c.metadata.uid.as_deref())
                .collect();
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures.retain(|uid, _| pending.contains(uid.as_str()));
        }
        futures::stream::iter(todo)
            .for_each_concurrent(CONCURRENCY, |pvc| async move {
                if let Err(e) = self.provision(pvc).await {
                    tracing::warn!(claim = %claim_key(pvc), error = %e, "provisioning failed; will retry");
                }
            })
            .await;
        for pv in &pvs.items {
            if let Some(handle) = reclaimable_handle(pv, driver)
                && let Err(e) = self.reclaim(pv, handle).await
            {
                tracing::warn!(volume = ?pv.metadata.name, error = %e, "volume deletion failed; will retry");
            }
        }
        Ok(())
    }
}

/// Provisions and deletes volumes until the process ends.
pub async fn run(client: kube::Client, cfg: Arc<AgentConfig>, events: Events) {
    let ctx = Ctx {
        pvs: Api::all(client.clone()),
        classes: Api::all(client.clone()),
        client,
        cfg,
        events,
        failures: Mutex::default(),
    };
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| r.map(drop));
    let volumes = watcher(ctx.pvs.clone(), watcher::Config::default())
        .default_backoff()
        .map(|r| r.map(drop));
    let wake = futures::stream::select(claims, volumes);
    reconcile_forever("provisioner", wake, || ctx.pass()).await;
}
