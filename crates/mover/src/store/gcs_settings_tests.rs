//! Tests of google cloud storage option interpretation: endpoint forms,
//! credentials, refused options and what a created bucket gets.

use super::*;
use crate::config::{ConfigFile, Env};
use crate::store::remote::ErrorCategory;

fn settings_kind(
    kind: &str,
    body: &str,
    path: &str,
    env: &[(&str, &str)],
) -> Result<GcsSettings, ConfigError> {
    let file = ConfigFile::parse(&format!("[g]\ntype = {kind}\n{body}"), "t.conf").unwrap();
    let cfg = RemoteConfig::resolve(&file, "g", &Env::from_pairs(env.iter().copied())).unwrap();
    GcsSettings::from_config(&cfg, path)
}

fn settings(body: &str, path: &str) -> Result<GcsSettings, ConfigError> {
    settings_kind("google cloud storage", body, path, &[])
}

fn err(body: &str, path: &str) -> String {
    let e = settings(body, path).expect_err("must fail");
    assert_eq!(e.category(), ErrorCategory::Config);
    e.to_string()
}

#[test]
fn defaults_address_the_public_json_api() {
    let s = settings("service_account_file = /sa.json", "bkt/db/x/").unwrap();
    assert_eq!(s.endpoint.as_str(), "https://storage.googleapis.com/");
    assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bkt", "db/x"));
    assert_eq!(s.auth, GcsAuth::ServiceAccountFile("/sa.json".into()));
    assert!(s.upload.etag_is_not_md5);
    assert_eq!(s.upload.chunk_size % CHUNK_GRANULE, 0);
}

#[test]
fn endpoint_accepts_rclones_json_api_form_and_a_bare_root() {
    for (raw, want) in [
        (
            "http://127.0.0.1:4443/storage/v1/",
            "http://127.0.0.1:4443/",
        ),
        ("http://127.0.0.1:4443", "http://127.0.0.1:4443/"),
        ("gcs.example.com/storage/v1", "https://gcs.example.com/"),
        (
            "https://proxy.example.com/gcs/storage/v1",
            "https://proxy.example.com/gcs",
        ),
    ] {
        let s = settings(&format!("anonymous = true\nendpoint = {raw}"), "bkt").unwrap();
        assert_eq!(s.endpoint.as_str(), want, "{raw}");
    }
    assert!(err("anonymous = true\nendpoint = ftp://x", "bkt").contains("endpoint"));
}

#[test]
fn credential_modes_and_refusals() {
    assert_eq!(
        settings("anonymous = true", "bkt").unwrap().auth,
        GcsAuth::Anonymous
    );
    assert_eq!(
        settings("env_auth = true", "bkt").unwrap().auth,
        GcsAuth::EnvAuth
    );
    let json = settings(
        r#"service_account_credentials = {"type": "service_account"}"#,
        "bkt",
    )
    .unwrap();
    assert!(matches!(json.auth, GcsAuth::ServiceAccountJson(_)));
    assert!(!format!("{:?}", json.auth).contains("service_account\""));
    assert!(err("service_account_credentials = {oops", "bkt").contains("not JSON"));
    assert!(err("", "bkt").contains("no credentials"));
    assert!(
        err(
            "service_account_file = /a\nservice_account_credentials = {}",
            "bkt"
        )
        .contains("only one")
    );
    for key in ["token", "access_token"] {
        let msg = err(&format!("{key} = x"), "bkt");
        assert!(
            msg.contains(&format!("key {key:?}")) && msg.contains("OAuth"),
            "{msg}"
        );
    }
}

#[test]
fn object_acl_needs_bucket_policy_only() {
    assert!(err("anonymous = true\nobject_acl = publicRead", "bkt").contains("object_acl"));
    let s = settings(
        "anonymous = true\nobject_acl = private\nbucket_policy_only = true",
        "bkt",
    )
    .unwrap();
    assert!(s.new_bucket.policy_only);
    assert!(err("anonymous = true\ndecompress = true", "bkt").contains("decompress"));
}

#[test]
fn new_bucket_options_are_kept() {
    let s = settings(
        "anonymous = true\nproject_number = 123\nlocation = EU\nstorage_class = NEARLINE\nbucket_acl = private",
        "bkt",
    )
    .unwrap();
    assert_eq!(
        s.new_bucket,
        NewBucket {
            project_number: Some("123".into()),
            location: Some("EU".into()),
            storage_class: Some("NEARLINE".into()),
            acl: Some("private".into()),
            policy_only: false,
        }
    );
    assert_eq!(
        s.upload.storage_class.as_deref(),
        Some("NEARLINE"),
        "objects get it too"
    );
}

#[test]
fn bucket_names_follow_gcs_rules() {
    for bad in ["ab", "Bkt", "-bkt", "bkt-", "b kt"] {
        assert!(err("anonymous = true", bad).contains("invalid"), "{bad}");
    }
    assert!(settings("anonymous = true", "my_bucket.example.com").is_ok());
    assert!(err("anonymous = true", "").contains("no bucket"));
}

#[test]
fn gcs_alias_and_rclone_gcs_environment_prefix() {
    let s = settings_kind("gcs", "anonymous = true", "bkt", &[]).unwrap();
    assert_eq!(s.auth, GcsAuth::Anonymous);
    let env = settings_kind(
        "google cloud storage",
        "",
        "bkt",
        &[("RCLONE_GCS_ANONYMOUS", "true")],
    )
    .unwrap();
    assert_eq!(env.auth, GcsAuth::Anonymous);
}

#[test]
fn chunks_round_up_to_the_resumable_granule() {
    assert_eq!(round_chunk(1), CHUNK_GRANULE);
    assert_eq!(round_chunk(8 << 20), 8 << 20);
    assert_eq!(round_chunk((8 << 20) + 1), (8 << 20) + CHUNK_GRANULE);
}

#[test]
fn created_bucket_request_carries_project_location_class_acl_and_uniform_access() {
    let s = settings(
        "anonymous = true\nendpoint = http://127.0.0.1:9/storage/v1/\nproject_number = 123\nlocation = EU\nstorage_class = NEARLINE\nbucket_acl = projectPrivate\nbucket_policy_only = true",
        "bkt",
    )
    .unwrap();
    let (url, body) = crate::store::gcs::create_request(&s, "123");
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9/storage/v1/b?project=123&predefinedAcl=projectPrivate"
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "name": "bkt",
            "location": "EU",
            "storageClass": "NEARLINE",
            "iamConfiguration": { "uniformBucketLevelAccess": { "enabled": true } }
        })
    );
    let plain = settings("anonymous = true", "bkt").unwrap();
    let (_, body) = crate::store::gcs::create_request(&plain, "p");
    assert_eq!(body, r#"{"name":"bkt"}"#);
}
