//! Opening a [`Remote`] from a parsed rclone.conf section: the `local` (see `local`),
//! `s3`, `azureblob` and `google cloud storage` backends, `crypt` over any of them
//! (see `crypt/`), and classification of what went wrong into [`ErrorCategory`].
//!
//! S3 data moves through object_store (get, put, multipart upload, delete); the
//! requests it cannot express go through aws-sdk-s3 configured identically
//! (`s3_client`): bucket check and creation (`s3`), the listing (`s3_list`),
//! incomplete multipart uploads (`s3_uploads`), and copies with the copy's own
//! metadata, multipart above `copy_cutoff` (`s3_copy`).

use std::path::PathBuf;

use crate::config::{self, ConfigError, Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, Remote};

pub(crate) mod azure;
pub mod azure_settings;
pub mod crypt;
pub mod external_sort;
pub(crate) mod gcs;
mod gcs_object;
pub mod gcs_settings;
mod gcs_store;
mod gcs_upload;
pub mod listing;
pub mod local;
pub mod remote;
mod s3;
mod s3_client;
mod s3_copy;
mod s3_list;
pub mod s3_settings;
mod s3_uploads;
pub mod transfer;

/// What to open: which config file and section, and where inside the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenArgs {
    /// rclone.conf path; `None` when the remote is defined by environment variables only.
    pub config_path: Option<PathBuf>,
    /// Section (remote name) in rclone.conf.
    pub section: String,
    /// `bucket/prefix` for object stores, a directory for `type = local`.
    pub remote_path: String,
    /// PEM bundle whose certificates are trusted in addition to the system roots.
    pub custom_ca: Option<PathBuf>,
    /// Create the bucket when it is missing (the source, as rclone does unless
    /// `no_check_bucket`). The destination never creates one: a missing bucket is a
    /// configuration error ("no such bucket"), so a typo is not papered over.
    pub create_bucket: bool,
}

/// Why a remote could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    #[error("section {section:?}: remote path {path:?}: {message}")]
    RemotePath {
        section: String,
        path: String,
        message: String,
    },
    #[error("section {section:?}: creating local directory {path}: {source}")]
    LocalDir {
        section: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("section {section:?}: building the {kind} store: {message}")]
    Build {
        section: String,
        kind: &'static str,
        message: String,
    },
    #[error("section {section:?}: custom CA bundle {path}: {message}")]
    CustomCa {
        section: String,
        path: PathBuf,
        message: String,
    },
    #[error("section {section:?}: env_auth found no usable AWS credentials: {message}")]
    Credentials { section: String, message: String },
    #[error("section {section:?} bucket {bucket:?} at {endpoint}: {action} failed: {message}")]
    Bucket {
        section: String,
        bucket: String,
        endpoint: String,
        action: &'static str,
        category: ErrorCategory,
        message: String,
    },
}

impl BackendError {
    /// Whether retrying may help.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Config(e) => e.category(),
            Self::Crypt(e) => e.category(),
            Self::RemotePath { .. }
            | Self::Build { .. }
            | Self::CustomCa { .. }
            | Self::Credentials { .. } => ErrorCategory::Config,
            Self::LocalDir { source, .. } => crate::fs::local::io_category(source),
            Self::Bucket { category, .. } => *category,
        }
    }
}

/// Parse the configuration, apply environment precedence, build the store and
/// (for S3) check the bucket, creating it only when `args.create_bucket`.
pub async fn open(args: &OpenArgs, env: &Env) -> Result<Remote, BackendError> {
    let file = config::load(args.config_path.as_deref(), env)?;
    let remote = RemoteConfig::resolve(&file, &args.section, env)?;
    match remote.kind.as_str() {
        "s3" => s3::open(&remote, args, env).await,
        "azureblob" => azure::open(&remote, args, env).await,
        "google cloud storage" | "gcs" => gcs::open(&remote, args, env).await,
        "crypt" => crypt::open(&remote, args, env).await,
        "local" => local::open(&remote, args),
        other => Err(ConfigError::UnsupportedType {
            section: remote.name.clone(),
            kind: other.to_owned(),
        }
        .into()),
    }
}
