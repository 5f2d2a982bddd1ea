//! The engine's error type: every failure of a source or destination sync, named by
//! the action that failed and the path or key it failed on, and mapped to the
//! [`ErrorCategory`] that decides the mover's exit code.

use std::path::PathBuf;

use crate::store::remote::ErrorCategory;

/// A failed sync. Display is one line naming what failed; it never carries secrets
/// (object_store errors name keys and HTTP statuses, not credentials).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("local directory {path} does not exist or is not a directory")]
    LocalRootMissing { path: PathBuf },
    #[error(
        "refusing to sync: source {path} is empty{mount_note} but the remote {remote} is not; \
         a sync would delete everything there (pass --allow-empty-source / SCRIBE_ALLOW_EMPTY_SOURCE=true if this is intended)"
    )]
    EmptySource {
        path: PathBuf,
        mount_note: &'static str,
        remote: String,
    },
    #[error("unsafe path {path:?} in {origin}: {reason}")]
    UnsafePath {
        origin: String,
        path: String,
        reason: &'static str,
    },
    #[error(
        "{count} local path(s) cannot be replicated: {list}; names must be UTF-8 without \
         control characters (newline, tab, …), symlink targets UTF-8, and `.scribe` at the \
         root is reserved — rename them (nothing was uploaded)"
    )]
    UnsupportedNames { count: usize, list: String },
    #[error("invalid manifest {key} line {line}: {reason}")]
    ManifestInvalid {
        key: String,
        line: usize,
        reason: String,
    },
    #[error("walking {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("{action} {path}: {source}")]
    LocalIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {key}: {source}")]
    Store {
        action: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("verifying upload of {key}: {reason}")]
    VerifyUpload { key: String, reason: String },
    #[error(
        "source file {path} changed while it was being synced; retry with a stable (snapshot) source"
    )]
    SourceChanged { path: String },
    #[error("source file {path} vanished while it was being synced")]
    SourceVanished { path: String },
    #[error("interrupted (SIGTERM); the last committed manifest is intact")]
    Interrupted,
    #[error(
        "remote data did not match the manifest after {attempts} attempts (last: {path}); \
         the source is probably still uploading, retry later"
    )]
    DownloadMismatch { path: String, attempts: u32 },
    #[error(
        "the source's first upload to {remote} is in progress (no manifest yet; \
         started {started_at} on {host}); retry once it has committed"
    )]
    FirstUploadInProgress {
        remote: String,
        started_at: String,
        host: String,
    },
    #[error(
        "nothing has been replicated to {remote} yet (no manifest and no objects); \
         retry once the source has synced"
    )]
    NothingReplicated { remote: String },
    #[error("{failed} of {total} transfers failed; first error: {first}")]
    Transfers {
        failed: usize,
        total: usize,
        first: Box<SyncError>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl SyncError {
    /// Whether retrying can help; the binary turns this into exit 78 or 75.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::LocalRootMissing { .. }
            | Self::EmptySource { .. }
            | Self::UnsafePath { .. }
            | Self::UnsupportedNames { .. }
            | Self::ManifestInvalid { .. } => ErrorCategory::Config,
            Self::Store { source, .. } => store_category(source),
            Self::Transfers { first, .. } => first.category(),
            Self::LocalIo { source, .. } => crate::fs::local::io_category(source),
            Self::Walk { .. }
            | Self::VerifyUpload { .. }
            | Self::SourceChanged { .. }
            | Self::SourceVanished { .. }
            | Self::Interrupted
            | Self::DownloadMismatch { .. }
            | Self::FirstUploadInProgress { .. }
            | Self::NothingReplicated { .. }
            | Self::Internal(_) => ErrorCategory::Transient,
        }
    }

    /// A bug or panic rather than an expected failure (the binary exits 1 for these).
    pub fn is_internal(&self) -> bool {
        match self {
            Self::Internal(_) => true,
            Self::Transfers { first, .. } => first.is_internal(),
            _ => false,
        }
    }

    /// A stop asked for by a signal, not a failure of the sync itself.
    pub fn is_interrupted(&self) -> bool {
        match self {
            Self::Interrupted => true,
            Self::Transfers { first, .. } => first.is_interrupted(),
            _ => false,
        }
    }

    /// The refusal of a source holding `paths` (the first few are named).
    pub fn unsupported_names(paths: &[crate::fs::scan::Unsupported]) -> Self {
        const SHOWN: usize = 5;
        let mut list = paths
            .iter()
            .take(SHOWN)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if paths.len() > SHOWN {
            list.push_str(&format!(" and {} more", paths.len() - SHOWN));
        }
        Self::UnsupportedNames {
            count: paths.len(),
            list,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::LocalIo {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(
        action: &'static str,
        key: impl ToString,
        source: object_store::Error,
    ) -> Self {
        Self::Store {
            action,
            key: key.to_string(),
            source,
        }
    }
}

/// Credentials and permissions are a human's problem; everything else from the store
/// (timeouts, 5xx, throttling, a key vanishing mid-sync) may pass on retry.
fn store_category(e: &object_store::Error) -> ErrorCategory {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::InvalidPath { .. }
        | object_store::Error::NotImplemented { .. } => ErrorCategory::Config,
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source,
        } => crate::store::local::category(source.as_ref()).unwrap_or(ErrorCategory::Transient),
        _ => ErrorCategory::Transient,
    }
}

/// Joins a panicked or cancelled blocking task into the error type.
pub(crate) fn join_error(e: tokio::task::JoinError) -> SyncError {
    SyncError::Internal(format!("background task failed: {e}"))
}
