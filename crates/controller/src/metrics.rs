//! The controller's Prometheus metrics: a small registry keyed by (namespace, name, role),
//! fed by the plan's [`MetricIntent`]s and the reconcile loop, rendered in the Prometheus text
//! exposition format for `/metrics`.
//!
//! Labels are only `name`, `namespace` and `role` (`source` | `destination`): never error text,
//! so the number of series is bounded by the number of custom resources.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::plan::MetricIntent;

/// Upper bounds (seconds) of the sync duration histogram: from seconds to hours, since a first
/// sync of a large volume can take that long.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// Which side of the replication a custom resource is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Source,
    Destination,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
        }
    }
}

/// Identity of one custom resource's series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    pub role: Role,
}

impl MetricKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, role: Role) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            role,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`DURATION_BUCKETS`] (the +Inf bucket is `count`).
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| value <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Clone, Debug, Default)]
struct Series {
    sync_duration: Histogram,
    success: u64,
    failure: u64,
    missed_intervals: u64,
    out_of_sync: Option<bool>,
    last_sync_timestamp: Option<f64>,
    bytes_transferred: u64,
    files_transferred: u64,
    reconciles: u64,
    reconcile_errors: u64,
}

/// The registry. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<MetricKey, Series>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, key: &MetricKey, f: impl FnOnce(&mut Series) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain counters:
        // the data is still usable, so keep serving metrics.
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(key.clone()).or_default())
    }

    /// Records one intent from a plan.
    pub fn record(&self, key: &MetricKey, intent: &MetricIntent) {
        self.with(key, |s| match intent {
            MetricIntent::SyncSucceeded {
                duration,
                bytes_transferred,
                files_transferred,
                finished_at,
            } => {
                s.success += 1;
                s.sync_duration.observe(duration.as_secs_f64());
                s.bytes_transferred += bytes_transferred;
                s.files_transferred += files_transferred;
                s.last_sync_timestamp = Some(finished_at.as_millisecond() as f64 / 1000.0);
            }
            MetricIntent::SyncFailed => s.failure += 1,
            MetricIntent::MissedInterval => s.missed_intervals += 1,
            MetricIntent::OutOfSync(v) => s.out_of_sync = Some(*v),
        });
    }

    /// Counts one reconcile pass, successful or not.
    pub fn reconciled(&self, key: &MetricKey, ok: bool) {
        self.with(key, |s| {
            s.reconciles += 1;
            if !ok {
                s.reconcile_errors += 1;
            }
        });
    }

    /// Drops every series of a custom resource (it was deleted).
    pub fn forget(&self, key: &MetricKey) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Keeps only the series of resources for which `keep` holds (the others were deleted:
    /// without a finalizer the reconciler never sees a deletion).
    pub fn retain(&self, keep: impl Fn(&MetricKey) -> bool) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    /// Renders all series in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let map = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        let counter = |out: &mut String,
                       name: &str,
                       help: &str,
                       get: &dyn Fn(&Series) -> Option<f64>,
                       kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (k, s) in &map {
                if let Some(v) = get(s) {
                    let _ = writeln!(out, "{name}{{{}}} {}", labels(k), fmt_f64(v));
                }
            }
        };
        counter(
            &mut out,
            "scribe_sync_success_total",
            "Synchronizations that completed successfully.",
            &|s| Some(s.success as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_sync_failure_total",
            "Synchronizations whose mover failed.",
            &|s| Some(s.failure as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_missed_intervals_total",
            "Scheduled intervals missed because a synchronization was still running.",
            &|s| Some(s.missed_intervals as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_volume_out_of_sync",
            "1 when the volume is past its due time without a completed synchronization.",
            &|s| s.out_of_sync.map(|b| if b { 1.0 } else { 0.0 }),
            "gauge",
        );
        counter(
            &mut out,
            "scribe_last_sync_timestamp_seconds",
            "Unix time at which the last successful synchronization finished.",
            &|s| s.last_sync_timestamp,
            "gauge",
        );
        counter(
            &mut out,
            "scribe_bytes_transferred_total",
            "Bytes the mover transferred.",
            &|s| Some(s.bytes_transferred as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_files_transferred_total",
            "Files the mover transferred.",
            &|s| Some(s.files_transferred as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_reconcile_total",
            "Reconcile passes.",
            &|s| Some(s.reconciles as f64),
            "counter",
        );
        counter(
            &mut out,
            "scribe_reconcile_errors_total",
            "Reconcile passes that ended in an error.",
            &|s| Some(s.reconcile_errors as f64),
            "counter",
        );

        let name = "scribe_sync_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Duration of successful synchronizations."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (k, s) in &map {
            let h = &s.sync_duration;
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{},le=\"{}\"}} {cumulative}",
                    labels(k),
                    fmt_f64(*bound)
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{},le=\"+Inf\"}} {}",
                labels(k),
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{{}}} {}", labels(k), fmt_f64(h.sum));
            let _ = writeln!(out, "{name}_count{{{}}} {}", labels(k), h.count);
        }
        out
    }
}

fn labels(k: &MetricKey) -> String {
    format!(
        "name=\"{}\",namespace=\"{}\",role=\"{}\"",
        escape(&k.name),
        escape(&k.namespace),
        k.role.as_str()
    )
}

/// Escapes a label value as the text format requires (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn key() -> MetricKey {
        MetricKey::new("apps", "db", Role::Source)
    }

    #[test]
    fn successful_sync_moves_counters_histogram_and_timestamp() {
        let m = Metrics::new();
        m.record(
            &key(),
            &MetricIntent::SyncSucceeded {
                duration: Duration::from_secs(42),
                bytes_transferred: 1000,
                files_transferred: 3,
                finished_at: Timestamp::from_second(1_700_000_000).unwrap(),
            },
        );
        let text = m.render();
        let l = r#"{name="db",namespace="apps",role="source"}"#;
        assert!(
            text.contains(&format!("scribe_sync_success_total{l} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!("scribe_bytes_transferred_total{l} 1000\n")));
        assert!(text.contains(&format!("scribe_files_transferred_total{l} 3\n")));
        assert!(text.contains(&format!(
            "scribe_last_sync_timestamp_seconds{l} 1700000000\n"
        )));
        assert!(text.contains(r#"scribe_sync_duration_seconds_bucket{name="db",namespace="apps",role="source",le="30"} 0"#));
        assert!(text.contains(r#"scribe_sync_duration_seconds_bucket{name="db",namespace="apps",role="source",le="60"} 1"#));
        assert!(text.contains(r#"scribe_sync_duration_seconds_bucket{name="db",namespace="apps",role="source",le="+Inf"} 1"#));
        assert!(text.contains(&format!("scribe_sync_duration_seconds_sum{l} 42\n")));
        assert!(text.contains("# TYPE scribe_sync_duration_seconds histogram"));
    }

    #[test]
    fn failures_missed_intervals_out_of_sync_and_reconciles_are_counted_per_role() {
        let m = Metrics::new();
        let dst = MetricKey::new("apps", "db", Role::Destination);
        m.record(&key(), &MetricIntent::SyncFailed);
        m.record(&key(), &MetricIntent::SyncFailed);
        m.record(&key(), &MetricIntent::MissedInterval);
        m.record(&dst, &MetricIntent::OutOfSync(true));
        m.reconciled(&dst, true);
        m.reconciled(&dst, false);
        let text = m.render();
        assert!(
            text.contains(
                r#"scribe_sync_failure_total{name="db",namespace="apps",role="source"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"scribe_missed_intervals_total{name="db",namespace="apps",role="source"} 1"#
        ));
        assert!(text.contains(
            r#"scribe_volume_out_of_sync{name="db",namespace="apps",role="destination"} 1"#
        ));
        // No out-of-sync verdict yet for the source: no sample rather than a made-up 0.
        assert!(
            !text
                .contains(r#"scribe_volume_out_of_sync{name="db",namespace="apps",role="source"}"#)
        );
        assert!(text.contains(
            r#"scribe_reconcile_total{name="db",namespace="apps",role="destination"} 2"#
        ));
        assert!(text.contains(
            r#"scribe_reconcile_errors_total{name="db",namespace="apps",role="destination"} 1"#
        ));
    }

    #[test]
    fn only_name_namespace_role_labels_appear_and_values_are_escaped() {
        let m = Metrics::new();
        m.record(
            &MetricKey::new("ns", "we\"ird\\name\n", Role::Source),
            &MetricIntent::SyncFailed,
        );
        let text = m.render();
        assert!(text.contains(r#"scribe_sync_failure_total{name="we\"ird\\name\n",namespace="ns",role="source"} 1"#), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let inside = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
            let keys: Vec<&str> = inside
                .split("\",")
                .map(|kv| kv.split('=').next().unwrap())
                .collect();
            for k in keys {
                assert!(
                    ["name", "namespace", "role", "le"].contains(&k),
                    "unexpected label {k} in {line}"
                );
            }
        }
    }

    #[test]
    fn retain_drops_series_of_resources_that_are_gone() {
        let m = Metrics::new();
        m.record(&key(), &MetricIntent::SyncFailed);
        m.record(
            &MetricKey::new("apps", "gone", Role::Source),
            &MetricIntent::SyncFailed,
        );
        m.retain(|k| k.name == "db");
        let text = m.render();
        assert!(text.contains("name=\"db\""));
        assert!(!text.contains("name=\"gone\""));
    }

    #[test]
    fn forgetting_a_resource_removes_its_series() {
        let m = Metrics::new();
        m.record(&key(), &MetricIntent::SyncFailed);
        m.forget(&key());
        assert!(!m.render().contains("name=\"db\""));
    }
}
