//! Opening a [`Remote`] from a parsed rclone.conf section: the `local`, `s3`,
//! `azureblob` and `google cloud storage` backends, and classification of what went wrong into [`ErrorCategory`].

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

use tracing::warn;

use crate::config::{self, ConfigError, Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, Remote, UploadOptions};

pub(crate) mod azure;
pub mod azure_settings;
pub(crate) mod gcs;
pub mod gcs_settings;
mod gcs_store;
mod gcs_upload;
pub mod listing;
pub mod remote;
mod s3;
mod s3_list;
pub mod s3_settings;
mod s3_uploads;
pub mod sigv4;
pub mod transfer;

/// Options rclone's local backend knows (accepted and ignored here).
const LOCAL_KEYS: &[&str] = &[
    "nounc",
    "copy_links",
    "links",
    "skip_links",
    "zero_size_links",
    "unicode_normalization",
    "no_check_updated",
    "one_file_system",
    "case_sensitive",
    "case_insensitive",
    "no_preallocate",
    "no_sparse",
    "no_set_modtime",
    "encoding",
    "description",
    "time_type",
    "hashes",
    "no_clone",
];

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
            Self::RemotePath { .. }
            | Self::Build { .. }
            | Self::CustomCa { .. }
            | Self::Credentials { .. } => ErrorCategory::Config,
            Self::LocalDir { .. } => ErrorCategory::Transient,
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
        "local" => {
            let unknown = remote.unknown_keys(LOCAL_KEYS);
            if !unknown.is_empty() {
                warn!(section = %remote.name, keys = ?unknown, "ignoring unknown local options");
            }
            open_local(&args.section, &args.remote_path)
        }
        other => Err(ConfigError::UnsupportedType {
            section: remote.name.clone(),
            kind: other.to_owned(),
        }
        .into()),
    }
}

fn open_local(section: &str, remote_path: &str) -> Result<Remote, BackendError> {
    if remote_path.is_empty() {
        return Err(BackendError::RemotePath {
            section: section.to_owned(),
            path: remote_path.to_owned(),
            message: "a local remote needs a directory path".to_owned(),
        });
    }
    let dir = PathBuf::from(remote_path);
    std::fs::create_dir_all(&dir).map_err(|source| BackendError::LocalDir {
        section: section.to_owned(),
        path: dir.clone(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| BackendError::Build {
        section: section.to_owned(),
        kind: "local",
        message: e.to_string(),
    })?;
    Ok(Remote {
        store: Arc::new(store),
        prefix: ObjectPath::default(),
        upload: UploadOptions::default(),
        incomplete: None,
        description: format!("local section {section:?} at {}", dir.display()),
    })
}
