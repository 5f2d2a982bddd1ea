//! The `type = azureblob` backend: object_store's `MicrosoftAzure` aimed at the
//! service URL computed by [`AzureSettings`] (path style for Azurite), plus what
//! object_store cannot do: the container check (a one-blob listing) and, when the
//! caller may create (the source), Create Container signed with the shared key,
//! the SAS, or the bearer token of the configured credentials.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use object_store::azure::{AzureConfigKey, AzureCredential, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use reqwest::{Method, StatusCode};
use sha2::Sha256;
use tracing::{info, warn};

use super::azure_settings::{AzureAuth, AzureSettings};
use super::{BackendError, OpenArgs};
use crate::config::{Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, Remote};

/// Variables of the Azure credential chain (`env_auth = true`).
const CREDENTIAL_ENV: &[(&str, &str)] = &[
    ("AZURE_CLIENT_ID", "azure_storage_client_id"),
    ("AZURE_CLIENT_SECRET", "azure_storage_client_secret"),
    ("AZURE_TENANT_ID", "azure_storage_tenant_id"),
    ("AZURE_FEDERATED_TOKEN_FILE", "azure_federated_token_file"),
    ("AZURE_AUTHORITY_HOST", "azure_storage_authority_host"),
    ("IDENTITY_ENDPOINT", "azure_msi_endpoint"),
    ("MSI_ENDPOINT", "azure_msi_endpoint"),
];

/// Attempts for one container-level request before a failure is reported.
const CONTAINER_REQUEST_ATTEMPTS: u32 = 4;

/// The REST API version sent on container requests.
const API_VERSION: &str = "2021-08-06";

pub(super) async fn open(
    cfg: &RemoteConfig,
    args: &OpenArgs,
    env: &Env,
) -> Result<Remote, BackendError> {
    let unknown = cfg.unknown_keys(super::azure_settings::KNOWN_KEYS);
    if !unknown.is_empty() {
        warn!(section = %cfg.name, keys = ?unknown, "ignoring unknown azureblob options");
    }
    let settings = AzureSettings::from_config(cfg, &args.remote_path)?;
    let store = build_store(&settings, env)?;
    if !settings.no_check_container {
        ensure_container(&settings, &store, args.create_bucket).await?;
    }
    let description = settings.describe();
    info!(remote = %description, "opened azureblob remote");
    Ok(Remote {
        store: Arc::new(store),
        prefix: ObjectPath::from(settings.prefix.as_str()),
        upload: settings.upload.clone(),
        incomplete: None,
        description,
    })
}

fn build_error(settings: &AzureSettings, message: String) -> BackendError {
    BackendError::Build {
        section: settings.section.clone(),
        kind: "azureblob",
        message,
    }
}

fn build_store(settings: &AzureSettings, env: &Env) -> Result<MicrosoftAzure, BackendError> {
    let http = settings.service.scheme() == "http";
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(&settings.account)
        .with_container_name(&settings.container)
        .with_endpoint(settings.service.as_str().trim_end_matches('/').to_owned())
        .with_allow_http(http)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        })
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(http)
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300)),
        );
    match &settings.auth {
        AzureAuth::Key { key } => builder = builder.with_access_key(key),
        AzureAuth::Sas { query } => builder = builder.with_sas_authorization(query.clone()),
        AzureAuth::ClientSecret {
            tenant,
            client_id,
            client_secret,
        } => builder = builder.with_client_secret_authorization(client_id, client_secret, tenant),
        AzureAuth::EnvAuth => {
            for (name, key) in CREDENTIAL_ENV {
                if let (Some(value), Ok(key)) = (env.get(name), key.parse::<AzureConfigKey>()) {
                    builder = builder.with_config(key, value);
                }
            }
        }
        AzureAuth::Anonymous => builder = builder.with_skip_signature(true),
    }
    // Builder errors name options, not their values.
    builder
        .build()
        .map_err(|e| build_error(settings, e.to_string()))
}

fn bucket_error(
    settings: &AzureSettings,
    action: &'static str,
    category: ErrorCategory,
    message: String,
) -> BackendError {
    BackendError::Bucket {
        section: settings.section.clone(),
        bucket: settings.container.clone(),
        endpoint: settings.service.to_string(),
        action,
        category,
        message,
    }
}

/// Lists one blob under the prefix: proves the container exists and may be listed.
/// A missing container is created when `create` (the source), else reported.
async fn ensure_container(
    settings: &AzureSettings,
    store: &MicrosoftAzure,
    create: bool,
) -> Result<(), BackendError> {
    let mut query = vec![
        ("restype", "container".to_owned()),
        ("comp", "list".to_owned()),
        ("maxresults", "1".to_owned()),
    ];
    if !settings.prefix.is_empty() {
        query.push(("prefix", format!("{}/", settings.prefix)));
    }
    let action = "checking container";
    let (status, body) = container_request(settings, store, action, Method::GET, &query).await?;
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND if create => create_container(settings, store).await,
        StatusCode::NOT_FOUND => Err(bucket_error(
            settings,
            action,
            ErrorCategory::Config,
            "no such container".to_owned(),
        )),
        s => Err(failure(settings, action, s, &body)),
    }
}

async fn create_container(
    settings: &AzureSettings,
    store: &MicrosoftAzure,
) -> Result<(), BackendError> {
    let action = "creating container";
    let query = [("restype", "container".to_owned())];
    let (status, body) = container_request(settings, store, action, Method::PUT, &query).await?;
    if status.is_success()
        || (status == StatusCode::CONFLICT && body.contains("ContainerAlreadyExists"))
    {
        info!(section = %settings.section, container = %settings.container, "created container");
        return Ok(());
    }
    Err(failure(settings, action, status, &body))
}

fn failure(
    settings: &AzureSettings,
    action: &'static str,
    status: StatusCode,
    body: &str,
) -> BackendError {
    let category = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ErrorCategory::Transient
    } else {
        ErrorCategory::Config
    };
    bucket_error(
        settings,
        action,
        category,
        format!("HTTP {status}: {}", error_code(body)),
    )
}

/// One container-level request (no body), authorized like the store's own
/// requests, retried on transport errors, 5xx and 429. Returns status and body.
async fn container_request(
    settings: &AzureSettings,
    store: &MicrosoftAzure,
    action: &'static str,
    method: Method,
    query: &[(&str, String)],
) -> Result<(StatusCode, String), BackendError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| build_error(settings, format!("HTTP client: {e}")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut url = settings.container_url();
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut headers: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        if method == Method::PUT
            && let Some(level) = &settings.public_access
        {
            headers.push(("x-ms-blob-public-access".into(), level.clone()));
        }
        let mut authorization = None;
        match &settings.auth {
            AzureAuth::Key { key } => {
                authorization = Some(shared_key(
                    &settings.account,
                    key,
                    method.as_str(),
                    &url,
                    &headers,
                ));
            }
            AzureAuth::Sas { query } => {
                url.query_pairs_mut().extend_pairs(query.iter());
            }
            AzureAuth::Anonymous => {}
            AzureAuth::ClientSecret { .. } | AzureAuth::EnvAuth => {
                let credential = store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| build_error(settings, format!("getting credentials: {e}")))?;
                if let AzureCredential::BearerToken(token) = credential.as_ref() {
                    authorization = Some(format!("Bearer {token}"));
                }
            }
        }
        let mut request = client.request(method.clone(), url);
        if method == Method::PUT {
            request = request.header("content-length", "0");
        }
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let retry = match request.send().await {
            Ok(reply) => {
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                    || attempt >= CONTAINER_REQUEST_ATTEMPTS
                {
                    return Ok((status, body));
                }
                format!("HTTP {status}")
            }
            // Without the URL: its query may hold the SAS.
            Err(e) if attempt >= CONTAINER_REQUEST_ATTEMPTS => {
                return Err(bucket_error(
                    settings,
                    action,
                    ErrorCategory::Transient,
                    e.without_url().to_string(),
                ));
            }
            Err(e) => e.without_url().to_string(),
        };
        warn!(section = %settings.section, attempt, %retry, "{action}: retrying");
        tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
    }
}

/// The `<Code>` of an Azure error body (its message can be long XML).
fn error_code(body: &str) -> String {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or_else(
            || body.chars().take(200).collect(),
            |(code, _)| code.to_owned(),
        )
}

/// `Authorization: SharedKey` for a request with no body and only `x-ms-*` headers
/// (see "Authorize with Shared Key": canonicalized headers and resource).
pub(crate) fn shared_key(
    account: &str,
    key_base64: &str,
    method: &str,
    url: &reqwest::Url,
    headers: &[(String, String)],
) -> String {
    use base64::Engine;
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    ms.sort();
    let canonical_headers: String = ms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let mut resource = format!("/{account}{}", url.path());
    for (k, v) in params {
        resource.push_str(&format!("\n{k}:{v}"));
    }
    // VERB, then 11 standard headers (all empty here), then the canonical parts.
    let to_sign = format!("{method}\n{}{canonical_headers}{resource}", "\n".repeat(11));
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedKey {account}:{signature}")
}
