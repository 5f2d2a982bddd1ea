//! When the next synchronization is due: cron schedule, manual trigger, or continuous.
//!
//! Like VolSync: the first sync starts as soon as the CR exists; the next one is due at the
//! first firing after the last completion (so a firing during a sync does not queue another);
//! a non-empty `trigger.manual` replaces the schedule — a value different from
//! `status.lastManualSync` starts one sync, and no `nextSyncTime` is reported while it is set;
//! without any trigger the next sync starts as soon as the previous one is done.
//!
//! Nothing here depends on `now` but `due`, `missed_interval` and `wait`: the status fields
//! derived from it (`nextSyncTime`, the waiting message) are the same at every pass, so a
//! pass that changes nothing writes nothing.

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
    /// `status.nextSyncTime` (schedules only): the first firing after the last sync, or
    /// before any sync the time the first one became due (the CR's creation).
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

/// What the trigger is evaluated against.
#[derive(Clone, Copy, Debug, Default)]
pub struct History<'a> {
    /// End of the last completed sync (`status.lastSyncTime`, or a sync just finished).
    pub last_sync: Option<Timestamp>,
    /// `status.lastManualSync`.
    pub last_manual: Option<&'a String>,
    /// When the CR was created: before its first sync, the time that sync became due.
    pub created: Option<Timestamp>,
}

/// Evaluates the trigger against the history of syncs at `now`.
pub fn evaluate(
    trigger: Option<&TriggerSpec>,
    history: History<'_>,
    now: Timestamp,
) -> Result<TriggerState, ScheduleError> {
    let last_sync = history.last_sync;
    let manual = trigger.and_then(|t| non_empty(t.manual.as_ref()));
    let manual_pending = manual.is_some() && manual != non_empty(history.last_manual);
    let schedule = trigger.and_then(|t| non_empty(t.schedule.as_ref()));
    match (manual, schedule) {
        // A manual trigger replaces the schedule (VolSync): one sync per new value.
        (Some(value), _) => Ok(TriggerState {
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
        (None, Some(spec)) => {
            let schedule = Schedule::parse(spec)?;
            let next = last_sync.and_then(|l| schedule.next_after(l));
            let due = match (last_sync, next) {
                (None, _) => true,
                (Some(_), Some(n)) => n <= now,
                // A schedule that never fires again (e.g. a past date) never becomes due.
                (Some(_), None) => false,
            };
            let missed_interval = next
                .and_then(|n| schedule.next_after(n))
                .is_some_and(|nn| nn < now);
            // Never `now`: a status that changes with every pass would trigger the next one.
            let next_sync_time = if last_sync.is_none() {
                history.created
            } else {
                next
            };
            let waiting_message = match next {
                Some(n) => format!("waiting for the schedule {spec:?}; next sync at {n}"),
                None => format!("the schedule {spec:?} does not fire again"),
            };
            Ok(TriggerState {
                due,
                manual_pending: false,
                next_sync_time,
                waiting_reason: REASON_WAITING_FOR_SCHEDULE,
                waiting_message,
                missed_interval,
                wait: next.map(|n| until(now, n)),
            })
        }
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

    /// Evaluates `trigger` after a sync at `last_sync` (manual value `last_manual`) at `now`.
    fn eval(
        trigger: Option<&TriggerSpec>,
        last_sync: Option<&str>,
        last_manual: Option<&str>,
        now: &str,
    ) -> Result<TriggerState, ScheduleError> {
        let last_manual = last_manual.map(String::from);
        evaluate(
            trigger,
            History {
                last_sync: last_sync.map(ts),
                last_manual: last_manual.as_ref(),
                created: Some(ts("2026-01-01T00:00:00Z")),
            },
            ts(now),
        )
    }

    #[test]
    fn first_sync_is_due_immediately() {
        let t = eval(
            Some(&sched("0 * * * *", None)),
            None,
            None,
            "2026-01-01T00:30:00Z",
        )
        .expect("ok");
        assert!(t.due);
    }

    #[test]
    fn before_the_first_sync_next_sync_time_is_the_creation_not_now() {
        let at = |now| {
            eval(Some(&sched("0 * * * *", None)), None, None, now)
                .expect("ok")
                .next_sync_time
        };
        assert_eq!(at("2026-01-01T00:30:00Z"), Some(ts("2026-01-01T00:00:00Z")));
        assert_eq!(at("2026-01-01T00:30:00Z"), at("2026-01-01T05:00:37Z"));
    }

    #[test]
    fn schedule_waits_until_the_next_firing_after_the_last_sync() {
        let t = eval(
            Some(&sched("0 * * * *", None)),
            Some("2026-01-01T00:05:00Z"),
            None,
            "2026-01-01T00:30:00Z",
        )
        .expect("ok");
        assert!(!t.due);
        assert_eq!(t.next_sync_time, Some(ts("2026-01-01T01:00:00Z")));
        assert_eq!(t.wait, Some(Duration::from_secs(1800)));
        assert!(!t.missed_interval);
    }

    #[test]
    fn missed_interval_is_detected_after_two_firings() {
        let t = eval(
            Some(&sched("0 * * * *", None)),
            Some("2026-01-01T00:05:00Z"),
            None,
            "2026-01-01T02:30:00Z",
        )
        .expect("ok");
        assert!(t.due && t.missed_interval);
    }

    #[test]
    fn manual_value_different_from_last_is_due_even_with_a_schedule() {
        let t = eval(
            Some(&sched("0 * * * *", Some("two"))),
            Some("2026-01-01T00:05:00Z"),
            Some("one"),
            "2026-01-01T00:30:00Z",
        )
        .expect("ok");
        assert!(t.due && t.manual_pending);
    }

    #[test]
    fn a_manual_trigger_replaces_the_schedule() {
        // The schedule fired long ago, but the manual value was synced: nothing is due,
        // no nextSyncTime, no missed interval.
        let t = eval(
            Some(&sched("0 * * * *", Some("one"))),
            Some("2026-01-01T00:05:00Z"),
            Some("one"),
            "2026-01-01T05:30:00Z",
        )
        .expect("ok");
        assert!(!t.due && !t.missed_interval);
        assert_eq!(t.next_sync_time, None);
        assert_eq!(t.waiting_reason, REASON_WAITING_FOR_MANUAL);
        assert_eq!(t.wait, None);
    }

    #[test]
    fn manual_only_waits_once_the_value_was_synced() {
        let trig = TriggerSpec {
            schedule: None,
            manual: Some("one".into()),
        };
        let t = eval(
            Some(&trig),
            Some("2026-01-01T00:05:00Z"),
            Some("one"),
            "2026-01-02T00:00:00Z",
        )
        .expect("ok");
        assert!(!t.due);
        assert_eq!(t.waiting_reason, REASON_WAITING_FOR_MANUAL);
    }

    #[test]
    fn no_trigger_means_continuous() {
        let t = eval(
            None,
            Some("2026-01-01T00:05:00Z"),
            None,
            "2026-01-01T00:05:01Z",
        )
        .expect("ok");
        assert!(t.due);
        let empty = TriggerSpec::default();
        assert!(
            eval(
                Some(&empty),
                Some("2026-01-01T00:05:00Z"),
                None,
                "2026-01-01T00:05:01Z"
            )
            .expect("ok")
            .due
        );
    }

    #[test]
    fn invalid_schedule_is_an_error() {
        assert!(
            eval(
                Some(&sched("* * *", None)),
                None,
                None,
                "2026-01-01T00:00:00Z"
            )
            .is_err()
        );
    }
}
