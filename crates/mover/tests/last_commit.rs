//! The last committed state is restorable at every moment (issue 9, item 5),
//! against a local-filesystem remote and against moto (SigV4): a source run that
//! fails or is cancelled after overwriting objects but before its commit leaves a
//! destination restoring the last commit exactly (content, modes, mtimes); the next
//! successful run commits and leaves no `.scribe/committed/` object behind; real
//! rclone still copies the plain mirror; a destination keeps what it verified
//! across a mismatch; and the protection costs nothing when nothing changes.

use crate::support::local_remote;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;

use crate::conformance::tree::{self, Node, assert_same, snapshot};
use crate::conformance::{manifest_bytes, opts, pull, push, tmp, wrap};
use crate::support::Moto;
use crate::support::mover::{assert_same_files, files};
use crate::support::rclone::rclone;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use scribe_mover::config::Env;
use scribe_mover::fs::paths::key_for;
use scribe_mover::store::remote::Remote;
use scribe_mover::store::{OpenArgs, open};
use scribe_mover::{SyncError, SyncOptions, destination, source};
use sha2::{Digest, Sha256};

/// A fresh bucket on moto, opened from an rclone.conf section like the binary does.
async fn moto_remote(conf: &std::path::Path, bucket: &str) -> Remote {
    let args = OpenArgs {
        config_path: Some(conf.to_path_buf()),
        section: "moto".into(),
        remote_path: format!("{bucket}/replica/db"),
        custom_ca: None,
        create_bucket: true,
    };
    open(&args, &Env::default()).await.expect("opening moto")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SHA-256 names of the objects under `.scribe/committed/`.
async fn committed(r: &Remote) -> Vec<String> {
    let prefix = r.prefix.clone().join(".scribe").join("committed");
    let mut names: Vec<String> = r
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .unwrap_or_default();
    names.sort();
    names
}

async fn object(r: &Remote, rel: &str) -> Vec<u8> {
    let got = r.store.get(&key_for(&r.prefix, rel).unwrap()).await;
    got.unwrap().bytes().await.unwrap().to_vec()
}

/// A fresh destination restore of the remote.
async fn restored(r: &Remote) -> (tempfile::TempDir, BTreeMap<String, Node>) {
    let dst = tmp();
    pull(r, dst.path()).await;
    let snap = snapshot(dst.path());
    (dst, snap)
}

/// State B from state A (`small_tree` plus `swap/x`, `swap/y`, `big`): contents
/// rewritten in place (one of the same size), swapped between two paths, a rename,
/// a mode change, a deletion and a new file.
fn to_state_b(src: &std::path::Path) {
    tree::write(src, "a.txt", b"a.txt of state B");
    tree::write(src, "dir/b.bin", &tree::bytes(2, 100_000));
    tree::write(src, "swap/x", b"content Y");
    tree::write(src, "swap/y", b"content X");
    std::fs::create_dir(src.join("moved")).unwrap();
    std::fs::rename(src.join("big"), src.join("moved/big")).unwrap();
    tree::chmod(src, "zero", 0o640);
    std::fs::remove_file(src.join("dir/sub/c")).unwrap();
    tree::write(src, "new", b"new in B");
}

/// The whole scenario on one remote; see the module doc.
async fn crashed_runs_leave_the_last_commit_restorable(r: &Remote) {
    let src = tmp();
    tree::small_tree(src.path());
    tree::write(src.path(), "swap/x", b"content X");
    tree::write(src.path(), "swap/y", b"content Y");
    tree::write(src.path(), "big", &tree::bytes(9, 300_000));
    push(r, src.path()).await;
    let state_a = snapshot(src.path());
    let manifest_a = manifest_bytes(r).await.expect("manifest A");
    let (old_dst, _) = restored(r).await;

    // A run toward B that overwrites every changed object, then fails to commit.
    to_state_b(src.path());
    let (w, wrapped) = wrap(r);
    wrapped.fail_manifest_puts.store(true, SeqCst);
    let err = source::sync(&w, src.path(), &opts())
        .await
        .expect_err("the commit fails");
    assert_eq!(manifest_bytes(r).await, Some(manifest_a.clone()));
    assert_eq!(
        object(r, "a.txt").await,
        b"a.txt of state B",
        "the object was overwritten before the failed commit ({err})"
    );
    let mut kept_a = vec![
        sha256(b"hello"),
        sha256(&tree::bytes(1, 100_000)),
        sha256(b"content X"),
        sha256(b"content Y"),
    ];
    kept_a.sort();
    assert_eq!(
        committed(r).await,
        kept_a,
        "one copy per overwritten committed content; none for the rename, the deletion or the unchanged"
    );
    let (_fresh, snap) = restored(r).await;
    assert_same(&state_a, &snap);

    // A destination holding A with a local edit, restored while B is half-written.
    tree::write(old_dst.path(), "swap/y", b"local edit");
    pull(r, old_dst.path()).await;
    assert_same(&state_a, &snapshot(old_dst.path()));

    // A second run toward B', cancelled as its first upload starts: it finds A's
    // copies from the first run and keeps them (no second copy of the same content).
    tree::write(src.path(), "a.txt", b"a.txt of state B'");
    tree::write(src.path(), "dir/sub/new-in-b2", b"B'");
    let (w, wrapped) = wrap(r);
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_put = cancel.clone();
    wrapped.on_put("", Box::new(move || on_put.cancel()));
    let cancelled = SyncOptions {
        cancel: cancel.clone(),
        ..opts()
    };
    let err = source::sync(&w, src.path(), &cancelled)
        .await
        .expect_err("cancelled");
    assert!(err.is_interrupted(), "{err}");
    assert_eq!(manifest_bytes(r).await, Some(manifest_a));
    assert_eq!(committed(r).await, kept_a, "kept until a run commits");
    let (_fresh, snap) = restored(r).await;
    assert_same(&state_a, &snap);

    // The next run commits B' and releases every copy.
    push(r, src.path()).await;
    assert_eq!(committed(r).await, Vec::<String>::new());
    let state_b = snapshot(src.path());
    let (_fresh, snap) = restored(r).await;
    assert_same(&state_b, &snap);
    pull(r, old_dst.path()).await;
    assert_same(&state_b, &snapshot(old_dst.path()));
}

/// Nothing changed: no copy, no delete; one changed file: one copy before the
/// write and one delete after the commit.
async fn cost_is_zero_without_changes_and_one_copy_per_overwrite(r: &Remote) {
    let src = tmp();
    tree::small_tree(src.path());
    push(r, src.path()).await;
    let (w, wrapped) = wrap(r);
    push(&w, src.path()).await;
    let c = &wrapped.counts;
    assert_eq!(
        (c.copies.load(SeqCst), c.deletes.load(SeqCst)),
        (0, 0),
        "no change, no request"
    );
    tree::write(src.path(), "dir/sub/c", b"changed");
    tree::write(src.path(), "added", b"added");
    let (w, wrapped) = wrap(r);
    let s = push(&w, src.path()).await;
    let c = &wrapped.counts;
    assert_eq!(
        (
            s.files_transferred,
            c.copies.load(SeqCst),
            c.deletes.load(SeqCst)
        ),
        (2, 1, 1),
        "a new file costs nothing extra; an overwrite one copy and one delete"
    );
    assert!(committed(r).await.is_empty());
}

/// A destination pass that mismatches keeps what it verified: the retry, on the
/// new manifest, takes still-wanted content from staging instead of the network.
async fn mismatch_keeps_verified_downloads_for_the_retry(r: &Remote) {
    let (src, dst) = (tmp(), tmp());
    tree::write(src.path(), "p", &tree::bytes(4, 200_000));
    tree::write(src.path(), "q", b"q of A");
    push(r, src.path()).await;
    // A source commits (changing only q) just before the destination reads q, so
    // neither q's key nor a kept copy holds the manifest it started with.
    tree::write(src.path(), "q", b"q of B, longer");
    let (w, wrapped) = wrap(r);
    let (inner, src_path) = (r.clone(), src.path().to_path_buf());
    wrapped.on_first_get(
        "q",
        Box::pin(async move {
            source::sync(&inner, &src_path, &opts())
                .await
                .expect("concurrent source sync");
        }),
    );
    let d = destination::sync(&w, dst.path(), &opts())
        .await
        .expect("the retry succeeds");
    assert_eq!(d.files_transferred, 2);
    assert_eq!(
        wrapped.counts.data_gets.load(SeqCst),
        3,
        "p once, q twice: p verified in the first pass is not downloaded again"
    );
    assert_same(&snapshot(src.path()), &snapshot(dst.path()));
    assert!(!dst.path().join(".scribe-staging").exists());
}

/// A destination that still fails after its retries fails transient and leaves
/// the tree exactly as it was, staging and all.
async fn persistent_mismatch_leaves_the_tree(r: &Remote) {
    let (src, dst) = (tmp(), tmp());
    tree::small_tree(src.path());
    push(r, src.path()).await;
    tree::write(dst.path(), "local", b"x");
    let before = snapshot(dst.path());
    let (w, wrapped) = wrap(r);
    // Every get of c is corrupted, and no copy is kept for it.
    *wrapped.corrupt_suffix.lock().unwrap() = Some("dir/sub/c".into());
    let err = destination::sync(&w, dst.path(), &opts())
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, SyncError::DownloadMismatch { attempts: 3, .. }),
        "{err}"
    );
    assert_same(&before, &snapshot(dst.path()));
    assert!(!dst.path().join(".scribe-staging").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_crashed_runs_leave_the_last_commit_restorable() {
    let dir = tmp();
    crashed_runs_leave_the_last_commit_restorable(&local_remote(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cost_is_zero_without_changes() {
    let dir = tmp();
    cost_is_zero_without_changes_and_one_copy_per_overwrite(&local_remote(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mismatch_keeps_verified_downloads() {
    let dir = tmp();
    mismatch_keeps_verified_downloads_for_the_retry(&local_remote(&dir)).await;
    let dir = tmp();
    persistent_mismatch_leaves_the_tree(&local_remote(&dir)).await;
}

/// Every moto case in one server; the last one copies the bucket with rclone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_last_commit_is_restorable_and_rclone_reads_the_mirror() {
    let moto = Moto::start().await;
    let dir = tmp();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
    let r = moto_remote(&conf, "crashed").await;
    crashed_runs_leave_the_last_commit_restorable(&r).await;
    cost_is_zero_without_changes_and_one_copy_per_overwrite(&moto_remote(&conf, "cost").await)
        .await;
    mismatch_keeps_verified_downloads_for_the_retry(&moto_remote(&conf, "keeps").await).await;
    persistent_mismatch_leaves_the_tree(&moto_remote(&conf, "fails").await).await;

    // After a commit the bucket is a plain mirror: rclone copies the files, and the
    // only Scribe object it sees is the manifest.
    let src = tmp();
    tree::write(src.path(), "one", b"1");
    tree::write(src.path(), "sub/two", &tree::bytes(3, 50_000));
    let mirror = moto_remote(&conf, "mirror").await;
    push(&mirror, src.path()).await;
    tree::write(src.path(), "one", b"one, rewritten");
    push(&mirror, src.path()).await;
    let fetched = dir.path().join("fetched");
    let out = rclone(
        &conf,
        &["copy", "moto:mirror/replica/db", fetched.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "rclone copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = files(&fetched);
    assert!(got.remove(".scribe/manifest.jsonl").is_some());
    assert_same_files(&files(src.path()), &got, 1_000);
}
