//! Reading Scribe status the way the scenarios assert on it: conditions by type, status
//! times, the mover's summary JSON (`latestMoverStatus.logs`), Go-style durations
//! (`lastSyncDuration`), and cron grid checks for `nextSyncTime`.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// The condition of type `type_`, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `type=status reason: message` of every condition, for failure messages.
pub fn describe_conditions(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return "no conditions".to_string();
    }
    conditions
        .iter()
        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The timestamp of an optional status time.
pub fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// Now, as a timestamp.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// The mover's summary (the JSON it prints last and the controller copies into
/// `latestMoverStatus.logs`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverSummary {
    pub result: String,
    pub direction: String,
    #[serde(default)]
    pub files_checked: u64,
    #[serde(default)]
    pub bytes_checked: u64,
    #[serde(default)]
    pub files_transferred: u64,
    #[serde(default)]
    pub bytes_transferred: u64,
    #[serde(default)]
    pub files_deleted: u64,
    #[serde(default)]
    pub duration_seconds: f64,
    #[serde(default)]
    pub error: Option<String>,
}

/// Parses a summary from `logs`: the bare JSON, or a `SCRIBE_SUMMARY {json}` line in it.
pub fn parse_summary(logs: &str) -> Result<MoverSummary> {
    let candidate = logs
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("SCRIBE_SUMMARY ")
                .or_else(|| l.starts_with('{').then_some(l))
        })
        .unwrap_or(logs.trim());
    serde_json::from_str(candidate)
        .with_context(|| format!("latestMoverStatus.logs is not a mover summary: {logs:?}"))
}

/// Parses a Go `time.Duration` string (`7.066022293s`, `1m30s`, `250ms`, `2h0m0s`) into seconds.
pub fn parse_go_duration(s: &str) -> Result<f64> {
    if s == "0s" || s == "0" {
        return Ok(0.0);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .with_context(|| format!("{s:?}: a number without a unit"))?;
        let (num, tail) = rest.split_at(split);
        let value: f64 = num
            .parse()
            .with_context(|| format!("{s:?}: {num:?} is not a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            other => bail!("{s:?}: unknown unit {other:?}"),
        };
        total += value * scale;
        rest = next;
    }
    Ok(total)
}

/// Whether `t` falls on the grid of a `*/step` minutes schedule (second 0, minute divisible).
pub fn on_minute_grid(t: Timestamp, step: i64) -> bool {
    let secs = t.as_second();
    secs % 60 == 0 && (secs / 60) % step == 0
}

/// `YYYYMMDDHHMMSS` (UTC) of `t`, as in destination image names.
pub fn compact_utc(t: Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y%m%d%H%M%S", t).unwrap_or_default()
}

/// Parses `YYYYMMDDHHMMSS` (UTC).
pub fn parse_compact_utc(s: &str) -> Result<Timestamp> {
    anyhow::ensure!(
        s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()),
        "{s:?} is not YYYYMMDDHHMMSS"
    );
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    );
    iso.parse()
        .with_context(|| format!("{s:?} is not a valid UTC time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert!((parse_go_duration("7.066022293s").unwrap() - 7.066022293).abs() < 1e-9);
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90.0);
        assert_eq!(parse_go_duration("2h0m0s").unwrap(), 7200.0);
        assert_eq!(parse_go_duration("250ms").unwrap(), 0.25);
        assert_eq!(parse_go_duration("0s").unwrap(), 0.0);
        assert!(parse_go_duration("12").is_err());
        assert!(parse_go_duration("3x").is_err());
    }

    #[test]
    fn summaries_parse_bare_or_prefixed() {
        let json = r#"{"result":"Successful","direction":"source","filesChecked":3,"bytesChecked":9,"filesTransferred":2,"bytesTransferred":6,"filesDeleted":1,"durationSeconds":0.5}"#;
        let s = parse_summary(json).unwrap();
        assert_eq!((s.files_transferred, s.files_deleted), (2, 1));
        let s = parse_summary(&format!("progress\nSCRIBE_SUMMARY {json}\n")).unwrap();
        assert_eq!(s.direction, "source");
        assert!(parse_summary("mover Job failed").is_err());
    }

    #[test]
    fn grid_and_compact_times() {
        let t: Timestamp = "2026-11-26T10:12:00Z".parse().unwrap();
        assert!(on_minute_grid(t, 6));
        assert!(!on_minute_grid(t, 5));
        assert!(!on_minute_grid("2026-11-26T10:12:01Z".parse().unwrap(), 1));
        assert_eq!(compact_utc(t), "20261126101200");
        assert_eq!(parse_compact_utc("20261126101200").unwrap(), t);
        assert!(parse_compact_utc("2026112610120").is_err());
    }
}
