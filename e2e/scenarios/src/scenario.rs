//! One scenario's life: the cluster handle, fresh namespaces with unique names (deleted when
//! the scenario finishes; left behind, and named, when it fails), polling waits that print
//! the namespaces' state on timeout, progress lines, and the closing checks.
//!
//! Scenarios run in parallel test threads. Those that disrupt the whole cluster (restarting
//! the controller, freezing S3) take [`Scenario::start_exclusive`], which waits for every
//! other scenario to finish and keeps new ones waiting until it is done.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Resource};
use scribe_api::{ReplicationDestination, ReplicationSource};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cluster::Cluster;
use crate::objects::api;
use crate::{diag, logs};

static DISRUPTION: RwLock<()> = RwLock::const_new(());
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How often waits poll.
pub const POLL: Duration = Duration::from_secs(1);

enum Guard {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A running scenario.
pub struct Scenario {
    pub cluster: Cluster,
    pub name: String,
    namespaces: Mutex<Vec<String>>,
    cluster_scoped: Mutex<Vec<(ApiResource, String)>>,
    started: Instant,
    finished: bool,
    _guard: Guard,
}

/// A short random-looking suffix, unique within and across test processes.
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{nanos}/{}/{n}/{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    hex::encode(Sha256::digest(seed.as_bytes()))[..6].to_string()
}

impl Scenario {
    /// Starts a scenario that can run alongside others.
    pub async fn start(name: &str) -> Result<Self> {
        let guard = Guard::Shared(DISRUPTION.read().await);
        Self::begin(name, guard).await
    }

    /// Starts a scenario that disrupts the cluster: it runs alone.
    pub async fn start_exclusive(name: &str) -> Result<Self> {
        let guard = Guard::Exclusive(DISRUPTION.write().await);
        Self::begin(name, guard).await
    }

    async fn begin(name: &str, guard: Guard) -> Result<Self> {
        let cluster = Cluster::from_env().await?;
        let s = Self {
            cluster,
            name: name.to_string(),
            namespaces: Mutex::new(Vec::new()),
            cluster_scoped: Mutex::new(Vec::new()),
            started: Instant::now(),
            finished: false,
            _guard: guard,
        };
        s.step("started");
        Ok(s)
    }

    /// The admin client.
    pub fn client(&self) -> &kube::Client {
        &self.cluster.client
    }

    /// Prints a progress line with the time since the start.
    pub fn step(&self, what: impl AsRef<str>) {
        eprintln!(
            "[{} +{:.1}s] {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }

    /// Creates a fresh namespace `<prefix>-<6 hex>`.
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        self.namespace_with_labels(prefix, &[]).await
    }

    /// Creates a fresh namespace with extra labels (e.g. Pod Security enforcement).
    pub async fn namespace_with_labels(
        &self,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> Result<String> {
        let name = format!("{prefix}-{}", unique_suffix());
        anyhow::ensure!(name.len() <= 40, "namespace prefix {prefix:?} is too long");
        let mut all = std::collections::BTreeMap::from([
            ("scribe-e2e".to_string(), "true".to_string()),
            (
                "scribe-e2e/scenario".to_string(),
                self.name.replace('_', "-"),
            ),
        ]);
        for (k, v) in labels {
            all.insert(k.to_string(), v.to_string());
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.cluster.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        self.namespaces
            .lock()
            .map_err(|_| anyhow::anyhow!("namespace list poisoned"))?
            .push(name.clone());
        self.step(format!("namespace {name}"));
        Ok(name)
    }

    /// Deletes a cluster-scoped object when the scenario finishes.
    pub fn delete_at_finish(&self, resource: ApiResource, name: &str) {
        if let Ok(mut v) = self.cluster_scoped.lock() {
            v.push((resource, name.to_string()));
        }
    }

    /// The scenario's namespaces.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The state of every namespace of the scenario, as text.
    pub async fn dump(&self) -> String {
        diag::dump(&self.cluster, &self.namespaces()).await
    }

    /// Polls `check` every second until it returns `Some`, failing after `timeout` with the
    /// namespaces' state; an `Err` from `check` fails at once (also with the state).
    pub async fn wait_for<T, F, Fut>(
        &self,
        desc: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let start = Instant::now();
        loop {
            match check().await {
                Ok(Some(v)) => {
                    self.step(format!(
                        "{desc}: done after {:.1}s",
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => {
                    let state = self.dump().await;
                    bail!("while waiting for {desc}: {e:#}\n{state}");
                }
            }
            if start.elapsed() > timeout {
                let state = self.dump().await;
                bail!("timed out after {timeout:?} waiting for {desc}\n{state}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the namespaced object `name` until `check` returns `Some` (see [`Self::wait_for`]);
    /// `check` sees `None` while the object does not exist.
    pub async fn wait_object<K, T, F>(
        &self,
        ns: &str,
        name: &str,
        desc: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        F: FnMut(Option<&K>) -> Result<Option<T>>,
    {
        let api = api::<K>(&self.cluster.client, ns);
        let desc = format!("{} {ns}/{name}: {desc}", K::kind(&()));
        let start = Instant::now();
        loop {
            let result = match api.get_opt(name).await {
                Ok(obj) => check(obj.as_ref()),
                Err(e) => Err(anyhow::Error::new(e).context("reading the object")),
            };
            match result {
                Ok(Some(v)) => {
                    self.step(format!(
                        "{desc}: done after {:.1}s",
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => {
                    let state = self.dump().await;
                    bail!("while waiting for {desc}: {e:#}\n{state}");
                }
            }
            if start.elapsed() > timeout {
                let state = self.dump().await;
                bail!("timed out after {timeout:?} waiting for {desc}\n{state}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Checks `holds` every second for `duration`; fails (with the state) the first time it
    /// returns an error.
    pub async fn holds_for<F, Fut>(
        &self,
        desc: &str,
        duration: Duration,
        mut holds: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let start = Instant::now();
        while start.elapsed() < duration {
            if let Err(e) = holds().await {
                let state = self.dump().await;
                bail!(
                    "{desc} stopped holding after {:.1}s: {e:#}\n{state}",
                    start.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        self.step(format!("{desc}: held for {duration:?}"));
        Ok(())
    }

    /// Ends a successful scenario: the controller's log must show no 403, then the namespaces
    /// and cluster-scoped objects are deleted (not waited for).
    pub async fn finish(mut self) -> Result<()> {
        if let Err(e) = logs::assert_no_forbidden(&self.cluster).await {
            let state = self.dump().await;
            bail!("{e:#}\n{state}");
        }
        // The CRs go first, so the controller is done with a namespace before it terminates.
        for ns in self.namespaces() {
            self.delete_crs(&ns).await;
        }
        let namespaces = Api::<Namespace>::all(self.cluster.client.clone());
        for ns in self.namespaces() {
            if let Err(e) = namespaces.delete(&ns, &DeleteParams::background()).await {
                self.step(format!("deleting namespace {ns} failed: {e}"));
            }
        }
        let scoped = self
            .cluster_scoped
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        for (ar, name) in scoped {
            let api: Api<DynamicObject> = Api::all_with(self.cluster.client.clone(), &ar);
            if let Err(e) = api.delete(&name, &DeleteParams::background()).await {
                self.step(format!("deleting {} {name} failed: {e}", ar.kind));
            }
        }
        self.finished = true;
        self.step("finished: passed");
        Ok(())
    }
}

impl Scenario {
    /// Deletes the Scribe CRs of `ns` and waits (30 s at most) for them to be gone.
    async fn delete_crs(&self, ns: &str) {
        let c = &self.cluster.client;
        let dp = DeleteParams::background();
        let lp = ListParams::default();
        let sources = api::<ReplicationSource>(c, ns);
        let destinations = api::<ReplicationDestination>(c, ns);
        let _ = sources.delete_collection(&dp, &lp).await;
        let _ = destinations.delete_collection(&dp, &lp).await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let left = sources.list(&lp).await.map_or(0, |l| l.items.len())
                + destinations.list(&lp).await.map_or(0, |l| l.items.len());
            if left == 0 {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        self.step(format!(
            "Scribe CRs in {ns} still present 30 s after deletion"
        ));
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.finished {
            eprintln!(
                "[{}] FAILED after {:.1}s; namespaces left for debugging: {}",
                self.name,
                self.started.elapsed().as_secs_f64(),
                self.namespaces().join(", ")
            );
        }
    }
}
