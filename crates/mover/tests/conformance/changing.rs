//! Source files that change or vanish during a run (a live volume): the run
//! commits everything else, keeps a file that kept changing at its last committed
//! version (or leaves a new one out), counts it, and succeeds; a file that changed
//! once is read again and committed as it is now; a vanished file is left out.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use scribe_mover::source;
use scribe_mover::store::remote::UploadOptions;

use super::tree::{bytes, write};
use super::{Factory, object_exists, opts, pull, push, tmp, wrap};

const MIB: usize = 1024 * 1024;

/// Files over 5 MiB go multipart, so a rewrite at the upload's start lands mid-read.
fn multipart() -> UploadOptions {
    UploadOptions {
        upload_cutoff: 5 * MIB as u64,
        chunk_size: 5 * MIB as u64,
        ..UploadOptions::default()
    }
}

fn read(root: &Path, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(root.join(rel)).ok()
}

/// A hook that rewrites `rel` under `root` with fresh content each time it runs.
fn rewriter(root: &Path, rel: &str, times: u64) -> Box<dyn FnMut() + Send> {
    let path = root.join(rel);
    let n = Arc::new(AtomicU64::new(0));
    Box::new(move || {
        let i = n.fetch_add(1, SeqCst);
        if i < times {
            std::fs::write(&path, bytes(1_000 + i, 6 * MIB)).unwrap();
        }
    })
}

pub async fn file_rewritten_while_uploaded_is_read_again<F: Factory>(f: &F) {
    let r = f.remote(multipart()).await;
    let (src, dst) = (tmp(), tmp());
    write(src.path(), "a.txt", b"alpha");
    write(src.path(), "big.bin", &bytes(7, 6 * MIB));
    let (w, wrapped) = wrap(&r);
    wrapped.on_put("big.bin", rewriter(src.path(), "big.bin", 1));
    let s = push(&w, src.path()).await;
    assert_eq!(s.files_skipped_changing, 0);
    pull(&r, dst.path()).await;
    assert_eq!(read(dst.path(), "big.bin"), Some(bytes(1_000, 6 * MIB)));
    assert_eq!(read(dst.path(), "a.txt").as_deref(), Some(&b"alpha"[..]));
}

pub async fn file_that_keeps_changing_keeps_its_committed_version<F: Factory>(f: &F) {
    let r = f.remote(multipart()).await;
    let (src, dst) = (tmp(), tmp());
    write(src.path(), "a.txt", b"alpha");
    write(src.path(), "busy.log", &bytes(7, 6 * MIB));
    push(&r, src.path()).await;
    // Version 2: both files change; busy.log changes again at every upload, and a
    // new busy file appears that never holds still either.
    write(src.path(), "a.txt", b"alpha v2");
    write(src.path(), "busy.log", &bytes(8, 6 * MIB));
    write(src.path(), "new.log", &bytes(9, 6 * MIB));
    let (w, wrapped) = wrap(&r);
    let (busy, new) = (
        Arc::new(std::sync::Mutex::new(rewriter(
            src.path(),
            "busy.log",
            u64::MAX,
        ))),
        rewriter(src.path(), "new.log", u64::MAX),
    );
    let new = Arc::new(std::sync::Mutex::new(new));
    wrapped.on_put(
        ".log",
        Box::new(move || {
            (busy.lock().unwrap())();
            (new.lock().unwrap())();
        }),
    );
    let s = source::sync(&w, src.path(), &opts())
        .await
        .expect("a busy file does not fail the run");
    assert_eq!(s.files_skipped_changing, 2, "{s:?}");
    pull(&r, dst.path()).await;
    assert_eq!(read(dst.path(), "a.txt").as_deref(), Some(&b"alpha v2"[..]));
    assert_eq!(
        read(dst.path(), "busy.log"),
        Some(bytes(7, 6 * MIB)),
        "the last committed version"
    );
    assert_eq!(
        read(dst.path(), "new.log"),
        None,
        "a new busy file is left out"
    );
    assert!(
        !object_exists(&r, "new.log").await,
        "its upload was aborted"
    );
}

pub async fn vanished_and_created_files_do_not_fail_the_run<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    write(src.path(), "a.txt", b"alpha");
    write(src.path(), "b.txt", b"bravo");
    push(&r, src.path()).await;
    write(src.path(), "a.txt", b"alpha v2");
    write(src.path(), "b.txt", b"bravo v2");
    write(src.path(), "c.txt", b"charlie");
    let (w, wrapped) = wrap(&r);
    let root = src.path().to_path_buf();
    // Uploads run one at a time in path order: a.txt's put removes b.txt and
    // c.txt (scanned, not yet uploaded) and creates d.txt (after the scan).
    wrapped.on_put(
        "a.txt",
        Box::new(move || {
            let _ = std::fs::remove_file(root.join("b.txt"));
            let _ = std::fs::remove_file(root.join("c.txt"));
            std::fs::write(root.join("d.txt"), b"delta").unwrap();
        }),
    );
    let one = scribe_mover::SyncOptions {
        transfers: 1,
        ..opts()
    };
    let s = source::sync(&w, src.path(), &one)
        .await
        .expect("a vanished file does not fail the run");
    assert_eq!(s.files_skipped_changing, 0);
    pull(&r, dst.path()).await;
    assert_eq!(read(dst.path(), "a.txt").as_deref(), Some(&b"alpha v2"[..]));
    for gone in ["b.txt", "c.txt", "d.txt"] {
        assert_eq!(
            read(dst.path(), gone),
            None,
            "{gone} is not in the manifest"
        );
    }
    assert!(
        !object_exists(&r, "b.txt").await,
        "a vanished file's object is deleted"
    );
}
