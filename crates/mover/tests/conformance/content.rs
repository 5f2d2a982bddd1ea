//! Conformance cases for what the destination decides by content, and for names:
//! a same-size, same-mtime rewrite reaches the destination (decided by SHA-256
//! through its restore records, or by re-hashing where there are none), and no
//! local name is silently dropped (the source refuses names no manifest can carry;
//! the destination removes them).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use scribe_mover::store::remote::{ErrorCategory, Remote, UploadOptions};
use scribe_mover::{SyncError, source};

use super::tree::{self, assert_same, snapshot};
use super::{Factory, manifest_bytes, object_exists, opts, pull, push, tmp, wrap};

/// Sets a file's content keeping its size and mtime (`touch -r` after the write).
fn rewrite_keeping_size_and_mtime(root: &Path, rel: &str, content: &[u8]) {
    let m = std::fs::symlink_metadata(root.join(rel)).unwrap();
    assert_eq!(m.len(), content.len() as u64, "same size");
    use std::os::unix::fs::MetadataExt;
    tree::write(root, rel, content);
    tree::set_mtime(root, rel, m.mtime(), m.mtime_nsec() as u32);
}

async fn manifest_sha(r: &Remote, rel: &str) -> Option<String> {
    let bytes = manifest_bytes(r).await?;
    let key = scribe_mover::fs::paths::manifest_key(&r.prefix);
    let m = scribe_mover::manifest::Manifest::parse(key.as_ref(), &bytes).unwrap();
    m.entries.into_iter().find(|e| e.path == rel)?.sha256
}

fn sha_hex(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content))
}

pub async fn same_size_same_mtime_rewrite_reaches_the_destination<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    rewrite_keeping_size_and_mtime(src.path(), "dir/sub/c", b"C");
    // The source notices by ctime and re-uploads with the new SHA-256.
    let s = push(&r, src.path()).await;
    assert_eq!(s.files_transferred, 1);
    assert_eq!(
        manifest_sha(&r, "dir/sub/c").await.as_deref(),
        Some(sha_hex(b"C").as_str())
    );
    // The destination's file still has the old bytes at the same size and mtime.
    let d = pull(&r, dst.path()).await;
    assert_eq!(
        d.files_transferred, 1,
        "decided by SHA-256, not size + mtime"
    );
    assert_eq!(std::fs::read(dst.path().join("dir/sub/c")).unwrap(), b"C");
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

/// Removes the restore record of every regular file under `root` (a filesystem
/// without user xattrs looks like this to the destination).
fn strip_records(root: &Path) {
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let _ = rustix::fs::lremovexattr(e.path(), scribe_mover::destination::restored::XATTR);
        }
    }
}

fn has_record(path: &Path) -> bool {
    scribe_mover::destination::restored::read(path).is_some()
}

pub async fn destination_without_records_rehashes<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    let records = has_record(&dst.path().join("a.txt"));
    strip_records(dst.path());
    // Without records every candidate is re-hashed: same content, nothing moves …
    let (w, counts) = wrap(&r);
    assert_eq!(pull(&w, dst.path()).await.files_transferred, 0);
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(counts.counts.data_gets.load(SeqCst), 0);
    // … and the records are written again where the filesystem keeps them.
    assert_eq!(has_record(&dst.path().join("a.txt")), records);
    strip_records(dst.path());
    // … and a same-size, same-mtime rewrite is still found by its hash.
    rewrite_keeping_size_and_mtime(src.path(), "a.txt", b"HELLO");
    push(&r, src.path()).await;
    assert_eq!(pull(&r, dst.path()).await.files_transferred, 1);
    assert_eq!(std::fs::read(dst.path().join("a.txt")).unwrap(), b"HELLO");
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}

/// Creates a file (or symlink) under `root` at a raw, possibly non-UTF-8, name.
fn raw_path(root: &Path, name: &[u8]) -> std::path::PathBuf {
    root.join(std::ffi::OsStr::from_bytes(name))
}

pub async fn unsupported_names_fail_the_source_naming_them<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let src = tmp();
    tree::small_tree(src.path());
    std::fs::write(raw_path(src.path(), b"dir/new\nline"), b"1").unwrap();
    std::fs::write(raw_path(src.path(), b"tab\there"), b"2").unwrap();
    std::fs::write(raw_path(src.path(), b"caf\xe9"), b"3").unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"target-\xff"),
        src.path().join("odd-link"),
    )
    .unwrap();
    let err = source::sync(&r, src.path(), &opts())
        .await
        .expect_err("never a success without them");
    assert!(
        matches!(err, SyncError::UnsupportedNames { count: 4, .. }),
        "{err}"
    );
    assert_eq!(err.category(), ErrorCategory::Config);
    let text = err.to_string();
    for needle in [
        "\"dir/new\\nline\"",
        "\"tab\\there\"",
        "\"caf\\xe9\"",
        "\"odd-link\" (symlink target is not UTF-8)",
    ] {
        assert!(text.contains(needle), "{needle} not named in: {text}");
    }
    assert!(manifest_bytes(&r).await.is_none(), "nothing committed");
    assert!(!object_exists(&r, "a.txt").await, "nothing uploaded");
}

pub async fn destination_removes_local_names_no_manifest_can_hold<F: Factory>(f: &F) {
    let r = f.remote(UploadOptions::default()).await;
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(&r, src.path()).await;
    pull(&r, dst.path()).await;
    std::fs::write(raw_path(dst.path(), b"dir/junk\nname"), b"x").unwrap();
    std::fs::create_dir(raw_path(dst.path(), b"\xfe-dir")).unwrap();
    std::fs::write(raw_path(dst.path(), b"\xfe-dir/inner"), b"y").unwrap();
    let d = pull(&r, dst.path()).await;
    assert_eq!(d.files_deleted, 2);
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
}
