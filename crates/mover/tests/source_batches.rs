//! The source works through its files in batches (`SyncOptions::source_batch`), so
//! its memory does not grow with the number of files it writes. With batches of 3
//! files, a tree whose hardlinks, duplicate contents and renamed files span several
//! batches is restored exactly, every duplicate or renamed content is a server-side
//! copy instead of an upload, committed versions are kept until the commit and
//! released after it, and a dry run reports what the real run then does.

use crate::support::local_remote;
use std::sync::atomic::Ordering::SeqCst;

use crate::conformance::tree::{self, assert_same, snapshot};
use crate::conformance::{manifest_bytes, opts, pull, tmp, wrap};
use futures::TryStreamExt;
use object_store::ObjectStore;
use scribe_mover::store::remote::Remote;
use scribe_mover::summary::Outcome;
use scribe_mover::{Summary, SyncOptions, source};

fn batched() -> SyncOptions {
    SyncOptions {
        source_batch: 3,
        ..opts()
    }
}

async fn push(r: &Remote, dir: &std::path::Path, o: &SyncOptions) -> Summary {
    let s = source::sync(r, dir, o).await.expect("source sync");
    assert_eq!(s.result, Outcome::Successful);
    s
}

/// Objects under `.scribe/committed/`.
async fn committed(r: &Remote) -> usize {
    let prefix = r.prefix.clone().join(".scribe").join("committed");
    let found: Vec<_> = r.store.list(Some(&prefix)).try_collect().await.unwrap();
    found.len()
}

/// 20 files in 7 batches of 3: a hardlink in a later batch than its first path,
/// the same content at the start and the end of the tree, an empty file.
fn first_tree(root: &std::path::Path) {
    for i in 0..14 {
        tree::write(
            root,
            &format!("m/f{i:02}"),
            &tree::bytes(i as u64 + 100, 5_000 + i),
        );
    }
    tree::write(root, "a/first", b"linked content");
    std::fs::create_dir_all(root.join("z")).unwrap();
    std::fs::hard_link(root.join("a/first"), root.join("z/link")).unwrap();
    tree::write(root, "a/dup", &tree::bytes(7, 40_000));
    tree::write(root, "y/dup", &tree::bytes(7, 40_000));
    tree::write(root, "b/empty", b"");
    tree::write(root, "b/big", &tree::bytes(8, 200_000));
}

#[tokio::test]
async fn batches_of_three_restore_exactly_and_copy_across_batches() {
    let dir = tmp();
    let r = local_remote(&dir);
    let src = tmp();
    first_tree(src.path());

    // The same runs unbatched, on a second remote, to compare requests with.
    let dir2 = tmp();
    let r2 = local_remote(&dir2);

    let (w, counts) = wrap(&r);
    let s = push(&w, src.path(), &batched()).await;
    assert_eq!(s.files_transferred, 20);
    let (w2, counts2) = wrap(&r2);
    push(&w2, src.path(), &opts()).await;
    // The hardlink and the second `dup` are copies of content an earlier batch
    // uploaded, as when everything is one batch.
    let writes =
        |c: &crate::conformance::store::Counts| (c.data_puts.load(SeqCst), c.copies.load(SeqCst));
    assert_eq!(writes(&counts.counts), writes(&counts2.counts));
    assert_eq!(counts.counts.copies.load(SeqCst), 2);
    let dst = tmp();
    pull(&r, dst.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));

    // Rewrites in several batches (the hardlinked inode too), a rename to the end
    // of the tree, a deletion, a new file with content already stored.
    for i in [0usize, 4, 9, 13] {
        tree::write(
            src.path(),
            &format!("m/f{i:02}"),
            &tree::bytes(i as u64, 6_000),
        );
    }
    tree::write(src.path(), "a/first", b"linked content, rewritten");
    std::fs::rename(src.path().join("b/big"), src.path().join("z/big")).unwrap();
    std::fs::remove_file(src.path().join("m/f05")).unwrap();
    tree::write(src.path(), "n/again", &tree::bytes(106, 5_006));
    let manifest_before = manifest_bytes(&r).await;
    let dry = push(
        &r,
        src.path(),
        &SyncOptions {
            dry_run: true,
            ..batched()
        },
    )
    .await;
    assert_eq!(
        manifest_bytes(&r).await,
        manifest_before,
        "a dry run commits nothing"
    );

    let (w, counts) = wrap(&r);
    let s = push(&w, src.path(), &batched()).await;
    let (w2, counts2) = wrap(&r2);
    let s2 = push(&w2, src.path(), &opts()).await;
    assert_eq!(
        (s.files_transferred, s.bytes_transferred, s.files_deleted),
        (s2.files_transferred, s2.bytes_transferred, s2.files_deleted),
    );
    assert_eq!(
        (s.files_transferred, s.files_deleted),
        (dry.files_transferred, dry.files_deleted),
        "the dry run reports what the run does"
    );
    // A dry run counts the bytes of every file to write (copies send none).
    assert_eq!(dry.bytes_transferred, 4 * 6_000 + 2 * 25 + 200_000 + 5_006);
    // 4 rewrites + the hardlinked inode (2 paths) + the renamed file + the new file.
    assert_eq!((s.files_transferred, s.files_deleted), (8, 2));
    // Uploads: 4 rewrites and `a/first`; copies: `z/link` (from `a/first`), `z/big`
    // (from `b/big`, deleted after the commit), `n/again` (from `m/f06`), plus the
    // kept committed versions: `a/first` and `z/link` held the same content, kept
    // once per batch (twice) where one batch keeps it once.
    let (c, c2) = (writes(&counts.counts), writes(&counts2.counts));
    assert_eq!((c.0, c.1), (c2.0, c2.1 + 1));
    assert_eq!(
        committed(&r).await,
        0,
        "kept versions released after the commit"
    );
    let again = tmp();
    pull(&r, again.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(again.path()));
    pull(&r, dst.path()).await;
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}
