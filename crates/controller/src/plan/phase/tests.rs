//! Unit tests of the phase decision: each phase, blocker and way into an iteration from a
//! representative observation, reduced to the [`Facts`] the decision reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use scribe_api::constants::REASON_WAITING_FOR_SCHEDULE;

use super::*;
use crate::plan::schedule::Schedule;

const NOW: &str = "2021-01-18T22:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn trigger(due: bool) -> Result<TriggerState, ScheduleError> {
    Ok(TriggerState {
        due,
        manual_pending: false,
        next_sync_time: None,
        waiting_reason: REASON_WAITING_FOR_SCHEDULE,
        waiting_message: String::new(),
        missed_interval: false,
        wait: None,
    })
}

/// An object created at `created`, owned by uid `u1` when `owned`.
fn meta(created: &str, owned: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some("scribe-rclone-src-db".into()),
        creation_timestamp: Some(Time(at(created))),
        owner_references: owned.then(|| {
            vec![OwnerReference {
                uid: "u1".into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

/// A Job with the terminal condition `condition` (`None`: running).
fn job(condition: Option<&str>) -> Job {
    let conditions: Vec<serde_json::Value> = condition
        .map(|c| {
            serde_json::json!({
                "type": c, "status": "True", "message": "boom",
                "lastTransitionTime": "2021-01-18T21:59:30Z",
            })
        })
        .into_iter()
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "scribe-rclone-src-db"},
        "status": {"conditions": conditions},
    }))
    .expect("job")
}

/// One observation, reduced to what the decision reads.
struct Case {
    st: Common,
    trigger: Result<TriggerState, ScheduleError>,
    valid: bool,
    paused: bool,
    found: Vec<(ObjectKind, ObjectMeta)>,
    job: Option<Job>,
    stale_copies: bool,
}

impl Case {
    /// Nothing open, nothing found, the trigger due, the configuration valid.
    fn due() -> Self {
        Self {
            st: Common::default(),
            trigger: trigger(true),
            valid: true,
            paused: false,
            found: Vec::new(),
            job: None,
            stale_copies: false,
        }
    }

    /// An iteration recorded as open since a minute ago.
    fn open() -> Self {
        let mut case = Self::due();
        case.st.last_sync_start_time = Some(Time(at("2021-01-18T21:59:00Z")));
        case
    }

    fn with_job(mut self, condition: Option<&str>) -> Self {
        let job = job(condition);
        self.found.push((ObjectKind::Job, job.metadata.clone()));
        self.job = Some(job);
        self
    }

    fn decide(&self) -> Decision {
        let found: Vec<(ObjectKind, &ObjectMeta)> =
            self.found.iter().map(|(k, m)| (*k, m)).collect();
        decide(&Facts {
            now: at(NOW),
            st: &self.st,
            owner_uid: Some("u1"),
            trigger: &self.trigger,
            valid: self.valid,
            paused: self.paused,
            fingerprint: "fp",
            found: &found,
            job: self.job.as_ref(),
            stale_copies: self.stale_copies,
        })
    }
}

fn closed(phase: Phase) -> Decision {
    Decision {
        iteration: Iteration::Closed,
        phase,
    }
}

fn recorded(phase: Phase) -> Decision {
    Decision {
        iteration: Iteration::Recorded,
        phase,
    }
}

#[test]
fn nothing_open_and_nothing_due_is_idle() {
    let case = Case {
        trigger: trigger(false),
        ..Case::due()
    };
    assert_eq!(case.decide(), closed(Phase::Idle));
}

#[test]
fn nothing_open_and_due_starts_an_iteration_preparing_the_copy() {
    let expected = Decision {
        iteration: Iteration::Started,
        phase: Phase::PreparingCopy,
    };
    assert_eq!(Case::due().decide(), expected);
}

#[test]
fn no_iteration_starts_while_schedule_pause_or_configuration_block_it() {
    let invalid_schedule = Case {
        trigger: Schedule::parse("0 25 * * *").map(|_| unreachable!("invalid")),
        ..Case::due()
    };
    assert_eq!(
        invalid_schedule.decide(),
        closed(Phase::Blocked(Blocker::InvalidSchedule))
    );
    // Paused wins over a trigger that is not due, which wins over an invalid configuration.
    let paused = Case {
        paused: true,
        valid: false,
        trigger: trigger(false),
        ..Case::due()
    };
    assert_eq!(paused.decide(), closed(Phase::Blocked(Blocker::Paused)));
    let invalid = Case {
        valid: false,
        ..Case::due()
    };
    assert_eq!(
        invalid.decide(),
        closed(Phase::Blocked(Blocker::InvalidConfig))
    );
}

#[test]
fn objects_of_the_last_completed_iteration_are_cleaned_up_first() {
    let mut case = Case::due().with_job(Some("Complete"));
    case.st.last_sync_time = Some(Time(at("2021-01-18T21:58:00Z")));
    case.found[0].1 = meta("2021-01-18T21:50:00Z", true);
    assert_eq!(
        case.decide(),
        closed(Phase::CleaningUp(Leftovers::LastIteration))
    );
    // Someone else's object under our name is never adopted: it is in the way.
    case.found[0].1 = meta("2021-01-18T21:59:00Z", false);
    assert_eq!(
        case.decide(),
        closed(Phase::CleaningUp(Leftovers::LastIteration))
    );
}

#[test]
fn objects_newer_than_the_last_sync_continue_an_iteration_whose_status_was_lost() {
    let mut case = Case::due().with_job(None);
    case.st.last_sync_time = Some(Time(at("2021-01-18T21:58:00Z")));
    case.found[0].1 = meta("2021-01-18T21:59:00Z", true);
    let expected = Decision {
        iteration: Iteration::Adopted {
            start: at("2021-01-18T21:59:00Z"),
        },
        phase: Phase::MoverRunning,
    };
    assert_eq!(case.decide(), expected);
}

#[test]
fn the_mover_job_decides_running_failed_or_finishing() {
    assert_eq!(
        Case::open().with_job(None).decide(),
        recorded(Phase::MoverRunning)
    );
    assert_eq!(
        Case::open().with_job(Some("Failed")).decide(),
        recorded(Phase::MoverFailed {
            message: "boom".into()
        })
    );
    assert_eq!(
        Case::open().with_job(Some("Complete")).decide(),
        recorded(Phase::Finishing {
            completed: at("2021-01-18T21:59:30Z")
        })
    );
    // Paused does not stop following a Job that exists (it is suspended instead).
    let paused = Case {
        paused: true,
        ..Case::open()
    };
    assert_eq!(
        paused.with_job(None).decide(),
        recorded(Phase::MoverRunning)
    );
}

#[test]
fn copies_of_a_previous_copy_method_go_before_a_new_job() {
    let case = Case {
        stale_copies: true,
        ..Case::open()
    };
    assert_eq!(
        case.decide(),
        recorded(Phase::CleaningUp(Leftovers::PreviousCopyMethod))
    );
}

#[test]
fn an_open_iteration_starts_no_job_while_something_blocks_it() {
    let invalid = Case {
        valid: false,
        paused: true,
        ..Case::open()
    };
    assert_eq!(
        invalid.decide(),
        recorded(Phase::Blocked(Blocker::JobInvalidConfig))
    );
    let paused = Case {
        paused: true,
        ..Case::open()
    };
    assert_eq!(
        paused.decide(),
        recorded(Phase::Blocked(Blocker::JobPaused))
    );

    let mut config_error = Case::open();
    config_error.st.config_error_fingerprint = Some("fp".into());
    config_error.st.next_retry_time = Some(Time(at("2021-01-18T22:05:00Z")));
    assert_eq!(
        config_error.decide(),
        recorded(Phase::Blocked(Blocker::ConfigError))
    );
    // Another configuration than the one that failed is tried again, after the backoff.
    config_error.st.config_error_fingerprint = Some("other".into());
    assert_eq!(
        config_error.decide(),
        recorded(Phase::Blocked(Blocker::Backoff {
            retry: at("2021-01-18T22:05:00Z")
        }))
    );
    config_error.st.next_retry_time = Some(Time(at(NOW)));
    assert_eq!(config_error.decide(), recorded(Phase::PreparingCopy));
}

#[test]
fn a_stale_configuration_error_is_forgotten_and_the_current_one_kept() {
    let mut ctx = Ctx::new(Common::default(), Some(1), at(NOW));
    ctx.st.config_error_fingerprint = Some("fp".into());
    ctx.forget_stale_config_error("fp");
    assert_eq!(ctx.st.config_error_fingerprint.as_deref(), Some("fp"));
    ctx.forget_stale_config_error("changed");
    assert_eq!(ctx.st.config_error_fingerprint, None);
}
