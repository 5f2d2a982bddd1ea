//! The phase each pass is in, decided before the plan acts (`plan::phase`), read from
//! representative plan fixtures (`fixture/`): every phase, every way an iteration opens, and
//! the blockers, for both kinds.

use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use scribe_controller::plan::phase::{Blocker, Decision, Iteration, Leftovers, Phase};
use scribe_controller::plan::{destination_phase, source_phase};

use crate::fixture::{Observation, load};

/// The decision for the observation of fixture `name` at its `now`.
fn decision(name: &str) -> Decision {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan")
        .join(format!("{name}.yaml"));
    let fixture = load(&path).unwrap_or_else(|e| panic!("{e}"));
    match fixture.observation() {
        Observation::Source(obs) => source_phase(&obs, fixture.now()),
        Observation::Destination(obs) => destination_phase(&obs, fixture.now()),
    }
}

fn assert_phase(name: &str, iteration: Iteration, phase: Phase) {
    assert_eq!(
        decision(name),
        Decision { iteration, phase },
        "fixture {name}"
    );
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn idle_until_the_trigger_is_due() {
    for name in [
        "src-waiting-for-schedule",
        "src-manual-same-value",
        "dst-waiting-for-schedule",
    ] {
        assert_phase(name, Iteration::Closed, Phase::Idle);
    }
}

#[test]
fn blocked_before_an_iteration_starts() {
    assert_phase(
        "src-invalid-schedule",
        Iteration::Closed,
        Phase::Blocked(Blocker::InvalidSchedule),
    );
    for name in ["src-paused", "dst-paused"] {
        assert_phase(name, Iteration::Closed, Phase::Blocked(Blocker::Paused));
    }
    for name in ["src-missing-secret", "dst-missing-capacity"] {
        assert_phase(
            name,
            Iteration::Closed,
            Phase::Blocked(Blocker::InvalidConfig),
        );
    }
}

#[test]
fn blocked_within_an_open_iteration() {
    assert_phase(
        "src-paused-mid-iteration",
        Iteration::Recorded,
        Phase::Blocked(Blocker::JobPaused),
    );
    assert_phase(
        "src-config-error-blocked",
        Iteration::Recorded,
        Phase::Blocked(Blocker::ConfigError),
    );
    assert_phase(
        "src-waiting-for-retry",
        Iteration::Recorded,
        Phase::Blocked(Blocker::Backoff {
            retry: at("2021-01-18T21:53:40Z"),
        }),
    );
}

#[test]
fn a_due_trigger_starts_an_iteration_preparing_the_copy() {
    for name in [
        "src-first-sync-snapshot",
        "src-schedule-due",
        "dst-first-sync",
    ] {
        assert_phase(name, Iteration::Started, Phase::PreparingCopy);
    }
    assert_phase(
        "src-snapshot-not-ready",
        Iteration::Recorded,
        Phase::PreparingCopy,
    );
}

#[test]
fn a_running_job_is_followed_and_adopted_after_a_lost_status_write() {
    for name in [
        "src-job-running",
        "src-paused-suspends-running-job",
        "dst-job-running",
    ] {
        assert_phase(name, Iteration::Recorded, Phase::MoverRunning);
    }
    let Decision { iteration, phase } = decision("src-restart-running-job-adopted");
    assert!(
        matches!(iteration, Iteration::Adopted { .. }),
        "{iteration:?}"
    );
    assert_eq!(phase, Phase::MoverRunning);
}

#[test]
fn a_failed_job_is_recorded() {
    for name in ["src-job-failed-transient", "dst-job-failed-config"] {
        let Decision { iteration, phase } = decision(name);
        assert_eq!(iteration, Iteration::Recorded, "fixture {name}");
        assert!(
            matches!(phase, Phase::MoverFailed { .. }),
            "fixture {name}: {phase:?}"
        );
    }
}

#[test]
fn a_succeeded_job_finishes_the_iteration() {
    for name in ["src-job-succeeded", "dst-job-succeeded-takes-snapshot"] {
        let Decision { iteration, phase } = decision(name);
        assert_eq!(iteration, Iteration::Recorded, "fixture {name}");
        assert!(
            matches!(phase, Phase::Finishing { .. }),
            "fixture {name}: {phase:?}"
        );
    }
}

#[test]
fn leftovers_are_cleaned_up_first() {
    for name in ["src-cleanup-after-success", "dst-leftover-job-cleaned"] {
        assert_phase(
            name,
            Iteration::Closed,
            Phase::CleaningUp(Leftovers::LastIteration),
        );
    }
    assert_phase(
        "src-switch-snapshot-to-none-deletes-pit",
        Iteration::Recorded,
        Phase::CleaningUp(Leftovers::PreviousCopyMethod),
    );
}
