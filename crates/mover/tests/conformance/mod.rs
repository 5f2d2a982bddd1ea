//! The engine's conformance suite, written once against a [`Factory`] of fresh,
//! empty remotes and instantiated per backend with [`conformance_suite!`]
//! (InMemory and LocalFileSystem in `conformance_local.rs`; an S3 server elsewhere).

pub mod changing;
pub mod content;
pub mod reuse;
pub mod store;
mod suite;
pub mod tree;

// For `conformance_suite!`; binaries including this module without the suite
// (s3_interop) leave them unused.
#[allow(unused_imports)]
pub use changing::{
    file_rewritten_while_uploaded_is_read_again,
    file_that_keeps_changing_keeps_its_committed_version,
    vanished_and_created_files_do_not_fail_the_run,
};
#[allow(unused_imports)]
pub use content::{
    destination_removes_local_names_no_manifest_can_hold, destination_without_records_rehashes,
    same_size_same_mtime_rewrite_reaches_the_destination,
    unsupported_names_fail_the_source_naming_them,
};
#[allow(unused_imports)]
pub use reuse::{
    destination_downloads_when_local_content_changed, destination_reuses_local_content_for_a_rename,
};

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use scribe_mover::store::remote::{ErrorCategory, Remote, UploadOptions};
use scribe_mover::summary::Outcome;
use scribe_mover::{Summary, SyncError, SyncOptions, destination, source};

use store::Wrapped;
use tree::{assert_same, snapshot};

/// Makes a fresh, empty remote with the given upload options.
pub trait Factory: Sync {
    fn remote(&self, upload: UploadOptions) -> impl Future<Output = Remote> + Send;
    /// Whether multipart objects carry rclone's `md5chksum` metadata (not over
    /// crypt: it would claim to be the MD5 of the ciphertext; rclone crypt stores none).
    fn stores_md5chksum(&self) -> bool {
        true
    }
}

/// Options for tests: no retry delay, quiet progress.
pub fn opts() -> SyncOptions {
    SyncOptions {
        transfers: 8,
        retry_delay: Duration::ZERO,
        progress_interval: Duration::from_secs(3600),
        ..SyncOptions::default()
    }
}

/// The same remote seen through a counting / failing wrapper.
pub fn wrap(r: &Remote) -> (Remote, Arc<Wrapped>) {
    let w = Wrapped::new(Arc::clone(&r.store));
    (
        Remote {
            store: w.clone(),
            ..r.clone()
        },
        w,
    )
}

pub(crate) fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub(crate) async fn push(r: &Remote, dir: &Path) -> Summary {
    let s = source::sync(r, dir, &opts()).await.expect("source sync");
    assert_eq!(s.result, Outcome::Successful);
    s
}

pub(crate) async fn pull(r: &Remote, dir: &Path) -> Summary {
    destination::sync(r, dir, &opts())
        .await
        .expect("destination sync")
}

pub(crate) async fn manifest_bytes(r: &Remote) -> Option<bytes::Bytes> {
    let key = scribe_mover::fs::paths::manifest_key(&r.prefix);
    match r.store.get(&key).await {
        Ok(g) => Some(g.bytes().await.unwrap()),
        Err(_) => None,
    }
}

pub(crate) async fn object_exists(r: &Remote, rel: &str) -> bool {
    r.store
        .head(&scribe_mover::fs::paths::key_for(&r.prefix, rel).unwrap())
        .await
        .is_ok()
}

pub async fn first_sync_round_trips_every_entry_kind<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    let s = push(&r, src.path()).await;
    // a.txt, dir/b.bin, dir/hard, dir/sub/c, zero.
    assert_eq!(
        (s.files_checked, s.files_transferred, s.files_deleted),
        (5, 5, 0)
    );
    assert_eq!(s.bytes_transferred, 5 + 100_000 + 1);
    assert!(
        object_exists(&r, "dir/hard").await,
        "hardlinks are objects too"
    );
    assert!(
        !object_exists(&r, "link-to-a").await,
        "symlinks ride in the manifest only"
    );
    let d = pull(&r, dst.path()).await;
    assert_eq!(d.files_transferred, 4, "hardlink is linked, not downloaded");
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn resync_without_changes_transfers_nothing<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let src = tmp();
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    let (w, counts) = wrap(&r);
    let s = push(&w, src.path()).await;
    assert_eq!(
        (s.files_transferred, s.bytes_transferred, s.files_deleted),
        (0, 0, 0)
    );
    assert_eq!(s.files_checked, 5);
    let c = &counts.counts;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        c.data_puts.load(SeqCst) + c.copies.load(SeqCst) + c.deletes.load(SeqCst),
        0
    );
    assert_eq!(c.manifest_puts.load(SeqCst), 1);
}

pub async fn modify_add_delete_are_synced<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    // Same size and same mtime: only ctime/content tell the change.
    tree::write(src.path(), "a.txt", b"HELLO");
    tree::set_mtime(src.path(), "a.txt", 1_600_000_000, 123_456_789);
    tree::write(src.path(), "new/file", b"brand new");
    std::fs::remove_file(src.path().join("dir/sub/c")).unwrap();
    let s = push(&r, src.path()).await;
    assert_eq!((s.files_transferred, s.files_deleted), (2, 1));
    assert!(!object_exists(&r, "dir/sub/c").await);
    // The destination decides by SHA-256 (its restore records), so the same-size,
    // same-mtime edit of a.txt is found without --checksum.
    let d = pull(&r, dst.path()).await;
    assert_eq!((d.files_transferred, d.files_deleted), (2, 1));
    let checked = SyncOptions {
        checksum: true,
        ..opts()
    };
    let d = destination::sync(&r, dst.path(), &checked).await.unwrap();
    assert_eq!((d.files_transferred, d.files_deleted), (0, 0));
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
    // An ordinary edit (new mtime) is found without --checksum.
    tree::write(src.path(), "dir/b.bin", &tree::bytes(2, 100_000));
    push(&r, src.path()).await;
    assert_eq!(pull(&r, dst.path()).await.files_transferred, 1);
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn rename_is_a_server_side_copy<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let src = tmp();
    tree::small_tree(src.path());
    tree::write(src.path(), "big", &tree::bytes(9, 300_000));
    push(&r, src.path()).await;
    std::fs::rename(src.path().join("big"), src.path().join("moved/big2")).unwrap_or_else(|_| {
        std::fs::create_dir(src.path().join("moved")).unwrap();
        std::fs::rename(src.path().join("big"), src.path().join("moved/big2")).unwrap();
    });
    let (w, counts) = wrap(&r);
    let s = push(&w, src.path()).await;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        counts.counts.data_puts.load(SeqCst),
        0,
        "a renamed file is not uploaded"
    );
    assert_eq!(counts.counts.copies.load(SeqCst), 1);
    assert_eq!(
        (s.files_transferred, s.bytes_transferred, s.files_deleted),
        (1, 0, 1)
    );
    assert!(object_exists(&r, "moved/big2").await && !object_exists(&r, "big").await);
    let dst = tmp();
    pull(&r, dst.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn destination_is_incremental<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    let (w, counts) = wrap(&r);
    let again = pull(&w, dst.path()).await;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        (
            again.files_transferred,
            counts.counts.data_gets.load(SeqCst)
        ),
        (0, 0)
    );
    tree::write(src.path(), "dir/sub/c", b"changed");
    push(&r, src.path()).await;
    let d = pull(&w, dst.path()).await;
    assert_eq!(
        (d.files_transferred, counts.counts.data_gets.load(SeqCst)),
        (1, 1)
    );
    // A local file touched (mtime only) is re-hashed, not re-downloaded.
    tree::set_mtime(dst.path(), "a.txt", 1, 0);
    let t = pull(&w, dst.path()).await;
    assert_eq!(
        (t.files_transferred, counts.counts.data_gets.load(SeqCst)),
        (0, 1)
    );
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn mid_upload_mismatch_retries_and_never_tears<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    // v2 of the source: the destination starts on v1's manifest, and while it
    // downloads, the source uploads v2 and commits a new manifest.
    tree::write(src.path(), "dir/sub/c", b"v2 of c");
    tree::write(src.path(), "a.txt", b"v2 of a");
    tree::write(src.path(), "zz-new", b"v2 new");
    let (w, wrapped) = wrap(&r);
    let inner = r.clone();
    let src_path = src.path().to_path_buf();
    // Change what the destination is about to download before it reads it.
    tree::write(dst.path(), "dir/sub/c", b"local edit");
    wrapped.on_first_get(
        "dir/sub/c",
        Box::pin(async move {
            source::sync(&inner, &src_path, &opts())
                .await
                .expect("concurrent source sync");
        }),
    );
    let d = destination::sync(&w, dst.path(), &opts())
        .await
        .expect("retry succeeds");
    assert_eq!(d.result, Outcome::Successful);
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn persistent_mismatch_fails_transient_leaving_tree<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    tree::write(src.path(), "a.txt", b"v2");
    // Other content than a.txt's: a retry would take that from what it verified.
    tree::write(src.path(), "dir/sub/c", b"v2 of c");
    std::fs::remove_file(src.path().join("zero")).unwrap();
    push(&r, src.path()).await;
    let before = snapshot(dst.path());
    let (w, wrapped) = wrap(&r);
    *wrapped.corrupt_suffix.lock().unwrap() = Some("dir/sub/c".into());
    let err = destination::sync(&w, dst.path(), &opts())
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, SyncError::DownloadMismatch { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_same(&before, &snapshot(dst.path()));
}

pub async fn failed_upload_commits_and_deletes_nothing<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let src = tmp();
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    let before = manifest_bytes(&r).await.expect("manifest");
    tree::write(src.path(), "a.txt", b"changed content");
    std::fs::remove_file(src.path().join("dir/sub/c")).unwrap();
    let (w, wrapped) = wrap(&r);
    wrapped
        .fail_data_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = source::sync(&w, src.path(), &opts())
        .await
        .expect_err("must fail");
    assert_eq!(err.category(), ErrorCategory::Transient, "{err}");
    assert_eq!(manifest_bytes(&r).await, Some(before), "manifest untouched");
    assert!(
        object_exists(&r, "dir/sub/c").await,
        "nothing deleted after a failure"
    );
}

pub async fn failed_manifest_write_deletes_nothing<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let src = tmp();
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    std::fs::remove_file(src.path().join("dir/sub/c")).unwrap();
    let (w, wrapped) = wrap(&r);
    wrapped
        .fail_manifest_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    source::sync(&w, src.path(), &opts())
        .await
        .expect_err("must fail");
    assert!(object_exists(&r, "dir/sub/c").await);
}

pub async fn failed_download_leaves_local_tree<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    tree::write(src.path(), "a.txt", b"v2");
    std::fs::remove_file(src.path().join("dir/sub/c")).unwrap();
    push(&r, src.path()).await;
    tree::write(dst.path(), "local-only", b"x");
    let before = snapshot(dst.path());
    let (w, wrapped) = wrap(&r);
    wrapped
        .fail_data_gets
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = destination::sync(&w, dst.path(), &opts())
        .await
        .expect_err("must fail");
    assert_eq!(err.category(), ErrorCategory::Transient, "{err}");
    assert_same(&before, &snapshot(dst.path()));
}

pub async fn empty_source_is_refused<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, empty) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    let err = source::sync(&r, empty.path(), &opts())
        .await
        .expect_err("refused");
    assert!(matches!(err, SyncError::EmptySource { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(err.to_string().contains("--allow-empty-source"));
    assert!(object_exists(&r, "a.txt").await);
    let missing = source::sync(&r, &empty.path().join("nope"), &opts())
        .await
        .expect_err("missing");
    assert_eq!(missing.category(), ErrorCategory::Config);
    let allowed = SyncOptions {
        allow_empty_source: true,
        ..opts()
    };
    let s = source::sync(&r, empty.path(), &allowed)
        .await
        .expect("allowed");
    assert_eq!(s.files_deleted, 5);
    assert!(!object_exists(&r, "a.txt").await);
}

pub async fn unsafe_manifest_is_rejected<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let dst = tmp();
    let inside = dst.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    let evil = "{\"format\":\"scribe-manifest\",\"version\":1,\"createdAt\":\"t\",\"entries\":1}\n\
                {\"path\":\"../escape\",\"type\":\"dir\",\"mtimeSec\":0}\n";
    r.store
        .put(
            &scribe_mover::fs::paths::manifest_key(&r.prefix),
            PutPayload::from(evil.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    let err = destination::sync(&r, &inside, &opts())
        .await
        .expect_err("rejected");
    assert!(matches!(err, SyncError::UnsafePath { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Config);
    assert!(!dst.path().join("escape").exists());
}

pub async fn dry_run_changes_nothing<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    let dry = SyncOptions {
        dry_run: true,
        ..opts()
    };
    let s = source::sync(&r, src.path(), &dry).await.unwrap();
    assert_eq!(s.files_transferred, 5);
    assert!(manifest_bytes(&r).await.is_none() && !object_exists(&r, "a.txt").await);
    push(&r, src.path()).await;
    let d = destination::sync(&r, dst.path(), &dry).await.unwrap();
    assert_eq!(d.files_transferred, 4);
    assert_eq!(snapshot(dst.path()).len(), 1, "only the root");
}

pub async fn multipart_upload_round_trips<F: Factory>(f: &F) {
    let upload = UploadOptions {
        upload_cutoff: 5 * 1024 * 1024,
        chunk_size: 5 * 1024 * 1024,
        ..UploadOptions::default()
    };
    let r = f.remote(upload).await;
    let (src, dst) = (tmp(), tmp());
    tree::write(src.path(), "large", &tree::bytes(3, 12 * 1024 * 1024 + 17));
    tree::write(src.path(), "small", b"s");
    let (w, wrapped) = wrap(&r);
    let s = push(&w, src.path()).await;
    assert_eq!(s.bytes_transferred, 12 * 1024 * 1024 + 18);
    assert_eq!(
        wrapped
            .counts
            .multipart_starts
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    pull(&r, dst.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn file_over_one_part_is_multipart_below_the_cutoff<F: Factory>(f: &F) {
    use object_store::{Attribute, GetOptions};
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    let content = tree::bytes(5, 6 * 1024 * 1024 + 1);
    tree::write(src.path(), "mid", &content);
    tree::write(src.path(), "one-part", &tree::bytes(6, 5 * 1024 * 1024));
    let (w, wrapped) = wrap(&r);
    push(&w, src.path()).await;
    assert_eq!(
        wrapped
            .counts
            .multipart_starts
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "above one part (5 MiB) but far below the 200 MiB cutoff: multipart; one part: a single put"
    );
    let key = scribe_mover::fs::paths::key_for(&r.prefix, "mid").unwrap();
    let head = r
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
    let meta = |name: &'static str| head.attributes.get(&Attribute::Metadata(name.into()));
    if meta("mtime").is_some() && f.stores_md5chksum() {
        let md5 = scribe_mover::fs::hash::hash_file(&src.path().join("mid"))
            .unwrap()
            .md5;
        assert_eq!(
            meta("md5chksum").map(|v| v.to_string()),
            scribe_mover::fs::hash::md5chksum(&md5),
            "multipart objects carry rclone's md5chksum"
        );
    }
    pull(&r, dst.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn torture_tree_round_trips<F: Factory>(f: &F) {
    let upload = UploadOptions {
        upload_cutoff: 5 * 1024 * 1024,
        chunk_size: 5 * 1024 * 1024,
        ..UploadOptions::default()
    };
    let r = f.remote(upload).await;
    let (src, dst) = (tmp(), tmp());
    tree::torture_tree(src.path());
    let s = push(&r, src.path()).await;
    assert!(s.files_checked > 2000, "{s:?}");
    let d = pull(&r, dst.path()).await;
    assert_eq!(d.files_checked, s.files_checked);
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
    if tree::is_sparse(&src.path().join("sparse")) {
        assert!(
            tree::is_sparse(&dst.path().join("sparse")),
            "holes are kept"
        );
    }
    // Nothing changed: nothing moves either way.
    assert_eq!(push(&r, src.path()).await.files_transferred, 0);
    assert_eq!(pull(&r, dst.path()).await.files_transferred, 0);
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

pub async fn rclone_written_bucket_is_restored<F: Factory>(f: &F) {
    use object_store::{Attribute, AttributeValue, Attributes, PutOptions};
    let r = f.remote(UploadOptions::default()).await;
    let dst = tmp();
    let files: [(&str, &[u8]); 3] = [
        ("top.txt", b"top"),
        ("sub dir/nested.bin", &[7u8; 3000]),
        ("sub dir/deeper/x", b""),
    ];
    let mut with_metadata = true;
    for (rel, content) in files {
        let key = scribe_mover::fs::paths::key_for(&r.prefix, rel).unwrap();
        let mut attrs = Attributes::new();
        attrs.insert(
            Attribute::Metadata("mtime".into()),
            AttributeValue::from("1262304000.5"),
        );
        let put = r
            .store
            .put_opts(
                &key,
                PutPayload::from(content.to_vec()),
                PutOptions::from(attrs),
            )
            .await;
        if put.is_err() {
            with_metadata = false;
            r.store
                .put(&key, PutPayload::from(content.to_vec()))
                .await
                .unwrap();
        }
    }
    tree::write(dst.path(), "stale", b"not in the bucket");
    let d = pull(&r, dst.path()).await;
    assert_eq!(
        (d.files_checked, d.files_transferred, d.files_deleted),
        (3, 3, 1)
    );
    let snap = snapshot(dst.path());
    assert_eq!(snap["sub dir/nested.bin"].size, 3000);
    assert_eq!(std::fs::read(dst.path().join("top.txt")).unwrap(), b"top");
    if with_metadata {
        assert_eq!(
            snap["top.txt"].mtime,
            (1_262_304_000, 500_000_000),
            "x-amz-meta-mtime is honoured"
        );
    }
    assert_eq!(
        snap["top.txt"].mode, 0o644,
        "rclone's default file mode, not the staging file's 0600"
    );
    assert_eq!(snap["sub dir/deeper/x"].mode, 0o644);
    assert_eq!(
        pull(&r, dst.path()).await.files_transferred,
        0,
        "second restore trusts what the first recorded"
    );
}
