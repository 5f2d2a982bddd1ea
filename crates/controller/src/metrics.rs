//! The controller's Prometheus metrics, kept with the `prometheus-client` crate: one
//! [`Family`] per metric keyed by the custom resource, fed by the plan's [`MetricIntent`]s and
//! the reconcile loop, encoded in the OpenMetrics text format for `/metrics`.
//!
//! The names and labels of `scribe_sync_duration_seconds`, `scribe_missed_intervals_total` and
//! `scribe_volume_out_of_sync` are Scribe's (and VolSync's, with the `volsync_` prefix) contract
//! that alert rules are written against: labels `obj_name`, `obj_namespace`, `role`
//! (`source` | `destination`) and `method` (`rclone`), and the out-of-sync gauge is 1 until the
//! first synchronization completes. Every other metric carries the same labels: never error
//! text, so the number of series is bounded by the number of custom resources.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::plan::MetricIntent;

/// Upper bounds (seconds) of the sync duration histogram: from seconds to hours, since a first
/// sync of a large volume can take that long.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// The `method` label: the only replication method this controller implements.
pub const METHOD: &str = "rclone";

/// The Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

    fn labels(&self) -> Labels {
        Labels {
            obj_name: self.name.clone(),
            obj_namespace: self.namespace.clone(),
            role: self.role.as_str(),
            method: METHOD,
        }
    }
}

/// The label set of every series, in Scribe's/VolSync's names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Labels {
    obj_name: String,
    obj_namespace: String,
    role: &'static str,
    method: &'static str,
}

type Counters = Family<Labels, Counter>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The registry. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// Resources with series; guards every update, so [`Metrics::forget`] cannot interleave
    /// with a half-made first touch.
    known: Mutex<BTreeSet<MetricKey>>,
    sync_duration: Family<Labels, Histogram, fn() -> Histogram>,
    sync_success: Counters,
    sync_failure: Counters,
    missed_intervals: Counters,
    out_of_sync: Family<Labels, Gauge>,
    last_sync_timestamp: Family<Labels, Gauge<f64, AtomicU64>>,
    bytes_transferred: Counters,
    files_transferred: Counters,
    reconciles: Counters,
    reconcile_errors: Counters,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The metrics: name as registered (the encoder appends `_total` to counters' samples) and
/// help text (the encoder appends a period).
pub const METRICS: [(&str, &str); 10] = [
    (
        "scribe_sync_duration_seconds",
        "Duration of successful synchronizations",
    ),
    (
        "scribe_sync_success",
        "Synchronizations that completed successfully",
    ),
    (
        "scribe_sync_failure",
        "Synchronizations whose mover failed.",
    ),
    (
        "scribe_missed_intervals",
        "Scheduled intervals missed because a synchronization was still running",
    ),
    (
        "scribe_volume_out_of_sync",
        "1 when the volume has not been synchronized yet or is past its due time without a completed synchronization, else 0",
    ),
    (
        "scribe_last_sync_timestamp_seconds",
        "Unix time at which the last successful synchronization finished",
    ),
    ("scribe_bytes_transferred", "Bytes the mover transferred."),
    ("scribe_files_transferred", "Files the mover transferred."),
    ("scribe_reconcile", "Reconcile passes."),
    (
        "scribe_reconcile_errors",
        "Reconcile passes that ended in an error",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            known: Mutex::default(),
            sync_duration: Family::new_with_constructor(duration_histogram),
            sync_success: Counters::default(),
            sync_failure: Counters::default(),
            missed_intervals: Counters::default(),
            out_of_sync: Family::default(),
            last_sync_timestamp: Family::default(),
            bytes_transferred: Counters::default(),
            files_transferred: Counters::default(),
            reconciles: Counters::default(),
            reconcile_errors: Counters::default(),
        };
        let mut registry = Registry::default();
        let [
            duration,
            success,
            failure,
            missed,
            out_of_sync,
            last_sync,
            bytes,
            files,
            reconciles,
            errors,
        ] = METRICS;
        registry.register(duration.0, duration.1, m.sync_duration.clone());
        registry.register(success.0, success.1, m.sync_success.clone());
        registry.register(failure.0, failure.1, m.sync_failure.clone());
        registry.register(missed.0, missed.1, m.missed_intervals.clone());
        registry.register(out_of_sync.0, out_of_sync.1, m.out_of_sync.clone());
        registry.register(last_sync.0, last_sync.1, m.last_sync_timestamp.clone());
        registry.register(bytes.0, bytes.1, m.bytes_transferred.clone());
        registry.register(files.0, files.1, m.files_transferred.clone());
        registry.register(reconciles.0, reconciles.1, m.reconciles.clone());
        registry.register(errors.0, errors.1, m.reconcile_errors.clone());
        Self { registry, ..m }
    }

    /// Runs `f` on the resource's labels, first creating all its series if it has none yet
    /// (counters at 0, the out-of-sync gauge at 1: not synchronized yet).
    fn with<R>(&self, key: &MetricKey, f: impl FnOnce(&Labels) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain counters:
        // the data is still usable, so keep serving metrics.
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let l = key.labels();
        if known.insert(key.clone()) {
            let _ = self.sync_duration.get_or_create(&l);
            let _ = self.sync_success.get_or_create(&l);
            let _ = self.sync_failure.get_or_create(&l);
            let _ = self.missed_intervals.get_or_create(&l);
            self.out_of_sync.get_or_create(&l).set(1);
            let _ = self.bytes_transferred.get_or_create(&l);
            let _ = self.files_transferred.get_or_create(&l);
            let _ = self.reconciles.get_or_create(&l);
            let _ = self.reconcile_errors.get_or_create(&l);
        }
        f(&l)
    }

    /// Records one intent from a plan.
    pub fn record(&self, key: &MetricKey, intent: &MetricIntent) {
        self.with(key, |l| match intent {
            MetricIntent::SyncSucceeded {
                duration,
                bytes_transferred,
                files_transferred,
                finished_at,
            } => {
                self.sync_success.get_or_create(l).inc();
                self.sync_duration
                    .get_or_create(l)
                    .observe(duration.as_secs_f64());
                self.bytes_transferred
                    .get_or_create(l)
                    .inc_by(*bytes_transferred);
                self.files_transferred
                    .get_or_create(l)
                    .inc_by(*files_transferred);
                self.last_sync_timestamp
                    .get_or_create(l)
                    .set(finished_at.as_millisecond() as f64 / 1000.0);
                // In sync until the plan says otherwise (its verdict comes after this intent).
                self.out_of_sync.get_or_create(l).set(0);
            }
            MetricIntent::SyncFailed => {
                self.sync_failure.get_or_create(l).inc();
            }
            MetricIntent::MissedInterval => {
                self.missed_intervals.get_or_create(l).inc();
            }
            MetricIntent::OutOfSync(v) => {
                self.out_of_sync.get_or_create(l).set(i64::from(*v));
            }
        });
    }

    /// Counts one reconcile pass, successful or not.
    pub fn reconciled(&self, key: &MetricKey, ok: bool) {
        self.with(key, |l| {
            self.reconciles.get_or_create(l).inc();
            if !ok {
                self.reconcile_errors.get_or_create(l).inc();
            }
        });
    }

    fn remove_series(&self, key: &MetricKey) {
        let l = key.labels();
        self.sync_duration.remove(&l);
        self.sync_success.remove(&l);
        self.sync_failure.remove(&l);
        self.missed_intervals.remove(&l);
        self.out_of_sync.remove(&l);
        self.last_sync_timestamp.remove(&l);
        self.bytes_transferred.remove(&l);
        self.files_transferred.remove(&l);
        self.reconciles.remove(&l);
        self.reconcile_errors.remove(&l);
    }

    /// Drops every series of a custom resource (it was deleted).
    pub fn forget(&self, key: &MetricKey) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.remove(key) {
            self.remove_series(key);
        }
    }

    /// Keeps only the series of resources for which `keep` holds (the others were deleted:
    /// without a finalizer the reconciler never sees a deletion).
    pub fn retain(&self, keep: impl Fn(&MetricKey) -> bool) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|k| {
            let kept = keep(k);
            if !kept {
                self.remove_series(k);
            }
            kept
        });
    }

    /// Encodes all series in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let _known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
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

    const SRC: &str = r#"{obj_name="db",obj_namespace="apps",role="source",method="rclone"}"#;
    const DST: &str = r#"{obj_name="db",obj_namespace="apps",role="destination",method="rclone"}"#;

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
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
        has(&text, &format!("scribe_sync_success_total{SRC} 1"));
        has(&text, &format!("scribe_bytes_transferred_total{SRC} 1000"));
        has(&text, &format!("scribe_files_transferred_total{SRC} 3"));
        has(
            &text,
            &format!("scribe_last_sync_timestamp_seconds{SRC} 1700000000.0"),
        );
        has(&text, "# TYPE scribe_sync_duration_seconds histogram");
        has(
            &text,
            r#"scribe_sync_duration_seconds_bucket{le="30.0",obj_name="db",obj_namespace="apps",role="source",method="rclone"} 0"#,
        );
        has(
            &text,
            r#"scribe_sync_duration_seconds_bucket{le="60.0",obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
        );
        has(
            &text,
            r#"scribe_sync_duration_seconds_bucket{le="+Inf",obj_name="db",obj_namespace="apps",role="source",method="rclone"} 1"#,
        );
        has(
            &text,
            &format!("scribe_sync_duration_seconds_sum{SRC} 42.0"),
        );
        has(&text, &format!("scribe_sync_duration_seconds_count{SRC} 1"));
        // A completed synchronization: in sync.
        has(&text, &format!("scribe_volume_out_of_sync{SRC} 0"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn scribe_contract_names_types_and_labels() {
        let m = Metrics::new();
        m.record(&key(), &MetricIntent::MissedInterval);
        let text = m.render();
        has(&text, "# TYPE scribe_sync_duration_seconds histogram");
        has(&text, "# TYPE scribe_missed_intervals counter");
        has(&text, &format!("scribe_missed_intervals_total{SRC} 1"));
        has(&text, "# TYPE scribe_volume_out_of_sync gauge");
        has(&text, &format!("scribe_sync_duration_seconds_count{SRC} 0"));
    }

    #[test]
    fn volume_is_out_of_sync_before_the_first_sync() {
        let m = Metrics::new();
        m.reconciled(&key(), true);
        has(&m.render(), &format!("scribe_volume_out_of_sync{SRC} 1"));
        m.record(&key(), &MetricIntent::OutOfSync(false));
        has(&m.render(), &format!("scribe_volume_out_of_sync{SRC} 0"));
        m.record(&key(), &MetricIntent::OutOfSync(true));
        has(&m.render(), &format!("scribe_volume_out_of_sync{SRC} 1"));
    }

    #[test]
    fn failures_missed_intervals_out_of_sync_and_reconciles_are_counted_per_role() {
        let m = Metrics::new();
        let dst = MetricKey::new("apps", "db", Role::Destination);
        m.record(&key(), &MetricIntent::SyncFailed);
        m.record(&key(), &MetricIntent::SyncFailed);
        m.record(&key(), &MetricIntent::MissedInterval);
        m.record(&dst, &MetricIntent::OutOfSync(false));
        m.reconciled(&dst, true);
        m.reconciled(&dst, false);
        let text = m.render();
        has(&text, &format!("scribe_sync_failure_total{SRC} 2"));
        has(&text, &format!("scribe_missed_intervals_total{SRC} 1"));
        has(&text, &format!("scribe_volume_out_of_sync{DST} 0"));
        has(&text, &format!("scribe_volume_out_of_sync{SRC} 1"));
        has(&text, &format!("scribe_reconcile_total{DST} 2"));
        has(&text, &format!("scribe_reconcile_errors_total{DST} 1"));
        has(&text, &format!("scribe_sync_failure_total{DST} 0"));
    }

    #[test]
    fn only_the_contract_labels_appear_and_values_are_escaped() {
        let m = Metrics::new();
        m.record(
            &MetricKey::new("ns", "we\"ird\\name\n", Role::Source),
            &MetricIntent::SyncFailed,
        );
        let text = m.render();
        has(
            &text,
            r#"scribe_sync_failure_total{obj_name="we\"ird\\name\n",obj_namespace="ns",role="source",method="rclone"} 1"#,
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let inside = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
            let keys: Vec<&str> = inside
                .split("\",")
                .map(|kv| kv.split('=').next().unwrap())
                .collect();
            for k in keys {
                assert!(
                    ["obj_name", "obj_namespace", "role", "method", "le"].contains(&k),
                    "unexpected label {k} in {line}"
                );
            }
        }
    }

    #[test]
    fn every_listed_metric_is_rendered_with_its_help() {
        let m = Metrics::new();
        m.record(
            &key(),
            &MetricIntent::SyncSucceeded {
                duration: Duration::from_secs(1),
                bytes_transferred: 1,
                files_transferred: 1,
                finished_at: Timestamp::from_second(1).unwrap(),
            },
        );
        let text = m.render();
        for (name, help) in METRICS {
            has(&text, &format!("# HELP {name} {help}."));
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
        assert!(text.contains("obj_name=\"db\""));
        assert!(!text.contains("obj_name=\"gone\""));
    }

    #[test]
    fn forgetting_a_resource_removes_its_series() {
        let m = Metrics::new();
        m.record(&key(), &MetricIntent::SyncFailed);
        m.forget(&key());
        assert!(!m.render().contains("obj_name=\"db\""));
        // Back again later: a fresh series, not yet synchronized.
        m.reconciled(&key(), true);
        has(&m.render(), &format!("scribe_volume_out_of_sync{SRC} 1"));
    }
}
