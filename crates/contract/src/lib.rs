//! The mover contract: everything the controller puts into a mover Job and the mover reads
//! back out of it, written once so the two sides cannot drift (see DESIGN.md, "Mover
//! contract").
//!
//! - [`env`]: the environment variables the controller sets and the mover reads (each is
//!   also a command-line flag of the mover, for standalone use);
//! - [`paths`]: where the Job mounts the data volume, the rclone Secret and the custom CA;
//! - [`Direction`]: which way the mover copies;
//! - [`Exit`]: the mover's exit codes (0 ok, 1 internal, 75 transient, 78 configuration);
//! - [`Summary`]: the final `SCRIBE_SUMMARY {json}` line on stdout, also written (without
//!   the prefix) to the termination log; [`SummaryReport`] is the lenient view a reader
//!   (the controller) parses.
//!
//! Renaming anything here is a contract change: `tests/contract.rs` pins every name and code.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Environment variables of the mover Job.
pub mod env {
    /// `source` or `destination` ([`crate::Direction`]).
    pub const DIRECTION: &str = "DIRECTION";
    /// Path of rclone.conf (unset: the remote is defined by `RCLONE_CONFIG_<SECTION>_*`).
    pub const RCLONE_CONFIG: &str = "RCLONE_CONFIG";
    /// Section (remote name) of rclone.conf.
    pub const RCLONE_CONFIG_SECTION: &str = "RCLONE_CONFIG_SECTION";
    /// `bucket/prefix` in the remote.
    pub const RCLONE_DEST_PATH: &str = "RCLONE_DEST_PATH";
    /// Local directory to sync ([`crate::paths::DATA`] in the Job).
    pub const MOUNT_PATH: &str = "MOUNT_PATH";
    /// PEM bundle added to the trusted roots.
    pub const CUSTOM_CA: &str = "CUSTOM_CA";
    /// Where the summary JSON is written (empty: nowhere).
    pub const TERMINATION_LOG: &str = "TERMINATION_LOG";
    /// Files transferred at once.
    pub const SCRIBE_TRANSFERS: &str = "SCRIBE_TRANSFERS";
    /// Re-hash every local file (boolean).
    pub const SCRIBE_CHECKSUM: &str = "SCRIBE_CHECKSUM";
    /// Report what would change, change nothing (boolean).
    pub const SCRIBE_DRY_RUN: &str = "SCRIBE_DRY_RUN";
    /// Allow an empty source to empty a non-empty remote (boolean).
    pub const SCRIBE_ALLOW_EMPTY_SOURCE: &str = "SCRIBE_ALLOW_EMPTY_SOURCE";
    /// `text` or `json` logs on stderr.
    pub const SCRIBE_LOG_FORMAT: &str = "SCRIBE_LOG_FORMAT";
    /// Log filter (tracing `EnvFilter` syntax), `info` by default.
    pub const SCRIBE_LOG_LEVEL: &str = "SCRIBE_LOG_LEVEL";
    /// Prefix of the Secret keys passed through to the mover as environment variables,
    /// besides `RCLONE_`.
    pub const SCRIBE_PREFIX: &str = "SCRIBE_";
    /// Prefix of rclone's own variables (a remote may be defined by them alone).
    pub const RCLONE_PREFIX: &str = "RCLONE_";
}

/// Paths inside the mover's pod.
pub mod paths {
    /// Where the data volume is mounted.
    pub const DATA: &str = "/data";
    /// Where the rclone Secret is mounted.
    pub const RCLONE_CONFIG_DIR: &str = "/rclone-config";
    /// Where the custom CA bundle is mounted.
    pub const CUSTOM_CA_DIR: &str = "/custom-ca";
    /// The container's termination message file.
    pub const TERMINATION_LOG: &str = "/dev/termination-log";
}

/// Which way the mover copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local directory → remote.
    Source,
    /// Remote → local directory.
    Destination,
}

impl Direction {
    /// Every direction, in order.
    pub const ALL: [Direction; 2] = [Direction::Source, Direction::Destination];

    /// The value of [`env::DIRECTION`] (and the mover's positional argument).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A direction that is neither `source` nor `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDirection(pub String);

impl fmt::Display for UnknownDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown direction {:?}: expected `source` or `destination`",
            self.0
        )
    }
}

impl std::error::Error for UnknownDirection {}

impl FromStr for Direction {
    type Err = UnknownDirection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDirection(s.to_string()))
    }
}

/// The mover's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Synced and verified.
    Ok,
    /// Unexpected internal failure (the controller treats it as transient).
    Internal,
    /// Transient failure (including SIGTERM): retry later (sysexits EX_TEMPFAIL).
    Transient,
    /// Configuration error: retrying the same spec and Secret cannot help (sysexits
    /// EX_CONFIG). The Job's pod failure policy fails the Job at once on it.
    Config,
}

impl Exit {
    /// Every exit code, in order.
    pub const ALL: [Exit; 4] = [Exit::Ok, Exit::Internal, Exit::Transient, Exit::Config];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Internal => 1,
            Self::Transient => 75,
            Self::Config => 78,
        }
    }

    /// The exit code as Kubernetes reports it (container status, pod failure policy).
    pub const fn code_i32(self) -> i32 {
        self.code() as i32
    }

    /// The contract's meaning of an exit code as Kubernetes reports it; `None` for codes
    /// the mover never exits with itself (a kill by signal, 137, …).
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code_i32() == code)
    }
}

/// Prefix of the summary line on stdout: `SCRIBE_SUMMARY {json}`.
pub const SUMMARY_PREFIX: &str = "SCRIBE_SUMMARY";

/// Largest serialized summary the mover writes: Kubernetes keeps at most 4096 bytes of a
/// termination message, so a long error is cut to leave room for the rest.
pub const MAX_SUMMARY_JSON_BYTES: usize = 3584;

/// How a run ended (`result` in the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Successful,
    Failed,
    /// Stopped by SIGTERM before it completed: uploads aborted, nothing committed, exit 75.
    Interrupted,
}

/// The summary of one run, exactly as the mover emits it (fields in this order).
/// `files_transferred` counts uploads, downloads and server-side copies;
/// `bytes_transferred` only bytes that crossed the network. `files_skipped_changing`
/// counts source files that kept changing while read and were left at their last committed
/// version (or out, when new) — the run still succeeds.
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
    /// Source files that kept changing while read (left as last committed, or out).
    #[serde(default)]
    pub files_skipped_changing: u64,
    pub duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    /// A successful, empty run's summary (the mover adds its counts as it goes).
    pub fn new(direction: Direction) -> Self {
        Self {
            result: Outcome::Successful,
            direction,
            files_checked: 0,
            bytes_checked: 0,
            files_transferred: 0,
            bytes_transferred: 0,
            files_deleted: 0,
            files_skipped_changing: 0,
            duration_seconds: 0.0,
            error: None,
        }
    }
}

/// What a reader of a summary can rely on, read leniently: every field optional or
/// defaulted, so a summary from an older or newer mover (or one cut short) still yields
/// its counts. Field names are those of [`Summary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SummaryReport {
    pub result: Option<Outcome>,
    pub direction: Option<Direction>,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub files_transferred: u64,
    pub bytes_transferred: u64,
    pub files_deleted: u64,
    pub files_skipped_changing: u64,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Summary> for SummaryReport {
    fn from(s: Summary) -> Self {
        Self {
            result: Some(s.result),
            direction: Some(s.direction),
            files_checked: s.files_checked,
            bytes_checked: s.bytes_checked,
            files_transferred: s.files_transferred,
            bytes_transferred: s.bytes_transferred,
            files_deleted: s.files_deleted,
            files_skipped_changing: s.files_skipped_changing,
            duration_seconds: s.duration_seconds,
            error: s.error,
        }
    }
}

/// The JSON of a summary line (`SCRIBE_SUMMARY {json}` → `{json}`), trimmed; `None` when
/// the line does not start with [`SUMMARY_PREFIX`].
pub fn strip_summary_prefix(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix(SUMMARY_PREFIX)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}
