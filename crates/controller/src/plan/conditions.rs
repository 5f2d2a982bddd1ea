//! Status helpers: condition merging (transition times survive when the status does not
//! change), whole-second times (what the API server stores), Go-style durations.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets condition `type_`, keeping `lastTransitionTime` unless its status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        existing.status = status;
        existing.reason = reason.to_string();
        existing.message = message.to_string();
        existing.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: Time(now),
        });
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `ts` without its sub-second part: status times round-trip through the API at second
/// precision, so the plan works in whole seconds to compare like with like.
pub fn truncate(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// Time from `from` to `to`, zero if `to` is not later.
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    let secs = to.as_second() - from.as_second();
    let nanos = i64::from(to.subsec_nanosecond()) - i64::from(from.subsec_nanosecond());
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    if total <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
    }
}

/// `ts + d`.
pub fn add(ts: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    Timestamp::from_second(ts.as_second().saturating_add(secs)).unwrap_or(Timestamp::MAX)
}

/// Formats like Go's `time.Duration.String()` (`7.066022293s`, `1m30s`, `2h0m0s`, `0s`),
/// the format Scribe/VolSync users see in `lastSyncDuration`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos / scale, nanos % scale, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs % 3600) / 60, total_secs % 60);
    let secs = format!("{}s", fraction(s, sub, 1_000_000_000));
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

fn fraction(whole: u128, rem: u128, scale: u128) -> String {
    if rem == 0 {
        return whole.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let frac = format!("{rem:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn go_duration_matches_go_formatting() {
        assert_eq!(
            go_duration(Duration::from_nanos(7_066_022_293)),
            "7.066022293s"
        );
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn transition_time_survives_when_status_is_unchanged() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            "Reconciled",
            true,
            "ReconcileComplete",
            "ok",
            None,
            ts("2026-01-01T00:00:00Z"),
        );
        set_condition(
            &mut conds,
            "Reconciled",
            true,
            "ReconcileComplete",
            "still ok",
            Some(2),
            ts("2026-01-01T01:00:00Z"),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time.0, ts("2026-01-01T00:00:00Z"));
        assert_eq!(conds[0].message, "still ok");
        set_condition(
            &mut conds,
            "Reconciled",
            false,
            "Error",
            "bad",
            Some(2),
            ts("2026-01-01T02:00:00Z"),
        );
        assert_eq!(conds[0].last_transition_time.0, ts("2026-01-01T02:00:00Z"));
    }

    #[test]
    fn truncate_and_until_work_in_whole_seconds() {
        let t = ts("2026-01-01T00:00:00.750Z");
        assert_eq!(truncate(t), ts("2026-01-01T00:00:00Z"));
        assert_eq!(
            until(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:01:00Z")),
            Duration::from_secs(60)
        );
        assert_eq!(
            until(ts("2026-01-01T00:01:00Z"), ts("2026-01-01T00:00:00Z")),
            Duration::ZERO
        );
        assert_eq!(
            add(ts("2026-01-01T00:00:00Z"), Duration::from_secs(30)),
            ts("2026-01-01T00:00:30Z")
        );
    }
}
