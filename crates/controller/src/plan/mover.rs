//! Reading a mover Job's outcome: its phase from the Job conditions, the summary from the
//! pod's termination message, the failure class from the exit code (78 = configuration,
//! anything else transient), and the retry backoff. The summary's fields and the exit codes
//! are the mover contract's (`scribe_contract`).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use scribe_contract::{Exit, strip_summary_prefix};

use super::MoverReport;
use crate::builders::names::hex_prefix;

/// First retry delay after a transient failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// Most of the mover's output kept in `latestMoverStatus.logs`.
pub const MAX_LOGS: usize = 4096;

/// Where a mover Job is.
#[derive(Clone, Debug, PartialEq)]
pub enum JobPhase {
    Running,
    Succeeded {
        at: Option<Timestamp>,
    },
    Failed {
        at: Option<Timestamp>,
        message: String,
    },
}

/// The Job's phase from its terminal conditions (`Complete` / `Failed`).
pub fn job_phase(job: &Job) -> JobPhase {
    let status = job.status.as_ref();
    let conds = status.and_then(|s| s.conditions.as_ref());
    let find = |t: &str| conds.and_then(|c| c.iter().find(|c| c.type_ == t && c.status == "True"));
    if let Some(c) = find("Complete") {
        let at = status
            .and_then(|s| s.completion_time.as_ref())
            .map(|t| t.0)
            .or(c.last_transition_time.as_ref().map(|t| t.0));
        return JobPhase::Succeeded { at };
    }
    if let Some(c) = find("Failed") {
        let message = c
            .message
            .clone()
            .or_else(|| c.reason.clone())
            .unwrap_or_default();
        return JobPhase::Failed {
            at: c.last_transition_time.as_ref().map(|t| t.0),
            message,
        };
    }
    JobPhase::Running
}

/// The mover's summary (`SCRIBE_SUMMARY {...}`), read leniently: the controller uses the
/// counts, the result and the error.
pub type Summary = scribe_contract::SummaryReport;

/// The summary JSON inside a termination message: the message itself, or the last line
/// carrying it (with or without the `SCRIBE_SUMMARY ` prefix) when logs were used instead.
pub fn parse_summary(message: &str) -> Option<(Summary, String)> {
    let parse = |s: &str| {
        serde_json::from_str::<Summary>(s.trim())
            .ok()
            .map(|v| (v, s.trim().to_string()))
    };
    if let Some(found) = parse(message) {
        return Some(found);
    }
    message.lines().rev().find_map(|line| {
        let line = line.trim();
        let json = strip_summary_prefix(line).unwrap_or(line);
        if json.starts_with('{') {
            parse(json)
        } else {
            None
        }
    })
}

/// What goes into `latestMoverStatus.logs`: the summary JSON, else the (bounded) message.
pub fn mover_logs(report: Option<&MoverReport>, fallback: &str) -> String {
    let message = report.and_then(|r| r.message.as_deref()).unwrap_or("");
    if let Some((_, json)) = parse_summary(message) {
        return json;
    }
    let text = if message.trim().is_empty() {
        match report.and_then(|r| r.exit_code) {
            Some(code) => format!("{fallback} (exit code {code})"),
            None => fallback.to_string(),
        }
    } else {
        message.trim().to_string()
    };
    bounded_tail(&text, MAX_LOGS)
}

/// Most bytes of mover output quoted in a condition message (the API server accepts 32 KiB,
/// but a condition is read by people: the error line is what matters).
pub const MAX_MESSAGE: usize = 1000;

/// `text` cut to at most `max` bytes at a char boundary, ending with "…" when cut.
pub fn bounded_head(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last `max` bytes of `text` at a char boundary, starting with "…" when cut.
pub fn bounded_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Exit 78: retrying with the same spec and Secret cannot succeed.
    Config,
    /// Anything else (75, 1, killed, pod lost): retry after a backoff.
    Transient,
}

pub fn classify(report: Option<&MoverReport>) -> FailureKind {
    match report.and_then(|r| r.exit_code).and_then(Exit::from_code) {
        Some(Exit::Config) => FailureKind::Config,
        _ => FailureKind::Transient,
    }
}

/// Delay before retry number `failures` (1-based): 30 s doubling, capped at 1 h.
pub fn backoff(failures: i32) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
}

/// Identifies the configuration a config error happened with: the spec (hashed) and the
/// Secret's resourceVersion. A change to either lifts the block.
pub fn config_fingerprint<T: serde::Serialize>(spec: &T, secret: Option<&Secret>) -> String {
    let spec_json = serde_json::to_string(spec).unwrap_or_default();
    let rv = secret
        .and_then(|s| s.metadata.resource_version.clone())
        .unwrap_or_else(|| "none".to_string());
    format!("spec:{}/secret:{rv}", hex_prefix(&spec_json, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_30s_and_caps_at_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(4), Duration::from_secs(240));
        assert_eq!(backoff(7), Duration::from_secs(1920));
        assert_eq!(backoff(8), Duration::from_secs(3600));
        assert_eq!(backoff(1000), Duration::from_secs(3600));
    }

    #[test]
    fn summary_is_found_in_a_bare_message_or_in_log_lines() {
        let json = r#"{"result":"Successful","direction":"source","filesTransferred":3,"bytesTransferred":42}"#;
        let (s, raw) = parse_summary(json).expect("bare");
        assert_eq!((s.files_transferred, s.bytes_transferred), (3, 42));
        assert_eq!(raw, json);
        let logs = format!("progress 10%\nSCRIBE_SUMMARY {json}\n");
        assert_eq!(
            parse_summary(&logs).expect("prefixed").0.bytes_transferred,
            42
        );
        assert!(parse_summary("panic: oops").is_none());
    }

    #[test]
    fn exit_78_is_a_config_error_everything_else_transient() {
        let r = |c| MoverReport {
            exit_code: Some(c),
            message: None,
        };
        assert_eq!(classify(Some(&r(78))), FailureKind::Config);
        assert_eq!(classify(Some(&r(75))), FailureKind::Transient);
        assert_eq!(classify(Some(&r(1))), FailureKind::Transient);
        assert_eq!(classify(None), FailureKind::Transient);
    }

    #[test]
    fn logs_fall_back_to_the_exit_code_and_are_bounded() {
        let r = MoverReport {
            exit_code: Some(137),
            message: None,
        };
        assert_eq!(
            mover_logs(Some(&r), "mover failed"),
            "mover failed (exit code 137)"
        );
        let long = MoverReport {
            exit_code: Some(1),
            message: Some("x".repeat(10_000)),
        };
        assert!(mover_logs(Some(&long), "f").len() <= MAX_LOGS + 3);
    }

    #[test]
    fn bounded_head_cuts_at_a_char_boundary_within_the_limit() {
        assert_eq!(bounded_head("short", 10), "short");
        let cut = bounded_head(&"ab€".repeat(100), 50);
        assert!(cut.len() <= 50, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!("ab€".repeat(100).starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn fingerprint_changes_with_spec_or_secret_version() {
        let mut secret = Secret::default();
        secret.metadata.resource_version = Some("10".into());
        let a = config_fingerprint(&"spec-a", Some(&secret));
        assert_eq!(a, config_fingerprint(&"spec-a", Some(&secret)));
        assert_ne!(a, config_fingerprint(&"spec-b", Some(&secret)));
        secret.metadata.resource_version = Some("11".into());
        assert_ne!(a, config_fingerprint(&"spec-a", Some(&secret)));
    }
}
