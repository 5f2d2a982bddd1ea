//! Pod status as a kubelet reports it, built purely from what the agent knows: Pending with a
//! waiting reason, Running, and the terminal phases with each container's exit code, reason
//! and termination message.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// How one container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub name: String,
    pub exit_code: i32,
    /// `Completed`, `Error`, `DeadlineExceeded`, `ContainerStatusUnknown`…
    pub reason: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, now: DateTime<Utc>) -> Value {
    let mut c = json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": ts(now)});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// Fields every status carries. `qosClass` is left out: the API server sets it at creation
/// from the pod's resources and refuses any change.
fn base(phase: &str, start: DateTime<Utc>) -> Value {
    json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": ts(start),
    })
}

/// Pending: every container waiting with `reason` (ContainerCreating, ErrImagePull, …).
pub fn pending(pod: &Pod, start: DateTime<Utc>, reason: &str, message: &str) -> Value {
    let mut s = base("Pending", start);
    s["conditions"] = json!([
        condition("PodReadyToStartContainers", false, None, start),
        condition("Initialized", true, None, start),
        condition("Ready", false, Some("ContainersNotReady"), start),
        condition("ContainersReady", false, Some("ContainersNotReady"), start),
        condition("PodScheduled", true, None, start),
    ]);
    s["containerStatuses"] = Value::Array(
        container_names(pod)
            .into_iter()
            .map(|(name, image)| {
                let mut waiting = json!({"reason": reason});
                if !message.is_empty() {
                    waiting["message"] = json!(message);
                }
                json!({"name": name, "image": image, "imageID": "", "ready": false,
                       "restartCount": 0, "started": false, "state": {"waiting": waiting}})
            })
            .collect(),
    );
    s
}

/// Running: every container started at `started`.
pub fn running(pod: &Pod, start: DateTime<Utc>, started: DateTime<Utc>, uid: &str) -> Value {
    let mut s = base("Running", start);
    s["conditions"] = json!([
        condition("PodReadyToStartContainers", true, None, started),
        condition("Initialized", true, None, start),
        condition("Ready", true, None, started),
        condition("ContainersReady", true, None, started),
        condition("PodScheduled", true, None, start),
    ]);
    s["containerStatuses"] = Value::Array(
        container_names(pod)
            .into_iter()
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": image,
                       "containerID": format!("scribe-node-agent://{uid}-{name}"),
                       "ready": true, "restartCount": 0, "started": true,
                       "state": {"running": {"startedAt": ts(started)}}})
            })
            .collect(),
    );
    s
}

/// Terminal: Succeeded when every container exited 0 (restartPolicy Never), else Failed.
/// `pod_reason` (e.g. DeadlineExceeded) goes on the pod as a kubelet does.
pub fn terminated(
    pod: &Pod,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    exited: &[Exited],
    pod_reason: Option<(&str, &str)>,
    uid: &str,
) -> Value {
    let ok = !exited.is_empty() && exited.iter().all(|e| e.exit_code == 0) && pod_reason.is_none();
    let mut s = base(if ok { "Succeeded" } else { "Failed" }, start);
    s["conditions"] = json!([
        condition("PodReadyToStartContainers", false, None, now),
        condition("Initialized", true, None, start),
        condition("Ready", false, Some("PodCompleted"), now),
        condition("ContainersReady", false, Some("PodCompleted"), now),
        condition("PodScheduled", true, None, start),
    ]);
    if let Some((reason, message)) = pod_reason {
        s["reason"] = json!(reason);
        s["message"] = json!(message);
    }
    s["containerStatuses"] = Value::Array(
        container_names(pod)
            .into_iter()
            .map(|(name, image)| {
                let e = exited.iter().find(|e| e.name == name);
                let term = match e {
                    Some(e) => {
                        let mut t = json!({"exitCode": e.exit_code, "reason": e.reason,
                            "startedAt": ts(e.started_at), "finishedAt": ts(e.finished_at),
                            "containerID": format!("scribe-node-agent://{uid}-{name}")});
                        if !e.message.is_empty() {
                            t["message"] = json!(e.message);
                        }
                        t
                    }
                    None => json!({"exitCode": 137, "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "startedAt": null, "finishedAt": ts(now)}),
                };
                json!({"name": name, "image": image, "imageID": image, "ready": false,
                       "restartCount": 0, "started": false, "state": {"terminated": term}})
            })
            .collect(),
    );
    s
}

/// The termination message a kubelet reports: the file's content (at most 4096 bytes), or with
/// `FallbackToLogsOnError` and a failure, the log's last 80 lines (at most 2048 bytes).
pub fn termination_message(
    file: &[u8],
    log: &[u8],
    fallback_to_logs: bool,
    failed: bool,
) -> String {
    let from_file = String::from_utf8_lossy(&file[..file.len().min(4096)]).into_owned();
    if !(from_file.is_empty() && fallback_to_logs && failed) {
        return from_file;
    }
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let start = tail.len().saturating_sub(2048);
    let mut start = start;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "mover", "image": "scribe-mover:1"}]}})).unwrap()
    }

    #[test]
    fn terminal_phase_follows_exit_codes() {
        let t = Utc::now();
        let e = |code| Exited {
            name: "mover".into(),
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: "SCRIBE_SUMMARY {}".into(),
            started_at: t,
            finished_at: t,
        };
        let s = terminated(&pod(), t, t, &[e(0)], None, "u");
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["message"],
            "SCRIBE_SUMMARY {}"
        );
        let s = terminated(&pod(), t, t, &[e(78)], None, "u");
        assert_eq!(s["phase"], "Failed");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        let s = terminated(
            &pod(),
            t,
            t,
            &[e(0)],
            Some(("DeadlineExceeded", "too long")),
            "u",
        );
        assert_eq!(
            (s["phase"].as_str(), s["reason"].as_str()),
            (Some("Failed"), Some("DeadlineExceeded"))
        );
        let s = terminated(&pod(), t, t, &[], None, "u");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "ContainerStatusUnknown"
        );
    }

    #[test]
    fn statuses_never_touch_the_immutable_qos_class() {
        let t = Utc::now();
        for s in [
            pending(&pod(), t, "ContainerCreating", ""),
            running(&pod(), t, t, "u"),
            terminated(&pod(), t, t, &[], None, "u"),
        ] {
            assert!(s.get("qosClass").is_none(), "{s}");
        }
    }

    #[test]
    fn pending_carries_the_waiting_reason() {
        let s = pending(
            &pod(),
            Utc::now(),
            "ErrImagePull",
            "image busybox is not served",
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["message"],
            "image busybox is not served"
        );
    }

    #[test]
    fn termination_message_rules() {
        assert_eq!(termination_message(b"msg", b"log", true, true), "msg");
        assert_eq!(termination_message(b"", b"a\nb", true, true), "a\nb");
        assert_eq!(termination_message(b"", b"a\nb", true, false), "");
        assert_eq!(termination_message(b"", b"a\nb", false, true), "");
        let long: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let m = termination_message(b"", long.as_bytes(), true, true);
        assert!(m.starts_with("line 120") && m.ends_with("line 199") && m.len() <= 2048);
        let big = vec![b'x'; 5000];
        assert_eq!(termination_message(&big, b"", true, true).len(), 4096);
    }
}
