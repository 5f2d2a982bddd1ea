//! Counting writes to one object: watch it for a while and count the new resourceVersions,
//! recording which fields each write changed, so a test can say "this idle CR was written N
//! times in 60 s, changing status.conditions[…].message each time".

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Most writes [`WriteLog::describe`] lists one by one.
pub const MAX_DESCRIBED: usize = 12;

/// One observed write.
#[derive(Clone, Debug)]
pub struct Write {
    /// Seconds since the count started.
    pub at: f64,
    pub resource_version: String,
    /// JSON paths that changed (metadata.resourceVersion and managedFields left out).
    pub changed: Vec<String>,
}

/// The writes seen in a window.
#[derive(Clone, Debug, Default)]
pub struct WriteLog {
    pub writes: Vec<Write>,
}

impl WriteLog {
    /// One line per write (the first [`MAX_DESCRIBED`], then a count of the rest).
    pub fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .writes
            .iter()
            .take(MAX_DESCRIBED)
            .map(|w| {
                format!(
                    "+{:.1}s rv {}: {}",
                    w.at,
                    w.resource_version,
                    w.changed.join(", ")
                )
            })
            .collect();
        if self.writes.len() > MAX_DESCRIBED {
            lines.push(format!("… and {} more", self.writes.len() - MAX_DESCRIBED));
        }
        lines.join("\n  ")
    }
}

fn strip(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

/// The JSON paths where `a` and `b` differ (down to leaves; arrays by index).
pub fn diff_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", a, b, &mut out);
    out
}

fn diff_into(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_into(&p, u, v, out),
                    (None, Some(v)) => out.push(format!("{p} added ({})", short(v))),
                    (Some(_), None) => out.push(format!("{p} removed")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_into(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {} -> {}", short(a), short(b))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// Watches the object `name` for `window` and records every write.
pub async fn count_writes<K>(api: &Api<K>, name: &str, window: Duration) -> Result<WriteLog>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let current = api
        .get(name)
        .await
        .with_context(|| format!("reading {name} before counting its writes"))?;
    let mut rv = current.meta().resource_version.clone().unwrap_or_default();
    let mut last = strip(serde_json::to_value(&current)?);
    let start = Instant::now();
    let mut log = WriteLog::default();
    while start.elapsed() < window {
        let remaining = window.saturating_sub(start.elapsed());
        let secs = u32::try_from(remaining.as_secs().clamp(1, 290)).unwrap_or(290);
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(secs);
        let stream = api
            .watch(&wp, &rv)
            .await
            .with_context(|| format!("watching {name}"))?;
        let mut stream = stream.boxed();
        let deadline = tokio::time::Instant::now() + remaining;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
            let ev = match next {
                Err(_) => break,
                Ok(r) => r.with_context(|| format!("watching {name}"))?,
            };
            let Some(ev) = ev else { break };
            match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    let new_rv = o.meta().resource_version.clone().unwrap_or_default();
                    if new_rv == rv {
                        continue;
                    }
                    let value = strip(serde_json::to_value(&o)?);
                    log.writes.push(Write {
                        at: start.elapsed().as_secs_f64(),
                        resource_version: new_rv.clone(),
                        changed: diff_paths(&last, &value),
                    });
                    last = value;
                    rv = new_rv;
                }
                WatchEvent::Deleted(_) => bail!("{name} was deleted while its writes were counted"),
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(e) if e.code == 410 => {
                    // Expired resourceVersion: resume from the current object.
                    let o = api.get(name).await?;
                    rv = o.meta().resource_version.clone().unwrap_or_default();
                    break;
                }
                WatchEvent::Error(e) => bail!("watch error on {name}: {e:?}"),
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_paths_name_leaves() {
        let a = json!({"status": {"conditions": [{"type": "A", "message": "x"}], "n": 1}});
        let b = json!({"status": {"conditions": [{"type": "A", "message": "y"}], "m": 2}});
        assert_eq!(
            diff_paths(&a, &b),
            vec![
                "status.conditions[0].message: \"x\" -> \"y\"",
                "status.m added (2)",
                "status.n removed"
            ]
        );
        assert!(diff_paths(&a, &a).is_empty());
    }
}
