//! The result of one run as the controller reads it: the `SCRIBE_SUMMARY {json}`
//! line on stdout and the same JSON in the termination log.
//!
//! The types are the mover contract's (`scribe_contract`): `result` is `Successful`,
//! `Failed`, or `Interrupted` (SIGTERM: the run stopped, aborted its uploads and committed
//! nothing; exit 75). `filesSkippedChanging` counts source files that kept changing while
//! read and were left at their last committed version (or out, when new) — the run still
//! succeeds. This module adds what only the mover needs: building a failed summary whose
//! JSON fits the termination message, and printing it.

pub use scribe_contract::{
    Direction, MAX_SUMMARY_JSON_BYTES as MAX_JSON_BYTES, Outcome, SUMMARY_PREFIX, Summary,
};

const ELLIPSIS: &str = "…";

/// The mover's side of [`Summary`]: failed and interrupted summaries that fit the
/// termination message, and their JSON and stdout line.
pub trait SummaryExt: Sized {
    /// A failed run's summary; a long error is cut (see [`MAX_JSON_BYTES`]).
    fn failed(direction: Direction, duration_seconds: f64, error: String) -> Self;
    /// The summary of a run stopped by a signal.
    fn interrupted(direction: Direction, duration_seconds: f64, error: String) -> Self;
    /// The JSON (termination log).
    fn to_json(&self) -> String;
    /// The stdout line: `SCRIBE_SUMMARY {json}`.
    fn line(&self) -> String;
}

impl SummaryExt for Summary {
    fn failed(direction: Direction, duration_seconds: f64, error: String) -> Self {
        let mut s = Self {
            result: Outcome::Failed,
            duration_seconds,
            error: Some(error),
            ..Self::new(direction)
        };
        fit_error(&mut s, MAX_JSON_BYTES);
        s
    }

    fn interrupted(direction: Direction, duration_seconds: f64, error: String) -> Self {
        Self {
            result: Outcome::Interrupted,
            ..Self::failed(direction, duration_seconds, error)
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }

    fn line(&self) -> String {
        format!("{SUMMARY_PREFIX} {}", self.to_json())
    }
}

/// Cuts `error` at a char boundary, ending it with "…", so the JSON is at most
/// `max` bytes; counts what each char costs once escaped in JSON.
fn fit_error(s: &mut Summary, max: usize) {
    let Some(error) = s.error.replace(String::new()) else {
        return;
    };
    let fixed = s.to_json().len();
    let cost = |c: char| serde_json::to_string(&c).map_or(6, |s| s.len() - 2);
    if fixed + error.chars().map(cost).sum::<usize>() <= max {
        s.error = Some(error);
        return;
    }
    let mut budget = max.saturating_sub(fixed + ELLIPSIS.len());
    let mut keep = 0;
    for c in error.chars() {
        match budget.checked_sub(cost(c)) {
            Some(left) => budget = left,
            None => break,
        }
        keep += c.len_utf8();
    }
    s.error = Some(format!("{}{ELLIPSIS}", &error[..keep]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_has_the_contract_fields_in_order() {
        let mut s = Summary::new(Direction::Source);
        s.files_checked = 3;
        s.duration_seconds = 1.5;
        assert_eq!(
            s.line(),
            "SCRIBE_SUMMARY {\"result\":\"Successful\",\"direction\":\"source\",\"filesChecked\":3,\"bytesChecked\":0,\
             \"filesTransferred\":0,\"bytesTransferred\":0,\"filesDeleted\":0,\"filesSkippedChanging\":0,\"durationSeconds\":1.5}"
        );
        let f = Summary::failed(Direction::Destination, 0.25, "boom".into());
        let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["result"], "Failed");
        assert_eq!(v["direction"], "destination");
        assert_eq!(v["error"], "boom");
    }

    #[test]
    fn long_error_is_cut_to_fit_the_termination_message() {
        // Multi-byte chars and characters JSON escapes, so the cut must respect both.
        let long = "é\"\n".repeat(2_600) + "tail";
        assert!(long.len() > 10 * 1024);
        let f = Summary::failed(Direction::Destination, 123.456, long.clone());
        let json = f.to_json();
        assert!(json.len() <= MAX_JSON_BYTES, "{} bytes", json.len());
        assert!(json.len() > MAX_JSON_BYTES - 64, "cut no more than needed");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(error.ends_with('…'));
        assert!(long.starts_with(error.strip_suffix('…').unwrap()));
        assert_eq!(v["result"], "Failed");
        assert!(f.line().len() < 4096);
    }

    #[test]
    fn short_error_is_kept_whole() {
        let msg = "x".repeat(3_000);
        let f = Summary::failed(Direction::Source, 0.0, msg.clone());
        assert_eq!(f.error.as_deref(), Some(msg.as_str()));
    }
}
