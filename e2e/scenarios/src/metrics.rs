//! Measurements the scale scenario prints: the controller's resident memory (from
//! `/proc/<pid>/status`), Prometheus text from the controller's `/metrics` (plain HTTP GET)
//! and from the API server's `/metrics` (through the admin client), and sums over samples.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cluster::Cluster;

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{path} has no VmRSS line"))
}

/// GET an `http://host:port/path` URL (HTTP/1.0, no TLS) and return the body.
pub async fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(hostport)
            .await
            .with_context(|| format!("connecting to {hostport}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .with_context(|| format!("GET {url} timed out"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {url}: no HTTP header"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        bail!("GET {url}: {status}");
    }
    Ok(body.to_string())
}

/// The API server's `/metrics`, read with the admin client.
pub async fn apiserver_metrics(cluster: &Cluster) -> Result<String> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .context("building the /metrics request")?;
    cluster
        .client
        .request_text(req)
        .await
        .context("GET /metrics from the API server")
}

/// One Prometheus sample: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the samples of `name` from Prometheus text (simple label values, no escapes needed).
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let labels = split_labels(labels);
            Some(Sample {
                name: metric.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

fn split_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        out.push((
            k.trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        ));
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out
}

/// Sum of the samples of `name` whose labels satisfy `pred`.
pub fn sum(text: &str, name: &str, pred: impl Fn(&Sample) -> bool) -> f64 {
    samples(text, name)
        .iter()
        .filter(|s| pred(s))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_sums() {
        let text = "# HELP x\n\
apiserver_request_total{code=\"200\",component=\"apiserver\",group=\"scribe.backube\",resource=\"replicationsources\",verb=\"PATCH\"} 12\n\
apiserver_request_total{code=\"201\",group=\"batch\",resource=\"jobs\",verb=\"POST\"} 3\n\
other_total 5\n";
        let s = samples(text, "apiserver_request_total");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("verb"), Some("PATCH"));
        assert_eq!(s[1].label("resource"), Some("jobs"));
        assert_eq!(sum(text, "apiserver_request_total", |_| true), 15.0);
        assert_eq!(
            sum(text, "apiserver_request_total", |s| s.label("group")
                == Some("batch")),
            3.0
        );
        assert_eq!(sum(text, "other_total", |_| true), 5.0);
    }

    #[test]
    fn rss_of_this_process_is_positive() {
        assert!(rss_kib(std::process::id()).expect("rss") > 0);
    }
}
