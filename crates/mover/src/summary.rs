//! The result of one run as the controller reads it: the `SCRIBE_SUMMARY {json}`
//! line on stdout and the same JSON in the termination log.

use serde::{Deserialize, Serialize};

/// Which way data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local directory → remote.
    Source,
    /// Remote → local directory.
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Successful,
    Failed,
}

/// Counts of one run. `files_transferred` counts uploads, downloads and server-side
/// copies; `bytes_transferred` only bytes that crossed the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub result: Outcome,
    pub direction: Direction,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub files_transferred: u64,
    pub bytes_transferred: u64,
    pub files_deleted: u64,
    pub duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    pub fn new(direction: Direction) -> Self {
        Self {
            result: Outcome::Successful,
            direction,
            files_checked: 0,
            bytes_checked: 0,
            files_transferred: 0,
            bytes_transferred: 0,
            files_deleted: 0,
            duration_seconds: 0.0,
            error: None,
        }
    }

    /// A failed run's summary.
    pub fn failed(direction: Direction, duration_seconds: f64, error: String) -> Self {
        Self {
            result: Outcome::Failed,
            duration_seconds,
            error: Some(error),
            ..Self::new(direction)
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }

    /// The stdout line: `SCRIBE_SUMMARY {json}`.
    pub fn line(&self) -> String {
        format!("SCRIBE_SUMMARY {}", self.to_json())
    }
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
             \"filesTransferred\":0,\"bytesTransferred\":0,\"filesDeleted\":0,\"durationSeconds\":1.5}"
        );
        let f = Summary::failed(Direction::Destination, 0.25, "boom".into());
        let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["result"], "Failed");
        assert_eq!(v["direction"], "destination");
        assert_eq!(v["error"], "boom");
    }
}
