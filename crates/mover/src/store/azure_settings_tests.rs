//! Tests of azureblob option interpretation: service URL forms, credentials,
//! refused options and upload tuning.

use super::*;
use crate::config::{ConfigFile, Env};
use crate::store::remote::ErrorCategory;

const KEY: &str = "a2V5LWJ5dGVz";

fn settings_env(
    body: &str,
    path: &str,
    env: &[(&str, &str)],
) -> Result<AzureSettings, ConfigError> {
    let file = ConfigFile::parse(&format!("[az]\ntype = azureblob\n{body}"), "t.conf").unwrap();
    let cfg = RemoteConfig::resolve(&file, "az", &Env::from_pairs(env.iter().copied())).unwrap();
    AzureSettings::from_config(&cfg, path)
}

fn settings(body: &str, path: &str) -> Result<AzureSettings, ConfigError> {
    settings_env(body, path, &[])
}

fn err(body: &str, path: &str) -> String {
    let e = settings(body, path).expect_err("must fail");
    assert_eq!(e.category(), ErrorCategory::Config);
    e.to_string()
}

#[test]
fn account_and_key_address_the_public_cloud() {
    let s = settings(&format!("account = acct\nkey = {KEY}"), "box/db/x/").unwrap();
    assert_eq!(s.service.as_str(), "https://acct.blob.core.windows.net/");
    assert_eq!((s.container.as_str(), s.prefix.as_str()), ("box", "db/x"));
    assert_eq!(
        s.container_url().as_str(),
        "https://acct.blob.core.windows.net/box"
    );
    assert_eq!(s.auth, AzureAuth::Key { key: KEY.into() });
    assert!(s.upload.etag_is_not_md5);
    assert_eq!(
        s.upload.upload_concurrency, 16,
        "rclone's azureblob default"
    );
}

#[test]
fn endpoint_is_a_full_url_or_a_domain_suffix() {
    let full = settings(
        &format!("account = devstoreaccount1\nkey = {KEY}\nendpoint = http://127.0.0.1:10001/devstoreaccount1/"),
        "box",
    )
    .unwrap();
    assert_eq!(
        full.service.as_str(),
        "http://127.0.0.1:10001/devstoreaccount1"
    );
    assert_eq!(
        full.container_url().as_str(),
        "http://127.0.0.1:10001/devstoreaccount1/box"
    );
    let bare_ip = settings(
        &format!("account = a1\nkey = {KEY}\nendpoint = http://127.0.0.1:9"),
        "box",
    )
    .unwrap();
    assert_eq!(
        bare_ip.service.as_str(),
        "http://127.0.0.1:9/a1",
        "path style names the account"
    );
    let suffix = settings(
        &format!("account = a1\nkey = {KEY}\nendpoint = blob.core.chinacloudapi.cn"),
        "box",
    )
    .unwrap();
    assert_eq!(
        suffix.service.as_str(),
        "https://a1.blob.core.chinacloudapi.cn/"
    );
}

#[test]
fn use_emulator_defaults_account_key_and_endpoint() {
    let s = settings("use_emulator = true", "box").unwrap();
    assert_eq!(s.account, EMULATOR_ACCOUNT);
    assert_eq!(
        s.service.as_str(),
        "http://127.0.0.1:10000/devstoreaccount1"
    );
    assert_eq!(
        s.auth,
        AzureAuth::Key {
            key: EMULATOR_KEY.into()
        }
    );
}

#[test]
fn sas_url_gives_service_container_and_query() {
    let s = settings(
        "sas_url = http://127.0.0.1:10000/devstoreaccount1/box?sv=2021-08-06&sr=c&sp=rl&sig=abc%2B",
        "",
    )
    .unwrap();
    assert_eq!(
        s.container, "box",
        "the SAS container when the path names none"
    );
    assert_eq!(
        s.service.as_str(),
        "http://127.0.0.1:10000/devstoreaccount1"
    );
    let AzureAuth::Sas { query } = &s.auth else {
        panic!("{:?}", s.auth)
    };
    assert!(query.contains(&("sig".into(), "abc+".into())));
    let cloud = settings(
        "sas_url = https://acct.blob.core.windows.net/box?sig=x",
        "box/p",
    )
    .unwrap();
    assert_eq!(
        (cloud.account.as_str(), cloud.prefix.as_str()),
        ("acct", "p")
    );
    assert!(!cloud.describe().contains("sig"), "{}", cloud.describe());
    let msg = err(
        "sas_url = https://acct.blob.core.windows.net/box?sig=secret",
        "other",
    );
    assert!(
        msg.contains("grants container \"box\"") && !msg.contains("secret"),
        "{msg}"
    );
    let msg = err(
        "sas_url = https://acct.blob.core.windows.net/box?sv=1",
        "box",
    );
    assert!(msg.contains("no signature"), "{msg}");
}

#[test]
fn credential_modes() {
    assert_eq!(
        settings("account = a1\nenv_auth = true", "box")
            .unwrap()
            .auth,
        AzureAuth::EnvAuth
    );
    assert_eq!(
        settings("account = a1", "box").unwrap().auth,
        AzureAuth::Anonymous
    );
    let sp = settings(
        "account = a1\ntenant = t\nclient_id = c\nclient_secret = s",
        "box",
    )
    .unwrap();
    assert!(matches!(sp.auth, AzureAuth::ClientSecret { .. }));
    assert!(!format!("{:?}", sp.auth).contains("\"s\""));
    assert!(err("account = a1\ntenant = t\nclient_id = c", "box").contains("client_secret"));
    assert!(err("key = not base64!", "box").contains("\"key\""));
    assert!(err(&format!("key = {KEY}"), "box").contains("account"));
}

#[test]
fn unsupported_credentials_are_refused_naming_the_key() {
    for (body, key) in [
        ("account = a1\nconnection_string = x", "connection_string"),
        ("account = a1\nuse_msi = true", "use_msi"),
        (
            "account = a1\nclient_certificate_path = /c.pem",
            "client_certificate_path",
        ),
        (
            "account = a1\nservice_principal_file = /sp.json",
            "service_principal_file",
        ),
        ("account = a1\nuse_az = true", "use_az"),
    ] {
        let msg = err(body, "box");
        assert!(msg.contains(&format!("key {key:?}")), "{msg}");
    }
}

#[test]
fn container_names_follow_azure_rules() {
    for bad in ["ab", "Box", "a_b", "-ab", "ab-", "a--b"] {
        assert!(err("use_emulator = true", bad).contains("invalid"), "{bad}");
    }
    assert!(err("use_emulator = true", "").contains("no container"));
}

#[test]
fn upload_tuning_and_access_tier() {
    let s = settings(
        "use_emulator = true\nchunk_size = 16Mi\nupload_concurrency = 2\naccess_tier = cool",
        "box",
    )
    .unwrap();
    assert_eq!(
        (s.upload.chunk_size, s.upload.upload_concurrency),
        (16 << 20, 2)
    );
    assert_eq!(s.upload.storage_class.as_deref(), Some("Cool"));
    assert!(err("use_emulator = true\naccess_tier = archive", "box").contains("rehydration"));
    assert!(err("use_emulator = true\naccess_tier = warm", "box").contains("access_tier"));
    assert!(err("use_emulator = true\nchunk_size = 101Mi", "box").contains("100Mi"));
    assert!(err("use_emulator = true\nupload_concurrency = 0", "box").contains("at least 1"));
    assert_eq!(
        settings("use_emulator = true\npublic_access = blob", "box")
            .unwrap()
            .public_access
            .as_deref(),
        Some("blob")
    );
    assert!(err("use_emulator = true\npublic_access = all", "box").contains("public_access"));
}

#[test]
fn backend_environment_variables_apply() {
    let s = settings_env("", "box", &[("RCLONE_AZUREBLOB_USE_EMULATOR", "true")]).unwrap();
    assert_eq!(s.account, EMULATOR_ACCOUNT);
}

#[test]
fn shared_key_signs_the_canonical_request() {
    // Stable: the same request signs the same way; the account appears twice in
    // the canonical resource of a path-style (emulator) URL.
    let url =
        reqwest::Url::parse("http://127.0.0.1:1/devstoreaccount1/box?restype=container").unwrap();
    let headers = vec![(
        "x-ms-date".to_string(),
        "Mon, 01 Jan 2024 00:00:00 GMT".to_string(),
    )];
    let a = crate::store::azure::shared_key(EMULATOR_ACCOUNT, EMULATOR_KEY, "PUT", &url, &headers);
    let b = crate::store::azure::shared_key(EMULATOR_ACCOUNT, EMULATOR_KEY, "PUT", &url, &headers);
    assert_eq!(a, b);
    assert!(a.starts_with("SharedKey devstoreaccount1:"), "{a}");
    let other =
        crate::store::azure::shared_key(EMULATOR_ACCOUNT, EMULATOR_KEY, "GET", &url, &headers);
    assert_ne!(a, other);
}

#[test]
fn mtime_metadata_is_rfc3339_with_nanoseconds_as_rclone_writes_it() {
    use crate::fs::hash::{format_rfc3339_mtime, parse_rclone_mtime};
    let s = settings("use_emulator = true", "box").unwrap();
    assert_eq!(s.upload.mtime_format, MtimeFormat::Rfc3339);
    assert_eq!(
        format_rfc3339_mtime(1_600_000_000, 123_456_789),
        "2020-09-13T12:26:40.123456789Z"
    );
    // What rclone 1.60 writes (azureblob pads to 9 digits, gcs trims) and what we write.
    for (text, want) in [
        (
            "2020-09-13T12:26:40.123456789Z",
            (1_600_000_000, 123_456_789),
        ),
        ("2020-09-13T12:26:40.1234Z", (1_600_000_000, 123_400_000)),
        ("2020-09-13T14:26:40+02:00", (1_600_000_000, 0)),
        ("1600000000.5", (1_600_000_000, 500_000_000)),
    ] {
        assert_eq!(parse_rclone_mtime(text), Some(want), "{text}");
    }
    assert_eq!(parse_rclone_mtime("2020-13-45T00:00:00Z"), None);
}
