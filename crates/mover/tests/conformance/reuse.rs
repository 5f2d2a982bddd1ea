//! Conformance cases for the destination's local reuse: content a local file
//! already holds (a rename or copy on the source) is copied, not downloaded, and a
//! local file that no longer holds what it should is never trusted for it.

use std::sync::atomic::Ordering::SeqCst;

use scribe_mover::SyncOptions;
use scribe_mover::destination;
use scribe_mover::store::remote::UploadOptions;

use super::tree::{self, assert_same, snapshot};
use super::{Factory, opts, pull, push, tmp, wrap};

pub async fn destination_reuses_local_content_for_a_rename<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    tree::write(src.path(), "big", &tree::bytes(9, 300_000));
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    std::fs::create_dir(src.path().join("moved")).unwrap();
    std::fs::rename(src.path().join("big"), src.path().join("moved/big2")).unwrap();
    // A copy on the source side: the destination still has the original.
    let b = std::fs::read(src.path().join("dir/b.bin")).unwrap();
    tree::write(src.path(), "dir/b-copy.bin", &b);
    push(&r, src.path()).await;

    let (w, wrapped) = wrap(&r);
    let d = pull(&w, dst.path()).await;
    assert_eq!(
        wrapped.counts.data_gets.load(SeqCst),
        0,
        "renamed and copied content comes from local files"
    );
    assert_eq!(
        (d.files_transferred, d.bytes_transferred, d.files_deleted),
        (0, 0, 1),
        "the summary counts downloads only; the old name is deleted"
    );
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
    assert_eq!(
        pull(&w, dst.path()).await.files_transferred,
        0,
        "the copies carry the manifest's mtimes, so the next restore trusts them"
    );
}

pub async fn destination_downloads_when_local_content_changed<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::write(src.path(), "a.bin", &tree::bytes(3, 50_000));
    tree::write(src.path(), "c.bin", &tree::bytes(5, 70_000));
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    let (w, wrapped) = wrap(&r);
    let gets = || wrapped.counts.data_gets.load(SeqCst);

    // The old name of a rename was edited locally (same size): its hash shows it
    // holds other content, so the new name is downloaded.
    std::fs::rename(src.path().join("c.bin"), src.path().join("c-renamed.bin")).unwrap();
    push(&r, src.path()).await;
    tree::write(dst.path(), "c.bin", &tree::bytes(6, 70_000));
    let d = pull(&w, dst.path()).await;
    assert_eq!(
        (gets(), d.files_transferred, d.bytes_transferred),
        (1, 1, 70_000)
    );
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));

    // A file edited locally behind an unchanged size and mtime is trusted at its own
    // path (as rclone does), so it is indexed as holding the manifest's content; the
    // copy for the source's new copy of it catches the edit and downloads instead.
    let original = std::fs::read(src.path().join("a.bin")).unwrap();
    tree::write(src.path(), "a-copy.bin", &original);
    push(&r, src.path()).await;
    let m = std::fs::symlink_metadata(dst.path().join("a.bin")).unwrap();
    let mtime = std::os::unix::fs::MetadataExt::mtime(&m);
    let nsec = std::os::unix::fs::MetadataExt::mtime_nsec(&m) as u32;
    tree::write(dst.path(), "a.bin", &tree::bytes(4, 50_000));
    tree::set_mtime(dst.path(), "a.bin", mtime, nsec);
    let d = pull(&w, dst.path()).await;
    assert_eq!(
        (gets(), d.files_transferred),
        (2, 1),
        "fell back to a download"
    );
    assert_eq!(
        std::fs::read(dst.path().join("a-copy.bin")).unwrap(),
        original,
        "the stale local bytes never reach the new file"
    );
    // --checksum finds the edit of the file itself and repairs it, from the local
    // copy just verified: still no download. Then the trees are identical.
    let checked = SyncOptions {
        checksum: true,
        ..opts()
    };
    let d = destination::sync(&w, dst.path(), &checked).await.unwrap();
    assert_eq!((gets(), d.files_transferred), (2, 0));
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}
