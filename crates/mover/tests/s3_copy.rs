//! Server-side copies against moto, checked with the real `scribe-mover` binary and
//! Debian's rclone 1.60: a copy carries its own `mtime` metadata (not its source's),
//! so `rclone lsl` shows the copy's date and `rclone sync --dry-run` / `rclone check`
//! find nothing to do; an object over `copy_cutoff` is a multipart copy (with
//! `md5chksum`) that restores byte-exactly; a multipart copy that keeps failing is
//! aborted, leaving no incomplete upload, and so is one a SIGTERM interrupts; a bad
//! `copy_cutoff` is a config error.

use std::path::Path;

use crate::conformance::tree::{bytes, set_mtime, write};
use crate::support::mover::{Job, assert_same_files, files};
use crate::support::proxied::{terminate, wait_for_faults};
use crate::support::rclone::rclone_ok;
use crate::support::{FaultKind, FaultProxy, Moto};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, ObjectStoreExt};
use scribe_mover::config::Env;
use scribe_mover::store::{OpenArgs, open};

const MIB: usize = 1024 * 1024;

/// The user metadata of `key` in `bucket`, read back through object_store.
async fn metadata(config: &Path, bucket: &str, key: &str) -> Vec<(String, String)> {
    let args = OpenArgs {
        config_path: Some(config.to_owned()),
        section: "moto".into(),
        remote_path: bucket.into(),
        custom_ca: None,
        create_bucket: false,
    };
    let remote = open(&args, &Env::default()).await.unwrap();
    let got = remote.store.get(&ObjectPath::from(key)).await.unwrap();
    let mut out: Vec<(String, String)> = got
        .attributes
        .iter()
        .filter_map(|(a, v)| match a {
            Attribute::Metadata(name) => Some((name.to_string(), v.to_string())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn meta<'a>(all: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// v1: `orig.txt` (and a large file when `large`); v2 adds copies of the same
/// content under new names with other mtimes.
fn v1(src: &Path, large: bool) {
    write(src, "orig.txt", b"same content, two names");
    set_mtime(src, "orig.txt", 1_600_000_000, 111_000_000);
    if large {
        write(src, "big/orig.bin", &bytes(9, 12 * MIB + 7));
        set_mtime(src, "big/orig.bin", 1_600_000_100, 0);
    }
}

fn v2(src: &Path, large: bool) {
    write(src, "copies/copy.txt", b"same content, two names");
    set_mtime(src, "copies/copy.txt", 1_700_000_000, 222_000_000);
    if large {
        write(src, "copies/big.bin", &bytes(9, 12 * MIB + 7));
        set_mtime(src, "copies/big.bin", 1_700_000_100, 500_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_carries_its_own_mtime_and_rclone_finds_nothing_to_transfer() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
    let src = dir.path().join("src");
    v1(&src, false);
    Job::new(&conf, "moto", "copy/replica", &src)
        .source()
        .await
        .assert_ok();
    v2(&src, false);
    let run = Job::new(&conf, "moto", "copy/replica", &src).source().await;
    run.assert_ok();
    assert_eq!(run.count("filesTransferred"), 1, "{}", run.summary);
    assert_eq!(
        run.count("bytesTransferred"),
        0,
        "a server-side copy sends no file data: {}",
        run.summary
    );

    let copied = metadata(&conf, "copy", "replica/copies/copy.txt").await;
    let source = metadata(&conf, "copy", "replica/orig.txt").await;
    assert_eq!(meta(&copied, "mtime"), Some("1700000000.222"), "{copied:?}");
    assert_eq!(meta(&source, "mtime"), Some("1600000000.111"), "{source:?}");

    let remote = "moto:copy/replica";
    let exclude = "/.scribe/**";
    let lsl = rclone_ok(&conf, &["lsl", remote, "--exclude", exclude]);
    let line = lsl
        .lines()
        .find(|l| l.ends_with("copies/copy.txt"))
        .unwrap_or_else(|| panic!("no copy in {lsl}"));
    assert!(
        line.contains("2023-11-14 22:13:20.222"),
        "rclone shows the copy's own date: {lsl}"
    );
    let report = rclone_ok(
        &conf,
        &["check", src.to_str().unwrap(), remote, "--exclude", exclude],
    );
    assert!(report.contains("0 differences found"), "{report}");
    assert!(report.contains("2 matching files"), "{report}");
    let dry = rclone_ok(
        &conf,
        &[
            "sync",
            "--dry-run",
            "-v",
            src.to_str().unwrap(),
            remote,
            "--exclude",
            exclude,
        ],
    );
    assert!(
        !dry.contains("Skipped"),
        "rclone would change nothing (no copy, no mtime update): {dry}"
    );
    assert!(dry.contains("There was nothing to transfer"), "{dry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_over_copy_cutoff_is_multipart_and_restores_byte_exactly() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "copy_cutoff = 5Mi")).unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    v1(&src, true);
    Job::new(&conf, "moto", "mcopy/replica", &src)
        .source()
        .await
        .assert_ok();
    v2(&src, true);
    let run = Job::new(&conf, "moto", "mcopy/replica", &src)
        .source()
        .await;
    run.assert_ok();
    assert_eq!(run.count("filesTransferred"), 2, "{}", run.summary);
    assert_eq!(run.count("bytesTransferred"), 0, "{}", run.summary);

    let objects = crate::support::mover::list_bucket(&conf, "moto", "mcopy").await;
    let big = &objects["replica/copies/big.bin"];
    assert_eq!(big.size, (12 * MIB + 7) as u64);
    assert!(
        big.e_tag.as_deref().is_some_and(|e| e.ends_with("-3\"")),
        "three parts of at most 5 MiB: {big:?}"
    );
    let copied = metadata(&conf, "mcopy", "replica/copies/big.bin").await;
    assert_eq!(meta(&copied, "mtime"), Some("1700000100.5"), "{copied:?}");
    use base64::Engine as _;
    use md5::{Digest, Md5};
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes(9, 12 * MIB + 7)));
    assert_eq!(meta(&copied, "md5chksum"), Some(md5.as_str()), "{copied:?}");
    assert!(moto.multipart_uploads("mcopy").is_empty());

    std::fs::create_dir_all(&dst).unwrap();
    Job::new(&conf, "moto", "mcopy/replica", &dst)
        .destination()
        .await
        .assert_ok();
    assert_same_files(&files(&src), &files(&dst), 0);
    let report = rclone_ok(
        &conf,
        &[
            "check",
            src.to_str().unwrap(),
            "moto:mcopy/replica",
            "--exclude",
            "/.scribe/**",
        ],
    );
    assert!(report.contains("0 differences found"), "{report}");
    assert!(!report.contains("could not be checked"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_multipart_copy_is_aborted_and_nothing_is_committed() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let extra = "copy_cutoff = 5Mi";
    std::fs::write(
        &conf,
        moto.rclone_section("moto", extra)
            + &moto.rclone_section_at("faulty", &proxy.endpoint, extra),
    )
    .unwrap();
    let src = dir.path().join("src");
    v1(&src, true);
    Job::new(&conf, "moto", "fcopy/replica", &src)
        .source()
        .await
        .assert_ok();
    let manifest_before =
        crate::support::mover::list_bucket(&conf, "moto", "fcopy").await["replica/.scribe/manifest.jsonl"]
            .clone();
    v2(&src, true);
    // Every part copy of the large file is throttled until the retries run out.
    proxy.inject_matching(
        FaultKind::SlowDown,
        10_000,
        Some("PUT /fcopy/replica/copies/big.bin?"),
    );
    let run = Job::new(&conf, "faulty", "fcopy/replica", &src)
        .source()
        .await;
    run.assert_failed(75, &["copies/big.bin"]);
    assert!(proxy.faults_injected() > 0);
    assert!(
        moto.multipart_uploads("fcopy").is_empty(),
        "the failed multipart copy was aborted"
    );
    let objects = crate::support::mover::list_bucket(&conf, "moto", "fcopy").await;
    assert_eq!(objects["replica/.scribe/manifest.jsonl"], manifest_before);
    assert!(!objects.contains_key("replica/copies/big.bin"));

    Job::new(&conf, "moto", "fcopy/replica", &src)
        .source()
        .await
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_multipart_copy_aborts_it_and_exits_75() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let extra = "copy_cutoff = 5Mi";
    std::fs::write(
        &conf,
        moto.rclone_section("moto", extra)
            + &moto.rclone_section_at("faulty", &proxy.endpoint, extra),
    )
    .unwrap();
    let src = dir.path().join("src");
    v1(&src, true);
    Job::new(&conf, "moto", "icopy/replica", &src)
        .source()
        .await
        .assert_ok();
    v2(&src, true);
    proxy.inject_matching(
        FaultKind::Stall,
        1,
        Some("PUT /icopy/replica/copies/big.bin?"),
    );
    let log = dir.path().join("termination-log");
    let mut child = Job::new(&conf, "faulty", "icopy/replica", &src)
        .command("source", &log)
        .spawn()
        .unwrap();
    wait_for_faults(&proxy, &mut child, 1).await;
    assert_eq!(moto.multipart_uploads("icopy").len(), 1, "mid copy");
    let run = terminate(child, &log).await;
    assert_eq!(run.code, 75, "{}", run.tail());
    assert_eq!(run.summary["result"], "Interrupted", "{}", run.stdout);
    assert!(
        moto.multipart_uploads("icopy").is_empty(),
        "the multipart copy was aborted"
    );
}

#[tokio::test]
async fn a_bad_copy_cutoff_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(
        &conf,
        "[s]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:9\nregion = us-east-1\n\
         access_key_id = AK\nsecret_access_key = SK\ncopy_cutoff = 6Gi\n",
    )
    .unwrap();
    let src = dir.path().join("src");
    write(&src, "f", b"f");
    let run = Job::new(&conf, "s", "b/p", &src).source().await;
    run.assert_failed(78, &["copy_cutoff", "5Gi"]);
}
