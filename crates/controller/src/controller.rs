//! The runtime entry point [`run`]: metrics/health endpoint, leader election, and the two
//! kube-runtime Controllers (ReplicationSource, ReplicationDestination) with their watches:
//! - owned Jobs, PVCs and VolumeSnapshots (label `app.kubernetes.io/created-by=scribe`) map to
//!   their owner through [`owners_of`];
//! - Secrets (watched as metadata only) map to every custom resource in their namespace
//!   whose `spec.rclone.rcloneConfig` names them ([`users_of_secret`]), read from the
//!   Controller's own reflector store.
//!
//! Each of these watches backs off on its own ([`isolated`]): a cluster without the
//! VolumeSnapshot API (copyMethod Clone/None only) still gets every other watch.
//!
//! `/readyz` turns ready once the API serves both kinds (`probe_until_ready`).
//! Pods are not watched: a Job's status changes when its pod finishes, which is enough.
//! SIGTERM / Ctrl-C shut everything down gracefully (running passes finish, the Lease is released).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{ListParams, ObjectMeta, PartialObjectMeta};
use kube::runtime::controller::Error as ControllerError;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use scribe_api::constants::{CREATED_BY_VALUE, GROUP, LABEL_CREATED_BY};
use scribe_api::{ReplicationDestination, ReplicationSource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::context::{Context, ControllerConfig, Planner};
use crate::http::{Health, HttpError, LeaderState, Server};
use crate::leader::{LeaderElector, LeaseError, LeaseTiming};
use crate::metrics::{MetricKey, Metrics, Role};
use crate::reconcile::{self, ReplicationKind};
use crate::snapshot::VolumeSnapshot;

/// Why the controller stopped other than by a requested shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ControllerStopped {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("leader election: {0}")]
    Leadership(#[from] LeaseError),
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// The Secret a custom resource reads its rclone.conf from.
pub trait UsesSecret {
    fn rclone_config(&self) -> &str;
}

impl UsesSecret for ReplicationSource {
    fn rclone_config(&self) -> &str {
        &self.spec.rclone.rclone_config
    }
}

impl UsesSecret for ReplicationDestination {
    fn rclone_config(&self) -> &str {
        &self.spec.rclone.rclone_config
    }
}

/// Custom resources (of kind `K`) that must be reconciled when Secret `namespace/name` changes.
pub fn users_of_secret<K>(crs: &[Arc<K>], namespace: &str, name: &str) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + UsesSecret,
{
    crs.iter()
        .filter(|cr| cr.namespace().as_deref() == Some(namespace) && cr.rclone_config() == name)
        .map(|cr| ObjectRef::from_obj(cr.as_ref()))
        .collect()
}

/// The custom resources of kind `K` that own an object (by its owner references).
pub fn owners_of<K>(meta: &ObjectMeta) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
{
    let Some(ns) = meta.namespace.as_deref() else {
        return Vec::new();
    };
    let kind = K::kind(&());
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == kind && o.api_version.split('/').next() == Some(GROUP))
        .map(|o| ObjectRef::new(&o.name).within(ns))
        .collect()
}

/// Resolves once `rx` says shutdown (or its sender is gone).
async fn shutdown_requested(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the controller until SIGTERM / Ctrl-C (Ok) or loss of leadership (Err).
pub async fn run(client: Client, config: ControllerConfig) -> Result<(), ControllerStopped> {
    run_with(client, config, Arc::new(crate::context::RealPlanner)).await
}

/// [`run`] with a given plan (the end-to-end stand-in can script one).
pub async fn run_with(
    client: Client,
    config: ControllerConfig,
    planner: Arc<dyn Planner>,
) -> Result<(), ControllerStopped> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ControllerStopped::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    run_until(client, config, planner, stop_rx).await
}

/// [`run_with`], stopping when `stop` turns true instead of on signals (in-process use).
pub async fn run_until(
    client: Client,
    config: ControllerConfig,
    planner: Arc<dyn Planner>,
    stop: watch::Receiver<bool>,
) -> Result<(), ControllerStopped> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(config.leader_elect));
    let server = Server::bind(config.metrics_bind_address, metrics.clone(), health.clone()).await?;
    info!(address = %config.metrics_bind_address, "serving /metrics, /healthz, /readyz");
    let server_task = tokio::spawn(server.serve(shutdown_requested(stop.clone())));

    let ctx = Arc::new(Context::new(
        client.clone(),
        config.settings.clone(),
        planner,
        metrics,
        Some(config.identity.clone()),
    ));
    let result = if config.leader_elect {
        let elector = LeaderElector::new(
            client.clone(),
            &config.leader_election_namespace,
            &config.leader_election_id,
            &config.identity,
            LeaseTiming::default(),
        );
        if elector.acquire(&health, stop.clone()).await {
            tokio::select! {
                _ = run_controllers(client, ctx, health.clone(), stop.clone()) => {
                    elector.release().await;
                    Ok(())
                }
                lost = elector.hold() => {
                    health.set_leader(LeaderState::Unhealthy);
                    Err(ControllerStopped::Leadership(lost))
                }
            }
        } else {
            Ok(())
        }
    } else {
        run_controllers(client, ctx, health, stop.clone()).await;
        Ok(())
    };
    server_task.abort();
    result
}

/// Both Controllers, until `stop`.
async fn run_controllers(
    client: Client,
    ctx: Arc<Context>,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) {
    let sources = controller_for::<ReplicationSource>(&client, stop.clone());
    let destinations = controller_for::<ReplicationDestination>(&client, stop.clone());
    let readiness = tokio::spawn(probe_until_ready(client.clone(), health));
    let gc = tokio::spawn(forget_deleted(
        ctx.metrics.clone(),
        sources.store(),
        destinations.store(),
    ));
    let src_run = sources
        .run(
            reconcile::reconcile::<ReplicationSource>,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(log_result);
    let dst_run = destinations
        .run(
            reconcile::reconcile::<ReplicationDestination>,
            reconcile::error_policy,
            ctx,
        )
        .for_each(log_result);
    futures::future::join(src_run, dst_run).await;
    readiness.abort();
    gc.abort();
}

/// Every minute, drops the metric series of custom resources no longer in the caches.
async fn forget_deleted(
    metrics: Arc<Metrics>,
    sources: Store<ReplicationSource>,
    destinations: Store<ReplicationDestination>,
) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let live: std::collections::HashSet<MetricKey> = sources
            .state()
            .iter()
            .map(|cr| {
                MetricKey::new(
                    cr.namespace().unwrap_or_default(),
                    cr.name_any(),
                    Role::Source,
                )
            })
            .chain(destinations.state().iter().map(|cr| {
                MetricKey::new(
                    cr.namespace().unwrap_or_default(),
                    cr.name_any(),
                    Role::Destination,
                )
            }))
            .collect();
        // An empty cache may just not be filled yet: never wipe everything on it.
        if !live.is_empty() {
            metrics.retain(|k| live.contains(k));
        }
    }
}

/// Marks the controller ready once the API serves both custom resource kinds to us (CRDs
/// installed, list allowed), retrying every few seconds.
///
/// Why not `Store::wait_until_ready`: in kube-runtime 5 the store's readiness is a oneshot
/// that keeps a single waker, and the Controller's own runner waits on it; a second waiter
/// can steal the wake-up and leave the runner stuck. The reflectors list the same resources
/// right after, so this probe is a close, safe stand-in for "caches synced".
async fn probe_until_ready(client: Client, health: Arc<Health>) {
    let lp = ListParams::default().limit(1);
    loop {
        let src = Api::<ReplicationSource>::all(client.clone())
            .list_metadata(&lp)
            .await;
        let dst = Api::<ReplicationDestination>::all(client.clone())
            .list_metadata(&lp)
            .await;
        match (src, dst) {
            (Ok(_), Ok(_)) => {
                info!("API serves ReplicationSource and ReplicationDestination; ready");
                health.set_caches_synced(true);
                return;
            }
            (Err(e), _) | (_, Err(e)) => warn!(error = %e, "readiness probe failed; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Whether an error of a Controller's output stream is worth a warning. Two are routine and
/// go to debug: a reconcile scheduled for an object deleted meanwhile (kube-runtime's
/// `ObjectNotFound`, after every deletion of a CR whose owned objects still change), and a
/// failed reconcile (already logged by `error_policy`, with its category). Watch, queue and
/// runner errors warn.
pub fn worth_a_warning<R, Q>(e: &ControllerError<R, Q>) -> bool {
    !matches!(
        e,
        ControllerError::ObjectNotFound(_) | ControllerError::ReconcilerFailed(..)
    )
}

fn log_result<T, R, Q>(r: Result<T, ControllerError<R, Q>>) -> futures::future::Ready<()>
where
    R: std::error::Error,
    Q: std::error::Error,
{
    match r {
        Err(e) if worth_a_warning(&e) => warn!(error = %e, "controller event"),
        Err(e) => debug!(error = %e, "controller event"),
        Ok(_) => {}
    }
    futures::future::ready(())
}

/// The triggers of one secondary watch, made harmless to the others: kube-runtime puts all
/// of a Controller's triggers behind one backoff, so a watch that keeps failing (the
/// VolumeSnapshot API is not installed on a cluster whose users only Clone or copy directly,
/// or RBAC forbids it) would pause the CR, Job and PVC watches too. Here the watch backs off
/// on its own, its errors are logged (the first one at warn, the rest at debug) and never
/// reach the shared stream; once the API appears the watch starts delivering.
pub fn isolated<S, T>(
    what: &'static str,
    stream: S,
) -> impl futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    let warned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    stream.filter_map(move |r| {
        let warned = warned.clone();
        async move {
            match r {
                Ok(o) => Some(Ok(o)),
                Err(e) => {
                    if warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        debug!(watch = what, error = %e, "watch failed; retrying with backoff");
                    } else {
                        warn!(watch = what, error = %e, "watch failed; retrying with backoff (the other watches go on)");
                    }
                    None
                }
            }
        }
    })
}

/// The objects a watch of `K` delivers, with its own backoff, isolated from the others.
fn owned_watch<O>(
    api: Api<O>,
    config: watcher::Config,
    what: &'static str,
) -> impl futures::Stream<Item = Result<O, watcher::Error>> + Send + 'static
where
    O: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    O::DynamicType: Default + Clone + Eq + std::hash::Hash,
{
    isolated(
        what,
        watcher(api, config).default_backoff().touched_objects(),
    )
}

/// A Controller for `K` with its owned-object and Secret watches. Each secondary watch backs
/// off on its own ([`isolated`]); Secrets are watched as metadata only (their data is read
/// by the pass that needs it), which keeps every Secret's contents out of memory.
fn controller_for<K>(client: &Client, stop: watch::Receiver<bool>) -> Controller<K>
where
    K: ReplicationKind + UsesSecret,
{
    let owned =
        watcher::Config::default().labels(&format!("{LABEL_CREATED_BY}={CREATED_BY_VALUE}"));
    // A short debounce folds the burst of events one pass causes (status patch, Job
    // created, PVC bound) into one follow-up pass.
    let config =
        kube::runtime::controller::Config::default().debounce(std::time::Duration::from_secs(1));
    let c = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default())
        .with_config(config)
        .watches_stream(
            owned_watch(Api::<Job>::all(client.clone()), owned.clone(), "Job"),
            |o: Job| owners_of::<K>(o.meta()),
        )
        .watches_stream(
            owned_watch(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                owned.clone(),
                "PersistentVolumeClaim",
            ),
            |o: PersistentVolumeClaim| owners_of::<K>(o.meta()),
        )
        .watches_stream(
            owned_watch(
                Api::<VolumeSnapshot>::all(client.clone()),
                owned,
                "VolumeSnapshot",
            ),
            |o: VolumeSnapshot| owners_of::<K>(o.meta()),
        );
    let store = c.store();
    c.watches_stream(
        owned_watch(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default(),
            "Secret (metadata)",
        ),
        move |s: PartialObjectMeta<Secret>| {
            users_of_secret(
                &store.state(),
                &s.namespace().unwrap_or_default(),
                &s.name_any(),
            )
        },
    )
    .graceful_shutdown_on(shutdown_requested(stop))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use scribe_api::{ReplicationSourceRcloneSpec, ReplicationSourceSpec, SourceCopyMethod};

    use super::*;

    fn source(ns: &str, name: &str, secret: &str) -> Arc<ReplicationSource> {
        let mut cr = ReplicationSource::new(
            name,
            ReplicationSourceSpec {
                source_pvc: "data".into(),
                trigger: None,
                paused: None,
                rclone: ReplicationSourceRcloneSpec {
                    rclone_config_section: "s3".into(),
                    rclone_dest_path: "bucket/x".into(),
                    rclone_config: secret.into(),
                    copy_method: SourceCopyMethod::Snapshot,
                    access_modes: vec![],
                    capacity: None,
                    storage_class_name: None,
                    volume_snapshot_class_name: None,
                    mover: Default::default(),
                },
            },
        );
        cr.metadata.namespace = Some(ns.into());
        Arc::new(cr)
    }

    #[test]
    fn secret_change_maps_to_every_resource_naming_it_in_its_namespace_only() {
        let crs = vec![
            source("a", "one", "rclone"),
            source("a", "two", "other"),
            source("b", "three", "rclone"),
            source("a", "four", "rclone"),
        ];
        let hit = users_of_secret(&crs, "a", "rclone");
        let names: Vec<_> = hit
            .iter()
            .map(|r| (r.namespace.clone().unwrap(), r.name.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a".to_string(), "one".to_string()),
                ("a".to_string(), "four".to_string())
            ]
        );
        assert!(users_of_secret(&crs, "c", "rclone").is_empty());
    }

    fn owned_by(kind: &str, api_version: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("apps".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
                uid: "u".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn owned_object_maps_to_its_owner_of_the_same_kind_in_its_namespace() {
        let meta = owned_by("ReplicationSource", "scribe.backube/v1alpha1", "db");
        let refs = owners_of::<ReplicationSource>(&meta);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].name, "db");
        assert_eq!(refs[0].namespace.as_deref(), Some("apps"));
        assert!(
            owners_of::<ReplicationDestination>(&meta).is_empty(),
            "a source's Job does not wake a destination"
        );
    }

    #[test]
    fn a_reconcile_of_a_deleted_object_is_debug_not_a_warning() {
        type E = ControllerError<std::io::Error, watcher::Error>;
        let gone = || {
            Box::new(
                ObjectRef::<ReplicationSource>::new("db")
                    .within("apps")
                    .erase(),
            )
        };
        let not_found: E = ControllerError::ObjectNotFound(gone());
        assert!(
            not_found
                .to_string()
                .contains("that was not found in local store"),
            "{not_found}"
        );
        assert!(!worth_a_warning(&not_found));
        let failed: E = ControllerError::ReconcilerFailed(std::io::Error::other("x"), gone());
        assert!(!worth_a_warning(&failed), "error_policy logs it already");
        let queue: E = ControllerError::QueueError(watcher::Error::NoResourceVersion);
        assert!(worth_a_warning(&queue));
    }

    #[tokio::test]
    async fn a_failing_watch_never_reaches_the_shared_trigger_stream() {
        // kube-runtime backs off the merged triggers of a Controller on any error: an error
        // that got through (the VolumeSnapshot API missing) would pause every watch.
        let not_installed = || {
            watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
                kube::core::Status::failure(
                    "the server could not find the requested resource",
                    "NotFound",
                )
                .with_code(404),
            )))
        };
        let raw = futures::stream::iter(vec![
            Err(not_installed()),
            Ok(1),
            Err(not_installed()),
            Err(not_installed()),
            Ok(2),
        ]);
        let out: Vec<Result<i32, watcher::Error>> = isolated("VolumeSnapshot", raw).collect().await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
    }

    #[test]
    fn owners_of_another_group_or_without_namespace_are_ignored() {
        assert!(
            owners_of::<ReplicationSource>(&owned_by("ReplicationSource", "other.io/v1", "db"))
                .is_empty()
        );
        let mut meta = owned_by("ReplicationSource", "scribe.backube/v1alpha1", "db");
        meta.namespace = None;
        assert!(owners_of::<ReplicationSource>(&meta).is_empty());
    }
}
