//! Behaviour of the azureblob and google cloud storage backends beyond the
//! conformance suite, on the real emulators: GCS resumable uploads whose parts are
//! not multiples of its 256 KiB granule, create-only writes, metadata-keeping
//! copies and copies that carry their own `mtime`, that a bucket is created only with a project, and how bad credentials or a bucket that
//! cannot be created are reported.

use crate::support::azurite::Azurite;
use crate::support::fakegcs::FakeGcs;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyOptions, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload,
};
use scribe_mover::config::Env;
use scribe_mover::store::remote::{CopyMetadata, ErrorCategory, Remote};
use scribe_mover::store::{OpenArgs, open};

async fn open_section(
    section_text: &str,
    section: &str,
    path: &str,
    create: bool,
) -> (
    Result<Remote, scribe_mover::store::BackendError>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, section_text).unwrap();
    let args = OpenArgs {
        config_path: Some(conf),
        section: section.into(),
        remote_path: path.into(),
        custom_ca: None,
        create_bucket: create,
    };
    (open(&args, &Env::default()).await, dir)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_resumable_upload_of_odd_sized_parts_round_trips_with_metadata() {
    let server = FakeGcs::start().await;
    let (remote, _dir) =
        open_section(&server.rclone_section("gcs", ""), "gcs", "odd/p", true).await;
    let remote = remote.unwrap();
    let key = Path::from("p/big.bin");
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata("mtime".into()),
        AttributeValue::from("2020-09-13T12:26:40.5Z"),
    );
    let mut upload = remote
        .store
        .put_multipart_opts(
            &key,
            PutMultipartOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // 300 KiB parts: each leaves a remainder below the granule to carry over.
    let parts: Vec<Vec<u8>> = (0..4).map(|i| pattern(300 * 1024, i)).collect();
    let mut pending = Vec::new();
    for p in &parts {
        pending.push(upload.put_part(PutPayload::from(p.clone())));
    }
    // Handed over in order, awaited in reverse: they still go out in order.
    for p in pending.into_iter().rev() {
        p.await.unwrap();
    }
    upload.complete().await.unwrap();
    let got = remote.store.get(&key).await.unwrap();
    assert_eq!(
        got.attributes
            .get(&Attribute::Metadata("mtime".into()))
            .map(|v| v.as_ref().to_owned()),
        Some("2020-09-13T12:26:40.5Z".to_owned())
    );
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        parts.concat().as_slice()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_create_only_puts_and_copies_keep_content_and_metadata() {
    let server = FakeGcs::start().await;
    let (remote, _dir) =
        open_section(&server.rclone_section("gcs", ""), "gcs", "copies", true).await;
    let store = remote.unwrap().store;
    let (a, b) = (Path::from("dir/a b.txt"), Path::from("dir/日本/b"));
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata("mtime".into()),
        AttributeValue::from("2021-01-01T00:00:00Z"),
    );
    let create = PutOptions {
        mode: PutMode::Create,
        attributes,
        ..Default::default()
    };
    store
        .put_opts(&a, PutPayload::from_static(b"hello"), create.clone())
        .await
        .unwrap();
    let again = store
        .put_opts(&a, PutPayload::from_static(b"other"), create)
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    store.copy(&a, &b).await.unwrap();
    let got = store.get(&b).await.unwrap();
    assert_eq!(
        got.attributes
            .get(&Attribute::Metadata("mtime".into()))
            .map(|v| v.as_ref().to_owned()),
        Some("2021-01-01T00:00:00Z".to_owned())
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"hello");
    let ranged = store.get_range(&b, 1..4).await.unwrap();
    assert_eq!(ranged.as_ref(), b"ell");
    store.delete(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert!(matches!(
        store.head(&a).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_copy_with_copy_metadata_carries_the_copy_s_own_mtime() {
    let server = FakeGcs::start().await;
    let (remote, _dir) =
        open_section(&server.rclone_section("gcs", ""), "gcs", "recopy", true).await;
    let store = remote.unwrap().store;
    let (a, b) = (Path::from("old name"), Path::from("new/name"));
    let mtime = |v: &str| {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata("mtime".into()),
            AttributeValue::from(v.to_owned()),
        );
        attributes
    };
    let put = PutOptions {
        attributes: mtime("2021-01-01T00:00:00Z"),
        ..Default::default()
    };
    store
        .put_opts(&a, PutPayload::from_static(b"same content"), put)
        .await
        .unwrap();
    let mut options = CopyOptions::new();
    options.extensions.insert(CopyMetadata {
        attributes: mtime("2024-06-30T10:20:30.123456789Z"),
        md5chksum: None,
        size: 12,
        cancel: tokio_util::sync::CancellationToken::new(),
    });
    store.copy_opts(&a, &b, options).await.unwrap();
    let meta = |got: &object_store::GetResult| {
        got.attributes
            .get(&Attribute::Metadata("mtime".into()))
            .map(|v| v.as_ref().to_owned())
    };
    let copied = store.get(&b).await.unwrap();
    assert_eq!(
        meta(&copied).as_deref(),
        Some("2024-06-30T10:20:30.123456789Z"),
        "the copy carries its own mtime, not its source's"
    );
    assert_eq!(copied.bytes().await.unwrap().as_ref(), b"same content");
    let source = store.get(&a).await.unwrap();
    assert_eq!(meta(&source).as_deref(), Some("2021-01-01T00:00:00Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_bucket_is_created_only_when_a_project_is_named() {
    let server = FakeGcs::start().await;
    let no_project = format!(
        "[g]\ntype = google cloud storage\nanonymous = true\nendpoint = {}/storage/v1/\n",
        server.endpoint
    );
    let (err, _d) = open_section(&no_project, "g", "fresh/p", true).await;
    let err = err.expect_err("no project_number");
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(err.to_string().contains("project_number"), "{err}");

    let section =
        server.rclone_section("g", "location = EUROPE-WEST1\nbucket_policy_only = true\n");
    let (remote, _d) = open_section(&section, "g", "fresh/p", true).await;
    remote.unwrap();
    let body = reqwest::get(format!("{}/storage/v1/b/fresh", server.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bucket: serde_json::Value = serde_json::from_str(&body).unwrap();
    // fake-gcs-server ignores the location; the request body is unit-tested.
    assert_eq!(bucket["name"], "fresh", "{bucket}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_wrong_key_is_a_configuration_error_without_the_key() {
    let azurite = Azurite::start().await;
    let wrong = "d3Jvbmcta2V5LXZhbHVl";
    let section = format!(
        "[az]\ntype = azureblob\naccount = devstoreaccount1\nkey = {wrong}\nendpoint = {}\n",
        azurite.service
    );
    let (err, _d) = open_section(&section, "az", "box/p", true).await;
    let err = err.expect_err("wrong key");
    assert_eq!(err.category(), ErrorCategory::Config, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("\"az\"") && msg.contains("403"), "{msg}");
    assert!(!msg.contains(wrong), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_container_is_created_by_the_source_and_found_by_no_check_container() {
    let azurite = Azurite::start().await;
    let (remote, _d) =
        open_section(&azurite.rclone_section("az", ""), "az", "made-here/p", true).await;
    let store = remote.unwrap().store;
    store
        .put(&Path::from("p/x"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    // Creating again is fine (already exists), and skipping the check opens at once.
    let (again, _d) =
        open_section(&azurite.rclone_section("az", ""), "az", "made-here/p", true).await;
    again.unwrap();
    let (skip, _d) = open_section(
        &azurite.rclone_section("az", "no_check_container = true\n"),
        "az",
        "made-here/p",
        false,
    )
    .await;
    let skip = skip.unwrap();
    assert_eq!(
        skip.store
            .get(&Path::from("p/x"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_unusable_credentials_are_configuration_errors_naming_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let missing = dir.path().join("no-such-key.json");
    std::fs::write(
        &conf,
        format!(
            "[env]\ntype = google cloud storage\nenv_auth = true\n\n\
             [file]\ntype = google cloud storage\nservice_account_file = {}\n",
            missing.display()
        ),
    )
    .unwrap();
    let env = Env::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", missing.to_str().unwrap())]);
    for section in ["env", "file"] {
        let args = OpenArgs {
            config_path: Some(conf.clone()),
            section: section.into(),
            remote_path: "bkt/p".into(),
            custom_ca: None,
            create_bucket: false,
        };
        let err = open(&args, &env).await.expect_err(section);
        assert_eq!(err.category(), ErrorCategory::Config, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{section:?}")) && msg.contains("no-such-key.json"),
            "{msg}"
        );
    }
}
