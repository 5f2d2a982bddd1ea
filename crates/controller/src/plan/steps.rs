//! The steps of an iteration both state machines (`source`, `destination`) take, as methods
//! of the pass being planned: checking trigger and configuration, cleaning up leftovers,
//! following (and, while paused, suspending) the mover Job, starting a new Job, creating
//! PVCs, and finishing the iteration (snapshots are in `snapshots`). Which of these a pass
//! takes is decided first, by its phase (`phase`); each side's phase handlers call these.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scribe_api::TriggerSpec;
use scribe_api::constants::{
    CONDITION_SYNCHRONIZING, REASON_CLEANING_UP, REASON_PAUSED, REASON_SYNC_IN_PROGRESS,
};

use super::common::{CLEANUP_POLL, Ctx, POLL};
use super::conditions::find;
use super::mover::bounded_head;
use super::schedule::ScheduleError;
use super::trigger::{History, TriggerState, evaluate};
use super::validate::ValidationError;
use super::{Action, EventReason, MoverReport, MoverWaiting, ObjectKind};
use crate::builders::job::{MoverJobParams, build_mover_job};

/// Most bytes of a stuck pod's message quoted in the Synchronizing condition.
pub const MAX_WAITING_MESSAGE: usize = 300;

/// Reasons the kubelet alternates between for one problem count as one, so a failing image
/// pull gives one event rather than one per retry.
fn waiting_family(reason: &str) -> &str {
    match reason {
        "ErrImagePull" | "ImagePullBackOff" => "ImagePullBackOff",
        other => other,
    }
}

/// The steps of an iteration both state machines take, in the order they take them.
impl Ctx {
    /// The trigger evaluated against `last_sync` (the recorded one, or a sync just finished).
    pub fn trigger_state(
        &self,
        trigger: Option<&TriggerSpec>,
        last_sync: Option<Timestamp>,
    ) -> Result<TriggerState, ScheduleError> {
        evaluate(
            trigger,
            History {
                last_sync,
                last_manual: self.st.last_manual_sync.as_ref(),
                created: self.created,
            },
            self.now,
        )
    }

    /// Records what the trigger and the validation say about this pass: errors make
    /// Reconciled False, a valid schedule sets `nextSyncTime`.
    pub fn record_checks<V>(
        &mut self,
        trigger: &Result<TriggerState, ScheduleError>,
        validation: &Result<V, ValidationError>,
    ) {
        if let Err(e) = trigger {
            self.fail(e.to_string());
        }
        if let Err(e) = validation {
            self.fail(e.to_string());
        }
        if let Ok(t) = trigger {
            self.st.next_sync_time = t.next_sync_time.map(Time);
        }
    }

    /// Deletes what the last completed iteration left behind before a new one may start.
    pub fn clean_up(&mut self, leftovers: &[(ObjectKind, &ObjectMeta)], message: impl AsRef<str>) {
        for (kind, meta) in leftovers {
            self.delete(*kind, meta);
        }
        self.syncing(true, REASON_CLEANING_UP, message);
        self.requeue(CLEANUP_POLL);
    }

    /// Reports progress that no watch announces the end of, so the pass polls.
    pub fn progress(&mut self, message: impl AsRef<str>) {
        self.syncing(true, REASON_SYNC_IN_PROGRESS, message);
        self.requeue(POLL);
    }

    /// [`super::phase::Phase::MoverRunning`]: suspends (while `paused`) or resumes the Job,
    /// else reports it running, or why its pod has not started. `detail` is appended to the
    /// running message (e.g. a PVC still pending).
    pub fn follow_job(
        &mut self,
        job: &Job,
        waiting: Option<&MoverWaiting>,
        detail: &str,
        paused: bool,
    ) {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        if self.scale_job(job, paused) {
            return;
        }
        let state = match waiting {
            Some(w) => self.mover_not_started(name, w),
            None => format!("mover Job {name} is running"),
        };
        self.progress(format!("{state}{detail}"));
    }

    /// Suspends a running mover Job while paused (`spec.parallelism` 0: the Job controller
    /// stops its pod, and the mover, told by SIGTERM, leaves the last committed state intact)
    /// and resumes it once unpaused. True while it is suspended: the watch on the CR brings
    /// the pass that resumes it.
    fn scale_job(&mut self, job: &Job, paused: bool) -> bool {
        let name = job.metadata.name.clone().unwrap_or_default();
        let parallelism = job.spec.as_ref().and_then(|s| s.parallelism);
        let wanted = i32::from(!paused);
        // Unset means 1 (a Job of an earlier version): only an explicit 0 needs resuming.
        if parallelism.unwrap_or(1) != wanted && job.metadata.deletion_timestamp.is_none() {
            self.actions.push(Action::ScaleJob {
                name: name.clone(),
                parallelism: wanted,
            });
            let (reason, note) = if paused {
                (EventReason::MoverSuspended, "suspended (spec.paused)")
            } else {
                (EventReason::MoverResumed, "resumed")
            };
            self.event(
                false,
                reason,
                "Synchronize",
                format!("mover Job {name} {note}"),
            );
        }
        if paused {
            self.syncing(
                false,
                REASON_PAUSED,
                format!("paused (spec.paused): mover Job {name} is suspended until unpaused"),
            );
        }
        paused
    }

    /// The message for a mover Job whose pod is stuck before its container starts, with a
    /// Warning event when the reason is new. The Job is kept: a pulled image, a recreated
    /// Secret or a freed node lets it start, and its own backoff limit ends it otherwise.
    fn mover_not_started(&mut self, job_name: &str, waiting: &MoverWaiting) -> String {
        let prefix = format!("mover Job {job_name} is not running yet: ");
        let text = if waiting.message.trim().is_empty() {
            waiting.reason.clone()
        } else {
            format!(
                "{}: {}",
                waiting.reason,
                bounded_head(waiting.message.trim(), MAX_WAITING_MESSAGE)
            )
        };
        // The condition still holds the previous pass's message: one event per reason, not
        // per pass (the kubelet's own message carries changing back-off times).
        let previous_reason = find(&self.st.conditions, CONDITION_SYNCHRONIZING)
            .and_then(|c| c.message.strip_prefix(&prefix))
            .map(|rest| waiting_family(rest.split(':').next().unwrap_or(rest).trim()));
        if previous_reason != Some(waiting_family(&waiting.reason)) {
            self.event(
                true,
                EventReason::MoverNotStarted,
                "Synchronize",
                format!("{prefix}{text}"),
            );
        }
        format!("{prefix}{text}")
    }

    /// Records the iteration as synchronized at `finished`, deletes its objects and
    /// schedules the next one.
    pub fn finish_iteration(
        &mut self,
        finished: Timestamp,
        report: Option<&MoverReport>,
        trigger: Option<&TriggerSpec>,
        objects: &[(ObjectKind, &ObjectMeta)],
        message: impl AsRef<str>,
    ) {
        self.completed(finished, report, trigger);
        if let Ok(t) = self.trigger_state(trigger, Some(finished)) {
            self.st.next_sync_time = t.next_sync_time.map(Time);
            if let Some(wait) = t.wait {
                self.requeue(wait);
            }
        }
        self.clean_up(objects, message);
    }

    /// Creates a PersistentVolumeClaim that was not observed.
    pub fn create_pvc(&mut self, pvc: PersistentVolumeClaim, name: &str) {
        self.create(
            Action::ApplyPvc(Box::new(pvc)),
            "PersistentVolumeClaim",
            name,
        );
    }

    /// Creates the mover Job of the open iteration.
    pub fn start_job(&mut self, params: &MoverJobParams) {
        let job = build_mover_job(params);
        self.create(Action::ApplyJob(Box::new(job)), "Job", params.name);
        self.progress(format!("started mover Job {}", params.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::common::Common;

    #[test]
    fn a_stuck_pod_message_is_capped_and_warned_about_once_per_reason() {
        let mut ctx = Ctx::new(Common::default(), Some(1), Timestamp::UNIX_EPOCH);
        let long = MoverWaiting {
            reason: "CreateContainerConfigError".into(),
            message: "€".repeat(400),
        };
        let first = ctx.mover_not_started("scribe-rclone-src-db", &long);
        let quoted = first
            .strip_prefix(
                "mover Job scribe-rclone-src-db is not running yet: CreateContainerConfigError: ",
            )
            .expect("prefix");
        assert!(quoted.len() <= MAX_WAITING_MESSAGE, "{}", quoted.len());
        assert!(quoted.ends_with('…'));
        assert_eq!(ctx.events.len(), 1);
        assert_eq!(ctx.events[0].reason, EventReason::MoverNotStarted);
        assert!(ctx.events[0].warning);

        ctx.progress(&first);
        let shorter = MoverWaiting {
            message: "key changed".into(),
            ..long
        };
        ctx.mover_not_started("scribe-rclone-src-db", &shorter);
        assert_eq!(ctx.events.len(), 1, "same reason: no second event");
        let other = MoverWaiting {
            reason: "Unschedulable".into(),
            message: String::new(),
        };
        assert_eq!(
            ctx.mover_not_started("scribe-rclone-src-db", &other),
            "mover Job scribe-rclone-src-db is not running yet: Unschedulable"
        );
        assert_eq!(ctx.events.len(), 2, "a new reason warns again");
    }
}
