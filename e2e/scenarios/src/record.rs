//! Recording every object of a kind in a namespace while a scenario runs: a background watch
//! keeps, per object uid, the first and the last version seen and whether it was deleted. It
//! answers what a poll can miss — the spec of a short-lived PiT PVC, how many pods a Job
//! really started, how many Jobs an iteration created.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt as _;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// One object as recorded.
#[derive(Clone, Debug)]
pub struct Seen<K> {
    pub first: K,
    pub last: K,
    pub deleted: bool,
}

impl<K: Resource> Seen<K> {
    /// The object's name.
    pub fn name(&self) -> String {
        self.first.meta().name.clone().unwrap_or_default()
    }
}

type Store<K> = Arc<Mutex<BTreeMap<String, Seen<K>>>>;

/// A background recording of all objects of kind `K` in one namespace.
pub struct Recorder<K: Resource> {
    store: Store<K>,
    errors: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl<K> Recorder<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Starts recording; returns once the initial list is in.
    pub async fn start(client: &Client, ns: &str) -> Result<Self> {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let store: Store<K> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let (s, errs) = (store.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => record(&s, o, false),
                    Ok(Event::Delete(o)) => record(&s, o, true),
                    Ok(Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Init) => {}
                    Err(e) => {
                        if let Ok(mut v) = errs.lock() {
                            v.push(e.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the {} watch in {ns} did not list within 30 s",
                    K::kind(&())
                )
            })?
            .map_err(|_| anyhow::anyhow!("the {} watch in {ns} stopped", K::kind(&())))?;
        Ok(Self {
            store,
            errors,
            task,
        })
    }

    /// Everything recorded so far, in uid order.
    pub fn all(&self) -> Vec<Seen<K>> {
        self.store
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Recorded objects whose name satisfies `pred`.
    pub fn named(&self, pred: impl Fn(&str) -> bool) -> Vec<Seen<K>> {
        self.all().into_iter().filter(|s| pred(&s.name())).collect()
    }

    /// Watch errors seen so far (the watch retries by itself).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn record<K: Resource + Clone>(store: &Store<K>, o: K, deleted: bool) {
    let Some(uid) = o.meta().uid.clone() else {
        return;
    };
    if let Ok(mut m) = store.lock() {
        m.entry(uid)
            .and_modify(|s| {
                s.last = o.clone();
                s.deleted |= deleted;
            })
            .or_insert_with(|| Seen {
                first: o.clone(),
                last: o,
                deleted,
            });
    }
}

impl<K: Resource> Drop for Recorder<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
