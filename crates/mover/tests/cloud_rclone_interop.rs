//! Interoperability with real rclone (Debian's 1.60) through the same container on
//! Azurite and the same bucket on fake-gcs-server, both ways, using the real
//! `scribe-mover` binary: what the mover uploads rclone downloads with the same
//! content and mtimes (rclone reads the `mtime` metadata the mover writes) and
//! checks, and what `rclone sync` uploads (no manifest) the mover restores.
//!
//! One section serves both programs: for Azurite `use_emulator = true` with a full
//! `endpoint` URL (rclone 1.60 takes the emulator's endpoint from it; a key with a
//! custom endpoint it would turn into `https://<account>.<endpoint>`); for
//! fake-gcs-server `anonymous = true` with `endpoint = http://…/storage/v1/`.

use std::path::Path;

use crate::conformance::tree::write;
use crate::support::azurite::Azurite;
use crate::support::fakegcs::FakeGcs;
use crate::support::mover::{Job, assert_same_files, files};
use crate::support::rclone::{RCLONE_MTIME_TOLERANCE_NS, interop_tree, rclone_ok};

/// The mover uploads; rclone copies the data objects back and checks them.
async fn mover_to_rclone(conf: &Path, section: &str, bucket: &str, dir: &Path) {
    let (src, fetched) = (dir.join("src"), dir.join("fetched"));
    interop_tree(&src);
    let run = Job::new(conf, section, &format!("{bucket}/replica"), &src)
        .source()
        .await;
    run.assert_ok();
    assert_eq!(run.count("filesTransferred"), 7, "{}", run.summary);

    let remote = format!("{section}:{bucket}/replica");
    let exclude = "/.scribe/**";
    rclone_ok(
        conf,
        &[
            "copy",
            &remote,
            fetched.to_str().unwrap(),
            "--exclude",
            exclude,
        ],
    );
    assert_same_files(&files(&src), &files(&fetched), RCLONE_MTIME_TOLERANCE_NS);
    // rclone's own view of the dates: the `mtime` metadata, not the upload time.
    let listing = rclone_ok(conf, &["lsl", &format!("{remote}/top.txt")]);
    assert!(
        listing.contains("2020-09-13 12:26:40.123456789"),
        "{listing}"
    );
    let report = rclone_ok(
        conf,
        &[
            "check",
            src.to_str().unwrap(),
            &remote,
            "--exclude",
            exclude,
        ],
    );
    assert!(report.contains("0 differences found"), "{report}");
}

/// rclone uploads (no manifest); the mover restores it, then has nothing to do.
async fn rclone_to_mover(conf: &Path, section: &str, bucket: &str, dir: &Path) {
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    interop_tree(&src);
    rclone_ok(conf, &["mkdir", &format!("{section}:{bucket}")]);
    rclone_ok(
        conf,
        &[
            "sync",
            src.to_str().unwrap(),
            &format!("{section}:{bucket}/data"),
        ],
    );
    write(&dst, "not-in-bucket", b"to be deleted");

    let restore = Job::new(conf, section, &format!("{bucket}/data"), &dst);
    let run = restore.destination().await;
    run.assert_ok();
    assert_eq!(
        (run.count("filesTransferred"), run.count("filesDeleted")),
        (7, 1),
        "{}",
        run.summary
    );
    assert_same_files(&files(&src), &files(&dst), RCLONE_MTIME_TOLERANCE_NS);
    let again = restore.destination().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);
}

fn azure_conf(azurite: &Azurite, dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("rclone.conf");
    let section = format!(
        "[az]\ntype = azureblob\nuse_emulator = true\nendpoint = {}\nchunk_size = 5M\n",
        azurite.service
    );
    std::fs::write(&conf, section).unwrap();
    conf
}

fn gcs_conf(server: &FakeGcs, dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("rclone.conf");
    std::fs::write(&conf, server.rclone_section("gcs", "")).unwrap();
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_tree_uploaded_by_the_mover_is_fetched_and_checked_by_rclone() {
    let azurite = Azurite::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = azure_conf(&azurite, dir.path());
    mover_to_rclone(&conf, "az", "interop", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_tree_uploaded_by_rclone_is_restored_by_the_mover() {
    let azurite = Azurite::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = azure_conf(&azurite, dir.path());
    rclone_to_mover(&conf, "az", "from-rclone", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_sas_url_reaches_the_container_it_grants() {
    let azurite = Azurite::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = azure_conf(&azurite, dir.path());
    rclone_ok(&conf, &["mkdir", "az:granted"]);
    let sas = dir.path().join("sas.conf");
    let section = format!(
        "[sas]\ntype = azureblob\nsas_url = {}\n",
        azurite.container_sas_url("granted")
    );
    std::fs::write(&sas, section).unwrap();
    let src = dir.path().join("src");
    interop_tree(&src);
    let run = Job::new(&sas, "sas", "granted/replica", &src)
        .source()
        .await;
    run.assert_ok();
    assert_eq!(run.count("filesTransferred"), 7, "{}", run.summary);
    run.assert_no_secret(
        azurite
            .container_sas_url("granted")
            .rsplit("sig=")
            .next()
            .unwrap(),
    );
    let fetched = dir.path().join("fetched");
    rclone_ok(
        &conf,
        &[
            "copy",
            "az:granted/replica",
            fetched.to_str().unwrap(),
            "--exclude",
            "/.scribe/**",
        ],
    );
    assert_same_files(&files(&src), &files(&fetched), RCLONE_MTIME_TOLERANCE_NS);
    let other = Job::new(&sas, "sas", "other/replica", &src).source().await;
    other.assert_failed(78, &["sas_url", "granted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_tree_uploaded_by_the_mover_is_fetched_and_checked_by_rclone() {
    let server = FakeGcs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = gcs_conf(&server, dir.path());
    mover_to_rclone(&conf, "gcs", "interop", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_tree_uploaded_by_rclone_is_restored_by_the_mover() {
    let server = FakeGcs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = gcs_conf(&server, dir.path());
    rclone_to_mover(&conf, "gcs", "from-rclone", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_never_creates_a_missing_container_or_bucket() {
    let (azurite, server) = (Azurite::start().await, FakeGcs::start().await);
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let az = azure_conf(&azurite, dir.path());
    let run = Job::new(&az, "az", "missing-container/x", &dst)
        .destination()
        .await;
    run.assert_failed(78, &["no such container"]);
    let gcs_dir = dir.path().join("g");
    std::fs::create_dir_all(&gcs_dir).unwrap();
    let gcs = gcs_conf(&server, &gcs_dir);
    let run = Job::new(&gcs, "gcs", "missing-bucket/x", &dst)
        .destination()
        .await;
    run.assert_failed(78, &["no such bucket"]);
}
