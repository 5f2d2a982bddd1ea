//! The `type = google cloud storage` (alias `gcs`) options of one remote turned
//! into connection settings (pure): the JSON API endpoint, the credentials mode,
//! what a created bucket gets (`project_number`, `location`, `storage_class`,
//! `bucket_acl`, `bucket_policy_only`) and upload tuning. Options the mover cannot
//! honour are refused naming the key; secret values never reach a message.

use reqwest::Url;

use crate::config::{ConfigError, RemoteConfig};
use crate::store::remote::{MtimeFormat, UploadOptions};
use crate::store::s3_settings::split_remote_path;

/// Option keys rclone's google cloud storage backend knows; anything else gets a warning.
pub const KNOWN_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "token",
    "auth_url",
    "token_url",
    "client_credentials",
    "project_number",
    "user_project",
    "service_account_file",
    "service_account_credentials",
    "access_token",
    "anonymous",
    "object_acl",
    "bucket_acl",
    "bucket_policy_only",
    "location",
    "storage_class",
    "directory_markers",
    "no_check_bucket",
    "decompress",
    "endpoint",
    "encoding",
    "env_auth",
    "description",
];

/// The public JSON API.
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
const MIB: u64 = 1 << 20;
/// Resumable-upload chunks must be multiples of this (except the last).
pub const CHUNK_GRANULE: u64 = 256 * 1024;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum GcsAuth {
    /// `service_account_file`: path of a service account JSON key.
    ServiceAccountFile(String),
    /// `service_account_credentials`: the JSON key itself.
    ServiceAccountJson(String),
    /// `env_auth = true`: Application Default Credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, then the metadata server).
    EnvAuth,
    /// `anonymous = true`: unsigned requests (public buckets, emulators).
    Anonymous,
}

impl std::fmt::Debug for GcsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServiceAccountFile(p) => f.debug_tuple("ServiceAccountFile").field(p).finish(),
            Self::ServiceAccountJson(_) => f.write_str("ServiceAccountJson(<redacted>)"),
            Self::EnvAuth => f.write_str("EnvAuth"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// What a bucket created by the source gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewBucket {
    pub project_number: Option<String>,
    pub location: Option<String>,
    pub storage_class: Option<String>,
    /// `bucket_acl`, sent as `predefinedAcl`.
    pub acl: Option<String>,
    /// Uniform bucket-level access (`bucket_policy_only`).
    pub policy_only: bool,
}

/// Everything needed to talk to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsSettings {
    pub section: String,
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    /// Root of the JSON API (scheme, host, port; no `/storage/v1`), no trailing `/`.
    pub endpoint: Url,
    pub auth: GcsAuth,
    pub new_bucket: NewBucket,
    pub no_check_bucket: bool,
    /// `user_project` (requester pays): billed project sent with every request.
    pub user_project: Option<String>,
    pub upload: UploadOptions,
}

impl GcsSettings {
    /// Build settings from a resolved google cloud storage remote and `bucket/prefix`.
    pub fn from_config(cfg: &RemoteConfig, remote_path: &str) -> Result<Self, ConfigError> {
        let (bucket, prefix) = split_remote_path(remote_path);
        if bucket.is_empty() {
            return Err(cfg.invalid(
                "remote path",
                format!("{remote_path:?} has no bucket (expected bucket/prefix)"),
            ));
        }
        if !valid_bucket(&bucket) {
            return Err(cfg.invalid(
                "remote path",
                format!("bucket name {bucket:?} is invalid (3-222 lower-case letters, digits, -, _ and .)"),
            ));
        }
        for key in ["token", "access_token", "client_credentials"] {
            if cfg.get_str(key).is_some() {
                return Err(cfg.invalid(
                    key,
                    "OAuth tokens are not supported by the mover; use service_account_file, service_account_credentials or env_auth",
                ));
            }
        }
        let policy_only = cfg.get_bool("bucket_policy_only", false)?;
        // Objects always get the bucket's default ACL (nothing is sent per object).
        if let Some(acl) = cfg.get_str("object_acl")
            && !policy_only
        {
            return Err(cfg.invalid(
                "object_acl",
                format!("object ACL {acl:?} is not supported (objects get the bucket's default); remove it or set bucket_policy_only = true"),
            ));
        }
        if cfg.get_bool("decompress", false)? {
            return Err(cfg.invalid(
                "decompress",
                "is not supported: the mover stores and restores bytes as they are",
            ));
        }
        let storage_class = cfg.get_str("storage_class");
        if let Some(class) = &storage_class
            && class.eq_ignore_ascii_case("ARCHIVE")
        {
            // Readable, but billed per read with a 365-day minimum: a replica is read often.
            tracing::warn!(section = %cfg.name, "storage_class ARCHIVE makes every restore a billed retrieval");
        }
        Ok(Self {
            section: cfg.name.clone(),
            bucket,
            prefix,
            endpoint: endpoint(cfg)?,
            auth: auth(cfg)?,
            new_bucket: NewBucket {
                project_number: cfg.get_str("project_number"),
                location: cfg.get_str("location"),
                storage_class: storage_class.clone(),
                acl: cfg.get_str("bucket_acl"),
                policy_only,
            },
            no_check_bucket: cfg.get_bool("no_check_bucket", false)?,
            user_project: cfg.get_str("user_project"),
            upload: UploadOptions {
                // rclone's gcs backend uploads in 8 MiB resumable chunks.
                chunk_size: round_chunk(UploadOptions::default().chunk_size.max(8 * MIB)),
                storage_class,
                // JSON API ETags are opaque (base64 of a generation), never content MD5s.
                etag_is_not_md5: true,
                mtime_format: MtimeFormat::Rfc3339,
                ..UploadOptions::default()
            },
        })
    }

    /// A log-safe description of this remote.
    pub fn describe(&self) -> String {
        format!(
            "google cloud storage section {:?} bucket {:?} prefix {:?} at {}",
            self.section,
            self.bucket,
            self.prefix,
            self.endpoint.as_str().trim_end_matches('/')
        )
    }
}

/// Rounds a part size up to the resumable-upload granule.
pub fn round_chunk(size: u64) -> u64 {
    size.div_ceil(CHUNK_GRANULE) * CHUNK_GRANULE
}

/// `endpoint` as rclone takes it (the JSON API base, e.g.
/// `http://127.0.0.1:4443/storage/v1/`) or as a bare root; `https://` is assumed
/// when the scheme is missing. The `/storage/v1` suffix is dropped: requests add it.
fn endpoint(cfg: &RemoteConfig) -> Result<Url, ConfigError> {
    let Some(raw) = cfg.get_str("endpoint") else {
        return Ok(Url::parse(DEFAULT_ENDPOINT).expect("valid default"));
    };
    let with_scheme = if raw.contains("://") {
        raw.clone()
    } else {
        format!("https://{raw}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| cfg.invalid("endpoint", format!("{raw:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(cfg.invalid(
            "endpoint",
            format!("{raw:?} must be an http(s) URL with a host"),
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(cfg.invalid("endpoint", "must not carry a query or credentials"));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/storage/v1").unwrap_or(path).to_owned();
    url.set_path(&path);
    Ok(url)
}

fn auth(cfg: &RemoteConfig) -> Result<GcsAuth, ConfigError> {
    let file = cfg.get_str("service_account_file");
    let json = cfg.get_str("service_account_credentials");
    match (file, json) {
        (Some(_), Some(_)) => Err(cfg.invalid(
            "service_account_credentials",
            "set only one of service_account_file and service_account_credentials",
        )),
        (Some(path), None) => Ok(GcsAuth::ServiceAccountFile(path)),
        (None, Some(json)) => {
            if serde_json::from_str::<serde_json::Value>(&json).is_err() {
                return Err(cfg.invalid(
                    "service_account_credentials",
                    "is not JSON (value not shown)",
                ));
            }
            Ok(GcsAuth::ServiceAccountJson(json))
        }
        (None, None) if cfg.get_bool("anonymous", false)? => Ok(GcsAuth::Anonymous),
        (None, None) if cfg.get_bool("env_auth", false)? => Ok(GcsAuth::EnvAuth),
        (None, None) => Err(cfg.invalid(
            "service_account_file",
            "no credentials: set service_account_file, service_account_credentials, env_auth = true or anonymous = true",
        )),
    }
}

/// GCS bucket naming: 3-63 characters (222 with dots), lower-case letters, digits,
/// `-`, `_`, `.`, starting and ending with a letter or digit.
fn valid_bucket(name: &str) -> bool {
    let max = if name.contains('.') { 222 } else { 63 };
    (3..=max).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
#[path = "gcs_settings_tests.rs"]
mod tests;
