//! What a failing scenario prints: for each of its namespaces, the Scribe CRs' status, the
//! Jobs, Pods (container states, exit codes, termination messages), PVCs and VolumeSnapshots,
//! the most recent Events, and the controller's log lines about the namespace. Best effort:
//! a read that fails is reported inline, never hides the original failure.

use std::fmt::Write as _;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use scribe_api::{ReplicationDestination, ReplicationSource};

use crate::cluster::Cluster;
use crate::logs;
use crate::objects::{VolumeSnapshot, api};
use crate::status::describe_conditions;

/// Most events shown per namespace.
const MAX_EVENTS: usize = 30;
/// Most controller log lines shown per namespace.
const MAX_LOG_LINES: usize = 20;

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Everything worth knowing about `namespaces`, as text.
pub async fn dump(cluster: &Cluster, namespaces: &[String]) -> String {
    let mut out = String::new();
    for ns in namespaces {
        let _ = writeln!(out, "===== namespace {ns} =====");
        out.push_str(&dump_namespace(cluster, ns).await);
    }
    out
}

async fn dump_namespace(cluster: &Cluster, ns: &str) -> String {
    let c = &cluster.client;
    let lp = ListParams::default();
    let mut out = String::new();
    match api::<ReplicationSource>(c, ns).list(&lp).await {
        Ok(list) => {
            for rs in list.items {
                let name = rs.metadata.name.clone().unwrap_or_default();
                let status = rs.status.clone().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "ReplicationSource {name} (generation {:?}): trigger {:?} paused {:?}\n  conditions: {}\n  status: {}",
                    rs.metadata.generation,
                    rs.spec.trigger,
                    rs.spec.paused,
                    describe_conditions(&status.conditions),
                    cut(&serde_json::to_string(&status).unwrap_or_default(), 2500)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing ReplicationSources failed: {e})");
        }
    }
    match api::<ReplicationDestination>(c, ns).list(&lp).await {
        Ok(list) => {
            for rd in list.items {
                let name = rd.metadata.name.clone().unwrap_or_default();
                let status = rd.status.clone().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "ReplicationDestination {name} (generation {:?}): trigger {:?} paused {:?}\n  conditions: {}\n  status: {}",
                    rd.metadata.generation,
                    rd.spec.trigger,
                    rd.spec.paused,
                    describe_conditions(&status.conditions),
                    cut(&serde_json::to_string(&status).unwrap_or_default(), 2500)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing ReplicationDestinations failed: {e})");
        }
    }
    match api::<Job>(c, ns).list(&lp).await {
        Ok(list) => {
            for j in list.items {
                let st = j.status.clone().unwrap_or_default();
                let conds = st
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{}={} {} {}",
                            c.type_,
                            c.status,
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let _ = writeln!(
                    out,
                    "Job {} created {:?} deleting {}: active {:?} succeeded {:?} failed {:?} [{conds}]",
                    j.metadata.name.clone().unwrap_or_default(),
                    j.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string()),
                    j.metadata.deletion_timestamp.is_some(),
                    st.active,
                    st.succeeded,
                    st.failed,
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing Jobs failed: {e})");
        }
    }
    match api::<Pod>(c, ns).list(&lp).await {
        Ok(list) => {
            for p in list.items {
                out.push_str(&describe_pod(&p));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing Pods failed: {e})");
        }
    }
    match api::<PersistentVolumeClaim>(c, ns).list(&lp).await {
        Ok(list) => {
            for p in list.items {
                let spec = p.spec.clone().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "PVC {}: phase {:?} volume {:?} class {:?} modes {:?} dataSource {:?} deleting {}",
                    p.metadata.name.clone().unwrap_or_default(),
                    p.status.as_ref().and_then(|s| s.phase.clone()),
                    spec.volume_name,
                    spec.storage_class_name,
                    spec.access_modes,
                    spec.data_source.map(|d| format!("{}/{}", d.kind, d.name)),
                    p.metadata.deletion_timestamp.is_some(),
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing PVCs failed: {e})");
        }
    }
    match api::<VolumeSnapshot>(c, ns).list(&lp).await {
        Ok(list) => {
            for s in list.items {
                let st = s.status.clone().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "VolumeSnapshot {}: of {:?} class {:?} ready {:?} error {:?} deleting {}",
                    s.metadata.name.clone().unwrap_or_default(),
                    s.spec.source.persistent_volume_claim_name,
                    s.spec.volume_snapshot_class_name,
                    st.ready_to_use,
                    st.error.and_then(|e| e.message),
                    s.metadata.deletion_timestamp.is_some(),
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing VolumeSnapshots failed: {e})");
        }
    }
    match recent_events(cluster, ns).await {
        Ok(events) => {
            let _ = writeln!(out, "Events (newest last):");
            for e in events {
                let _ = writeln!(out, "  {e}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(listing Events failed: {e})");
        }
    }
    match logs::controller_lines_about(cluster, ns).await {
        Ok(lines) => {
            let skip = lines.len().saturating_sub(MAX_LOG_LINES);
            let _ = writeln!(
                out,
                "Controller log lines about {ns} (last {MAX_LOG_LINES}):"
            );
            for l in &lines[skip..] {
                let _ = writeln!(out, "  {}", cut(l, 600));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(reading the controller log failed: {e:#})");
        }
    }
    out
}

/// One line per container of a pod: state, exit code, reason, termination message.
pub fn describe_pod(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let mut out = format!(
        "Pod {} (uid {}): phase {:?} reason {:?} message {:?} deleting {}\n",
        p.metadata.name.clone().unwrap_or_default(),
        p.metadata.uid.clone().unwrap_or_default(),
        st.phase,
        st.reason,
        st.message,
        p.metadata.deletion_timestamp.is_some()
    );
    for cs in st.container_statuses.iter().flatten() {
        let state = cs.state.clone().unwrap_or_default();
        let text = if let Some(t) = state.terminated {
            format!(
                "terminated exit {} reason {:?} message {}",
                t.exit_code,
                t.reason,
                cut(&t.message.unwrap_or_default(), 600)
            )
        } else if let Some(w) = state.waiting {
            format!("waiting {:?} {:?}", w.reason, w.message)
        } else if state.running.is_some() {
            "running".to_string()
        } else {
            "unknown".to_string()
        };
        let _ = writeln!(out, "  container {}: {text}", cs.name);
    }
    out
}

/// The namespace's Events, oldest first, as `type reason kind/name (count): note`.
pub async fn recent_events(cluster: &Cluster, ns: &str) -> anyhow::Result<Vec<String>> {
    let mut events = api::<Event>(&cluster.client, ns)
        .list(&ListParams::default())
        .await?
        .items;
    events.sort_by_key(event_time);
    let skip = events.len().saturating_sub(MAX_EVENTS);
    Ok(events[skip..]
        .iter()
        .map(|e| {
            let regarding = e
                .regarding
                .as_ref()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r.kind.clone().unwrap_or_default(),
                        r.name.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let count = e.series.as_ref().map_or(1, |s| s.count);
            format!(
                "{} {} {} {regarding} (x{count}): {}",
                event_time(e).map(|t| t.to_string()).unwrap_or_default(),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                cut(&e.note.clone().unwrap_or_default(), 500)
            )
        })
        .collect())
}

/// The Events about the object `kind`/`name` in `ns`, oldest first.
pub async fn events_about(
    cluster: &Cluster,
    ns: &str,
    kind: &str,
    name: &str,
) -> anyhow::Result<Vec<Event>> {
    let mut events: Vec<Event> = api::<Event>(&cluster.client, ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect();
    events.sort_by_key(event_time);
    Ok(events)
}

/// `type reason: note` of an Event.
pub fn event_line(e: &Event) -> String {
    format!(
        "{} {}: {}",
        e.type_.clone().unwrap_or_default(),
        e.reason.clone().unwrap_or_default(),
        e.note.clone().unwrap_or_default()
    )
}

/// When an Event happened (eventTime, else its legacy timestamps, else creation).
pub fn event_time(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}
