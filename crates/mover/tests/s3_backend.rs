//! `backend::open` against a real S3 API (moto with SigV4 checks): credentials,
//! bucket creation, metadata round trip, error categories and messages, and
//! retries through the fault proxy.

use std::path::PathBuf;

use crate::support::{FaultKind, FaultProxy, Moto};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};
use scribe_mover::config::{Env, encrypt};
use scribe_mover::store::remote::{ErrorCategory, Remote};
use scribe_mover::store::{BackendError, OpenArgs, open};

fn write_conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    write_conf_named(dir, "rclone.conf", text)
}

fn write_conf_named(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn args(config: &std::path::Path, section: &str, remote_path: &str) -> OpenArgs {
    OpenArgs {
        config_path: Some(config.to_owned()),
        section: section.to_owned(),
        remote_path: remote_path.to_owned(),
        custom_ca: None,
        create_bucket: true,
    }
}

async fn open_err(args: &OpenArgs, env: &Env) -> BackendError {
    match open(args, env).await {
        Ok(remote) => panic!("expected an error, opened {remote:?}"),
        Err(e) => e,
    }
}

fn expected_etag(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("\"{}\"", hex::encode(Md5::digest(body)))
}

async fn bucket_exists(moto: &Moto, dir: &tempfile::TempDir, bucket: &str) -> bool {
    let conf = write_conf_named(
        dir,
        "probe.conf",
        &moto.rclone_section("probe", "no_check_bucket = true"),
    );
    open(&args(&conf, "probe", bucket), &Env::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn open_with_good_credentials_creates_the_bucket_and_is_idempotent() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    assert!(!bucket_exists(&moto, &dir, "fresh-bucket").await);
    let conf = write_conf(&dir, &moto.rclone_section("moto", ""));
    let remote = open(
        &args(&conf, "moto", "/fresh-bucket/some/prefix/"),
        &Env::default(),
    )
    .await
    .unwrap();
    assert_eq!(remote.prefix, ObjectPath::from("some/prefix"));
    assert_eq!(
        remote.description,
        format!(
            "s3 section \"moto\" bucket \"fresh-bucket\" prefix \"some/prefix\" at {}",
            moto.endpoint
        )
    );
    assert!(bucket_exists(&moto, &dir, "fresh-bucket").await);
    // Second open: HeadBucket succeeds, nothing is created.
    open(&args(&conf, "moto", "fresh-bucket"), &Env::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn put_get_list_round_trip_keeps_mtime_metadata() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, &moto.rclone_section("moto", ""));
    let remote: Remote = open(&args(&conf, "moto", "data/pfx"), &Env::default())
        .await
        .unwrap();
    let key = remote.prefix.clone().join("dir").join("file.txt");
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::Metadata("mtime".into()), "1321009871.5".into());
    let opts = PutOptions {
        attributes,
        ..Default::default()
    };
    remote
        .store
        .put_opts(&key, PutPayload::from_static(b"hello moto"), opts)
        .await
        .unwrap();

    let got = remote.store.get(&key).await.unwrap();
    let mtime = got
        .attributes
        .get(&Attribute::Metadata("mtime".into()))
        .map(|v| v.to_string());
    assert_eq!(mtime.as_deref(), Some("1321009871.5"));
    assert_eq!(
        got.bytes().await.unwrap(),
        Bytes::from_static(b"hello moto")
    );

    let head = remote
        .store
        .get_opts(
            &key,
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(head.meta.size, 10);
    let mtime = head
        .attributes
        .get(&Attribute::Metadata("mtime".into()))
        .map(|v| v.to_string());
    assert_eq!(mtime.as_deref(), Some("1321009871.5"));

    let listed: Vec<_> = remote
        .store
        .list(Some(&remote.prefix))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].location.as_ref(), "pfx/dir/file.txt");
    // A single-part upload's ETag is the MD5 of the body.
    assert_eq!(listed[0].e_tag, Some(expected_etag(b"hello moto")));
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_without_the_secret() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "WRONGSECRETwrongsecretWRONGSECRET";
    let text = moto
        .rclone_section("moto", "")
        .replace(&moto.secret_key, wrong);
    let conf = write_conf(&dir, &text);
    let err = open_err(&args(&conf, "moto", "bkt"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains("\"moto\"") && msg.contains("\"bkt\"") && msg.contains("403"),
        "{msg}"
    );
    assert!(msg.contains("secret_access_key is wrong"), "{msg}");
    assert!(
        !msg.contains(wrong) && !format!("{err:?}").contains(wrong),
        "secret leaked: {err:?}"
    );
}

#[tokio::test]
async fn unknown_access_key_is_a_config_error() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = moto
        .rclone_section("moto", "")
        .replace(&moto.access_key, "AKIANOTAREALKEY00000");
    let conf = write_conf(&dir, &text);
    let err = open_err(&args(&conf, "moto", "bkt"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&moto.secret_key));
}

#[tokio::test]
async fn missing_section_names_it_and_lists_existing_sections() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, "[one]\ntype = s3\n[two]\ntype = local\n");
    let err = open_err(&args(&conf, "three", "b"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config);
    let msg = err.to_string();
    assert!(
        msg.contains("\"three\"") && msg.contains("\"one\", \"two\""),
        "{msg}"
    );
}

#[tokio::test]
async fn unsupported_type_names_section_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, "[gd]\ntype = drive\n");
    let err = open_err(&args(&conf, "gd", "b"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(
        err.to_string().contains("\"gd\"") && err.to_string().contains("\"drive\""),
        "{err}"
    );
}

#[tokio::test]
async fn only_an_opening_allowed_to_create_makes_a_missing_bucket() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, &moto.rclone_section("moto", ""));
    let destination = OpenArgs {
        create_bucket: false,
        ..args(&conf, "moto", "typo-bucket/p")
    };
    let err = open_err(&destination, &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"typo-bucket\"") && msg.contains("no such bucket"),
        "{msg}"
    );
    assert!(
        !bucket_exists(&moto, &dir, "typo-bucket").await,
        "the destination must not create a bucket"
    );
    // The source may.
    open(&args(&conf, "moto", "typo-bucket/p"), &Env::default())
        .await
        .unwrap();
    open(&destination, &Env::default()).await.unwrap();
}

#[tokio::test]
async fn missing_bucket_with_no_check_bucket_is_a_config_error() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, &moto.rclone_section("moto", "no_check_bucket = true"));
    let err = open_err(&args(&conf, "moto", "never-created/p"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"never-created\"") && msg.contains("no_check_bucket"),
        "{msg}"
    );
    assert!(
        !bucket_exists(&moto, &dir, "never-created").await,
        "no_check_bucket must not create"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_transient() {
    let port = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(
        &dir,
        &format!(
            "[dead]\ntype = s3\nprovider = Minio\nendpoint = http://127.0.0.1:{port}\naccess_key_id = AK\nsecret_access_key = SECRETVALUE\n"
        ),
    );
    let err = open_err(&args(&conf, "dead", "bkt"), &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Transient, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"dead\"") && msg.contains("\"bkt\"") && msg.contains("connect"),
        "{msg}"
    );
    assert!(!msg.contains("SECRETVALUE"));
}

#[tokio::test]
async fn slow_down_burst_is_retried_and_succeeds() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, &moto.rclone_section_at("moto", &proxy.endpoint, ""));
    proxy.inject(FaultKind::SlowDown, 2);
    let remote = open(&args(&conf, "moto", "throttled"), &Env::default())
        .await
        .unwrap();
    assert_eq!(
        proxy.faults_injected(),
        2,
        "bucket requests were throttled and retried"
    );

    proxy.inject(FaultKind::SlowDown, 3);
    let key = ObjectPath::from("k");
    remote
        .store
        .put(&key, PutPayload::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(
        remote.store.get(&key).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"payload")
    );
    assert_eq!(proxy.faults_injected(), 5);
    assert_eq!(proxy.faults_pending(), 0);
}

#[tokio::test]
async fn proxy_faults_surface_to_the_client_as_specified() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, &moto.rclone_section_at("moto", &proxy.endpoint, ""));
    let remote = open(&args(&conf, "moto", "faults"), &Env::default())
        .await
        .unwrap();
    let key = ObjectPath::from("obj");
    let body = Bytes::from(vec![b'x'; 4096]);

    // A dropped upload is retried by object_store and ends up stored.
    proxy.inject_matching(FaultKind::DropUploadMidBody, 1, Some("PUT /faults/obj"));
    remote
        .store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .unwrap();
    assert_eq!(proxy.faults_injected(), 1);

    // A truncated response looks complete: the caller gets fewer bytes.
    proxy.inject_matching(FaultKind::TruncateResponse, 1, Some("GET /faults/obj"));
    let short = remote.store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(short.len(), 2048);

    // A download dropped mid-body is resumed by object_store (ranged retry).
    proxy.inject_matching(FaultKind::DropDownloadMidBody, 1, Some("GET /faults/obj"));
    let resumed = remote.store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(resumed, body);
    assert_eq!(proxy.faults_injected(), 3);
    assert_eq!(
        remote.store.get(&key).await.unwrap().bytes().await.unwrap(),
        body
    );
}

#[tokio::test]
async fn remote_defined_only_by_environment_and_encrypted_config_work() {
    let moto = Moto::start().await;
    let env = Env::from_pairs([
        ("RCLONE_CONFIG_ENVS3_TYPE", "s3".to_owned()),
        ("RCLONE_CONFIG_ENVS3_PROVIDER", "Other".to_owned()),
        ("RCLONE_CONFIG_ENVS3_ENDPOINT", moto.endpoint.clone()),
        ("RCLONE_S3_ACCESS_KEY_ID", moto.access_key.clone()),
        ("RCLONE_S3_SECRET_ACCESS_KEY", moto.secret_key.clone()),
    ]);
    let no_file = OpenArgs {
        config_path: None,
        section: "envs3".into(),
        remote_path: "env-bucket".into(),
        custom_ca: None,
        create_bucket: true,
    };
    open(&no_file, &env).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let encrypted = encrypt(&moto.rclone_section("enc", ""), "hunter2", [9; 24]).unwrap();
    let conf = write_conf(&dir, &encrypted);
    let env = Env::from_pairs([("RCLONE_CONFIG_PASS", "hunter2")]);
    open(&args(&conf, "enc", "enc-bucket"), &env).await.unwrap();
    let err = open_err(&args(&conf, "enc", "enc-bucket"), &Env::default()).await;
    assert!(err.to_string().contains("RCLONE_CONFIG_PASS"), "{err}");
}

#[tokio::test]
async fn local_type_opens_a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, "[disk]\ntype = local\n");
    let root = dir.path().join("nested/target");
    let remote = open(
        &args(&conf, "disk", root.to_str().unwrap()),
        &Env::default(),
    )
    .await
    .unwrap();
    assert!(root.is_dir(), "directory created");
    assert_eq!(remote.prefix, ObjectPath::default());
    remote
        .store
        .put(&ObjectPath::from("a/b.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("a/b.txt")).unwrap(), b"x");
}

#[tokio::test]
async fn bad_custom_ca_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(&dir, "[s]\ntype = s3\nendpoint = https://127.0.0.1:1\n");
    let mut a = args(&conf, "s", "b");
    a.custom_ca = Some(dir.path().join("missing.pem"));
    let err = open_err(&a, &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    a.custom_ca = Some(not_pem);
    let err = open_err(&a, &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
}

#[tokio::test]
async fn env_auth_uses_aws_environment_credentials() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(
        &dir,
        &format!(
            "[envauth]\ntype = s3\nprovider = Minio\nendpoint = {}\nenv_auth = true\n",
            moto.endpoint
        ),
    );
    let env = Env::from_pairs([
        ("AWS_ACCESS_KEY_ID", moto.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_key.clone()),
    ]);
    let remote = open(&args(&conf, "envauth", "env-auth-bucket"), &env)
        .await
        .unwrap();
    remote
        .store
        .put(&ObjectPath::from("x"), PutPayload::from_static(b"1"))
        .await
        .unwrap();
    let wrong = Env::from_pairs([
        ("AWS_ACCESS_KEY_ID", moto.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_owned()),
    ]);
    let err = open_err(&args(&conf, "envauth", "env-auth-bucket"), &wrong).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
}

#[tokio::test]
async fn bucket_created_with_location_constraint_and_acls() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "region = eu-west-1\nlocation_constraint = eu-west-1\nacl = private\nbucket_acl = private";
    let text = moto
        .rclone_section("moto", extra)
        .replace("region = us-east-1\n", "");
    let conf = write_conf(&dir, &text);
    let remote = open(&args(&conf, "moto", "eu-bucket/p"), &Env::default())
        .await
        .unwrap();
    let key = remote.prefix.clone().join("f");
    remote
        .store
        .put(&key, PutPayload::from_static(b"eu"))
        .await
        .unwrap();
    assert_eq!(
        remote.store.get(&key).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"eu")
    );
}

#[tokio::test]
async fn custom_ca_bundle_is_trusted_and_its_absence_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::support::tls::TestCa::create(dir.path());
    let moto = Moto::start_tls(&ca.server_cert, &ca.server_key).await;
    assert!(moto.endpoint.starts_with("https://127.0.0.1:"));
    let conf = write_conf(&dir, &moto.rclone_section("tls", ""));
    let mut a = args(&conf, "tls", "tls-bucket");

    let err = open_err(&a, &Env::default()).await;
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    a.custom_ca = Some(ca.ca_cert.clone());
    let remote = open(&a, &Env::default()).await.unwrap();
    remote
        .store
        .put(&ObjectPath::from("secure"), PutPayload::from_static(b"tls"))
        .await
        .unwrap();
    assert_eq!(
        remote
            .store
            .get(&ObjectPath::from("secure"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        Bytes::from_static(b"tls")
    );
}

#[tokio::test]
async fn env_auth_reads_the_shared_credentials_file_profile() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n[scribe]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            moto.access_key, moto.secret_key
        ),
    )
    .unwrap();
    let conf = write_conf(
        &dir,
        &format!(
            "[shared]\ntype = s3\nprovider = Ceph\nendpoint = {}\nenv_auth = true\nprofile = scribe\nshared_credentials_file = {}\n",
            moto.endpoint,
            creds.display()
        ),
    );
    open(&args(&conf, "shared", "shared-bucket"), &Env::default())
        .await
        .unwrap();
    let env = Env::from_pairs([("AWS_PROFILE", "default")]);
    let without_profile = conf.with_file_name("noprofile.conf");
    std::fs::write(
        &without_profile,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("profile = scribe\n", ""),
    )
    .unwrap();
    let err = open_err(&args(&without_profile, "shared", "shared-bucket"), &env).await;
    assert_eq!(
        err.category(),
        ErrorCategory::Config,
        "AWS_PROFILE=default has wrong keys: {err}"
    );
}
