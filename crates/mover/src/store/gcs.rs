//! The `type = google cloud storage` backend: [`GcsJson`] (the JSON API) with
//! tokens from object_store's GCP credential providers, the bucket check (a
//! one-object listing) and, when the caller may create (the source), bucket
//! creation with `project_number`, `location`, `storage_class`, `bucket_acl` and
//! `bucket_policy_only` (uniform bucket-level access), as rclone does.

use std::time::Duration;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use reqwest::StatusCode;
use serde_json::json;
use tracing::{info, warn};

use super::gcs_settings::{GcsAuth, GcsSettings};
use super::gcs_store::GcsJson;
use super::{BackendError, OpenArgs};
use crate::config::{Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, Remote};

pub(super) async fn open(
    cfg: &RemoteConfig,
    args: &OpenArgs,
    env: &Env,
) -> Result<Remote, BackendError> {
    let unknown = cfg.unknown_keys(super::gcs_settings::KNOWN_KEYS);
    if !unknown.is_empty() {
        warn!(section = %cfg.name, keys = ?unknown, "ignoring unknown google cloud storage options");
    }
    let settings = GcsSettings::from_config(cfg, &args.remote_path)?;
    let credentials = credentials(&settings, env)?;
    if let Some(c) = &credentials {
        c.get_credential()
            .await
            .map_err(|e| build_error(&settings, format!("getting credentials: {e}")))?;
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Generous per request: one request may carry a multi-MiB chunk over a slow link.
        .timeout(Duration::from_secs(300))
        // Resumable uploads answer 308 without a Location: never follow it.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| build_error(&settings, format!("HTTP client: {e}")))?;
    let store = GcsJson::new(
        http,
        settings.endpoint.clone(),
        settings.bucket.clone(),
        credentials,
        settings.user_project.clone(),
    );
    if !settings.no_check_bucket {
        ensure_bucket(&settings, &store, args.create_bucket).await?;
    }
    let description = settings.describe();
    info!(remote = %description, "opened google cloud storage remote");
    Ok(Remote {
        store: std::sync::Arc::new(store),
        prefix: ObjectPath::from(settings.prefix.as_str()),
        upload: settings.upload.clone(),
        incomplete: None,
        description,
    })
}

fn build_error(settings: &GcsSettings, message: String) -> BackendError {
    BackendError::Build {
        section: settings.section.clone(),
        kind: "google cloud storage",
        message,
    }
}

/// object_store's token provider for the configured credentials (`None`: anonymous).
fn credentials(
    settings: &GcsSettings,
    env: &Env,
) -> Result<Option<GcpCredentialProvider>, BackendError> {
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(&settings.bucket);
    match &settings.auth {
        GcsAuth::Anonymous => return Ok(None),
        GcsAuth::ServiceAccountFile(path) => builder = builder.with_service_account_path(path),
        GcsAuth::ServiceAccountJson(json) => builder = builder.with_service_account_key(json),
        GcsAuth::EnvAuth => {
            if let Some(path) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
                builder = builder.with_config(GoogleConfigKey::ApplicationCredentials, path);
            }
        }
    }
    // Builder errors name options and files, not key material.
    let store = builder
        .build()
        .map_err(|e| build_error(settings, e.to_string()))?;
    Ok(Some(store.credentials().clone()))
}

fn bucket_error(
    settings: &GcsSettings,
    action: &'static str,
    category: ErrorCategory,
    message: String,
) -> BackendError {
    BackendError::Bucket {
        section: settings.section.clone(),
        bucket: settings.bucket.clone(),
        endpoint: settings.endpoint.to_string(),
        action,
        category,
        message,
    }
}

async fn ensure_bucket(
    settings: &GcsSettings,
    store: &GcsJson,
    create: bool,
) -> Result<(), BackendError> {
    let prefix = ObjectPath::from(settings.prefix.as_str());
    let first = store
        .list((!settings.prefix.is_empty()).then_some(&prefix))
        .next()
        .await;
    match first {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(object_store::Error::NotFound { .. })) if create => {
            create_bucket(settings, store).await
        }
        Some(Err(e)) => {
            let (category, message) = match e {
                object_store::Error::NotFound { .. } => {
                    (ErrorCategory::Config, "no such bucket".to_owned())
                }
                e => {
                    let e = crate::error::SyncError::store("listing", &prefix, e);
                    (e.category(), e.to_string())
                }
            };
            Err(bucket_error(settings, "checking bucket", category, message))
        }
    }
}

/// The Buckets: insert request for the settings' bucket (pure): URL with
/// `project` and `predefinedAcl`, and the JSON body.
pub(crate) fn create_request(settings: &GcsSettings, project: &str) -> (reqwest::Url, String) {
    let new = &settings.new_bucket;
    let mut url = settings.endpoint.clone();
    url.path_segments_mut()
        .expect("http(s) URL")
        .pop_if_empty()
        .extend(["storage", "v1", "b"]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("project", project);
        if let Some(acl) = &new.acl {
            q.append_pair("predefinedAcl", acl);
        }
        if let Some(p) = &settings.user_project {
            q.append_pair("userProject", p);
        }
    }
    let mut body = json!({ "name": settings.bucket });
    if let Some(l) = &new.location {
        body["location"] = json!(l);
    }
    if let Some(c) = &new.storage_class {
        body["storageClass"] = json!(c);
    }
    if new.policy_only {
        body["iamConfiguration"] = json!({ "uniformBucketLevelAccess": { "enabled": true } });
    }
    (url, body.to_string())
}

async fn create_bucket(settings: &GcsSettings, store: &GcsJson) -> Result<(), BackendError> {
    let fail = |category, message| bucket_error(settings, "creating bucket", category, message);
    let new = &settings.new_bucket;
    let Some(project) = &new.project_number else {
        return Err(fail(
            ErrorCategory::Config,
            "the bucket does not exist and project_number is not set, so it cannot be created"
                .to_owned(),
        ));
    };
    let (url, body) = create_request(settings, project);
    let reply = store
        .send(|c| {
            c.post(url.clone())
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .await
        .map_err(|e| fail(ErrorCategory::Transient, e.to_string()))?;
    let status = reply.status();
    // 409: created meanwhile (by us or another run), which is what we wanted.
    if status.is_success() || status == StatusCode::CONFLICT {
        info!(section = %settings.section, bucket = %settings.bucket, "created bucket");
        return Ok(());
    }
    let text = reply.text().await.unwrap_or_default();
    let category = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ErrorCategory::Transient
    } else {
        ErrorCategory::Config
    };
    Err(fail(
        category,
        format!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ),
    ))
}
