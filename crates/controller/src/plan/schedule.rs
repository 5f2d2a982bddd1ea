//! Cron schedules as users write them (5 fields, or `@hourly`-style descriptors, UTC), turned
//! into the `cron` crate's 6-field, Quartz-flavoured form.
//!
//! Two translations matter: the crate numbers weekdays 1–7 from Sunday while standard cron uses
//! 0–7 (0 and 7 both Sunday), and standard cron ORs day-of-month with day-of-week when both are
//! restricted while the crate ANDs them — so such a spec becomes two schedules whose earliest
//! firing wins.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use k8s_openapi::jiff::Timestamp;

/// A schedule the user wrote could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "spec.trigger.schedule {spec:?}: expected 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly, got {fields} field(s)"
    )]
    FieldCount { spec: String, fields: usize },
    #[error(
        "spec.trigger.schedule {spec:?}: unknown descriptor (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually)"
    )]
    Descriptor { spec: String },
    #[error("spec.trigger.schedule {spec:?}: invalid day-of-week {item:?} (use 0-7 or SUN-SAT)")]
    DayOfWeek { spec: String, item: String },
    #[error("spec.trigger.schedule {spec:?}: {reason}")]
    Parse { spec: String, reason: String },
}

/// A parsed schedule, evaluated in UTC.
#[derive(Clone, Debug)]
pub struct Schedule {
    alternatives: Vec<cron::Schedule>,
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses a 5-field cron spec or a descriptor.
    pub fn parse(spec: &str) -> Result<Self, ScheduleError> {
        let trimmed = spec.trim();
        let fields: Vec<&str> = if let Some(descriptor) = trimmed.strip_prefix('@') {
            match descriptor.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => vec!["0", "0", "1", "1", "*"],
                "monthly" => vec!["0", "0", "1", "*", "*"],
                "weekly" => vec!["0", "0", "*", "*", "0"],
                "daily" | "midnight" => vec!["0", "0", "*", "*", "*"],
                "hourly" => vec!["0", "*", "*", "*", "*"],
                _ => {
                    return Err(ScheduleError::Descriptor {
                        spec: spec.to_string(),
                    });
                }
            }
        } else {
            trimmed.split_whitespace().collect()
        };
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount {
                spec: spec.to_string(),
                fields: fields.len(),
            });
        }
        let (minute, hour, dom, month, dow) =
            (fields[0], fields[1], fields[2], fields[3], fields[4]);
        let dow = translate_day_of_week(spec, dow)?;
        let unrestricted = |f: &str| f == "*" || f == "?";
        let variants: Vec<(String, String)> = if !unrestricted(dom) && !unrestricted(&dow) {
            vec![(dom.to_string(), "*".to_string()), ("*".to_string(), dow)]
        } else {
            vec![(dom.to_string(), dow)]
        };
        let mut alternatives = Vec::with_capacity(variants.len());
        for (dom, dow) in variants {
            let six = format!("0 {minute} {hour} {dom} {month} {dow}");
            let parsed = cron::Schedule::from_str(&six).map_err(|e| ScheduleError::Parse {
                spec: spec.to_string(),
                reason: e.to_string(),
            })?;
            alternatives.push(parsed);
        }
        Ok(Self { alternatives })
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = to_chrono(after)?;
        self.alternatives
            .iter()
            .filter_map(|s| s.after(&start).next())
            .min()
            .map(from_chrono)
    }
}

/// Rewrites a standard day-of-week field as an explicit list of the crate's day names, so no
/// numbering difference can leak through.
fn translate_day_of_week(spec: &str, field: &str) -> Result<String, ScheduleError> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let bad = |item: &str| ScheduleError::DayOfWeek {
        spec: spec.to_string(),
        item: item.to_string(),
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(item))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                day_number(a).ok_or_else(|| bad(item))?,
                day_number(b).ok_or_else(|| bad(item))?,
            )
        } else {
            let d = day_number(range).ok_or_else(|| bad(item))?;
            // `5/2` in cron means "from 5 to the end, every 2".
            if item.contains('/') { (d, 6) } else { (d, d) }
        };
        // A range may end at 7 (Sunday): keep it as 7 while stepping, then fold.
        if lo > hi {
            return Err(bad(item));
        }
        let mut d = lo;
        while d <= hi {
            days[d % 7] = true;
            d += step;
        }
    }
    let names: Vec<&str> = (0..7).filter(|d| days[*d]).map(|d| DAYS[d]).collect();
    Ok(names.join(","))
}

fn day_number(s: &str) -> Option<usize> {
    const FULL: [&str; 7] = [
        "SUNDAY",
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
    ];
    if let Ok(n) = s.parse::<usize>() {
        return (n <= 7).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    DAYS.iter()
        .position(|d| upper == *d)
        .or_else(|| FULL.iter().position(|d| upper == *d))
}

fn to_chrono(ts: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.as_second(), u32::try_from(ts.subsec_nanosecond()).ok()?)
}

fn from_chrono(dt: DateTime<Utc>) -> Timestamp {
    Timestamp::new(
        dt.timestamp(),
        i32::try_from(dt.timestamp_subsec_nanos()).unwrap_or(0),
    )
    .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .expect("valid schedule")
            .next_after(ts(after))
            .expect("fires")
            .to_string()
    }

    #[test]
    fn every_six_minutes_fires_on_the_next_multiple_of_six() {
        assert_eq!(
            next("*/6 * * * *", "2021-01-18T21:50:59Z"),
            "2021-01-18T21:54:00Z"
        );
    }

    #[test]
    fn next_is_strictly_after_the_given_time() {
        assert_eq!(
            next("*/6 * * * *", "2021-01-18T21:54:00Z"),
            "2021-01-18T22:00:00Z"
        );
    }

    #[test]
    fn hourly_descriptor_fires_at_minute_zero() {
        assert_eq!(
            next("@hourly", "2026-03-01T10:15:00Z"),
            "2026-03-01T11:00:00Z"
        );
    }

    #[test]
    fn daily_weekly_monthly_yearly_descriptors() {
        assert_eq!(
            next("@daily", "2026-03-01T10:15:00Z"),
            "2026-03-02T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2026-03-01T10:15:00Z"),
            "2026-03-02T00:00:00Z"
        );
        // 2026-03-01 is a Sunday: @weekly fires at the next Sunday midnight.
        assert_eq!(
            next("@weekly", "2026-03-01T10:15:00Z"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-03-01T10:15:00Z"),
            "2026-04-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-03-01T10:15:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2026-03-01T10:15:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn weekday_range_uses_standard_cron_numbering() {
        // Friday 2026-03-06 02:00 → next is Monday 2026-03-09 02:00.
        assert_eq!(
            next("0 2 * * MON-FRI", "2026-03-06T02:00:00Z"),
            "2026-03-09T02:00:00Z"
        );
        assert_eq!(
            next("0 2 * * 1-5", "2026-03-06T02:00:00Z"),
            "2026-03-09T02:00:00Z"
        );
    }

    #[test]
    fn sunday_is_both_zero_and_seven() {
        // Monday 2026-03-02 → next Sunday is 2026-03-08.
        assert_eq!(
            next("0 0 * * 0", "2026-03-02T00:00:00Z"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-03-02T00:00:00Z"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 5-7", "2026-03-02T00:00:00Z"),
            "2026-03-06T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_like_standard_cron() {
        // The 15th or any Monday: after Sunday 2026-03-08 the Monday 9th comes first.
        assert_eq!(
            next("0 0 15 * MON", "2026-03-08T12:00:00Z"),
            "2026-03-09T00:00:00Z"
        );
        // After Monday the 9th, the 15th (a Sunday) comes before Monday the 16th.
        assert_eq!(
            next("0 0 15 * MON", "2026-03-09T12:00:00Z"),
            "2026-03-15T00:00:00Z"
        );
    }

    #[test]
    fn wrong_field_count_is_rejected_naming_the_field() {
        let err = Schedule::parse("* * *").expect_err("3 fields");
        assert!(err.to_string().contains("spec.trigger.schedule"), "{err}");
        assert!(matches!(err, ScheduleError::FieldCount { fields: 3, .. }));
    }

    #[test]
    fn unknown_descriptor_is_rejected() {
        assert!(matches!(
            Schedule::parse("@hourlyx"),
            Err(ScheduleError::Descriptor { .. })
        ));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("0 25 * * *").is_err());
        assert!(matches!(
            Schedule::parse("0 0 * * 8"),
            Err(ScheduleError::DayOfWeek { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 * * FUNDAY"),
            Err(ScheduleError::DayOfWeek { .. })
        ));
    }
}
