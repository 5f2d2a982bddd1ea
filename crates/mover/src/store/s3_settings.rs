//! The `type = s3` options of one remote turned into connection settings
//! (pure): provider quirks for path-style vs virtual-hosted addressing, endpoint
//! and region defaults, credentials mode, encryption and upload tuning — with
//! rclone's defaults and limits. Values of secret keys never reach a message.

use url::Url;

use crate::config::{ConfigError, RemoteConfig};
use crate::store::remote::UploadOptions;

/// Providers rclone always addresses virtual-hosted style; every other provider
/// (Other, Minio, Ceph, Cloudflare, IBMCOS, SeaweedFS, unknown or empty, …)
/// honours `force_path_style` (default true).
const VIRTUAL_HOST_PROVIDERS: &[&str] = &[
    "AWS",
    "Alibaba",
    "ArvanCloud",
    "DigitalOcean",
    "Dreamhost",
    "GCS",
    "HuaweiOBS",
    "IONOS",
    "Leviia",
    "Linode",
    "LyveCloud",
    "Magalu",
    "Petabox",
    "RackCorp",
    "Rclone",
    "Scaleway",
    "Selectel",
    "Storj",
    "Synology",
    "TencentCOS",
    "Wasabi",
    "Outscale",
    "FlashBlade",
    "Exaba",
    "Mega",
    "Hetzner",
    "OVHcloud",
    "Intercolo",
    "Zata",
];

/// Option keys rclone's s3 backend knows; anything else gets a warning.
pub const KNOWN_KEYS: &[&str] = &[
    "provider",
    "env_auth",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "region",
    "endpoint",
    "location_constraint",
    "acl",
    "bucket_acl",
    "server_side_encryption",
    "sse_kms_key_id",
    "sse_customer_algorithm",
    "sse_customer_key",
    "sse_customer_key_base64",
    "sse_customer_key_md5",
    "storage_class",
    "force_path_style",
    "v2_auth",
    "list_chunk",
    "list_version",
    "list_url_encode",
    "no_check_bucket",
    "no_head",
    "no_head_object",
    "upload_cutoff",
    "chunk_size",
    "upload_concurrency",
    "disable_checksum",
    "copy_cutoff",
    "max_upload_parts",
    "memory_pool_flush_time",
    "memory_pool_use_mmap",
    "encoding",
    "disable_http2",
    "download_url",
    "use_multipart_etag",
    "use_presigned_request",
    "versions",
    "version_at",
    "version_deleted",
    "decompress",
    "might_gzip",
    "no_system_metadata",
    "requester_pays",
    "shared_credentials_file",
    "profile",
    "use_accelerate_endpoint",
    "leave_parts_on_error",
    "sts_endpoint",
    "use_dual_stack",
    "description",
    "directory_markers",
    "use_already_exists",
    "use_multipart_uploads",
    "sdk_log_mode",
    "use_unsigned_payload",
    "use_arn_region",
    "role_arn",
    "role_session_name",
    "role_external_id",
    "role_session_duration",
    "ibm_api_key",
    "ibm_resource_instance_id",
    "use_data_integrity_protections",
];

const MIB: u64 = 1 << 20;
const MIN_CHUNK_SIZE: u64 = 5 * MIB;
const MAX_UPLOAD_CUTOFF: u64 = 5 << 30;
/// rclone's default `copy_cutoff` (4.656Gi).
const DEFAULT_COPY_CUTOFF: u64 = 4656 * MIB;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `access_key_id` + `secret_access_key` (+ `session_token`).
    Static {
        key_id: String,
        secret_key: String,
        token: Option<String>,
    },
    /// `env_auth = true` with blank keys: the AWS default credential chain.
    EnvAuth,
    /// Both keys blank and `env_auth = false`: unsigned requests (public buckets).
    Anonymous,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static { key_id, token, .. } => f
                .debug_struct("Static")
                .field("key_id", key_id)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish_non_exhaustive(),
            Self::EnvAuth => f.write_str("EnvAuth"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Server-side encryption requested for uploaded objects.
#[derive(Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms {
        key_id: Option<String>,
    },
    /// SSE-C: the customer key, base64 of the raw 32 bytes.
    Customer {
        key_base64: String,
    },
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aes256 => f.write_str("Aes256"),
            Self::Kms { key_id } => f.debug_struct("Kms").field("key_id", key_id).finish(),
            Self::Customer { .. } => f.write_str("Customer(<redacted>)"),
        }
    }
}

/// Everything needed to talk to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub section: String,
    pub provider: String,
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    /// Base endpoint (scheme, host, port, path), as configured or the AWS default.
    pub endpoint: Url,
    /// Where the bucket itself is addressed: `endpoint/bucket` (path style) or
    /// `scheme://bucket.host/` (virtual-hosted).
    pub bucket_url: Url,
    pub virtual_hosted: bool,
    pub region: String,
    pub auth: Auth,
    pub location_constraint: Option<String>,
    /// `acl` (only `private`, the S3 default, is accepted) and the canned ACL
    /// sent when creating the bucket (`bucket_acl`, else `acl`).
    pub acl: Option<String>,
    pub bucket_acl: Option<String>,
    pub sse: Option<Sse>,
    pub no_check_bucket: bool,
    pub upload: UploadOptions,
    /// Server-side copies of objects larger than this are multipart copies with parts
    /// of at most this size (rclone `copy_cutoff`, default 4656Mi, at most 5Gi).
    pub copy_cutoff: u64,
    /// `shared_credentials_file` / `profile` for `env_auth` (AWS shared credentials file).
    pub shared_credentials_file: Option<String>,
    pub profile: Option<String>,
}

/// Split `bucket/prefix`: outer `/` trimmed, first segment the bucket.
pub fn split_remote_path(path: &str) -> (String, String) {
    let trimmed = path.trim_matches('/');
    match trimmed.split_once('/') {
        Some((bucket, prefix)) => (bucket.to_owned(), prefix.trim_matches('/').to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// Whether a bucket can be a DNS label under the endpoint host (the AWS SDK's
/// rule: lower-case letters, digits, `-`, and no `.` over https because the
/// wildcard certificate would not match).
fn dns_compatible(bucket: &str, scheme: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
        && !(scheme == "https" && bucket.contains('.'))
}

impl S3Settings {
    /// Build settings from a resolved `type = s3` remote and the `bucket/prefix` path.
    pub fn from_config(cfg: &RemoteConfig, remote_path: &str) -> Result<Self, ConfigError> {
        let (bucket, prefix) = split_remote_path(remote_path);
        if bucket.is_empty() {
            return Err(cfg.invalid(
                "remote path",
                format!("{remote_path:?} has no bucket (expected bucket/prefix)"),
            ));
        }
        if bucket.contains(['?', '#', '%', '\\', ' ']) {
            return Err(cfg.invalid(
                "remote path",
                format!("bucket name {bucket:?} contains invalid characters"),
            ));
        }
        let provider = cfg.get_str("provider").unwrap_or_default();
        let region = cfg
            .get_str("region")
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = match cfg.get_str("endpoint") {
            Some(raw) => parse_endpoint(cfg, &raw)?,
            None => Url::parse(&format!("https://s3.{region}.amazonaws.com")).map_err(|e| {
                cfg.invalid(
                    "region",
                    format!("{region:?} cannot form an endpoint URL: {e}"),
                )
            })?,
        };
        let force_path_style = cfg.get_bool("force_path_style", true)?;
        let path_style_provider = !VIRTUAL_HOST_PROVIDERS.contains(&provider.as_str());
        let virtual_hosted = !(path_style_provider && force_path_style)
            && dns_compatible(&bucket, endpoint.scheme());
        let bucket_url = bucket_url(&endpoint, &bucket, virtual_hosted).map_err(|e| {
            cfg.invalid("endpoint", format!("cannot address bucket {bucket:?}: {e}"))
        })?;

        if cfg.get_bool("v2_auth", false)? {
            return Err(cfg.invalid(
                "v2_auth",
                "signature v2 is not supported; remove v2_auth (SigV4 is used)",
            ));
        }
        if cfg.get_bool("use_accelerate_endpoint", false)? {
            return Err(cfg.invalid(
                "use_accelerate_endpoint",
                "S3 transfer acceleration is not supported",
            ));
        }

        let auth = auth(cfg)?;
        let sse = sse(cfg)?;
        let upload = upload_options(cfg, sse.as_ref().is_some_and(|s| !matches!(s, Sse::Aes256)))?;
        let acl = cfg.get_str("acl");
        // object_store cannot send x-amz-acl signed on object writes, so only the
        // S3 default ("private") can be honoured for objects.
        if let Some(other) = acl.as_deref().filter(|a| *a != "private") {
            return Err(cfg.invalid(
                "acl",
                format!("object ACL {other:?} is not supported (objects get the bucket's default); remove it or use private"),
            ));
        }
        let bucket_acl = cfg.get_str("bucket_acl").or_else(|| acl.clone());
        Ok(Self {
            section: cfg.name.clone(),
            provider,
            bucket,
            prefix,
            endpoint,
            bucket_url,
            virtual_hosted,
            region,
            auth,
            location_constraint: cfg.get_str("location_constraint"),
            acl,
            bucket_acl,
            sse,
            no_check_bucket: cfg.get_bool("no_check_bucket", false)?,
            upload,
            copy_cutoff: copy_cutoff(cfg)?,
            shared_credentials_file: cfg.get_str("shared_credentials_file"),
            profile: cfg.get_str("profile"),
        })
    }

    /// A log-safe description of this remote.
    pub fn describe(&self) -> String {
        format!(
            "s3 section {:?} bucket {:?} prefix {:?} at {}",
            self.section,
            self.bucket,
            self.prefix,
            self.endpoint.as_str().trim_end_matches('/')
        )
    }
}

/// rclone prepends `https://` when the endpoint has no scheme; only http and
/// https are accepted, and credentials inside the URL are refused.
fn parse_endpoint(cfg: &RemoteConfig, raw: &str) -> Result<Url, ConfigError> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| cfg.invalid("endpoint", format!("{raw:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(cfg.invalid(
            "endpoint",
            format!(
                "scheme {:?} is not supported (use http or https)",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(cfg.invalid("endpoint", format!("{raw:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(cfg.invalid(
            "endpoint",
            "must not contain user or password; use access_key_id / secret_access_key",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(cfg.invalid(
            "endpoint",
            format!("{raw:?} must not have a query or fragment"),
        ));
    }
    Ok(url)
}

fn bucket_url(endpoint: &Url, bucket: &str, virtual_hosted: bool) -> Result<Url, String> {
    let mut url = endpoint.clone();
    if virtual_hosted {
        let host = endpoint.host_str().ok_or("endpoint has no host")?;
        url.set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|e| e.to_string())?;
    } else {
        let path = format!("{}/{bucket}", endpoint.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

fn auth(cfg: &RemoteConfig) -> Result<Auth, ConfigError> {
    let key_id = cfg.get_str("access_key_id");
    let secret_key = cfg.get_str("secret_access_key");
    let token = cfg.get_str("session_token");
    match (key_id, secret_key) {
        (Some(key_id), Some(secret_key)) => Ok(Auth::Static {
            key_id,
            secret_key,
            token,
        }),
        (Some(_), None) => Err(cfg.invalid(
            "secret_access_key",
            "access_key_id is set but secret_access_key is blank",
        )),
        (None, Some(_)) => Err(cfg.invalid(
            "access_key_id",
            "secret_access_key is set but access_key_id is blank",
        )),
        (None, None) if cfg.get_bool("env_auth", false)? => Ok(Auth::EnvAuth),
        (None, None) => Ok(Auth::Anonymous),
    }
}

fn sse(cfg: &RemoteConfig) -> Result<Option<Sse>, ConfigError> {
    let customer = match (
        cfg.get_str("sse_customer_key"),
        cfg.get_str("sse_customer_key_base64"),
    ) {
        (Some(_), Some(_)) => {
            return Err(cfg.invalid(
                "sse_customer_key",
                "set only one of sse_customer_key and sse_customer_key_base64",
            ));
        }
        (Some(raw), None) => {
            use base64::Engine;
            if raw.len() != 32 {
                return Err(cfg.invalid(
                    "sse_customer_key",
                    "must be exactly 32 bytes (value not shown)",
                ));
            }
            Some(base64::engine::general_purpose::STANDARD.encode(raw))
        }
        (None, Some(b64)) => Some(b64),
        (None, None) => None,
    };
    if let Some(key_base64) = customer {
        match cfg.get_str("sse_customer_algorithm").as_deref() {
            Some("AES256") => {}
            Some(other) => {
                return Err(cfg.invalid(
                    "sse_customer_algorithm",
                    format!("{other:?} is not supported (only AES256)"),
                ));
            }
            None => {
                return Err(cfg.invalid(
                    "sse_customer_algorithm",
                    "must be AES256 when an SSE-C key is set",
                ));
            }
        }
        if cfg.get_str("server_side_encryption").is_some() {
            return Err(cfg.invalid(
                "server_side_encryption",
                "cannot be combined with an SSE-C customer key",
            ));
        }
        return Ok(Some(Sse::Customer { key_base64 }));
    }
    match cfg.get_str("server_side_encryption").as_deref() {
        None => {
            if cfg.get_str("sse_kms_key_id").is_some() {
                return Err(cfg.invalid(
                    "sse_kms_key_id",
                    "requires server_side_encryption = aws:kms",
                ));
            }
            Ok(None)
        }
        Some("AES256") => Ok(Some(Sse::Aes256)),
        Some("aws:kms") => Ok(Some(Sse::Kms {
            key_id: cfg.get_str("sse_kms_key_id"),
        })),
        Some(other) => Err(cfg.invalid(
            "server_side_encryption",
            format!("{other:?} is not supported (use AES256 or aws:kms)"),
        )),
    }
}

fn upload_options(cfg: &RemoteConfig, etag_is_not_md5: bool) -> Result<UploadOptions, ConfigError> {
    let defaults = UploadOptions::default();
    let upload_cutoff = cfg.get_size("upload_cutoff", defaults.upload_cutoff)?;
    if upload_cutoff > MAX_UPLOAD_CUTOFF {
        return Err(cfg.invalid(
            "upload_cutoff",
            "must be at most 5Gi (the largest single PUT S3 accepts)",
        ));
    }
    let chunk_size = cfg.get_size("chunk_size", defaults.chunk_size)?;
    if chunk_size < MIN_CHUNK_SIZE {
        return Err(cfg.invalid(
            "chunk_size",
            "must be at least 5Mi (the smallest multipart part S3 accepts)",
        ));
    }
    let upload_concurrency = cfg.get_usize("upload_concurrency", defaults.upload_concurrency)?;
    if upload_concurrency == 0 {
        return Err(cfg.invalid("upload_concurrency", "must be at least 1"));
    }
    Ok(UploadOptions {
        upload_cutoff,
        chunk_size,
        upload_concurrency,
        storage_class: cfg.get_str("storage_class"),
        etag_is_not_md5,
        ..defaults
    })
}

/// rclone's `copy_cutoff`: a size up to 5Gi (the largest CopyObject / UploadPartCopy).
fn copy_cutoff(cfg: &RemoteConfig) -> Result<u64, ConfigError> {
    let cutoff = cfg.get_size("copy_cutoff", DEFAULT_COPY_CUTOFF)?;
    if cutoff > MAX_UPLOAD_CUTOFF {
        return Err(cfg.invalid(
            "copy_cutoff",
            "must be at most 5Gi (the largest object S3 copies in one request)",
        ));
    }
    Ok(cutoff)
}

#[cfg(test)]
#[path = "s3_settings_tests.rs"]
mod tests;
