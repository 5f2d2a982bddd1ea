//! The parts of the state machine both sides share: the status fields they have in common,
//! the output being assembled (actions, events, metrics, requeue), starting an iteration,
//! reporting a configuration error, recording a failed or a successful mover run, and the
//! final Reconciled condition. The steps built on these are in
//! `steps`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::{
    CONDITION_RECONCILED, CONDITION_SYNCHRONIZING, REASON_ERROR, REASON_RECONCILE_COMPLETE,
};
use scribe_api::{
    MoverResult, MoverStatus, ReplicationDestinationStatus, ReplicationSourceStatus, TriggerSpec,
};

use super::conditions::{add, find, go_duration, set_condition, until};
use super::mover::{
    FailureKind, MAX_MESSAGE, backoff, bounded_head, bounded_tail, classify, mover_logs,
    parse_summary,
};
use super::snapshots::kept;
use super::trigger::TriggerState;
use super::{Action, EventIntent, EventReason, MetricIntent, MoverReport, ObjectKind};

/// Poll interval while waiting on something a watch may not report (snapshots, binding).
pub const POLL: Duration = Duration::from_secs(30);
/// Poll interval while deleted objects go away.
pub const CLEANUP_POLL: Duration = Duration::from_secs(5);

/// The status fields both kinds share.
#[derive(Clone, Debug, Default)]
pub struct Common {
    pub conditions: Vec<Condition>,
    pub next_sync_time: Option<Time>,
    pub last_sync_time: Option<Time>,
    pub last_sync_start_time: Option<Time>,
    pub last_sync_duration: Option<String>,
    pub last_manual_sync: Option<String>,
    pub latest_mover_status: Option<MoverStatus>,
    pub consecutive_failures: Option<i32>,
    pub next_retry_time: Option<Time>,
    pub config_error_fingerprint: Option<String>,
}

/// A kind's status: the [`Common`] fields plus its own.
pub trait StatusParts {
    fn common(&self) -> Common;
    /// The status with the shared fields replaced and the kind's own kept.
    fn with_common(self, c: Common) -> Self;
}

macro_rules! status_parts {
    ($($status:ty),*) => {$(
        impl StatusParts for $status {
            fn common(&self) -> Common {
                Common {
                    conditions: self.conditions.clone(),
                    next_sync_time: self.next_sync_time.clone(),
                    last_sync_time: self.last_sync_time.clone(),
                    last_sync_start_time: self.last_sync_start_time.clone(),
                    last_sync_duration: self.last_sync_duration.clone(),
                    last_manual_sync: self.last_manual_sync.clone(),
                    latest_mover_status: self.latest_mover_status.clone(),
                    consecutive_failures: self.consecutive_failures,
                    next_retry_time: self.next_retry_time.clone(),
                    config_error_fingerprint: self.config_error_fingerprint.clone(),
                }
            }

            fn with_common(mut self, c: Common) -> Self {
                self.conditions = c.conditions;
                self.next_sync_time = c.next_sync_time;
                self.last_sync_time = c.last_sync_time;
                self.last_sync_start_time = c.last_sync_start_time;
                self.last_sync_duration = c.last_sync_duration;
                self.last_manual_sync = c.last_manual_sync;
                self.latest_mover_status = c.latest_mover_status;
                self.consecutive_failures = c.consecutive_failures;
                self.next_retry_time = c.next_retry_time;
                self.config_error_fingerprint = c.config_error_fingerprint;
                self
            }
        }
    )*};
}

status_parts!(ReplicationSourceStatus, ReplicationDestinationStatus);

/// A reconcile pass being planned.
pub struct Ctx {
    pub now: Timestamp,
    pub generation: Option<i64>,
    /// When the CR was created: the first sync is due from then (`nextSyncTime` before it).
    pub created: Option<Timestamp>,
    /// The CR's uid: only objects with an owner reference to it are ever deleted.
    pub owner_uid: Option<String>,
    pub st: Common,
    pub actions: Vec<Action>,
    pub events: Vec<EventIntent>,
    pub metrics: Vec<MetricIntent>,
    pub requeue: Option<Duration>,
    /// Set when Reconciled must be False; the message says what is wrong.
    pub error: Option<String>,
    previous_reconciled: Option<Condition>,
}

impl Ctx {
    pub fn new(st: Common, generation: Option<i64>, now: Timestamp) -> Self {
        let previous_reconciled = find(&st.conditions, CONDITION_RECONCILED).cloned();
        Self {
            now,
            generation,
            created: None,
            owner_uid: None,
            st,
            actions: Vec::new(),
            events: Vec::new(),
            metrics: Vec::new(),
            requeue: None,
            error: None,
            previous_reconciled,
        }
    }

    pub fn requeue(&mut self, d: Duration) {
        // At least a second: a zero requeue would spin the controller.
        let d = d.max(Duration::from_secs(1));
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    pub fn event(
        &mut self,
        warning: bool,
        reason: EventReason,
        action: &str,
        note: impl Into<String>,
    ) {
        self.events.push(EventIntent {
            warning,
            reason,
            action: action.to_string(),
            note: note.into(),
        });
    }

    pub fn syncing(&mut self, status: bool, reason: &str, message: impl AsRef<str>) {
        set_condition(
            &mut self.st.conditions,
            CONDITION_SYNCHRONIZING,
            status,
            reason,
            message.as_ref(),
            self.generation,
            self.now,
        );
    }

    pub fn fail(&mut self, message: impl Into<String>) {
        self.error.get_or_insert(message.into());
    }

    /// Creates an object that was not observed, with a `Created` event.
    pub fn create(&mut self, action: Action, kind: &str, name: &str) {
        self.actions.push(action);
        self.event(
            false,
            EventReason::Created,
            "Create",
            format!("created {kind} {name}"),
        );
    }

    /// Deletes an observed object unless it is already being deleted — and only if this CR
    /// owns it: an object someone else created under one of our names is never deleted; the
    /// Reconciled condition names it instead. A VolumeSnapshot labelled do-not-delete is
    /// released instead (see [`Ctx::release`]).
    pub fn delete(&mut self, kind: ObjectKind, meta: &ObjectMeta) {
        if meta.deletion_timestamp.is_some() {
            return;
        }
        let name = meta.name.clone().unwrap_or_default();
        let owned = owned_by(meta, self.owner_uid.as_deref());
        if kind == ObjectKind::VolumeSnapshot && kept(meta) {
            if owned {
                self.release(meta);
            } else {
                self.fail(format!(
                    "VolumeSnapshot {name} is labelled do-not-delete, so Scribe released it and keeps it, but it holds the name the next point-in-time copy needs: delete it once it is no longer needed"
                ));
            }
            return;
        }
        if !owned {
            self.fail(format!(
                "{} {name} is in the way but not owned by this resource (no owner reference to uid {}); Scribe does not delete it: delete or rename it",
                kind_label(kind),
                self.owner_uid.as_deref().unwrap_or("<none>")
            ));
            return;
        }
        self.actions.push(Action::Delete { kind, name });
    }

    /// Starts a new iteration.
    pub(super) fn start_iteration(&mut self, trigger: &TriggerState) {
        self.st.last_sync_start_time = Some(Time(self.now));
        if trigger.missed_interval {
            self.metrics.push(MetricIntent::MissedInterval);
        }
        let why = if trigger.manual_pending {
            "manual trigger"
        } else {
            "schedule"
        };
        self.event(
            false,
            EventReason::SyncStarted,
            "Synchronize",
            format!("synchronization started ({why})"),
        );
    }

    /// The logs of the last recorded mover run.
    fn latest_logs(&self) -> String {
        self.st
            .latest_mover_status
            .as_ref()
            .and_then(|m| m.logs.clone())
            .unwrap_or_default()
    }

    /// Says that the recorded configuration error blocks new Jobs until something changes.
    pub(super) fn report_config_error(&mut self) {
        let msg = format!(
            "the mover reported a configuration error (exit 78): {}; fix the spec or the rclone Secret to retry",
            summary_error(&self.latest_logs())
        );
        self.syncing(false, REASON_ERROR, &msg);
        self.fail(msg);
    }

    /// Records a failed mover Job (once: a Job already accounted for is only deleted).
    pub fn job_failed(
        &mut self,
        job_meta: &ObjectMeta,
        report: Option<&MoverReport>,
        job_message: &str,
        fingerprint: &str,
    ) {
        self.delete(ObjectKind::Job, job_meta);
        let kind = classify(report);
        let created = job_meta.creation_timestamp.as_ref().map(|t| t.0);
        let counted = match kind {
            FailureKind::Config => self.st.config_error_fingerprint.as_deref() == Some(fingerprint),
            // A retry Job is created at or after nextRetryTime; an older one was counted.
            FailureKind::Transient => match (self.st.next_retry_time.as_ref(), created) {
                (Some(retry), Some(created)) => created < retry.0,
                _ => false,
            },
        };
        let job_name = job_meta.name.clone().unwrap_or_default();
        if !counted {
            let fallback = if job_message.is_empty() {
                "mover Job failed".to_string()
            } else {
                job_message.to_string()
            };
            let logs = mover_logs(report, &fallback);
            self.st.latest_mover_status = Some(MoverStatus {
                result: Some(MoverResult::Failed),
                logs: Some(logs.clone()),
            });
            self.metrics.push(MetricIntent::SyncFailed);
            let code = report
                .and_then(|r| r.exit_code)
                .map_or("unknown".to_string(), |c| c.to_string());
            self.event(
                true,
                EventReason::SyncFailed,
                "Synchronize",
                format!(
                    "mover Job {job_name} failed (exit code {code}): {}",
                    summary_error(&logs)
                ),
            );
            match kind {
                FailureKind::Config => {
                    self.st.config_error_fingerprint = Some(fingerprint.to_string());
                    self.event(
                        true,
                        EventReason::ConfigError,
                        "Synchronize",
                        format!("configuration error, not retrying until the spec or the rclone Secret changes: {}", summary_error(&logs)),
                    );
                }
                FailureKind::Transient => {
                    let failures = self.st.consecutive_failures.unwrap_or(0).saturating_add(1);
                    self.st.consecutive_failures = Some(failures);
                    self.st.next_retry_time = Some(Time(add(self.now, backoff(failures))));
                }
            }
        }
        // Report the (possibly just recorded) state.
        match kind {
            FailureKind::Config => self.report_config_error(),
            FailureKind::Transient => {
                let logs = self.latest_logs();
                let failures = self.st.consecutive_failures.unwrap_or(1);
                let retry = self.st.next_retry_time.as_ref().map_or(self.now, |t| t.0);
                self.syncing(
                    false,
                    REASON_ERROR,
                    format!("mover Job {job_name} failed ({failures} in a row): {}; retrying at {retry}", summary_error(&logs)),
                );
                self.requeue(until(self.now, retry));
            }
        }
    }

    /// Records a successful iteration that finished at `finished`; the caller deletes objects.
    pub fn completed(
        &mut self,
        finished: Timestamp,
        report: Option<&MoverReport>,
        trigger: Option<&TriggerSpec>,
    ) {
        let start = self
            .st
            .last_sync_start_time
            .as_ref()
            .map_or(finished, |t| t.0);
        let duration = until(start, finished);
        let logs = mover_logs(report, "mover finished successfully");
        let summary = report
            .and_then(|r| r.message.as_deref())
            .and_then(parse_summary)
            .map(|(s, _)| s);
        let (files, bytes) = summary.map_or((0, 0), |s| (s.files_transferred, s.bytes_transferred));
        self.st.last_sync_time = Some(Time(finished));
        self.st.last_sync_duration = Some(go_duration(duration));
        self.st.last_sync_start_time = None;
        self.st.latest_mover_status = Some(MoverStatus {
            result: Some(MoverResult::Successful),
            logs: Some(logs),
        });
        self.st.consecutive_failures = None;
        self.st.next_retry_time = None;
        self.st.config_error_fingerprint = None;
        if let Some(manual) = trigger
            .and_then(|t| t.manual.clone())
            .filter(|m| !m.is_empty())
        {
            self.st.last_manual_sync = Some(manual);
        }
        self.metrics.push(MetricIntent::SyncSucceeded {
            duration,
            bytes_transferred: bytes,
            files_transferred: files,
            finished_at: finished,
        });
        self.event(
            false,
            EventReason::SyncSucceeded,
            "Synchronize",
            format!(
                "synchronized {files} file(s), {bytes} byte(s) transferred in {}",
                go_duration(duration)
            ),
        );
    }

    /// Sets Reconciled (with a Warning event when a new error appears) and returns the parts.
    pub fn finish(
        mut self,
    ) -> (
        Common,
        Vec<Action>,
        Vec<EventIntent>,
        Vec<MetricIntent>,
        Option<Duration>,
    ) {
        match self.error.clone() {
            Some(msg) => {
                let changed = self
                    .previous_reconciled
                    .as_ref()
                    .is_none_or(|c| c.status != "False" || c.message != msg);
                // The mover failure already produced its own events; validation errors get one here.
                // (A stuck mover pod is not such a failure: its event says nothing of the error.)
                let has_warning = self
                    .events
                    .iter()
                    .any(|e| e.warning && e.reason != EventReason::MoverNotStarted);
                if changed && !has_warning {
                    self.event(true, EventReason::ConfigError, "Validate", msg.clone());
                }
                set_condition(
                    &mut self.st.conditions,
                    CONDITION_RECONCILED,
                    false,
                    REASON_ERROR,
                    &msg,
                    self.generation,
                    self.now,
                );
            }
            None => set_condition(
                &mut self.st.conditions,
                CONDITION_RECONCILED,
                true,
                REASON_RECONCILE_COMPLETE,
                "Reconcile complete",
                self.generation,
                self.now,
            ),
        }
        (
            self.st,
            self.actions,
            self.events,
            self.metrics,
            self.requeue,
        )
    }
}

/// The error text of a summary JSON, else the end of the text itself (where a failing
/// program prints its error), at most about [`MAX_MESSAGE`] bytes either way.
pub fn summary_error(logs: &str) -> String {
    match parse_summary(logs).and_then(|(s, _)| s.error) {
        Some(error) => bounded_head(&error, MAX_MESSAGE),
        None => bounded_tail(logs, MAX_MESSAGE),
    }
}

/// Whether `meta` has an owner reference to the uid `owner` (never without a uid to check).
pub fn owned_by(meta: &ObjectMeta, owner: Option<&str>) -> bool {
    owner.is_some_and(|uid| meta.owner_references.iter().flatten().any(|r| r.uid == uid))
}

fn kind_label(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Job => "Job",
        ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
        ObjectKind::VolumeSnapshot => "VolumeSnapshot",
    }
}

/// Whether an object found while no iteration is recorded belongs to a new one (its status
/// write was lost) rather than being left over from the last completed one.
pub fn adoptable(meta: &ObjectMeta, last_sync: Option<Timestamp>) -> bool {
    match (last_sync, meta.creation_timestamp.as_ref()) {
        (None, _) | (_, None) => true,
        (Some(last), Some(created)) => created.0 > last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_with_an_owner_reference_to_the_cr_uid_are_ours() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let reference = |uid: &str| OwnerReference {
            api_version: "scribe.backube/v1alpha1".into(),
            kind: "ReplicationSource".into(),
            name: "db".into(),
            uid: uid.into(),
            ..Default::default()
        };
        let mut meta = ObjectMeta {
            name: Some("scribe-rclone-src-db".into()),
            ..Default::default()
        };
        assert!(!owned_by(&meta, Some("u1")), "no owner references");
        meta.owner_references = Some(vec![reference("other")]);
        assert!(!owned_by(&meta, Some("u1")), "someone else's");
        meta.owner_references = Some(vec![reference("other"), reference("u1")]);
        assert!(owned_by(&meta, Some("u1")));
        assert!(!owned_by(&meta, None), "nothing to check against");

        let mut ctx = Ctx::new(Common::default(), Some(1), Timestamp::UNIX_EPOCH);
        ctx.owner_uid = Some("u2".into());
        ctx.delete(ObjectKind::Job, &meta);
        assert!(ctx.actions.is_empty());
        assert!(
            ctx.error
                .as_deref()
                .is_some_and(|e| e.contains("scribe-rclone-src-db")),
            "{:?}",
            ctx.error
        );
    }

    #[test]
    fn condition_text_from_mover_output_is_capped_near_one_kib() {
        // Raw logs: the end (where the error is printed) is kept.
        let logs = format!("{}\nfatal: bucket missing", "noise ".repeat(1000));
        let e = summary_error(&logs);
        assert!(e.len() <= MAX_MESSAGE + 3, "{}", e.len());
        assert!(
            e.starts_with('…') && e.ends_with("fatal: bucket missing"),
            "{e}"
        );
        // A summary's error: the beginning is kept.
        let json = format!(
            r#"{{"result":"Failed","error":"denied: {}"}}"#,
            "ü".repeat(1000)
        );
        let e = summary_error(&json);
        assert!(e.len() <= MAX_MESSAGE, "{}", e.len());
        assert!(e.starts_with("denied: ") && e.ends_with('…'), "{e}");
        // Short text is unchanged.
        assert_eq!(summary_error("exit 1"), "exit 1");
    }
}
