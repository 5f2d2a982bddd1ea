//! The controller's log: on the local cluster the files `$SCRIBE_E2E_CLUSTER_DIR/logs/controller*.log`
//! (every replica, every restart), on a real cluster the logs of the pods in the controller's
//! namespace. [`assert_no_forbidden`] is the global RBAC check every scenario ends with: the
//! chart's least-privilege RBAC must let the controller do everything it tries.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};

use crate::cluster::Cluster;
use crate::objects::api;

/// Whether a log line reports an HTTP 403 / forbidden answer from the API server.
pub fn is_forbidden_line(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    // A ResourceQuota refusal is a 403 too, but the namespace's limit, not missing RBAC (the
    // controller_behaviour quota scenario provokes it on purpose).
    if l.contains("exceeded quota") {
        return false;
    }
    l.contains("forbidden")
        || [
            "code: 403",
            "\"code\":403",
            "code=403",
            "status: 403",
            "\"status\":403",
            "status=403",
            "status_code=403",
            "http 403",
        ]
        .iter()
        .any(|p| l.contains(p))
}

fn local_log_files(cluster: &Cluster) -> Result<Option<Vec<PathBuf>>> {
    let Some(dir) = &cluster.cluster_dir else {
        return Ok(None);
    };
    let logs = dir.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .with_context(|| format!("listing {}", logs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("controller") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "no controller*.log in {}: cannot check the controller's log",
            logs.display()
        );
    }
    Ok(Some(files))
}

/// `line` without ANSI escape sequences (the controller colours its text logs).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every line of the controller's log, as `source: line`, without colours.
pub async fn controller_lines(cluster: &Cluster) -> Result<Vec<String>> {
    if let Some(files) = local_log_files(cluster)? {
        let mut out = Vec::new();
        for f in files {
            let bytes = tokio::fs::read(&f)
                .await
                .with_context(|| format!("reading {}", f.display()))?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.extend(
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(|l| format!("{name}: {}", strip_ansi(l))),
            );
        }
        return Ok(out);
    }
    let ns = &cluster.controller_namespace;
    let pods = api::<Pod>(&cluster.client, ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the controller's pods in {ns}"))?;
    if pods.items.is_empty() {
        bail!("no pods in {ns} and no SCRIBE_E2E_CLUSTER_DIR: cannot read the controller's log");
    }
    let mut out = Vec::new();
    for p in pods.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let text = api::<Pod>(&cluster.client, ns)
            .logs(&name, &LogParams::default())
            .await
            .with_context(|| format!("reading the log of pod {ns}/{name}"))?;
        out.extend(text.lines().map(|l| format!("{name}: {}", strip_ansi(l))));
    }
    Ok(out)
}

/// The controller's log lines that mention `needle` (e.g. a namespace).
pub async fn controller_lines_about(cluster: &Cluster, needle: &str) -> Result<Vec<String>> {
    Ok(controller_lines(cluster)
        .await?
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect())
}

/// Fails when the controller's log reports any 403 / forbidden answer, quoting the lines.
pub async fn assert_no_forbidden(cluster: &Cluster) -> Result<()> {
    let lines = controller_lines(cluster).await?;
    let bad: Vec<&String> = lines.iter().filter(|l| is_forbidden_line(l)).collect();
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(10)
            .map(|l| l.chars().take(800).collect())
            .collect();
        bail!(
            "the controller's log has {} line(s) reporting HTTP 403 / forbidden (the chart's RBAC \
             does not grant something the controller does); first ones:\n  {}",
            bad.len(),
            shown.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "2026  WARN x"
        );
    }

    #[test]
    fn forbidden_lines_are_recognized() {
        assert!(is_forbidden_line(
            r#"{"level":"WARN","error":"ApiError: jobs.batch is forbidden: User \"system:serviceaccount:scribe-system:scribe\" cannot create resource (ErrorResponse { status: \"Failure\", reason: \"Forbidden\", code: 403 })"}"#
        ));
        assert!(is_forbidden_line(r#"{"status":403}"#));
        assert!(!is_forbidden_line(
            r#"ERROR reconcile failed category="forbidden" error=ApiError: volumesnapshots.snapshot.storage.k8s.io "x" is forbidden: exceeded quota: q, requested: count/volumesnapshots.snapshot.storage.k8s.io=1"#
        ));
        assert!(!is_forbidden_line(
            r#"{"level":"INFO","message":"reconciled","bytes":4031,"time":"2026-01-01T00:00:00.403Z"}"#
        ));
    }
}
