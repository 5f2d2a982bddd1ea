//! Errors raised while reading rclone.conf and resolving a remote's options.

use std::path::PathBuf;

use crate::store::remote::ErrorCategory;

/// Everything that can be wrong with the configuration. Messages name the file,
/// line, section and key involved and never include a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading rclone config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rclone config {origin} line {line}: {message}")]
    Parse {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("rclone config {origin} is encrypted but RCLONE_CONFIG_PASS is not set")]
    MissingPassword { origin: String },
    #[error("rclone config {origin}: {message}")]
    Decrypt { origin: String, message: String },
    #[error("section {section:?} not found in {origin}; sections present: {}", list_or_none(.available))]
    SectionNotFound {
        section: String,
        origin: String,
        available: Vec<String>,
    },
    #[error("section {section:?} has no `type`")]
    MissingType { section: String },
    #[error(
        "section {section:?} has type {kind:?}, which is not supported (supported: s3, azureblob, google cloud storage, local, crypt)"
    )]
    UnsupportedType { section: String, kind: String },
    #[error("section {section:?} key {key:?}: {message}")]
    InvalidValue {
        section: String,
        key: String,
        message: String,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ConfigError {
    /// Every configuration problem needs a human to fix it.
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::Config
    }
}
