//! No status write loops: every pass whose status differs from the observed one patches the
//! CR, and that patch brings the next pass. So the status a pass writes must be the status the
//! next pass — same cluster objects, that status observed, a little later — computes again;
//! otherwise a paused, blocked or backing-off CR is reconciled and written forever.
//!
//! Checked for every plan fixture's observation (`fixture/`): plan it at its `now`, write the
//! status back, plan again at `now`, `now + 1 s` and `now + 37 s`; the status must not change.
//! The only exception is a later `now` at or past a time the first status itself names as due
//! (`nextSyncTime`, `nextRetryTime`) or the plan asked to be woken for: then the fixture's own
//! semantics move on (a schedule fires, a backoff ends), which is a transition, not a loop.

use std::time::Duration;

use crate::fixture::{file_name, fixture_files, load};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// How much later the second pass runs.
const LATER: [i64; 3] = [0, 1, 37];

fn at(status: &Value, field: &str) -> Option<Timestamp> {
    status.get(field)?.as_str()?.parse().ok()
}

/// Whether something the first plan scheduled falls due by `later`.
fn becomes_due(
    status: &Value,
    requeue: Option<Duration>,
    now: Timestamp,
    later: Timestamp,
) -> bool {
    let named = ["nextSyncTime", "nextRetryTime"]
        .iter()
        .filter_map(|f| at(status, f))
        .any(|t| t > now && t <= later);
    // A requeue shorter than the poll intervals is a deadline (schedule, backoff, snapshot
    // retry) that the fixture may reach; polls (5 s cleanup, 30 s progress) change nothing.
    let woken = requeue.is_some_and(|d| {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        ![5, 30].contains(&secs) && now + SignedDuration::from_secs(secs) <= later
    });
    named || woken
}

#[test]
fn a_written_status_is_planned_again_unchanged_at_a_later_now() {
    let files = fixture_files();
    assert!(files.len() >= 80, "found only {} fixtures", files.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    for path in &files {
        let fixture = load(path).unwrap_or_else(|e| panic!("{e}"));
        let observation = fixture.observation();
        let now = fixture.now();
        let first = observation.plan(now);
        let written = observation.with_status(&first.status);
        for secs in LATER {
            let later = now + SignedDuration::from_secs(secs);
            if becomes_due(&first.status, first.requeue, now, later) {
                continue;
            }
            compared += 1;
            let again = written.plan(later);
            if again.status != first.status {
                failures.push(format!(
                    "{} at +{secs}s:\n    written: {}\n    then:    {}",
                    file_name(path),
                    first.status,
                    again.status
                ));
            }
        }
    }
    assert!(compared >= 200, "only {compared} comparisons were made");
    assert!(
        failures.is_empty(),
        "{} status(es) change from pass to pass:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
