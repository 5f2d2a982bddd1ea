//! Pods bound to this node, run as local processes.
//!
//! A watch on `spec.nodeName=<node>` feeds a dispatcher: a new pod gets its own task
//! ([`run::run_pod`]: prepare volumes and env → start containers → wait → report); a pod marked
//! for deletion gets SIGTERM, its grace period, then SIGKILL, and is finally deleted with grace 0
//! and a UID precondition, as a kubelet does. A Running pod found at start-up has lost its
//! process (the agent restarted) and is reported Failed.

mod env;
mod launch;
mod resolve;
mod run;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::error::AgentError;

/// What the dispatcher keeps of a pod it started.
struct Running {
    /// `Some(grace seconds)` once the pod is being deleted.
    stop: watch::Sender<Option<i64>>,
    done: Arc<AtomicBool>,
}

/// Deletes a finished pod for good (grace 0, only this UID), then its runtime files.
pub(crate) async fn finalize_delete(api: &Api<Pod>, cfg: &AgentConfig, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "final delete failed"),
    }
    let _ = std::fs::remove_dir_all(cfg.pod_dir(&uid));
}

async fn report_lost(api: &Api<Pod>, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
        .unwrap_or_else(Utc::now);
    let s = status::terminated(pod, start, Utc::now(), &[], None, &uid);
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": s })),
        )
        .await
    {
        tracing::warn!(pod = %name, error = %e, "reporting a lost pod failed");
    }
}

fn ns_api(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// Watches this node's pods and runs them until the process ends.
pub async fn run(client: kube::Client, cfg: Arc<AgentConfig>) -> Result<(), AgentError> {
    let all: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
    let mut events = watcher(all, wc).boxed();
    let mut pods: HashMap<String, Running> = HashMap::new();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch error; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        match ev {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                dispatch(&client, &cfg, &mut pods, pod);
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(r) = pods.remove(&uid) {
                    let _ = r.stop.send(Some(0));
                }
                let _ = std::fs::remove_dir_all(cfg.pod_dir(&uid));
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
    Err(AgentError::Invalid("pod watch ended".into()))
}

fn dispatch(
    client: &kube::Client,
    cfg: &Arc<AgentConfig>,
    pods: &mut HashMap<String, Running>,
    pod: Pod,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api = ns_api(client, &pod);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
        match pods.get(&uid) {
            Some(r) if !r.done.load(Ordering::SeqCst) => {
                let _ = r.stop.send(Some(grace));
            }
            _ => {
                let cfg = cfg.clone();
                tokio::spawn(async move { finalize_delete(&api, &cfg, &pod).await });
            }
        }
        return;
    }
    if pods.contains_key(&uid) {
        return;
    }
    match phase.as_str() {
        "Succeeded" | "Failed" => {}
        "Running" => {
            tokio::spawn(async move { report_lost(&api, &pod).await });
            pods.insert(uid, finished_marker());
        }
        _ => {
            let (tx, rx) = watch::channel(None);
            let done = Arc::new(AtomicBool::new(false));
            let (client, cfg, done2) = (client.clone(), cfg.clone(), done.clone());
            tokio::spawn(async move {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Err(e) = run::run_pod(client, cfg, pod, rx).await {
                    tracing::warn!(pod = %name, error = %e, "pod run ended with an error");
                }
                done2.store(true, Ordering::SeqCst);
            });
            pods.insert(uid, Running { stop: tx, done });
        }
    }
}

fn finished_marker() -> Running {
    let (tx, _) = watch::channel(None);
    Running {
        stop: tx,
        done: Arc::new(AtomicBool::new(true)),
    }
}
