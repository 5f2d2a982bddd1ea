//! The aws-sdk-s3 client for the requests object_store cannot express (bucket
//! check and creation, the listing, incomplete multipart uploads, copies with their
//! own metadata and multipart copies), configured exactly like the object_store
//! client of the same section: endpoint, region, addressing style, credentials
//! (object_store's own provider, so env_auth / shared credentials / web identity
//! resolve once, the same way), trusted CA bundle and timeouts.
//!
//! TLS is rustls with the `ring` provider chosen explicitly (aws-smithy-http-client's
//! `rustls-ring`): the build also links aws-lc-rs (object_store), and rustls panics
//! choosing between two providers unless one is named. Checksums are sent and
//! validated only where S3 requires them, as S3-compatible servers expect.
//!
//! Also here: what a failed SDK request means ([`Failure`]), the SSE request
//! parameters, and the check that an XML reply arrived whole.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, IdentityCache, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents, SharedCredentialsProvider,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use object_store::aws::AwsCredentialProvider;

use super::s3_settings::{Auth, S3Settings, Sse};
use crate::store::remote::ErrorCategory;

/// Attempts for one bucket-level request before a transient failure is reported.
pub(super) const BUCKET_REQUEST_ATTEMPTS: u32 = 4;

/// Builds the client. `ca_pem` is the custom CA bundle (trusted in addition to the
/// system roots); `credentials` is object_store's provider (`None`: anonymous).
pub(super) fn build(
    settings: &S3Settings,
    ca_pem: Option<&[u8]>,
    credentials: Option<AwsCredentialProvider>,
) -> Client {
    let mut trust = TrustStore::default();
    if let Some(pem) = ca_pem {
        trust = trust.with_pem_certificate(pem.to_vec());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context from a trust store always builds");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(settings.region.clone()))
        .endpoint_url(settings.endpoint.as_str().trim_end_matches('/'))
        .force_path_style(!settings.virtual_hosted)
        .disable_s3_express_session_auth(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // A server-side copy answers only when done; attempt timeouts bound the wait.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .retry_config(retry(BUCKET_REQUEST_ATTEMPTS))
        .timeout_config(timeouts(Duration::from_secs(60)));
    match credentials {
        Some(provider) if settings.auth != Auth::Anonymous => {
            config = config
                .credentials_provider(SharedCredentialsProvider::new(StoreCredentials(provider)))
                // object_store's provider caches and refreshes by itself.
                .identity_cache(IdentityCache::no_cache());
        }
        _ => config = config.allow_no_auth(),
    }
    Client::from_conf(config.build())
}

/// Retries of transport errors, 5xx and throttling, backoff from 200 ms capped at 15 s.
pub(super) fn retry(attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(15))
}

/// Connect within 10 s; each attempt may take `attempt`.
pub(super) fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(attempt)
        .build()
}

/// object_store's credential provider seen by the SDK.
struct StoreCredentials(AwsCredentialProvider);

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCredentials")
    }
}

impl ProvideCredentials for StoreCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let c = self
                .0
                .get_credential()
                .await
                .map_err(CredentialsError::provider_error)?;
            Ok(Credentials::new(
                c.key_id.clone(),
                c.secret_key.clone(),
                c.token.clone(),
                None,
                "object_store",
            ))
        })
    }
}

/// Fails a successful reply whose XML body does not end with `</{root}>`: a body cut
/// short parses as a shorter but plausible result (fewer keys, no truncation flag).
#[derive(Debug)]
pub(super) struct WholeXml(pub(super) &'static str);

impl Intercept for WholeXml {
    fn name(&self) -> &'static str {
        "WholeXml"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let response = context.response();
        if !response.status().is_success() {
            return Ok(());
        }
        let body = response.body().bytes().unwrap_or_default();
        if is_whole_xml(body, self.0) {
            Ok(())
        } else {
            Err(format!("the {} reply is incomplete (cut short)", self.0).into())
        }
    }
}

fn is_whole_xml(body: &[u8], root: &str) -> bool {
    let text = String::from_utf8_lossy(body);
    text.trim_end().ends_with(&format!("</{root}>"))
}

/// What went wrong with one SDK request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The server answered with an error status.
    Status {
        status: u16,
        code: Option<String>,
        /// `x-amz-bucket-region`, when the server names the bucket's region.
        region_hint: Option<String>,
    },
    /// No usable answer: connection, TLS, timeout, a reply that does not parse.
    Transport { message: String, certificate: bool },
}

impl Failure {
    pub(super) fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(
        e: &SdkError<E, HttpResponse>,
    ) -> Self {
        if let SdkError::ServiceError(service) = e {
            let raw = service.raw();
            return Self::Status {
                status: raw.status().as_u16(),
                code: service.err().code().map(str::to_owned),
                region_hint: raw.headers().get("x-amz-bucket-region").map(str::to_owned),
            };
        }
        let mut message = match e {
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".to_owned(),
            SdkError::DispatchFailure(d) if d.is_io() => "cannot connect".to_owned(),
            SdkError::ConstructionFailure(_) => "building the request failed".to_owned(),
            _ => "request failed".to_owned(),
        };
        let mut certificate = false;
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            certificate |= text.to_ascii_lowercase().contains("certificate");
            if !message.ends_with(&text) {
                message.push_str(&format!(": {text}"));
            }
            source = s.source();
        }
        Self::Transport {
            message,
            certificate,
        }
    }

    /// Whether retrying may help: 5xx, 429 and transport errors, except an untrusted
    /// certificate (that needs a CA bundle).
    pub(super) fn category(&self) -> ErrorCategory {
        match self {
            Self::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorCategory::Transient
            }
            Self::Status { .. } => ErrorCategory::Config,
            Self::Transport { certificate, .. } if *certificate => ErrorCategory::Config,
            Self::Transport { .. } => ErrorCategory::Transient,
        }
    }

    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }

    pub(super) fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => code.as_deref(),
            Self::Transport { .. } => None,
        }
    }
}

/// Server-side encryption parameters of a request writing an object (and, for
/// SSE-C, reading the copy source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SseParams {
    pub(super) algorithm: Option<String>,
    pub(super) kms_key_id: Option<String>,
    /// SSE-C: (algorithm, base64 key, base64 MD5 of the key).
    pub(super) customer: Option<(String, String, String)>,
}

impl SseParams {
    pub(super) fn of(sse: Option<&Sse>) -> Self {
        match sse {
            None => Self::default(),
            Some(Sse::Aes256) => Self {
                algorithm: Some("AES256".to_owned()),
                ..Self::default()
            },
            Some(Sse::Kms { key_id }) => Self {
                algorithm: Some("aws:kms".to_owned()),
                kms_key_id: key_id.clone(),
                ..Self::default()
            },
            Some(Sse::Customer { key_base64 }) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(key_base64)
                    .unwrap_or_default();
                let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&raw));
                Self {
                    customer: Some(("AES256".to_owned(), key_base64.clone(), md5)),
                    ..Self::default()
                }
            }
        }
    }
}

/// The `x-amz-copy-source` value for `key` in `bucket`: URL-encoded, `/` kept.
pub(super) fn copy_source(bucket: &str, key: &str) -> String {
    format!("{}/{}", encode_path(bucket), encode_path(key))
}

fn encode_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_everything_but_unreserved_and_slashes() {
        assert_eq!(copy_source("b", "p/a b+c/é"), "b/p/a%20b%2Bc/%C3%A9");
        assert_eq!(copy_source("b", "x~y_z-1.bin"), "b/x~y_z-1.bin");
    }

    #[test]
    fn only_a_reply_ending_with_its_root_element_is_whole() {
        let whole = b"<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name></ListBucketResult>\n";
        assert!(is_whole_xml(whole, "ListBucketResult"));
        assert!(!is_whole_xml(&whole[..40], "ListBucketResult"));
        assert!(!is_whole_xml(b"", "ListBucketResult"));
    }

    #[test]
    fn sse_c_sends_the_key_md5() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let p = SseParams::of(Some(&Sse::Customer {
            key_base64: key.clone(),
        }));
        let (alg, k, md5) = p.customer.unwrap();
        assert_eq!((alg.as_str(), k.as_str()), ("AES256", key.as_str()));
        let want = base64::engine::general_purpose::STANDARD.encode(Md5::digest([7u8; 32]));
        assert_eq!(md5, want);
        let kms = SseParams::of(Some(&Sse::Kms {
            key_id: Some("k".into()),
        }));
        assert_eq!(kms.algorithm.as_deref(), Some("aws:kms"));
        assert_eq!(kms.kms_key_id.as_deref(), Some("k"));
    }

    #[test]
    fn failures_are_classified_by_status_and_certificate() {
        let status = |s| Failure::Status {
            status: s,
            code: None,
            region_hint: None,
        };
        assert_eq!(status(503).category(), ErrorCategory::Transient);
        assert_eq!(status(429).category(), ErrorCategory::Transient);
        assert_eq!(status(403).category(), ErrorCategory::Config);
        let tls = Failure::Transport {
            message: "x".into(),
            certificate: true,
        };
        assert_eq!(tls.category(), ErrorCategory::Config);
    }
}
