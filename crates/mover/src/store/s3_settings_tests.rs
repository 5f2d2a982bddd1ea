//! Tests of s3 option interpretation (reference/rclone.md, "S3 options that matter").

use super::*;
use crate::config::{ConfigFile, Env};
use crate::store::remote::ErrorCategory;

fn settings_env(body: &str, path: &str, env: &[(&str, &str)]) -> Result<S3Settings, ConfigError> {
    let file = ConfigFile::parse(&format!("[r]\ntype = s3\n{body}"), "t.conf").unwrap();
    let cfg = RemoteConfig::resolve(&file, "r", &Env::from_pairs(env.iter().copied())).unwrap();
    S3Settings::from_config(&cfg, path)
}

fn settings(body: &str, path: &str) -> Result<S3Settings, ConfigError> {
    settings_env(body, path, &[])
}

fn err(body: &str, path: &str) -> String {
    let e = settings(body, path).expect_err("must fail");
    assert_eq!(e.category(), ErrorCategory::Config);
    e.to_string()
}

#[test]
fn remote_path_splits_bucket_and_prefix_trimming_slashes() {
    assert_eq!(split_remote_path("b"), ("b".into(), "".into()));
    assert_eq!(split_remote_path("/b/"), ("b".into(), "".into()));
    assert_eq!(split_remote_path("b/p/q"), ("b".into(), "p/q".into()));
    assert_eq!(split_remote_path("//b/p/q//"), ("b".into(), "p/q".into()));
    assert_eq!(split_remote_path(""), ("".into(), "".into()));
}

#[test]
fn empty_bucket_is_a_config_error() {
    for path in ["", "/", "//"] {
        let msg = err("", path);
        assert!(msg.contains("no bucket") && msg.contains("\"r\""), "{msg}");
    }
}

#[test]
fn aws_defaults_are_virtual_hosted_in_us_east_1() {
    let s = settings("provider = AWS\n", "bkt/data").unwrap();
    assert_eq!(s.region, "us-east-1");
    assert_eq!(s.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
    assert!(s.virtual_hosted);
    assert_eq!(
        s.bucket_url.as_str(),
        "https://bkt.s3.us-east-1.amazonaws.com/"
    );
    assert_eq!(s.prefix, "data");
    assert_eq!(s.auth, Auth::Anonymous);
    assert!(!s.no_check_bucket);
    assert_eq!(s.upload, UploadOptions::default());
}

#[test]
fn aws_ignores_force_path_style_but_minio_and_other_honour_it() {
    let aws = settings(
        "provider = AWS\nforce_path_style = true\nregion = eu-west-1\n",
        "bkt",
    )
    .unwrap();
    assert_eq!(
        aws.bucket_url.as_str(),
        "https://bkt.s3.eu-west-1.amazonaws.com/"
    );
    for provider in ["Minio", "Other", "Ceph", "Cloudflare", "", "SomethingNew"] {
        let s = settings(
            &format!("provider = {provider}\nendpoint = http://127.0.0.1:9000\n"),
            "bkt",
        )
        .unwrap();
        assert!(!s.virtual_hosted, "{provider}");
        assert_eq!(
            s.bucket_url.as_str(),
            "http://127.0.0.1:9000/bkt",
            "{provider}"
        );
        let v = settings(
            &format!("provider = {provider}\nendpoint = minio.example\nforce_path_style = false\n"),
            "bkt",
        )
        .unwrap();
        assert!(v.virtual_hosted, "{provider}");
        assert_eq!(
            v.bucket_url.as_str(),
            "https://bkt.minio.example/",
            "{provider}"
        );
    }
}

#[test]
fn virtual_hosted_falls_back_to_path_style_for_dotted_buckets_over_https() {
    let s = settings("provider = AWS\n", "my.bucket/p").unwrap();
    assert!(!s.virtual_hosted);
    assert_eq!(
        s.bucket_url.as_str(),
        "https://s3.us-east-1.amazonaws.com/my.bucket"
    );
    let s = settings(
        "provider = Wasabi\nendpoint = http://s3.local:8080\n",
        "my.bucket",
    )
    .unwrap();
    assert!(s.virtual_hosted, "dots are fine over plain http");
    assert_eq!(s.bucket_url.as_str(), "http://my.bucket.s3.local:8080/");
}

#[test]
fn endpoint_gets_https_when_schemeless_and_keeps_http_and_paths() {
    let s = settings("endpoint = s3.example.com:8443\n", "b").unwrap();
    assert_eq!(s.endpoint.as_str(), "https://s3.example.com:8443/");
    assert_eq!(s.bucket_url.as_str(), "https://s3.example.com:8443/b");
    let s = settings("endpoint = http://h/base/\n", "b").unwrap();
    assert_eq!(s.bucket_url.as_str(), "http://h/base/b");
}

#[test]
fn bad_endpoints_are_config_errors() {
    assert!(err("endpoint = ftp://h\n", "b").contains("scheme \"ftp\""));
    assert!(err("endpoint = http://user:pw@h\n", "b").contains("must not contain user"));
    assert!(!err("endpoint = http://user:pw@h\n", "b").contains("pw"));
    assert!(err("endpoint = http://h/?x=1\n", "b").contains("query"));
    assert!(err("endpoint = http://\n", "b").contains("endpoint"));
}

#[test]
fn region_from_config() {
    let s = settings(
        "provider = AWS\nregion = ap-south-1\nlocation_constraint = ap-south-1\n",
        "b1b",
    )
    .unwrap();
    assert_eq!(s.region, "ap-south-1");
    assert_eq!(s.location_constraint.as_deref(), Some("ap-south-1"));
    assert_eq!(s.endpoint.as_str(), "https://s3.ap-south-1.amazonaws.com/");
}

#[test]
fn credentials_modes() {
    let s = settings(
        "access_key_id = AK\nsecret_access_key = SK\nsession_token = T\n",
        "b",
    )
    .unwrap();
    assert_eq!(
        s.auth,
        Auth::Static {
            key_id: "AK".into(),
            secret_key: "SK".into(),
            token: Some("T".into())
        }
    );
    let s = settings("env_auth = true\n", "b").unwrap();
    assert_eq!(s.auth, Auth::EnvAuth);
    let s = settings(
        "env_auth = true\naccess_key_id = AK\nsecret_access_key = SK\n",
        "b",
    )
    .unwrap();
    assert!(
        matches!(s.auth, Auth::Static { .. }),
        "explicit keys win over env_auth"
    );
    let s = settings("access_key_id =\nsecret_access_key =\n", "b").unwrap();
    assert_eq!(s.auth, Auth::Anonymous);
}

#[test]
fn only_one_key_is_a_config_error_that_never_shows_the_secret() {
    let msg = err("secret_access_key = SUPERSECRETVALUE\n", "b");
    assert!(
        msg.contains("access_key_id") && msg.contains("\"r\""),
        "{msg}"
    );
    assert!(!msg.contains("SUPERSECRETVALUE"));
    let msg = err("access_key_id = AK\n", "b");
    assert!(msg.contains("secret_access_key is blank"), "{msg}");
}

#[test]
fn keys_from_environment_take_precedence() {
    let s = settings_env(
        "access_key_id = FILEAK\nsecret_access_key = FILESK\n",
        "b",
        &[
            ("RCLONE_CONFIG_R_SECRET_ACCESS_KEY", "ENVSK"),
            ("RCLONE_S3_ACCESS_KEY_ID", "BACKENDAK"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.auth,
        Auth::Static {
            key_id: "BACKENDAK".into(),
            secret_key: "ENVSK".into(),
            token: None
        }
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let s = settings(
        "access_key_id = AK\nsecret_access_key = SUPERSECRETVALUE\nsession_token = TOKENVALUE\nsse_customer_algorithm = AES256\nsse_customer_key = 0123456789abcdef0123456789abcdef\n",
        "b",
    )
    .unwrap();
    let dbg = format!("{s:?}");
    for secret in [
        "SUPERSECRETVALUE",
        "TOKENVALUE",
        "0123456789abcdef",
        "MDEyMzQ1",
    ] {
        assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
    }
    assert!(dbg.contains("AK"));
}

#[test]
fn server_side_encryption_modes() {
    assert_eq!(
        settings("server_side_encryption = AES256\n", "b")
            .unwrap()
            .sse,
        Some(Sse::Aes256)
    );
    assert!(
        !settings("server_side_encryption = AES256\n", "b")
            .unwrap()
            .upload
            .etag_is_not_md5
    );
    let kms = settings(
        "server_side_encryption = aws:kms\nsse_kms_key_id = arn:k\n",
        "b",
    )
    .unwrap();
    assert_eq!(
        kms.sse,
        Some(Sse::Kms {
            key_id: Some("arn:k".into())
        })
    );
    assert!(kms.upload.etag_is_not_md5);
    let c = settings(
        "sse_customer_algorithm = AES256\nsse_customer_key_base64 = a2V5\n",
        "b",
    )
    .unwrap();
    assert_eq!(
        c.sse,
        Some(Sse::Customer {
            key_base64: "a2V5".into()
        })
    );
    assert!(c.upload.etag_is_not_md5);
    let raw = settings(
        "sse_customer_algorithm = AES256\nsse_customer_key = 0123456789abcdef0123456789abcdef\n",
        "b",
    )
    .unwrap();
    assert_eq!(
        raw.sse,
        Some(Sse::Customer {
            key_base64: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()
        })
    );
}

#[test]
fn bad_encryption_settings_are_config_errors() {
    assert!(err("server_side_encryption = rot13\n", "b").contains("server_side_encryption"));
    assert!(err("sse_kms_key_id = k\n", "b").contains("requires server_side_encryption"));
    assert!(err("sse_customer_key_base64 = a2V5\n", "b").contains("sse_customer_algorithm"));
    let msg = err(
        "sse_customer_algorithm = AES256\nsse_customer_key = tooshortsecret\n",
        "b",
    );
    assert!(
        msg.contains("32 bytes") && !msg.contains("tooshortsecret"),
        "{msg}"
    );
    assert!(err("sse_customer_algorithm = AES256\nsse_customer_key_base64 = a2V5\nserver_side_encryption = AES256\n", "b")
        .contains("cannot be combined"));
}

#[test]
fn upload_tuning_uses_rclone_sizes_and_limits() {
    let s = settings("upload_cutoff = 100Mi\nchunk_size = 64M\nupload_concurrency = 8\nstorage_class = STANDARD_IA\n", "b")
        .unwrap();
    assert_eq!(s.upload.upload_cutoff, 100 << 20);
    assert_eq!(s.upload.chunk_size, 64 << 20);
    assert_eq!(s.upload.upload_concurrency, 8);
    assert_eq!(s.upload.storage_class.as_deref(), Some("STANDARD_IA"));
    assert!(err("chunk_size = 1Mi\n", "b").contains("at least 5Mi"));
    assert!(err("upload_cutoff = 6G\n", "b").contains("at most 5Gi"));
    assert!(err("upload_concurrency = 0\n", "b").contains("at least 1"));
    assert!(err("chunk_size = lots\n", "b").contains("\"lots\""));
}

#[test]
fn unsupported_options_are_config_errors() {
    assert!(err("v2_auth = true\n", "b").contains("v2_auth"));
    assert!(err("use_accelerate_endpoint = true\n", "b").contains("acceleration"));
    assert!(err("force_path_style = maybe\n", "b").contains("force_path_style"));
    assert!(err("no_check_bucket = 2\n", "b").contains("no_check_bucket"));
}

#[test]
fn acls_and_no_check_bucket() {
    let s = settings("acl = private\nno_check_bucket = true\n", "bkt").unwrap();
    assert_eq!(s.acl.as_deref(), Some("private"));
    assert_eq!(
        s.bucket_acl.as_deref(),
        Some("private"),
        "bucket_acl defaults to acl"
    );
    assert!(s.no_check_bucket);
    let s = settings("bucket_acl = public-read\n", "bkt").unwrap();
    assert_eq!(s.bucket_acl.as_deref(), Some("public-read"));
    let msg = err("acl = bucket-owner-full-control\n", "bkt");
    assert!(
        msg.contains("acl")
            && msg.contains("bucket-owner-full-control")
            && msg.contains("not supported"),
        "{msg}"
    );
}

#[test]
fn description_names_section_bucket_prefix_and_endpoint_without_secrets() {
    let s = settings(
        "endpoint = http://127.0.0.1:9000\naccess_key_id = AK\nsecret_access_key = SK123\n",
        "b/p",
    )
    .unwrap();
    assert_eq!(
        s.describe(),
        "s3 section \"r\" bucket \"b\" prefix \"p\" at http://127.0.0.1:9000"
    );
}

#[test]
fn copy_cutoff_uses_rclone_sizes_and_is_at_most_5_gib() {
    let base = "provider = AWS\nregion = us-east-1\n";
    assert_eq!(settings(base, "b").unwrap().copy_cutoff, 4656 * MIB);
    let tiny = settings(&format!("{base}copy_cutoff = 5Mi\n"), "b").unwrap();
    assert_eq!(tiny.copy_cutoff, 5 * MIB);
    let fractional = settings(&format!("{base}copy_cutoff = 4.656Gi\n"), "b").unwrap();
    assert_eq!(fractional.copy_cutoff, (4.656 * (1u64 << 30) as f64) as u64);
    let bad = err(&format!("{base}copy_cutoff = lots\n"), "b");
    assert!(bad.contains("copy_cutoff") && bad.contains("lots"), "{bad}");
    let big = err(&format!("{base}copy_cutoff = 6Gi\n"), "b");
    assert!(big.contains("copy_cutoff") && big.contains("5Gi"), "{big}");
}
