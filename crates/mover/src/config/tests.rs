//! Tests of option resolution (environment precedence) and encrypted configs.

use super::*;

const CONF: &str = "[mys3]\ntype = s3\nregion = file-region\nendpoint = file-endpoint\nacl =\n[disk]\ntype = local\n[notype]\nregion = x\n";

fn file() -> ConfigFile {
    ConfigFile::parse(CONF, "rclone.conf").unwrap()
}

#[test]
fn env_precedence_remote_over_backend_over_file_over_default() {
    let env = Env::from_pairs([
        ("RCLONE_CONFIG_MYS3_REGION", "remote-env"),
        ("RCLONE_S3_REGION", "backend-env"),
        ("RCLONE_S3_ENDPOINT", "backend-endpoint"),
        ("RCLONE_S3_STORAGE_CLASS", "GLACIER"),
    ]);
    let r = RemoteConfig::resolve(&file(), "mys3", &env).unwrap();
    assert_eq!(r.kind, "s3");
    assert_eq!(r.get("region").as_deref(), Some("remote-env"));
    assert_eq!(r.get("endpoint").as_deref(), Some("backend-endpoint"));
    assert_eq!(r.get("storage_class").as_deref(), Some("GLACIER"));
    assert_eq!(r.get("sse_kms_key_id"), None);
    assert_eq!(
        r.get_size("chunk_size", 42).unwrap(),
        42,
        "default applies when unset"
    );
}

#[test]
fn backend_env_applies_only_to_remotes_of_that_type() {
    let env = Env::from_pairs([("RCLONE_S3_REGION", "backend-env")]);
    let r = RemoteConfig::resolve(&file(), "disk", &env).unwrap();
    assert_eq!(r.get("region"), None);
}

#[test]
fn empty_env_value_counts_as_set_but_empty_file_value_does_not() {
    let env = Env::from_pairs([("RCLONE_CONFIG_MYS3_ENDPOINT", "")]);
    let r = RemoteConfig::resolve(&file(), "mys3", &env).unwrap();
    assert_eq!(
        r.get("endpoint").as_deref(),
        Some(""),
        "env empty overrides the file"
    );
    assert_eq!(r.get_str("endpoint"), None);
    let env = Env::from_pairs([("RCLONE_S3_ACL", "private")]);
    let r = RemoteConfig::resolve(&file(), "mys3", &env).unwrap();
    assert_eq!(
        r.get("acl").as_deref(),
        Some("private"),
        "empty file value is unset"
    );
}

#[test]
fn env_names_upper_case_the_remote_and_key_and_map_dashes() {
    let f = ConfigFile::parse("[my-remote]\ntype = s3\n", "c").unwrap();
    let env = Env::from_pairs([
        ("RCLONE_CONFIG_MY_REMOTE_ACCESS_KEY_ID", "AK"),
        ("RCLONE_S3_NO_CHECK_BUCKET", "true"),
    ]);
    let r = RemoteConfig::resolve(&f, "my-remote", &env).unwrap();
    assert_eq!(r.get("access_key_id").as_deref(), Some("AK"));
    assert!(r.get_bool("no_check_bucket", false).unwrap());
    assert!(
        r.get_bool("no-check-bucket", false).unwrap(),
        "dash spelling maps to the same variable"
    );
}

#[test]
fn remote_defined_by_environment_alone() {
    let env = Env::from_pairs([
        ("RCLONE_CONFIG_ENVONLY_TYPE", "s3"),
        ("RCLONE_CONFIG_ENVONLY_REGION", "eu"),
    ]);
    let r = RemoteConfig::resolve(&ConfigFile::empty("(none)"), "envonly", &env).unwrap();
    assert_eq!(r.kind, "s3");
    assert_eq!(r.get("region").as_deref(), Some("eu"));
}

#[test]
fn env_type_overrides_file_type() {
    let env = Env::from_pairs([("RCLONE_CONFIG_DISK_TYPE", "s3")]);
    assert_eq!(
        RemoteConfig::resolve(&file(), "disk", &env).unwrap().kind,
        "s3"
    );
}

#[test]
fn missing_section_names_it_and_lists_the_existing_ones() {
    let err = RemoteConfig::resolve(&file(), "nope", &Env::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::SectionNotFound { .. }));
    assert!(msg.contains("\"nope\""), "{msg}");
    assert!(msg.contains("\"mys3\", \"disk\", \"notype\""), "{msg}");
    assert!(msg.contains("rclone.conf"), "{msg}");
    let empty = RemoteConfig::resolve(&ConfigFile::empty("(no config file)"), "x", &Env::default())
        .unwrap_err();
    assert!(
        empty.to_string().contains("sections present: none"),
        "{empty}"
    );
}

#[test]
fn section_is_case_sensitive() {
    let err = RemoteConfig::resolve(&file(), "MYS3", &Env::default()).unwrap_err();
    assert!(matches!(err, ConfigError::SectionNotFound { .. }), "{err}");
}

#[test]
fn section_without_type_is_an_error_naming_it() {
    let err = RemoteConfig::resolve(&file(), "notype", &Env::default()).unwrap_err();
    assert!(
        matches!(err, ConfigError::MissingType { ref section } if section == "notype"),
        "{err}"
    );
}

#[test]
fn typed_getters_report_section_key_and_value() {
    let f = ConfigFile::parse(
        "[a]\ntype = s3\nno_check_bucket = yes\nchunk_size = 5X\nupload_concurrency = -1\n",
        "c",
    )
    .unwrap();
    let r = RemoteConfig::resolve(&f, "a", &Env::default()).unwrap();
    for (err, key, value) in [
        (
            r.get_bool("no_check_bucket", false).unwrap_err(),
            "no_check_bucket",
            "yes",
        ),
        (r.get_size("chunk_size", 0).unwrap_err(), "chunk_size", "5X"),
        (
            r.get_usize("upload_concurrency", 0).unwrap_err(),
            "upload_concurrency",
            "-1",
        ),
    ] {
        let msg = err.to_string();
        assert!(
            msg.contains("\"a\"") && msg.contains(key) && msg.contains(value),
            "{msg}"
        );
        assert_eq!(err.category(), crate::store::remote::ErrorCategory::Config);
    }
}

#[test]
fn unknown_keys_are_reported_from_file_and_remote_env() {
    let f = ConfigFile::parse("[a]\ntype = s3\nregion = r\nbogus = 1\n", "c").unwrap();
    let env = Env::from_pairs([
        ("RCLONE_CONFIG_A_ALSO_BOGUS", "x"),
        ("RCLONE_CONFIG_A_ENDPOINT", "e"),
    ]);
    let r = RemoteConfig::resolve(&f, "a", &env).unwrap();
    assert_eq!(
        r.unknown_keys(&["region", "endpoint"]),
        ["bogus", "RCLONE_CONFIG_A_ALSO_BOGUS"]
    );
}

#[test]
fn debug_output_never_contains_values() {
    let f = ConfigFile::parse("[a]\ntype = s3\nsecret_access_key = SUPERSECRET\n", "c").unwrap();
    let env = Env::from_pairs([("RCLONE_CONFIG_A_SESSION_TOKEN", "TOKENSECRET")]);
    let r = RemoteConfig::resolve(&f, "a", &env).unwrap();
    let dbg = format!("{r:?} {env:?}");
    assert!(
        !dbg.contains("SUPERSECRET") && !dbg.contains("TOKENSECRET"),
        "{dbg}"
    );
    assert!(dbg.contains("secret_access_key"));
}

#[test]
fn env_snapshot_prefix_iteration() {
    let env = Env::from_pairs([("A_1", "x"), ("A_2", "y"), ("B", "z"), ("A", "w")]);
    assert_eq!(
        env.with_prefix("A_").collect::<Vec<_>>(),
        [("A_1", "x"), ("A_2", "y")]
    );
    assert_eq!(env.get("B"), Some("z"));
    assert_eq!(env.get("C"), None);
}

const NONCE: [u8; 24] = [7; 24];

#[test]
fn encrypted_config_round_trip() {
    let encrypted = encrypt(CONF, "correct horse", NONCE).unwrap();
    assert!(encrypted.contains("RCLONE_ENCRYPT_V0:\n"));
    assert!(!encrypted.contains("file-region"));
    let env = Env::from_pairs([("RCLONE_CONFIG_PASS", "correct horse")]);
    let f = parse_text(&encrypted, "enc.conf", &env).unwrap();
    assert_eq!(f.get("mys3", "region").as_deref(), Some("file-region"));
}

#[test]
fn encrypted_config_payload_may_wrap_lines_and_follow_comments() {
    let encrypted = encrypt(CONF, "pw", NONCE).unwrap();
    let payload = encrypted.lines().last().unwrap();
    let (a, b) = payload.split_at(20);
    let wrapped = format!("\u{feff}; comment\r\n\r\nRCLONE_ENCRYPT_V0:\r\n{a}\r\n{b}\r\n");
    let env = Env::from_pairs([("RCLONE_CONFIG_PASS", "pw")]);
    assert!(
        parse_text(&wrapped, "enc.conf", &env)
            .unwrap()
            .has_section("disk")
    );
}

#[test]
fn encryption_key_uses_nfkc_normalised_password() {
    // U+FB01 (ﬁ ligature) normalises to "fi" under NFKC.
    let encrypted = encrypt(CONF, "\u{fb01}sh", NONCE).unwrap();
    let env = Env::from_pairs([("RCLONE_CONFIG_PASS", "fish")]);
    assert!(parse_text(&encrypted, "enc.conf", &env).is_ok());
}

#[test]
fn encrypted_config_errors() {
    let encrypted = encrypt(CONF, "pw", NONCE).unwrap();
    let missing = parse_text(&encrypted, "enc.conf", &Env::default()).unwrap_err();
    assert!(
        matches!(missing, ConfigError::MissingPassword { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("RCLONE_CONFIG_PASS"));
    let wrong = parse_text(
        &encrypted,
        "enc.conf",
        &Env::from_pairs([("RCLONE_CONFIG_PASS", "nope")]),
    )
    .unwrap_err();
    assert!(wrong.to_string().contains("wrong"), "{wrong}");
    assert!(
        !wrong.to_string().contains("nope"),
        "password must not be echoed"
    );
    let env = Env::from_pairs([("RCLONE_CONFIG_PASS", "pw")]);
    let garbage = parse_text("RCLONE_ENCRYPT_V0:\n!!!\n", "enc.conf", &env).unwrap_err();
    assert!(garbage.to_string().contains("base64"), "{garbage}");
    let short = parse_text("RCLONE_ENCRYPT_V0:\nAAAA\n", "enc.conf", &env).unwrap_err();
    assert!(short.to_string().contains("too short"), "{short}");
    let future = parse_text("RCLONE_ENCRYPT_V1:\nAAAA\n", "enc.conf", &env).unwrap_err();
    assert!(
        future
            .to_string()
            .contains("unsupported encryption version"),
        "{future}"
    );
    let blank = parse_text(
        &encrypted,
        "enc.conf",
        &Env::from_pairs([("RCLONE_CONFIG_PASS", "  ")]),
    )
    .unwrap_err();
    assert!(blank.to_string().contains("empty"), "{blank}");
}

#[test]
fn plain_config_with_marker_later_is_not_encrypted() {
    let f = parse_text("[a]\nk = RCLONE_ENCRYPT_V0:\n", "c", &Env::default()).unwrap();
    assert_eq!(f.get("a", "k").as_deref(), Some("RCLONE_ENCRYPT_V0:"));
}

#[test]
fn load_reads_files_and_reports_missing_and_non_utf8_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rclone.conf");
    std::fs::write(&path, CONF).unwrap();
    assert!(
        load(Some(&path), &Env::default())
            .unwrap()
            .has_section("mys3")
    );
    assert!(
        load(None, &Env::default())
            .unwrap()
            .section_names()
            .is_empty()
    );
    let missing = load(Some(&dir.path().join("nope.conf")), &Env::default()).unwrap_err();
    assert!(missing.to_string().contains("nope.conf"), "{missing}");
    std::fs::write(&path, b"[a]\ntype = s3\nk = \xff\n").unwrap();
    let bad = load(Some(&path), &Env::default()).unwrap_err();
    assert!(matches!(bad, ConfigError::Parse { line: 3, .. }), "{bad}");
}
