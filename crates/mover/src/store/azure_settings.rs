//! The `type = azureblob` options of one remote turned into connection settings
//! (pure): the blob service URL (account, `endpoint`, `use_emulator`, or the
//! `sas_url` itself), the credentials mode, and upload tuning with rclone's
//! defaults. Options the mover cannot honour are refused naming the key; values
//! of secret keys never reach a message.

use reqwest::Url;

use crate::config::{ConfigError, RemoteConfig};
use crate::store::remote::{MtimeFormat, UploadOptions};
use crate::store::s3_settings::split_remote_path;

/// Option keys rclone's azureblob backend knows; anything else gets a warning.
pub const KNOWN_KEYS: &[&str] = &[
    "account",
    "env_auth",
    "key",
    "sas_url",
    "connection_string",
    "tenant",
    "client_id",
    "client_secret",
    "client_certificate_path",
    "client_certificate_password",
    "client_send_certificate_chain",
    "username",
    "password",
    "service_principal_file",
    "disable_instance_discovery",
    "use_msi",
    "msi_object_id",
    "msi_client_id",
    "msi_mi_res_id",
    "use_emulator",
    "use_az",
    "endpoint",
    "upload_cutoff",
    "chunk_size",
    "upload_concurrency",
    "copy_cutoff",
    "copy_concurrency",
    "use_copy_blob",
    "list_chunk",
    "access_tier",
    "archive_tier_delete",
    "disable_checksum",
    "memory_pool_flush_time",
    "memory_pool_use_mmap",
    "encoding",
    "public_access",
    "directory_markers",
    "no_check_container",
    "no_head_object",
    "delete_snapshots",
    "description",
];

/// Credentials rclone supports that the mover does not: set to anything, refused.
const REFUSED_KEYS: &[(&str, &str)] = &[
    ("connection_string", "use account + key, or sas_url"),
    (
        "client_certificate_path",
        "use env_auth or tenant/client_id/client_secret",
    ),
    ("username", "use env_auth or tenant/client_id/client_secret"),
    (
        "service_principal_file",
        "use env_auth or tenant/client_id/client_secret",
    ),
    (
        "msi_object_id",
        "use env_auth (managed identity via AZURE_CLIENT_ID)",
    ),
    (
        "msi_mi_res_id",
        "use env_auth (managed identity via AZURE_CLIENT_ID)",
    ),
];

/// The account and key of the Azure storage emulator (Azurite), published by Microsoft.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where the emulator listens unless `endpoint` says otherwise.
const EMULATOR_ENDPOINT: &str = "http://127.0.0.1:10000";

const MIB: u64 = 1 << 20;
/// Azure's largest block (rclone's `chunk_size` limit).
const MAX_CHUNK_SIZE: u64 = 100 * MIB;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// Shared key (`account` + `key`, or the emulator's well-known pair).
    Key { key: String },
    /// The query pairs of `sas_url`.
    Sas { query: Vec<(String, String)> },
    /// A service principal from `tenant` + `client_id` + `client_secret`.
    ClientSecret {
        tenant: String,
        client_id: String,
        client_secret: String,
    },
    /// `env_auth = true`: the Azure credential chain (AZURE_CLIENT_ID / AZURE_TENANT_ID /
    /// AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, then managed identity).
    EnvAuth,
    /// No credentials at all: unsigned requests (a public container).
    Anonymous,
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key { .. } => f.write_str("Key(<redacted>)"),
            Self::Sas { .. } => f.write_str("Sas(<redacted>)"),
            Self::ClientSecret {
                tenant, client_id, ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::EnvAuth => f.write_str("EnvAuth"),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Everything needed to talk to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    pub section: String,
    pub account: String,
    pub container: String,
    /// Key prefix inside the container, without leading or trailing `/`.
    pub prefix: String,
    /// The blob service URL, without a trailing `/`: `https://<account>.blob.core.windows.net`,
    /// or path style `http://127.0.0.1:10000/devstoreaccount1` for the emulator.
    pub service: Url,
    pub auth: AzureAuth,
    /// `public_access` for a container the source creates (`blob` or `container`).
    pub public_access: Option<String>,
    pub no_check_container: bool,
    pub upload: UploadOptions,
}

impl AzureSettings {
    /// Build settings from a resolved `type = azureblob` remote and the
    /// `container/prefix` path.
    pub fn from_config(cfg: &RemoteConfig, remote_path: &str) -> Result<Self, ConfigError> {
        for (key, instead) in REFUSED_KEYS {
            if cfg.get_str(key).is_some() {
                return Err(cfg.invalid(key, format!("is not supported by the mover; {instead}")));
            }
        }
        if cfg.get_bool("use_msi", false)? {
            return Err(cfg.invalid(
                "use_msi",
                "is not supported; use env_auth, whose credential chain ends with managed identity",
            ));
        }
        if cfg.get_bool("use_az", false)? {
            return Err(cfg.invalid(
                "use_az",
                "the Azure CLI is not available to the mover; use env_auth",
            ));
        }
        let (mut container, prefix) = split_remote_path(remote_path);
        let sas = match cfg.get_str("sas_url") {
            Some(raw) => Some(parse_sas_url(cfg, &raw)?),
            None => None,
        };
        if let Some(Sas {
            container: Some(sas_container),
            ..
        }) = &sas
        {
            if container.is_empty() {
                container = sas_container.clone();
            } else if &container != sas_container {
                return Err(cfg.invalid(
                    "sas_url",
                    format!("grants container {sas_container:?} only, but the remote path names {container:?}"),
                ));
            }
        }
        if container.is_empty() {
            return Err(cfg.invalid(
                "remote path",
                format!("{remote_path:?} has no container (expected container/prefix)"),
            ));
        }
        if !valid_container(&container) {
            return Err(cfg.invalid(
                "remote path",
                format!("container name {container:?} is invalid (3-63 lower-case letters, digits and single hyphens)"),
            ));
        }
        let emulator = cfg.get_bool("use_emulator", false)?;
        let (account, service, auth) = if let Some(sas) = sas {
            (
                sas.account,
                sas.service,
                AzureAuth::Sas { query: sas.query },
            )
        } else {
            let account = cfg
                .get_str("account")
                .or_else(|| emulator.then(|| EMULATOR_ACCOUNT.to_owned()));
            let auth = auth(cfg, emulator)?;
            let account = match account {
                Some(a) => a,
                None => {
                    return Err(cfg.invalid(
                        "account",
                        "is required (or set sas_url, or use_emulator = true)",
                    ));
                }
            };
            let service = service_url(cfg, &account, emulator)?;
            (account, service, auth)
        };
        let public_access = match cfg.get_str("public_access").as_deref() {
            None => None,
            Some(v @ ("blob" | "container")) => Some(v.to_owned()),
            Some(other) => {
                return Err(cfg.invalid(
                    "public_access",
                    format!("{other:?} is not a level (use blob or container, or leave it blank)"),
                ));
            }
        };
        Ok(Self {
            section: cfg.name.clone(),
            account,
            container,
            prefix,
            service,
            auth,
            public_access,
            no_check_container: cfg.get_bool("no_check_container", false)?,
            upload: upload_options(cfg)?,
        })
    }

    /// A log-safe description of this remote (no SAS query, no key).
    pub fn describe(&self) -> String {
        format!(
            "azureblob section {:?} container {:?} prefix {:?} at {}",
            self.section,
            self.container,
            self.prefix,
            self.service.as_str().trim_end_matches('/')
        )
    }

    /// URL of the container itself (no query).
    pub fn container_url(&self) -> Url {
        let mut url = self.service.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .push(&self.container);
        url
    }
}

/// The pieces of a `sas_url`.
struct Sas {
    account: String,
    service: Url,
    container: Option<String>,
    query: Vec<(String, String)>,
}

/// Whether `host` is an address (path-style URLs: `/<account>/<container>`) rather than
/// a `<account>.blob.…` name.
fn path_style_host(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok()
    })
}

fn parse_sas_url(cfg: &RemoteConfig, raw: &str) -> Result<Sas, ConfigError> {
    // The URL itself is a credential: the message never repeats it.
    let url =
        Url::parse(raw).map_err(|e| cfg.invalid("sas_url", format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(cfg.invalid("sas_url", "must be an http(s) URL with a host"));
    }
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !query.iter().any(|(k, _)| k == "sig") {
        return Err(cfg.invalid("sas_url", "has no signature (sig=…) in its query"));
    }
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut service = url.clone();
    service.set_query(None);
    service.set_fragment(None);
    let (account, container) = if path_style_host(&url) {
        let Some(account) = segments.first() else {
            return Err(cfg.invalid(
                "sas_url",
                "an address-style URL must name the account in its path",
            ));
        };
        service.set_path(&format!("/{account}"));
        (account.clone(), segments.get(1).cloned())
    } else {
        let host = url.host_str().unwrap_or_default();
        let account = host.split('.').next().unwrap_or_default().to_owned();
        service.set_path("");
        (account, segments.first().cloned())
    };
    Ok(Sas {
        account,
        service,
        container,
        query,
    })
}

fn auth(cfg: &RemoteConfig, emulator: bool) -> Result<AzureAuth, ConfigError> {
    if let Some(key) = cfg.get_str("key") {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD
            .decode(&key)
            .is_err()
        {
            return Err(cfg.invalid("key", "is not base64 (value not shown)"));
        }
        return Ok(AzureAuth::Key { key });
    }
    let tenant = cfg.get_str("tenant");
    let client_id = cfg.get_str("client_id");
    let client_secret = cfg.get_str("client_secret");
    match (tenant, client_id, client_secret) {
        (Some(tenant), Some(client_id), Some(client_secret)) => {
            return Ok(AzureAuth::ClientSecret {
                tenant,
                client_id,
                client_secret,
            });
        }
        (None, None, None) => {}
        (None, _, _) => {
            return Err(cfg.invalid("tenant", "client_id/client_secret need tenant too"));
        }
        (_, None, _) => {
            return Err(cfg.invalid("client_id", "tenant/client_secret need client_id too"));
        }
        (_, _, None) => {
            return Err(cfg.invalid(
                "client_secret",
                "tenant/client_id without client_secret: certificates are not supported",
            ));
        }
    }
    if cfg.get_bool("env_auth", false)? {
        return Ok(AzureAuth::EnvAuth);
    }
    if emulator {
        return Ok(AzureAuth::Key {
            key: EMULATOR_KEY.to_owned(),
        });
    }
    Ok(AzureAuth::Anonymous)
}

/// The service URL: `endpoint` as a full URL (path style kept), `endpoint` as a
/// domain suffix (rclone 1.60: `https://<account>.<endpoint>`), the emulator's
/// `http://127.0.0.1:10000/<account>`, or `https://<account>.blob.core.windows.net`.
fn service_url(cfg: &RemoteConfig, account: &str, emulator: bool) -> Result<Url, ConfigError> {
    let raw = match (cfg.get_str("endpoint"), emulator) {
        (Some(e), _) if e.contains("://") => e,
        (Some(e), false) => format!("https://{account}.{}", e.trim_matches('/')),
        (Some(_), true) => {
            return Err(cfg.invalid(
                "endpoint",
                "with use_emulator it must be a full URL, e.g. http://127.0.0.1:10000/devstoreaccount1",
            ));
        }
        (None, true) => format!("{EMULATOR_ENDPOINT}/{account}"),
        (None, false) => format!("https://{account}.blob.core.windows.net"),
    };
    let mut url = Url::parse(&raw)
        .map_err(|e| cfg.invalid("endpoint", format!("{raw:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(cfg.invalid(
            "endpoint",
            format!("{raw:?} must be an http(s) URL with a host"),
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(cfg.invalid(
            "endpoint",
            "must not carry a query or credentials (use key or sas_url)",
        ));
    }
    if path_style_host(&url) && url.path().trim_matches('/').is_empty() {
        url.set_path(&format!("/{account}"));
    }
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// Azure's container naming rule.
fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn upload_options(cfg: &RemoteConfig) -> Result<UploadOptions, ConfigError> {
    let defaults = UploadOptions::default();
    // rclone's azureblob defaults: 4 MiB blocks (raised to the mover's 5 MiB part
    // minimum), 16 blocks at once; `upload_cutoff` is deprecated there.
    let chunk_size = cfg.get_size("chunk_size", 4 * MIB)?;
    if chunk_size > MAX_CHUNK_SIZE {
        return Err(cfg.invalid(
            "chunk_size",
            "must be at most 100Mi (Azure's largest block)",
        ));
    }
    let upload_concurrency = cfg.get_usize("upload_concurrency", 16)?;
    if upload_concurrency == 0 {
        return Err(cfg.invalid("upload_concurrency", "must be at least 1"));
    }
    let storage_class = match cfg.get_str("access_tier") {
        None => None,
        Some(tier) => match tier.to_ascii_lowercase().as_str() {
            "hot" => Some("Hot".to_owned()),
            "cool" => Some("Cool".to_owned()),
            "cold" => Some("Cold".to_owned()),
            "archive" => {
                return Err(cfg.invalid(
                    "access_tier",
                    "archive blobs cannot be read back without rehydration, so a restore would fail; use hot, cool or cold",
                ));
            }
            _ => {
                return Err(cfg.invalid(
                    "access_tier",
                    format!("{tier:?} is not a tier (use hot, cool or cold)"),
                ));
            }
        },
    };
    Ok(UploadOptions {
        upload_cutoff: cfg.get_size("upload_cutoff", defaults.upload_cutoff)?,
        chunk_size,
        upload_concurrency,
        storage_class,
        // Blob ETags are opaque versions (`0x8D…`), never content MD5s.
        etag_is_not_md5: true,
        mtime_format: MtimeFormat::Rfc3339,
        sealed_copy: false,
    })
}

#[cfg(test)]
#[path = "azure_settings_tests.rs"]
mod tests;
