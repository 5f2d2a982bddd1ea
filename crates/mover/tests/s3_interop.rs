//! Interoperability with real rclone (Debian's 1.60) through the same S3 bucket
//! on moto, both ways, using the real `scribe-mover` binary: what the mover uploads
//! is what rclone downloads and checks (content, MD5 even of multipart objects,
//! mtimes), and what `rclone sync` uploads (no manifest) the mover restores.

use crate::conformance::tree::write;
use crate::support::Moto;
use crate::support::mover::{Job, assert_same_files, files};
use crate::support::rclone::{RCLONE_MTIME_TOLERANCE_NS, interop_tree, rclone, rclone_ok};

/// The 12 MiB file is over the section's 5 MiB upload_cutoff / chunk_size: three parts.
const SECTION_EXTRA: &str = "upload_cutoff = 5M\nchunk_size = 5M";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_uploaded_by_the_mover_is_fetched_and_checked_by_rclone() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", SECTION_EXTRA)).unwrap();
    let (src, fetched) = (dir.path().join("src"), dir.path().join("fetched"));
    interop_tree(&src);

    let run = Job::new(&conf, "moto", "interop/replica", &src)
        .source()
        .await;
    run.assert_ok();
    assert_eq!(run.count("filesTransferred"), 7, "{}", run.summary);

    let remote = "moto:interop/replica";
    let exclude = "/.scribe/**";
    rclone_ok(
        &conf,
        &[
            "copy",
            remote,
            fetched.to_str().unwrap(),
            "--exclude",
            exclude,
        ],
    );
    assert_same_files(&files(&src), &files(&fetched), RCLONE_MTIME_TOLERANCE_NS);

    // Size and MD5 of every object, the multipart one through its md5chksum metadata.
    let report = rclone_ok(
        &conf,
        &["check", src.to_str().unwrap(), remote, "--exclude", exclude],
    );
    assert!(report.contains("0 differences found"), "{report}");
    assert!(report.contains("7 matching files"), "{report}");
    assert!(
        !report.contains("could not be checked"),
        "every hash must be checkable: {report}"
    );
    let listing = rclone_ok(
        &conf,
        &[
            "lsjson",
            "--hash",
            "--hash-type",
            "MD5",
            &format!("{remote}/large"),
        ],
    );
    let large: serde_json::Value = serde_json::from_str(
        listing
            .lines()
            .skip_while(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap_or_else(|e| panic!("{e}: {listing}"));
    use md5::{Digest, Md5};
    let want = hex::encode(Md5::digest(
        std::fs::read(src.join("large/twelve-mib.bin")).unwrap(),
    ));
    assert_eq!(large[0]["Hashes"]["md5"], want.as_str(), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_uploaded_by_rclone_is_restored_by_the_mover() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", SECTION_EXTRA)).unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    interop_tree(&src);
    // Buckets are made by the mover's bucket check; rclone would make it too.
    rclone_ok(&conf, &["mkdir", "moto:from-rclone"]);
    rclone_ok(
        &conf,
        &["sync", src.to_str().unwrap(), "moto:from-rclone/data"],
    );
    write(&dst, "not-in-bucket", b"to be deleted");

    let restore = Job::new(&conf, "moto", "from-rclone/data", &dst);
    let run = restore.destination().await;
    run.assert_ok();
    assert_eq!(
        (run.count("filesTransferred"), run.count("filesDeleted")),
        (7, 1),
        "{}",
        run.summary
    );
    assert_same_files(&files(&src), &files(&dst), RCLONE_MTIME_TOLERANCE_NS);

    // The restored mtimes are exactly what the bucket says: nothing to do next time.
    let again = restore.destination().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);
    assert_same_files(&files(&src), &files(&dst), RCLONE_MTIME_TOLERANCE_NS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_class_of_the_section_is_set_on_every_object() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let extra = format!("{SECTION_EXTRA}\nstorage_class = STANDARD_IA");
    std::fs::write(&conf, moto.rclone_section("moto", &extra)).unwrap();
    let src = dir.path().join("src");
    interop_tree(&src);
    Job::new(&conf, "moto", "classy/p", &src)
        .source()
        .await
        .assert_ok();
    // rclone reads the storage class back as the object's tier.
    let out = rclone(
        &conf,
        &[
            "lsf",
            "-R",
            "--files-only",
            "--format",
            "pT",
            "--exclude",
            "/.scribe/**",
            "moto:classy/p",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(listing.lines().count(), 7, "{listing}");
    for line in listing.lines() {
        assert!(
            line.ends_with(";STANDARD_IA"),
            "{line} (multipart included)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_object_store_cannot_address_do_not_wedge_either_direction() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    write(&src, "a.txt", b"alpha");
    write(&src, "dir/b", b"beta");
    // The bucket exists; then someone else writes keys object_store rejects.
    Job::new(&conf, "moto", "foreign/p", &src)
        .arg("--dry-run")
        .source()
        .await
        .assert_ok();
    for key in ["p/odd//double", "p/ctl\u{1}char", "p/dot/./seg"] {
        moto.put_raw("foreign", key, b"not ours");
    }
    // A destination before any source: the foreign keys are no data of ours, so
    // nothing is replicated yet (retry later), not a configuration error.
    std::fs::create_dir(&dst).unwrap();
    Job::new(&conf, "moto", "foreign/p", &dst)
        .destination()
        .await
        .assert_failed(75, &["nothing has been replicated"]);
    let run = Job::new(&conf, "moto", "foreign/p", &src).source().await;
    run.assert_ok();
    assert!(
        run.stderr.contains("odd//double"),
        "the skipped key is named:\n{}",
        run.tail()
    );
    Job::new(&conf, "moto", "foreign/p", &dst)
        .destination()
        .await
        .assert_ok();
    assert_eq!(std::fs::read(dst.join("dir/b")).unwrap(), b"beta");
    // Nothing changed: the next source run is a no-op and still succeeds.
    let again = Job::new(&conf, "moto", "foreign/p", &src).source().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0);
}
