//! The `type = s3` backend: an object_store `AmazonS3` aimed at the bucket URL
//! computed by [`S3Settings`] for data (get, put, multipart upload, delete), and an
//! aws-sdk-s3 client configured the same way (see `s3_client`) for what object_store
//! cannot express: the bucket check (HeadBucket, or a one-key ListObjectsV2 with
//! `no_check_bucket`), CreateBucket only when the caller may create (the source; the
//! destination never creates a bucket, so a mistyped name is "no such bucket"), the
//! listing (`s3_list`), incomplete multipart uploads (`s3_uploads`) and server-side
//! copies carrying the copy's own metadata (`s3_copy`).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::{BucketCannedAcl, BucketLocationConstraint, CreateBucketConfiguration};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};
use tracing::{debug, info, warn};

use super::s3_client::{self, Failure};
use super::s3_settings::{Auth, S3Settings, Sse};
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
    let (certificates, ca_pem) = match &args.custom_ca {
        Some(path) => read_ca(&settings.section, path)?,
        None => (Vec::new(), None),
    };
    let store = build_store(&settings, env, &certificates)?;
    check_credentials(&settings, &store).await?;
    let credentials = (settings.auth != Auth::Anonymous).then(|| store.credentials().clone());
    let bucket = BucketClient {
        client: s3_client::build(&settings, ca_pem.as_deref(), credentials),
        settings: settings.clone(),
    };
    if settings.no_check_bucket {
        bucket.probe_list().await?;
    } else {
        bucket.ensure(args.create_bucket).await?;
    }
    let description = settings.describe();
    info!(remote = %description, virtual_hosted = settings.virtual_hosted, "opened s3 remote");
    let bucket = Arc::new(bucket);
    let incomplete = super::s3_uploads::Incomplete::new(Arc::clone(&bucket));
    Ok(Remote {
        incomplete: Some(Arc::new(incomplete)),
        store: Arc::new(super::s3_list::Listed::new(Arc::new(store), bucket)),
        prefix: ObjectPath::from(settings.prefix.as_str()),
        upload: settings.upload.clone(),
        description,
    })
}

/// The custom CA bundle: object_store's certificates, and the PEM text for the SDK
/// client, checked here to hold only parsable certificates (the SDK would panic).
fn read_ca(
    section: &str,
    path: &std::path::Path,
) -> Result<(Vec<Certificate>, Option<Vec<u8>>), BackendError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let fail = |message: String| BackendError::CustomCa {
        section: section.to_owned(),
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let ours = Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if ours.is_empty() {
        return Err(fail("no PEM certificate found".to_owned()));
    }
    let ders = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in ders {
        roots.add(der).map_err(|e| fail(e.to_string()))?;
    }
    Ok((ours, Some(pem)))
}

fn client_options(settings: &S3Settings, certificates: &[Certificate]) -> ClientOptions {
    let mut options = ClientOptions::new()
        .with_allow_http(settings.endpoint.scheme() == "http")
        .with_connect_timeout(Duration::from_secs(10))
        // Generous per request: one request may carry a multi-MiB part over a slow link.
        .with_timeout(Duration::from_secs(300));
    for cert in certificates {
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
    certificates: &[Certificate],
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

/// Bucket-level requests against one bucket (also the listing, see `s3_list`, the
/// incomplete uploads, see `s3_uploads`, and copies, see `s3_copy`).
pub(super) struct BucketClient {
    pub(super) settings: S3Settings,
    pub(super) client: aws_sdk_s3::Client,
}

impl BucketClient {
    /// HeadBucket; create the bucket when it does not exist and `create` is set.
    async fn ensure(&self, create: bool) -> Result<(), BackendError> {
        let head = self
            .client
            .head_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await;
        let Err(e) = head else { return Ok(()) };
        let failure = Failure::of(&e);
        match failure.status() {
            Some(404) if create => self.create().await,
            // Some policies allow object access but not HeadBucket: listing decides.
            Some(403) => self.probe_list().await,
            _ => Err(self.failure("checking bucket", &failure)),
        }
    }

    async fn create(&self) -> Result<(), BackendError> {
        let configuration = self.settings.location_constraint.as_deref().map(|lc| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(lc))
                .build()
        });
        let created = self
            .client
            .create_bucket()
            .bucket(&self.settings.bucket)
            .set_create_bucket_configuration(configuration)
            .set_acl(
                self.settings
                    .bucket_acl
                    .as_deref()
                    .map(BucketCannedAcl::from),
            )
            .send()
            .await;
        let failure = match created {
            Ok(_) => None,
            Err(e) => Some(Failure::of(&e)),
        };
        match failure {
            None => {}
            Some(f) if f.code() == Some("BucketAlreadyOwnedByYou") => {}
            Some(f) => return Err(self.failure("creating bucket", &f)),
        }
        info!(section = %self.settings.section, bucket = %self.settings.bucket, "created bucket");
        Ok(())
    }

    /// ListObjectsV2 for one key under the prefix: proves the bucket exists and
    /// that these credentials may list it, without HeadBucket or CreateBucket.
    async fn probe_list(&self) -> Result<(), BackendError> {
        let prefix =
            (!self.settings.prefix.is_empty()).then(|| format!("{}/", self.settings.prefix));
        self.client
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .max_keys(1)
            .set_prefix(prefix)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.failure("listing bucket", &Failure::of(&e)))
    }

    /// The error for a failed bucket-level request, explained for a human.
    pub(super) fn failure(&self, action: &'static str, failure: &Failure) -> BackendError {
        let category = failure.category();
        let (status, code, region_hint) = match failure {
            Failure::Transport { message, .. } => {
                return self.error(action, category, message.clone());
            }
            Failure::Status {
                status,
                code,
                region_hint,
            } => (*status, code.as_deref(), region_hint.as_deref()),
        };
        let explanation = match (status, code) {
            (404, _) if self.settings.no_check_bucket => {
                "no such bucket (no_check_bucket = true, so it is not created)".to_owned()
            }
            (404, _) if action == "checking bucket" => {
                "no such bucket (the destination never creates one: check the bucket name, \
                 or let the source create it)"
                    .to_owned()
            }
            (404, _) => "no such bucket".to_owned(),
            (403, Some("SignatureDoesNotMatch")) => {
                "403 SignatureDoesNotMatch: secret_access_key is wrong".to_owned()
            }
            (403, Some("InvalidAccessKeyId")) => {
                "403 InvalidAccessKeyId: access_key_id is not known to the server".to_owned()
            }
            (403, code) => format!(
                "403 {}: access denied (wrong credentials or missing permission)",
                code.unwrap_or("Forbidden")
            ),
            (301 | 400, _) if region_hint.is_some() => format!(
                "{status} {}: bucket is in region {:?}, set region accordingly",
                code.unwrap_or("wrong region"),
                region_hint.unwrap_or_default(),
            ),
            (409, Some("BucketAlreadyExists")) => {
                "409 BucketAlreadyExists: the bucket name belongs to another account".to_owned()
            }
            (status, code) => format!(
                "HTTP {status}{}",
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
