//! One pod's life on this node: prepare (image → executable, security context, volumes, env;
//! Pending with the kubelet's waiting reason while something is missing) → start every
//! container under bubblewrap → wait for exit, deletion or `activeDeadlineSeconds` → report the
//! terminal status with exit codes and termination messages → delete for good once the API
//! server has marked the pod for deletion.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::launch::{self, Identity};
use super::resolve::{self, HostVolume, Unready};
use super::status::{self, Exited};
use crate::config::AgentConfig;
use crate::error::AgentError;

/// A container ready to start.
struct Prepared {
    container: Container,
    argv: Vec<std::ffi::OsString>,
    log: PathBuf,
    termination_log: PathBuf,
}

struct Reporter {
    api: Api<Pod>,
    name: String,
    last: Option<serde_json::Value>,
}

impl Reporter {
    async fn set(&mut self, status: serde_json::Value) {
        if self.last.as_ref() == Some(&status) {
            return;
        }
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => self.last = Some(status),
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "status update failed"),
        }
    }
}

async fn prepare(
    client: &kube::Client,
    cfg: &AgentConfig,
    pod: &Pod,
    pod_dir: &std::path::Path,
) -> Result<Vec<Prepared>, Unready> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(Unready {
            reason: "CreateContainerConfigError",
            message: "init containers are not supported by this node".into(),
            retry: false,
        });
    }
    let mut ids: Vec<(Container, PathBuf, Identity)> = Vec::new();
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let exe = cfg.executable_for(&image).ok_or_else(|| Unready {
            reason: "ErrImagePull",
            message: format!(
                "image {image:?} is not available on node {}: it runs only images mapped to local executables ({})",
                cfg.node_name,
                cfg.images.iter().map(|(s, _)| format!("*{s}*")).collect::<Vec<_>>().join(", ")
            ),
            retry: false,
        })?;
        let id = launch::identity(pod, c).map_err(|m| Unready {
            reason: "CreateContainerConfigError",
            message: m,
            retry: false,
        })?;
        ids.push((c.clone(), exe.to_path_buf(), id));
    }
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group)
        .map(|g| g as u32);
    let on_root_mismatch = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group_change_policy.as_deref())
        == Some("OnRootMismatch");
    let mut volumes: BTreeMap<String, HostVolume> = BTreeMap::new();
    for v in spec.volumes.clone().unwrap_or_default() {
        let hv = resolve::volume(client, cfg, pod, pod_dir, &v).await?;
        if v.persistent_volume_claim.is_some() && !hv.read_only {
            // Writable mounts of the volume by some container get the fsGroup treatment.
            let written = spec.containers.iter().any(|c| {
                c.volume_mounts
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .any(|m| m.name == v.name && m.read_only != Some(true))
            });
            if let (Some(g), true) = (fs_group, written) {
                resolve::apply_fs_group(&hv.path, g, on_root_mismatch)?;
            }
        }
        volumes.insert(v.name.clone(), hv);
    }
    let hostname = pod.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (c, exe, id) in ids {
        let mut env: Vec<(String, String)> = launch::IMAGE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("HOSTNAME".into(), hostname.clone()));
        for (k, v) in super::env::env(client, pod, &c).await? {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        let binds = launch::binds(&c, &volumes).map_err(|m| Unready {
            reason: "CreateContainerConfigError",
            message: m,
            retry: false,
        })?;
        let name = crate::config::safe_component(&c.name);
        let termination_log = pod_dir.join(format!("{name}.termination-log"));
        let log = pod_dir.join(format!("{name}.log"));
        let io = |e: std::io::Error| Unready::wait_io(&termination_log, e);
        std::fs::write(&termination_log, b"").map_err(io)?;
        std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
            .map_err(io)?;
        let argv = launch::argv(&launch::Launch {
            executable: &exe,
            container: &c,
            hostname: &hostname,
            env: &env,
            binds: &binds,
            identity: &id,
            termination_log: &termination_log,
        });
        out.push(Prepared {
            container: c,
            argv,
            log,
            termination_log,
        });
    }
    Ok(out)
}

impl Unready {
    fn wait_io(p: &std::path::Path, e: std::io::Error) -> Self {
        Self {
            reason: "ContainerCreating",
            message: format!("{}: {e}", p.display()),
            retry: true,
        }
    }
}

/// Sends `sig` to the container's process group (bwrap and everything under it).
fn signal(pgid: Option<u32>, sig: Signal) {
    if let Some(p) = pgid {
        let _ = killpg(Pid::from_raw(p as i32), sig);
    }
}

/// Runs one pod to its end. `stop` carries the grace period once the pod is being deleted.
pub async fn run_pod(
    client: kube::Client,
    cfg: Arc<AgentConfig>,
    pod: Pod,
    mut stop: watch::Receiver<Option<i64>>,
) -> Result<(), AgentError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_dir = cfg.pod_dir(&uid);
    std::fs::create_dir_all(&pod_dir).map_err(|e| AgentError::Io {
        action: "creating pod directory",
        path: pod_dir.clone(),
        source: e,
    })?;
    let start = Utc::now();
    let mut rep = Reporter {
        api: api.clone(),
        name: name.clone(),
        last: None,
    };
    rep.set(status::pending(&pod, start, "ContainerCreating", ""))
        .await;

    // Prepare, retrying while something the pod needs is missing.
    let prepared = loop {
        match prepare(&client, &cfg, &pod, &pod_dir).await {
            Ok(p) => break p,
            Err(u) => {
                tracing::info!(pod = %format!("{ns}/{name}"), reason = u.reason, message = %u.message, "pod not ready to start");
                rep.set(status::pending(&pod, start, u.reason, &u.message))
                    .await;
                if stop.borrow().is_some() {
                    super::finalize_delete(&api, &cfg, &pod).await;
                    return Ok(());
                }
                let wait = if u.retry { 2 } else { 30 };
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                }
            }
        }
    };

    // Start every container in its own process group.
    let started = Utc::now();
    let mut children = Vec::new();
    for p in &prepared {
        let log = std::fs::File::create(&p.log).map_err(|e| AgentError::Io {
            action: "creating log",
            path: p.log.clone(),
            source: e,
        })?;
        let log2 = log.try_clone().map_err(|e| AgentError::Io {
            action: "cloning log handle",
            path: p.log.clone(),
            source: e,
        })?;
        let mut cmd = tokio::process::Command::new(&p.argv[0]);
        cmd.args(&p.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(true);
        match cmd.spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                for c in &mut children {
                    let _ = c.start_kill();
                }
                let exited = vec![Exited {
                    name: p.container.name.clone(),
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: format!("starting bwrap: {e}"),
                    started_at: started,
                    finished_at: Utc::now(),
                }];
                rep.set(status::terminated(
                    &pod,
                    start,
                    Utc::now(),
                    &exited,
                    None,
                    &uid,
                ))
                .await;
                return Ok(());
            }
        }
    }
    tracing::info!(pod = %format!("{ns}/{name}"), "pod started");
    rep.set(status::running(&pod, start, started, &uid)).await;

    let deadline = pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map(|s| Duration::from_secs(s.max(0) as u64));
    let mut pod_reason: Option<(&str, String)> = None;
    let mut exited: Vec<Option<(i32, DateTime<Utc>)>> = vec![None; children.len()];
    let pgids: Vec<Option<u32>> = children.iter().map(|c| c.id()).collect();
    let mut kill_at: Option<tokio::time::Instant> = None;
    let deadline_at = deadline.map(|d| tokio::time::Instant::now() + d);
    let mut deleting = false;
    while exited.iter().any(Option::is_none) {
        let waits = futures::future::select_all(
            children
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| exited[*i].is_none())
                .map(|(i, c)| Box::pin(async move { (i, c.wait().await) })),
        );
        tokio::select! {
            ((i, res), _, _) = waits => {
                let code = match res {
                    Ok(st) => st.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(9)),
                    Err(_) => 137,
                };
                exited[i] = Some((code, Utc::now()));
            }
            _ = stop.changed(), if !deleting => {
                if let Some(grace) = *stop.borrow() {
                    deleting = true;
                    for g in &pgids { signal(*g, Signal::SIGTERM); }
                    kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(grace.max(0) as u64));
                }
            }
            _ = async { tokio::time::sleep_until(deadline_at.unwrap()).await }, if deadline_at.is_some() && pod_reason.is_none() => {
                pod_reason = Some(("DeadlineExceeded", format!("Pod was active on the node longer than the specified deadline ({}s)", deadline.unwrap_or_default().as_secs())));
                for g in &pgids { signal(*g, Signal::SIGTERM); }
                kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(30));
            }
            _ = async { tokio::time::sleep_until(kill_at.unwrap()).await }, if kill_at.is_some() => {
                for g in &pgids { signal(*g, Signal::SIGKILL); }
                kill_at = None;
            }
        }
    }
    let now = Utc::now();
    let results: Vec<Exited> = prepared
        .iter()
        .zip(exited)
        .map(|(p, e)| {
            let (code, finished) = e.unwrap_or((137, now));
            let file = std::fs::read(&p.termination_log).unwrap_or_default();
            let log = std::fs::read(&p.log).unwrap_or_default();
            let fallback =
                p.container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
            Exited {
                name: p.container.name.clone(),
                exit_code: code,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message: status::termination_message(&file, &log, fallback, code != 0),
                started_at: started,
                finished_at: finished,
            }
        })
        .collect();
    tracing::info!(pod = %format!("{ns}/{name}"), codes = ?results.iter().map(|r| r.exit_code).collect::<Vec<_>>(), "pod finished");
    let reason = pod_reason.as_ref().map(|(r, m)| (*r, m.as_str()));
    rep.set(status::terminated(&pod, start, now, &results, reason, &uid))
        .await;
    if deleting || stop.borrow().is_some() {
        super::finalize_delete(&api, &cfg, &pod).await;
    }
    Ok(())
}
