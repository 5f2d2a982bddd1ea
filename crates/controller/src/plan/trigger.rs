//! When the next synchronization is due: cron schedule, manual trigger, or continuous.
//!
//! Like VolSync: the first sync starts as soon as the CR exists; the next one is due at the
//! first firing after the last completion (so a firing during a sync does not queue another);
//! a manual value different from `status.lastManualSync` starts one sync; without any trigger
//! the next sync starts as soon as the previous one is done.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use scribe_api::TriggerSpec;
use scribe_api::constants::{REASON_WAITING_FOR_MANUAL, REASON_WAITING_FOR_SCHEDULE};

use super::conditions::until;
use super::schedule::{Schedule, ScheduleError};

/// Whether a new iteration may start now, and what to say otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerState {
    pub due: bool,
    /// A manual value that differs from `lastManualSync` (drives `due`).
    pub manual_pending: bool,
    /// `status.nextSyncTime` (schedules only).
    pub next_sync_time: Option<Timestamp>,
    /// Reason of the Synchronizing condition while not due.
    pub waiting_reason: &'static str,
    pub waiting_message: String,
    /// A whole interval passed without a sync: `Next(Next(lastSync)) < now`.
    pub missed_interval: bool,
    /// How long until the schedule fires (when not due).
    pub wait: Option<Duration>,
}

fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

/// Evaluates the trigger against the last completed sync.
pub fn evaluate(
    trigger: Option<&TriggerSpec>,
    last_sync: Option<Timestamp>,
    last_manual: Option<&String>,
    now: Timestamp,
) -> Result<TriggerState, ScheduleError> {
    let manual = trigger.and_then(|t| non_empty(t.manual.as_ref()));
    let manual_pending = manual.is_some() && manual != non_empty(last_manual);
    let schedule = trigger.and_then(|t| non_empty(t.schedule.as_ref()));
    match (schedule, manual) {
        (Some(spec), _) => {
            let schedule = Schedule::parse(spec)?;
            let next = last_sync.and_then(|l| schedule.next_after(l));
            let scheduled_due = match (last_sync, next) {
                (None, _) => true,
                (Some(_), Some(n)) => n <= now,
                // A schedule that never fires again (e.g. a past date) never becomes due.
                (Some(_), None) => false,
            };
            let missed_interval = next
                .and_then(|n| schedule.next_after(n))
                .is_some_and(|nn| nn < now);
            let next_sync_time = if last_sync.is_none() { Some(now) } else { next };
            let waiting_message = match next {
                Some(n) => format!("waiting for the schedule {spec:?}; next sync at {n}"),
                None => format!("the schedule {spec:?} does not fire again"),
            };
            Ok(TriggerState {
                due: scheduled_due || manual_pending,
                manual_pending,
                next_sync_time,
                waiting_reason: REASON_WAITING_FOR_SCHEDULE,
                waiting_message,
                missed_interval,
                wait: next.map(|n| until(now, n)),
            })
        }
        (None, Some(value)) => Ok(TriggerState {
            due: manual_pending,
            manual_pending,
            next_sync_time: None,
            waiting_reason: REASON_WAITING_FOR_MANUAL,
            waiting_message: format!(
                "waiting for spec.trigger.manual to change (last manual sync: {value:?})"
            ),
            missed_interval: false,
            wait: None,
        }),
        (None, None) => Ok(TriggerState {
            due: true,
            manual_pending: false,
            next_sync_time: None,
            waiting_reason: REASON_WAITING_FOR_SCHEDULE,
            waiting_message: "synchronizing continuously".to_string(),
            missed_interval: false,
            wait: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn sched(s: &str, manual: Option<&str>) -> TriggerSpec {
        TriggerSpec {
            schedule: Some(s.into()),
            manual: manual.map(Into::into),
        }
    }

    #[test]
    fn first_sync_is_due_immediately() {
        let t = evaluate(
            Some(&sched("0 * * * *", None)),
            None,
            None,
            ts("2026-01-01T00:30:00Z"),
        )
        .expect("ok");
        assert!(t.due);
    }

    #[test]
    fn schedule_waits_until_the_next_firing_after_the_last_sync() {
        let t = evaluate(
            Some(&sched("0 * * * *", None)),
            Some(ts("2026-01-01T00:05:00Z")),
            None,
            ts("2026-01-01T00:30:00Z"),
        )
        .expect("ok");
        assert!(!t.due);
        assert_eq!(t.next_sync_time, Some(ts("2026-01-01T01:00:00Z")));
        assert_eq!(t.wait, Some(Duration::from_secs(1800)));
        assert!(!t.missed_interval);
    }

    #[test]
    fn missed_interval_is_detected_after_two_firings() {
        let t = evaluate(
            Some(&sched("0 * * * *", None)),
            Some(ts("2026-01-01T00:05:00Z")),
            None,
            ts("2026-01-01T02:30:00Z"),
        )
        .expect("ok");
        assert!(t.due && t.missed_interval);
    }

    #[test]
    fn manual_value_different_from_last_is_due_even_with_a_schedule() {
        let t = evaluate(
            Some(&sched("0 * * * *", Some("two"))),
            Some(ts("2026-01-01T00:05:00Z")),
            Some(&"one".to_string()),
            ts("2026-01-01T00:30:00Z"),
        )
        .expect("ok");
        assert!(t.due && t.manual_pending);
    }

    #[test]
    fn manual_only_waits_once_the_value_was_synced() {
        let trig = TriggerSpec {
            schedule: None,
            manual: Some("one".into()),
        };
        let t = evaluate(
            Some(&trig),
            Some(ts("2026-01-01T00:05:00Z")),
            Some(&"one".into()),
            ts("2026-01-02T00:00:00Z"),
        )
        .expect("ok");
        assert!(!t.due);
        assert_eq!(t.waiting_reason, REASON_WAITING_FOR_MANUAL);
    }

    #[test]
    fn no_trigger_means_continuous() {
        let t = evaluate(
            None,
            Some(ts("2026-01-01T00:05:00Z")),
            None,
            ts("2026-01-01T00:05:01Z"),
        )
        .expect("ok");
        assert!(t.due);
        let empty = TriggerSpec::default();
        assert!(
            evaluate(
                Some(&empty),
                Some(ts("2026-01-01T00:05:00Z")),
                None,
                ts("2026-01-01T00:05:01Z")
            )
            .expect("ok")
            .due
        );
    }

    #[test]
    fn invalid_schedule_is_an_error() {
        assert!(
            evaluate(
                Some(&sched("* * *", None)),
                None,
                None,
                ts("2026-01-01T00:00:00Z")
            )
            .is_err()
        );
    }
}
