//! The `type = s3` backend: an object_store `AmazonS3` aimed at the bucket URL
//! computed by [`S3Settings`], plus what object_store cannot do: the bucket check
//! (SigV4-signed HeadBucket / one-key ListObjectsV2 via reqwest), CreateBucket only
//! when the caller may create (the source; the destination never creates a bucket,
//! so a mistyped name is "no such bucket"), and the listing itself (see `s3_list`).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredentialProvider};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};
use reqwest::{Method, StatusCode};
use tracing::{debug, info, warn};

use super::s3_settings::{Auth, S3Settings, Sse};
use super::sigv4::{self, SigningKey};
use super::{BackendError, OpenArgs};
use crate::config::{Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, Remote};

/// AWS_* variables that make up the default credential chain (`env_auth = true`).
/// Endpoint, region and bucket deliberately come from rclone.conf only.
const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// Attempts for one bucket-level request before a transient failure is reported.
const BUCKET_REQUEST_ATTEMPTS: u32 = 4;

pub(super) async fn open(
    cfg: &RemoteConfig,
    args: &OpenArgs,
    env: &Env,
) -> Result<Remote, BackendError> {
    let unknown = cfg.unknown_keys(super::s3_settings::KNOWN_KEYS);
    if !unknown.is_empty() {
        warn!(section = %cfg.name, keys = ?unknown, "ignoring unknown s3 options");
    }
    let settings = S3Settings::from_config(cfg, &args.remote_path)?;
    let certificates = match &args.custom_ca {
        Some(path) => read_ca(&settings.section, path)?,
        None => Vec::new(),
    };
    let store = build_store(&settings, env, &certificates)?;
    let http = http_client(&settings, &certificates)?;
    check_credentials(&settings, &store).await?;
    let bucket = BucketClient {
        settings: settings.clone(),
        http,
        credentials: (settings.auth != Auth::Anonymous).then(|| store.credentials().clone()),
    };
    if settings.no_check_bucket {
        bucket.probe_list().await?;
    } else {
        bucket.ensure(args.create_bucket).await?;
    }
    let description = settings.describe();
    info!(remote = %description, virtual_hosted = settings.virtual_hosted, "opened s3 remote");
    let store = Arc::new(store);
    let bucket = Arc::new(bucket);
    let incomplete = super::s3_uploads::Incomplete::new(Arc::clone(&store), Arc::clone(&bucket));
    Ok(Remote {
        incomplete: Some(Arc::new(incomplete)),
        store: Arc::new(super::s3_list::Listed::new(store, bucket)),
        prefix: ObjectPath::from(settings.prefix.as_str()),
        upload: settings.upload.clone(),
        description,
    })
}

fn read_ca(
    section: &str,
    path: &std::path::Path,
) -> Result<Vec<(Certificate, reqwest::Certificate)>, BackendError> {
    let fail = |message: String| BackendError::CustomCa {
        section: section.to_owned(),
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let ours = Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    let theirs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if ours.is_empty() {
        return Err(fail("no PEM certificate found".to_owned()));
    }
    Ok(ours.into_iter().zip(theirs).collect())
}

fn client_options(
    settings: &S3Settings,
    certificates: &[(Certificate, reqwest::Certificate)],
) -> ClientOptions {
    let mut options = ClientOptions::new()
        .with_allow_http(settings.endpoint.scheme() == "http")
        .with_connect_timeout(Duration::from_secs(10))
        // Generous per request: one request may carry a multi-MiB part over a slow link.
        .with_timeout(Duration::from_secs(300));
    for (cert, _) in certificates {
        options = options.with_root_certificate(cert.clone());
    }
    options
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

fn build_store(
    settings: &S3Settings,
    env: &Env,
    certificates: &[(Certificate, reqwest::Certificate)],
) -> Result<AmazonS3, BackendError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        // The bucket URL is computed by S3Settings for both addressing styles;
        // object_store uses a virtual-hosted endpoint verbatim as the bucket URL.
        .with_endpoint(settings.bucket_url.as_str().trim_end_matches('/'))
        .with_virtual_hosted_style_request(true)
        .with_allow_http(settings.endpoint.scheme() == "http")
        .with_retry(retry_config())
        .with_client_options(client_options(settings, certificates));
    match &settings.auth {
        Auth::Static {
            key_id,
            secret_key,
            token,
        } => {
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret_key);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        Auth::EnvAuth => {
            let env_keys = env.get("AWS_ACCESS_KEY_ID").is_some()
                && env.get("AWS_SECRET_ACCESS_KEY").is_some();
            match (env_keys, shared_credentials(settings, env)) {
                // The AWS SDK chain rclone uses: environment keys, then the shared
                // credentials file, then web identity / container / instance metadata.
                (false, Some((key_id, secret_key, token))) => {
                    builder = builder
                        .with_access_key_id(key_id)
                        .with_secret_access_key(secret_key);
                    if let Some(token) = token {
                        builder = builder.with_token(token);
                    }
                }
                _ => {
                    for name in CREDENTIAL_ENV {
                        if let (Some(value), Ok(key)) = (
                            env.get(name),
                            name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>(),
                        ) {
                            builder = builder.with_config(key, value);
                        }
                    }
                }
            }
        }
        Auth::Anonymous => builder = builder.with_skip_signature(true),
    }
    match &settings.sse {
        None => {}
        Some(Sse::Aes256) => {
            builder = builder.with_config(sse_key(), "AES256");
        }
        Some(Sse::Kms { key_id }) => match key_id {
            Some(id) => builder = builder.with_sse_kms_encryption(id),
            None => {
                builder = builder.with_config(sse_key(), "aws:kms");
            }
        },
        Some(Sse::Customer { key_base64 }) => builder = builder.with_ssec_encryption(key_base64),
    }
    builder.build().map_err(|e| BackendError::Build {
        section: settings.section.clone(),
        kind: "s3",
        // Builder errors name options, not their values.
        message: e.to_string(),
    })
}

/// Keys from the AWS shared credentials file (`shared_credentials_file`, else
/// `$AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), profile `profile`,
/// else `$AWS_PROFILE`, else `default`. Unreadable or incomplete: `None`.
fn shared_credentials(
    settings: &S3Settings,
    env: &Env,
) -> Option<(String, String, Option<String>)> {
    let path = settings
        .shared_credentials_file
        .clone()
        .or_else(|| env.get("AWS_SHARED_CREDENTIALS_FILE").map(str::to_owned))
        .or_else(|| {
            env.get("HOME")
                .map(|home| format!("{home}/.aws/credentials"))
        })?;
    let profile = settings
        .profile
        .clone()
        .or_else(|| env.get("AWS_PROFILE").map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let text = std::fs::read_to_string(&path).ok()?;
    let file = crate::config::ConfigFile::parse(&text, path.as_str()).ok()?;
    let key_id = file.get(&profile, "aws_access_key_id")?;
    let secret_key = file.get(&profile, "aws_secret_access_key")?;
    debug!(path, profile, "using AWS shared credentials file");
    Some((key_id, secret_key, file.get(&profile, "aws_session_token")))
}

fn sse_key() -> AmazonS3ConfigKey {
    "aws_server_side_encryption"
        .parse()
        .expect("object_store knows this key")
}

fn http_client(
    settings: &S3Settings,
    certificates: &[(Certificate, reqwest::Certificate)],
) -> Result<reqwest::Client, BackendError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    for (_, cert) in certificates {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder.build().map_err(|e| BackendError::Build {
        section: settings.section.clone(),
        kind: "s3",
        message: format!("HTTP client: {e}"),
    })
}

/// Fetches the credentials once, so a broken credential chain is reported as such
/// before any request.
async fn check_credentials(settings: &S3Settings, store: &AmazonS3) -> Result<(), BackendError> {
    if settings.auth == Auth::Anonymous {
        return Ok(());
    }
    store
        .credentials()
        .get_credential()
        .await
        .map(drop)
        .map_err(|e| BackendError::Credentials {
            section: settings.section.clone(),
            message: e.to_string(),
        })
}

/// Bucket-level requests against one bucket URL (also the listing, see `s3_list`).
pub(super) struct BucketClient {
    pub(super) settings: S3Settings,
    http: reqwest::Client,
    /// object_store's provider (it caches and refreshes); `None` when anonymous.
    credentials: Option<AwsCredentialProvider>,
}

/// What came back from one bucket-level request.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    region_hint: Option<String>,
    pub(super) body: String,
}

impl BucketClient {
    /// HeadBucket; create the bucket when it does not exist and `create` is set.
    async fn ensure(&self, create: bool) -> Result<(), BackendError> {
        let head = self
            .send("checking bucket", Method::HEAD, &[], &[], Vec::new())
            .await?;
        match head.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND if create => self.create().await,
            // Some policies allow object access but not HeadBucket: listing decides.
            StatusCode::FORBIDDEN => self.probe_list().await,
            _ => Err(self.failure("checking bucket", &head)),
        }
    }

    async fn create(&self) -> Result<(), BackendError> {
        let body = match &self.settings.location_constraint {
            Some(lc) => format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{lc}</LocationConstraint></CreateBucketConfiguration>"
            )
            .into_bytes(),
            None => Vec::new(),
        };
        let mut headers = Vec::new();
        if let Some(acl) = &self.settings.bucket_acl {
            headers.push(("x-amz-acl".to_owned(), acl.clone()));
        }
        let reply = self
            .send("creating bucket", Method::PUT, &[], &headers, body)
            .await?;
        if reply.status.is_success()
            || error_code(&reply.body).as_deref() == Some("BucketAlreadyOwnedByYou")
        {
            info!(section = %self.settings.section, bucket = %self.settings.bucket, "created bucket");
            return Ok(());
        }
        Err(self.failure("creating bucket", &reply))
    }

    /// ListObjectsV2 for one key under the prefix: proves the bucket exists and
    /// that these credentials may list it, without HeadBucket or CreateBucket.
    async fn probe_list(&self) -> Result<(), BackendError> {
        let mut query = vec![
            ("list-type".to_owned(), "2".to_owned()),
            ("max-keys".to_owned(), "1".to_owned()),
        ];
        if !self.settings.prefix.is_empty() {
            query.push((
                "prefix".to_owned(),
                sigv4::uri_encode(&format!("{}/", self.settings.prefix)),
            ));
        }
        let reply = self
            .send("listing bucket", Method::GET, &query, &[], Vec::new())
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        Err(self.failure("listing bucket", &reply))
    }

    /// One signed request with retries on transport errors, 5xx and 429.
    async fn send(
        &self,
        action: &'static str,
        method: Method,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Reply, BackendError> {
        self.send_with_attempts(
            action,
            BUCKET_REQUEST_ATTEMPTS,
            method,
            query,
            headers,
            body,
        )
        .await
    }

    /// [`BucketClient::send`] with up to `attempts` tries (backoff capped at 15 s).
    pub(super) async fn send_with_attempts(
        &self,
        action: &'static str,
        attempts: u32,
        method: Method,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Reply, BackendError> {
        let key = match &self.credentials {
            None => None,
            Some(c) => {
                let c = c
                    .get_credential()
                    .await
                    .map_err(|e| BackendError::Credentials {
                        section: self.settings.section.clone(),
                        message: e.to_string(),
                    })?;
                Some(SigningKey {
                    key_id: c.key_id.clone(),
                    secret_key: c.secret_key.clone(),
                    token: c.token.clone(),
                })
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .send_once(key.as_ref(), method.clone(), query, headers, body.clone())
                .await;
            let retryable = match &outcome {
                Ok(reply) => {
                    reply.status.is_server_error() || reply.status == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => !is_certificate_error(e),
            };
            if !retryable || attempt >= attempts {
                return outcome.map_err(|e| {
                    // An untrusted certificate needs a CA bundle, not a retry.
                    let category = if is_certificate_error(&e) {
                        ErrorCategory::Config
                    } else {
                        ErrorCategory::Transient
                    };
                    self.error(action, category, describe_reqwest(&e))
                });
            }
            debug!(action, attempt, "retrying bucket request");
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
        }
    }

    async fn send_once(
        &self,
        key: Option<&SigningKey>,
        method: Method,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Reply, reqwest::Error> {
        let mut url = self.settings.bucket_url.clone();
        if !query.is_empty() {
            url.set_query(Some(
                &query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&"),
            ));
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let all_headers = match key {
            Some(key) => {
                let payload = sigv4::sha256_hex(&body);
                let request = sigv4::Request {
                    method: method.as_str(),
                    host: &host,
                    path: url.path(),
                    query,
                    headers,
                    payload_sha256: &payload,
                };
                sigv4::sign(&request, key, &self.settings.region, chrono::Utc::now())
            }
            None => headers.to_vec(),
        };
        let mut request = self.http.request(method, url).body(body);
        for (name, value) in all_headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        let region_hint = response
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        Ok(Reply {
            status,
            region_hint,
            body,
        })
    }

    pub(super) fn failure(&self, action: &'static str, reply: &Reply) -> BackendError {
        let code = error_code(&reply.body);
        let category =
            if reply.status.is_server_error() || reply.status == StatusCode::TOO_MANY_REQUESTS {
                ErrorCategory::Transient
            } else {
                ErrorCategory::Config
            };
        let explanation = match (reply.status, code.as_deref()) {
            (StatusCode::NOT_FOUND, _) if self.settings.no_check_bucket => {
                "no such bucket (no_check_bucket = true, so it is not created)".to_owned()
            }
            (StatusCode::NOT_FOUND, _) if action == "checking bucket" => {
                "no such bucket (the destination never creates one: check the bucket name, \
                 or let the source create it)"
                    .to_owned()
            }
            (StatusCode::NOT_FOUND, _) => "no such bucket".to_owned(),
            (StatusCode::FORBIDDEN, Some("SignatureDoesNotMatch")) => {
                "403 SignatureDoesNotMatch: secret_access_key is wrong".to_owned()
            }
            (StatusCode::FORBIDDEN, Some("InvalidAccessKeyId")) => {
                "403 InvalidAccessKeyId: access_key_id is not known to the server".to_owned()
            }
            (StatusCode::FORBIDDEN, code) => format!(
                "403 {}: access denied (wrong credentials or missing permission)",
                code.unwrap_or("Forbidden")
            ),
            (StatusCode::MOVED_PERMANENTLY | StatusCode::BAD_REQUEST, _)
                if reply.region_hint.is_some() =>
            {
                format!(
                    "{} {}: bucket is in region {:?}, set region accordingly",
                    reply.status.as_u16(),
                    code.as_deref().unwrap_or("wrong region"),
                    reply.region_hint.as_deref().unwrap_or_default(),
                )
            }
            (StatusCode::CONFLICT, Some("BucketAlreadyExists")) => {
                "409 BucketAlreadyExists: the bucket name belongs to another account".to_owned()
            }
            (status, code) => format!(
                "HTTP {}{}",
                status.as_u16(),
                code.map(|c| format!(" {c}")).unwrap_or_default()
            ),
        };
        self.error(action, category, explanation)
    }

    fn error(
        &self,
        action: &'static str,
        category: ErrorCategory,
        message: String,
    ) -> BackendError {
        BackendError::Bucket {
            section: self.settings.section.clone(),
            bucket: self.settings.bucket.clone(),
            endpoint: self
                .settings
                .endpoint
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            action,
            category,
            message,
        }
    }
}

/// The `<Code>` of an S3 XML error body.
fn error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].trim().to_owned())
}

/// Whether a transport error is a TLS certificate verification failure.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        source = s.source();
    }
    false
}

/// A one-line transport error with its cause chain (connection refused, timeout, TLS).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut message = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}
