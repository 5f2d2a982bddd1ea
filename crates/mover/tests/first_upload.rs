//! The source's first upload and a destination running at the same time: while
//! there is no manifest yet, the in-progress marker makes the destination wait
//! (Transient, exit 75) instead of restoring a half-uploaded bucket; an empty remote
//! waits too; a bucket written by plain rclone (no marker, no manifest) still
//! restores from its listing.

use crate::conformance::store;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::support::mover::Job;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use scribe_mover::fs::paths::manifest_key;
use scribe_mover::source::first_upload::marker_key;
use scribe_mover::store::remote::{ErrorCategory, Remote, UploadOptions};
use scribe_mover::{SyncError, SyncOptions, destination, source};

fn opts() -> SyncOptions {
    SyncOptions {
        retry_delay: Duration::ZERO,
        progress_interval: Duration::from_secs(3600),
        ..SyncOptions::default()
    }
}

fn memory() -> Remote {
    Remote {
        store: Arc::new(InMemory::new()),
        prefix: Key::from("replica/db"),
        upload: UploadOptions::default(),
        incomplete: None,
        description: "in-memory".into(),
    }
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn source_tree(root: &Path) {
    write(root, "a.txt", b"hello");
    write(root, "dir/b.bin", &vec![7u8; 50_000]);
    write(root, "dir/sub/c", b"c");
}

/// Content (files only), mode, mtime seconds and nanoseconds of one path.
type Seen = (Option<Vec<u8>>, u32, i64, i64);

/// What every path under `root` looks like (the root itself as "./").
fn view(root: &Path) -> BTreeMap<String, Seen> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap();
            let content = m.is_file().then(|| std::fs::read(e.path()).unwrap());
            (
                format!("./{rel}"),
                (content, m.mode(), m.mtime(), m.mtime_nsec()),
            )
        })
        .collect()
}

async fn exists(r: &Remote, key: &Key) -> bool {
    match r.store.head(key).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("head {key}: {e}"),
    }
}

#[tokio::test]
async fn destination_waits_while_the_first_upload_is_in_progress_then_restores() {
    let r = memory();
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source_tree(src.path());
    write(
        dst.path(),
        "local-only",
        b"must survive the refused restore",
    );

    // The first upload dies after the marker, before any data or the manifest.
    let failing = store::Wrapped::new(Arc::clone(&r.store));
    failing.fail_data_puts.store(true, SeqCst);
    let w = Remote {
        store: failing.clone(),
        ..r.clone()
    };
    source::sync(&w, src.path(), &opts())
        .await
        .expect_err("data puts fail");
    assert!(
        exists(&r, &marker_key(&r.prefix)).await,
        "marker written first"
    );
    assert!(!exists(&r, &manifest_key(&r.prefix)).await);
    // Some data did make it, as it would midway through a real upload.
    r.store
        .put(
            &r.prefix.clone().join("a.txt"),
            PutPayload::from_static(b"hello"),
        )
        .await
        .unwrap();

    let before = view(dst.path());
    let err = destination::sync(&r, dst.path(), &opts())
        .await
        .expect_err("must wait for the manifest");
    assert!(
        matches!(err, SyncError::FirstUploadInProgress { .. }),
        "{err}"
    );
    assert_eq!(err.category(), ErrorCategory::Transient);
    let msg = err.to_string();
    assert!(
        msg.contains("first upload") && msg.contains("in progress") && msg.contains("no manifest"),
        "{msg}"
    );
    assert_eq!(view(dst.path()), before, "local tree untouched");

    // The source completes: the marker is gone and the restore works.
    let s = source::sync(&r, src.path(), &opts()).await.expect("source");
    assert_eq!(s.files_transferred, 3);
    assert!(!exists(&r, &marker_key(&r.prefix)).await, "marker removed");
    assert!(exists(&r, &manifest_key(&r.prefix)).await);
    destination::sync(&r, dst.path(), &opts())
        .await
        .expect("restore after the first upload");
    assert_eq!(view(dst.path()), view(src.path()));
}

#[tokio::test]
async fn later_uploads_write_no_marker() {
    let r = memory();
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    source::sync(&r, src.path(), &opts()).await.unwrap();
    write(src.path(), "a.txt", b"changed");
    let counting = store::Wrapped::new(Arc::clone(&r.store));
    let w = Remote {
        store: counting.clone(),
        ..r.clone()
    };
    source::sync(&w, src.path(), &opts()).await.unwrap();
    assert_eq!(
        counting.counts.manifest_puts.load(SeqCst),
        1,
        "only the manifest is written under .scribe/"
    );
    assert!(!exists(&r, &marker_key(&r.prefix)).await);
}

#[tokio::test]
async fn empty_remote_is_transient_not_a_configuration_error() {
    let r = memory();
    let dst = tempfile::tempdir().unwrap();
    write(dst.path(), "existing", b"kept");
    let before = view(dst.path());
    let err = destination::sync(&r, dst.path(), &opts())
        .await
        .expect_err("nothing to restore yet");
    assert!(matches!(err, SyncError::NothingReplicated { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert!(
        err.to_string().contains("nothing has been replicated"),
        "{err}"
    );
    assert_eq!(view(dst.path()), before);
}

#[tokio::test]
async fn bucket_written_by_plain_rclone_still_restores_from_its_listing() {
    let r = memory();
    for (rel, body) in [("a.txt", &b"hello"[..]), ("dir/sub/c", b"c")] {
        r.store
            .put(
                &Key::from(format!("replica/db/{rel}")),
                PutPayload::from_static(body),
            )
            .await
            .unwrap();
    }
    let dst = tempfile::tempdir().unwrap();
    let s = destination::sync(&r, dst.path(), &opts())
        .await
        .expect("restore without manifest or marker");
    assert_eq!(s.files_transferred, 2);
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"hello");
    assert_eq!(std::fs::read(dst.path().join("dir/sub/c")).unwrap(), b"c");
}

/// The binary's side: the marker on a `type = local` remote makes the destination
/// exit 75 with a Failed summary naming the cause, leaving the tree alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exits_75_while_the_first_upload_is_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, "[local]\ntype = local\n").unwrap();
    let remote = dir.path().join("remote");
    write(
        &remote,
        ".scribe/in-progress",
        br#"{"startedAt":"2026-11-26T05:00:00.000Z","host":"src-pod"}"#,
    );
    write(&remote, "a.txt", b"hel");
    let dst = dir.path().join("dst");
    write(&dst, "mine", b"untouched");
    let before = view(&dst);
    let job = Job::new(&conf, "local", remote.to_str().unwrap(), &dst);
    let run = job.destination().await;
    run.assert_failed(75, &["first upload", "src-pod", "no manifest"]);
    assert_eq!(view(&dst), before);

    std::fs::remove_file(remote.join(".scribe/in-progress")).unwrap();
    std::fs::remove_file(remote.join("a.txt")).unwrap();
    job.destination()
        .await
        .assert_failed(75, &["nothing has been replicated"]);
    assert_eq!(view(&dst), before);
}
