//! How the real `scribe-mover` binary fails against a real S3 API (moto with
//! SigV4 and IAM policy checks): each failure is exit 78 (retrying cannot help) or
//! 75 (retry later), a Failed summary whose error is one line naming the cause,
//! the same line logged on stderr, and no secret anywhere in what it prints.

use std::path::{Path, PathBuf};

use crate::conformance::tree::{small_tree, write};
use crate::support::Moto;
use crate::support::mover::{Job, Run, list_bucket};

fn conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("rclone.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn source_tree(dir: &tempfile::TempDir) -> PathBuf {
    let src = dir.path().join("src");
    small_tree(&src);
    src
}

/// The error is logged on stderr as well as in the summary.
fn assert_logged(run: &Run) {
    assert!(
        run.stderr.contains(run.error()),
        "stderr lacks the error {:?}:\n{}",
        run.error(),
        run.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_exits_78_naming_the_key_without_leaking_it() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "WRONGsecretWRONGsecretWRONGsecret0000";
    let conf = conf(
        &dir,
        &moto
            .rclone_section("moto", "")
            .replace(&moto.secret_key, wrong),
    );
    let src = source_tree(&dir);
    let run = Job::new(&conf, "moto", "bucket/p", &src).source().await;
    run.assert_failed(78, &["\"moto\"", "secret_access_key is wrong"]);
    assert_logged(&run);
    run.assert_no_secret(wrong);
    run.assert_no_secret(&moto.secret_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_access_key_exits_78() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(
        &dir,
        &moto
            .rclone_section("moto", "")
            .replace(&moto.access_key, "AKIAUNKNOWNKEY000000"),
    );
    let dst = dir.path().join("dst");
    let run = Job::new(&conf, "moto", "bucket", &dst).destination().await;
    run.assert_failed(78, &["access_key_id is not known"]);
    run.assert_no_secret(&moto.secret_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_section_exits_78_naming_it() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", ""));
    let src = source_tree(&dir);
    let run = Job::new(&conf, "nope", "bucket", &src).source().await;
    run.assert_failed(78, &["\"nope\"", "\"moto\""]);
    assert_logged(&run);
    run.assert_no_secret(&moto.secret_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_with_no_check_bucket_exits_78() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", "no_check_bucket = true"));
    let src = source_tree(&dir);
    let run = Job::new(&conf, "moto", "not-created/p", &src)
        .source()
        .await;
    run.assert_failed(78, &["\"not-created\"", "no_check_bucket"]);
    assert_logged(&run);
    run.assert_no_secret(&moto.secret_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_with_a_mistyped_bucket_exits_78_and_creates_nothing() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", ""));
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let run = Job::new(&conf, "moto", "replcia/p", &dst)
        .destination()
        .await;
    run.assert_failed(78, &["\"replcia\"", "no such bucket"]);
    assert_logged(&run);
    // Still missing: a second destination run says the same.
    Job::new(&conf, "moto", "replcia/p", &dst)
        .destination()
        .await
        .assert_failed(78, &["no such bucket"]);
    // The source still creates its bucket, and the destination then restores it.
    let src = source_tree(&dir);
    Job::new(&conf, "moto", "replica/p", &src)
        .source()
        .await
        .assert_ok();
    Job::new(&conf, "moto", "replica/p", &dst)
        .destination()
        .await
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_denied_by_policy_exits_78_while_other_buckets_work() {
    let moto = Moto::start_with_restricted_user("forbidden").await;
    let (key, secret) = moto.restricted.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let restricted = moto
        .rclone_section("limited", "")
        .replace(&moto.access_key, &key)
        .replace(&moto.secret_key, &secret);
    let conf = conf(&dir, &(moto.rclone_section("admin", "") + &restricted));
    let src = source_tree(&dir);
    // The bucket exists (made by the unrestricted user) …
    Job::new(&conf, "admin", "forbidden/p", &src)
        .source()
        .await
        .assert_ok();
    // … and the same credentials that are denied it work elsewhere.
    Job::new(&conf, "limited", "allowed/p", &src)
        .source()
        .await
        .assert_ok();

    let run = Job::new(&conf, "limited", "forbidden/p", &src)
        .source()
        .await;
    run.assert_failed(78, &["\"forbidden\"", "AccessDenied"]);
    assert_logged(&run);
    run.assert_no_secret(&secret);
    let dst = dir.path().join("dst");
    let run = Job::new(&conf, "limited", "forbidden/p", &dst)
        .destination()
        .await;
    run.assert_failed(78, &["\"forbidden\"", "AccessDenied"]);
    run.assert_no_secret(&secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_exits_75() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let conf = conf(
        &dir,
        &format!(
            "[dead]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:{port}\n\
             access_key_id = AKIADEAD\nsecret_access_key = DEADSECRETVALUE\n"
        ),
    );
    let src = source_tree(&dir);
    let run = Job::new(&conf, "dead", "bucket/p", &src).source().await;
    run.assert_failed(75, &["\"dead\"", "connect"]);
    assert_logged(&run);
    run.assert_no_secret("DEADSECRETVALUE");
}

/// Root reads any file; without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (dropped
/// from the bounding set by `setpriv`, so the exec'd mover never has them) a
/// mode-000 file is unreadable to it like to any other user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_source_file_exits_78_naming_it_and_uploads_nothing() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", ""));
    let src = source_tree(&dir);
    write(&src, "locked/secret.db", b"cannot read me");
    std::fs::set_permissions(
        src.join("locked/secret.db"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let without_dac = [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
    ];
    let run = Job::new(&conf, "moto", "unreadable/p", &src)
        .wrapped(&without_dac)
        .source()
        .await;
    run.assert_failed(78, &["locked/secret.db"]);
    assert_logged(&run);
    assert!(
        !list_bucket(&conf, "moto", "unreadable")
            .await
            .contains_key("p/.scribe/manifest.jsonl"),
        "nothing is committed"
    );

    // Readable again: the same command completes.
    std::fs::set_permissions(
        src.join("locked/secret.db"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    Job::new(&conf, "moto", "unreadable/p", &src)
        .wrapped(&without_dac)
        .source()
        .await
        .assert_ok();
}

/// A FIFO would block a reader forever: it is skipped with a warning naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_in_source_is_skipped_with_a_warning_not_read() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", ""));
    let src = source_tree(&dir);
    make_fifo(&src.join("dir/pipe"));
    let run = Job::new(&conf, "moto", "fifo/p", &src).source().await;
    run.assert_ok();
    assert!(
        run.stderr.contains("dir/pipe") && run.stderr.contains("special file"),
        "{}",
        run.tail()
    );
    assert!(
        !list_bucket(&conf, "moto", "fifo")
            .await
            .contains_key("p/dir/pipe")
    );
}

fn make_fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_output_even_at_trace_level() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(&dir, &moto.rclone_section("moto", ""));
    let src = source_tree(&dir);
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    for format in ["text", "json"] {
        let src_run = Job::new(&conf, "moto", "traced/p", &src)
            .env("SCRIBE_LOG_LEVEL", "trace")
            .env("SCRIBE_LOG_FORMAT", format)
            .source()
            .await;
        src_run.assert_ok();
        assert!(
            src_run.stderr.lines().count() > 10,
            "trace logs were written"
        );
        src_run.assert_no_secret(&moto.secret_key);
        let dst_run = Job::new(&conf, "moto", "traced/p", &dst)
            .env("SCRIBE_LOG_LEVEL", "trace")
            .env("SCRIBE_LOG_FORMAT", format)
            .destination()
            .await;
        dst_run.assert_ok();
        dst_run.assert_no_secret(&moto.secret_key);
    }
}
