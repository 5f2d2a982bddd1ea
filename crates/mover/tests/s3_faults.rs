//! The real `scribe-mover` binary against moto through the fault proxy: dropped
//! connections, SlowDown bursts and truncated bodies are either retried to a
//! verified, identical tree (exit 0) or fail cleanly (exit 75) with nothing
//! committed or deleted remotely or locally; a clean run afterwards completes; and
//! a restore after an interrupted upload or an interrupted restore is exactly one
//! version, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::conformance::tree::{Node, assert_same, bytes, set_mtime, small_tree, snapshot, write};
use crate::support::FaultKind;
use crate::support::mover::{Job, ObjectView, Run, list_bucket};
use crate::support::proxied::{ProxiedMoto, wait_for_faults};

const BUCKET: &str = "faults";
const REMOTE_PATH: &str = "faults/replica";
/// Requests for data objects (not the manifest under `.scribe/`).
const DATA_PUT: &str = "PUT /faults/replica/";
const MANIFEST_KEY: &str = "replica/.scribe/manifest.jsonl";

/// moto plus the proxy in front of it, and an rclone.conf with two sections:
/// `direct` to moto, `faulty` through the proxy. Files over 5 MiB are multipart.
struct Rig(ProxiedMoto);

impl std::ops::Deref for Rig {
    type Target = ProxiedMoto;
    fn deref(&self) -> &ProxiedMoto {
        &self.0
    }
}

impl Rig {
    async fn start() -> Rig {
        Rig(ProxiedMoto::start("faulty", "upload_cutoff = 5M\nchunk_size = 5M").await)
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn direct(&self, mount: &Path) -> Job {
        Job::new(&self.conf, "direct", REMOTE_PATH, mount)
    }

    fn faulty(&self, mount: &Path) -> Job {
        Job::new(&self.conf, "faulty", REMOTE_PATH, mount)
    }

    async fn objects(&self) -> BTreeMap<String, ObjectView> {
        list_bucket(&self.conf, "direct", BUCKET).await
    }
}

/// Version 1: the small tree of every entry kind plus a three-part file.
fn v1(root: &Path) {
    small_tree(root);
    for i in 0..6 {
        write(root, &format!("many/f{i}"), &bytes(100 + i, 2_000));
    }
    write(root, "large.bin", &bytes(5, 12 * 1024 * 1024 + 1));
    set_mtime(root, "large.bin", 1_700_000_000, 1);
}

/// Version 2: every small data file rewritten, the large one too, one added, one deleted.
fn v1_to_v2(root: &Path) {
    for i in 0..6 {
        write(root, &format!("many/f{i}"), &bytes(200 + i, 2_100));
    }
    write(root, "a.txt", b"hello v2");
    write(root, "large.bin", &bytes(6, 12 * 1024 * 1024 + 2));
    write(root, "added-in-v2", b"new");
    std::fs::remove_file(root.join("dir/sub/c")).unwrap();
}

fn without_root_mtime(mut snap: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    if let Some(root) = snap.get_mut(".") {
        root.mtime = (0, 0);
    }
    snap
}

/// What a restore after a failure may legally leave: exactly `a`, exactly `b`, or
/// (on exit 75) exactly what was there before.
fn assert_one_version(
    run: &Run,
    got: &BTreeMap<String, Node>,
    before: &BTreeMap<String, Node>,
    a: &BTreeMap<String, Node>,
    b: &BTreeMap<String, Node>,
) {
    match run.code {
        0 => assert!(
            got == a || got == b,
            "restore succeeded with a tree that is neither version: {}",
            run.summary
        ),
        75 => assert_same(before, got),
        other => panic!(
            "restore must succeed or fail transiently, got {other}: {}\n{}",
            run.summary,
            run.tail()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_retries_through_dropped_connections_and_slowdowns() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.proxy
        .inject_matching(FaultKind::DropUploadMidBody, 2, Some(DATA_PUT));
    rig.proxy
        .inject_matching(FaultKind::SlowDown, 3, Some(DATA_PUT));
    // One dropped part of the multipart file, too.
    rig.proxy
        .inject_matching(FaultKind::DropUploadMidBody, 1, Some("partNumber=2"));

    let run = rig.faulty(&src).source().await;
    run.assert_ok();
    assert_eq!(rig.proxy.faults_injected(), 6, "every fault was hit");
    assert_eq!(rig.proxy.faults_pending(), 0);

    rig.direct(&dst).destination().await.assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
    let again = rig.direct(&src).source().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_retries_through_dropped_connections_slowdowns_and_a_truncated_body() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    rig.proxy.inject_matching(
        FaultKind::DropDownloadMidBody,
        2,
        Some("GET /faults/replica/many/"),
    );
    rig.proxy.inject_matching(
        FaultKind::DropDownloadMidBody,
        1,
        Some("GET /faults/replica/large.bin"),
    );
    rig.proxy
        .inject_matching(FaultKind::SlowDown, 3, Some("GET /faults/replica/"));
    // Looks complete to HTTP; only the content hash can tell.
    rig.proxy.inject_matching(
        FaultKind::TruncateResponse,
        1,
        Some("GET /faults/replica/dir/b.bin"),
    );

    let run = rig.faulty(&dst).destination().await;
    run.assert_ok();
    assert_eq!(rig.proxy.faults_injected(), 7, "every fault was hit");
    assert_same(&snapshot(&src), &snapshot(&dst));
    let again = rig.direct(&dst).destination().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_manifest_is_retried_or_transient_and_touches_nothing() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    write(&dst, "local-only", b"kept unless the restore succeeds");
    let before = snapshot(&dst);
    rig.proxy.inject_matching(
        FaultKind::TruncateResponse,
        1,
        Some("GET /faults/replica/.scribe/manifest.jsonl"),
    );

    let run = rig.faulty(&dst).destination().await;
    assert_eq!(rig.proxy.faults_injected(), 1);
    assert_one_version(
        &run,
        &snapshot(&dst),
        &before,
        &snapshot(&src),
        &snapshot(&src),
    );
    rig.direct(&dst).destination().await.assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upload_exits_75_and_commits_or_deletes_nothing() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    rig.direct(&dst).destination().await.assert_ok();
    let v1_snap = snapshot(&src);
    v1_to_v2(&src);
    let v2_snap = snapshot(&src);
    let objects_before = rig.objects().await;
    // The multipart upload's XML replies (create, complete) arrive cut short.
    rig.proxy.inject_matching(
        FaultKind::TruncateResponse,
        1,
        Some("POST /faults/replica/large.bin"),
    );

    let run = rig.faulty(&src).source().await;
    run.assert_failed(75, &["large.bin"]);
    assert_eq!(rig.proxy.faults_injected(), 1);
    let objects_after = rig.objects().await;
    assert_eq!(
        objects_after[MANIFEST_KEY], objects_before[MANIFEST_KEY],
        "the manifest is not committed"
    );
    for key in objects_before.keys() {
        assert!(
            objects_after.contains_key(key),
            "{key} was deleted remotely"
        );
    }
    assert_same(&v2_snap, &snapshot(&src));

    // A restore now is v1 or v2, or fails leaving v1; never a mix.
    let dst_before = snapshot(&dst);
    let restore = rig.direct(&dst).destination().await;
    assert_one_version(&restore, &snapshot(&dst), &dst_before, &v1_snap, &v2_snap);
    let fresh = rig.path("fresh");
    let fresh_before = snapshot(&fresh);
    let restore = rig.direct(&fresh).destination().await;
    assert_one_version(
        &restore,
        &snapshot(&fresh),
        &fresh_before,
        &v1_snap,
        &v2_snap,
    );

    // Without faults, the next run commits v2 and the restore is exactly v2.
    rig.direct(&src).source().await.assert_ok();
    assert!(!rig.objects().await.contains_key("replica/dir/sub/c"));
    rig.direct(&dst).destination().await.assert_ok();
    assert_same(&v2_snap, &snapshot(&dst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_never_restores_a_mix_of_versions() {
    let rig = Rig::start().await;
    let (src, dst, fresh) = (rig.path("src"), rig.path("dst"), rig.path("fresh"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    rig.direct(&dst).destination().await.assert_ok();
    let v1_snap = snapshot(&src);
    v1_to_v2(&src);
    let v2_snap = snapshot(&src);
    let objects_before = rig.objects().await;

    // One file at a time; the third data upload hangs, then the pod "dies".
    rig.proxy
        .inject_after(FaultKind::Stall, 2, 1, Some("PUT /faults/replica/many/"));
    let log_dir = tempfile::tempdir().unwrap();
    let mut child = rig
        .faulty(&src)
        .arg("--transfers")
        .arg("1")
        .command("source", &log_dir.path().join("log"))
        .spawn()
        .unwrap();
    wait_for_faults(&rig.proxy, &mut child, 1).await;
    child.kill().await.unwrap();

    let objects_after = rig.objects().await;
    assert_eq!(objects_after[MANIFEST_KEY], objects_before[MANIFEST_KEY]);
    let overwritten = objects_before
        .iter()
        .filter(|(k, v)| objects_after.get(*k) != Some(v))
        .count();
    assert!(
        overwritten >= 2,
        "two v2 uploads landed before the stall (the test needs a half-uploaded version)"
    );
    for key in objects_before.keys() {
        assert!(
            objects_after.contains_key(key),
            "{key} was deleted remotely"
        );
    }

    for dir in [&dst, &fresh] {
        let before = snapshot(dir);
        let run = rig.direct(dir).destination().await;
        assert_one_version(&run, &snapshot(dir), &before, &v1_snap, &v2_snap);
    }

    rig.direct(&src).source().await.assert_ok();
    for dir in [&dst, &fresh] {
        rig.direct(dir).destination().await.assert_ok();
        assert_same(&v2_snap, &snapshot(dir));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_restore_leaves_the_previous_version() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    rig.direct(&dst).destination().await.assert_ok();
    let v1_snap = snapshot(&dst);
    v1_to_v2(&src);
    rig.direct(&src).source().await.assert_ok();

    rig.proxy
        .inject_after(FaultKind::Stall, 2, 1, Some("GET /faults/replica/many/"));
    let log_dir = tempfile::tempdir().unwrap();
    let mut child = rig
        .faulty(&dst)
        .arg("--transfers")
        .arg("1")
        .command("destination", &log_dir.path().join("log"))
        .spawn()
        .unwrap();
    wait_for_faults(&rig.proxy, &mut child, 1).await;
    child.kill().await.unwrap();
    // Making the staging directory inside the root bumps the root's mtime; a killed
    // run cannot put it back. Every entry below the root must be exactly v1.
    assert_same(
        &without_root_mtime(v1_snap),
        &without_root_mtime(snapshot(&dst)),
    );

    rig.direct(&dst).destination().await.assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_truncation_exits_75_leaving_the_local_tree() {
    let rig = Rig::start().await;
    let (src, dst) = (rig.path("src"), rig.path("dst"));
    v1(&src);
    rig.direct(&src).source().await.assert_ok();
    rig.direct(&dst).destination().await.assert_ok();
    v1_to_v2(&src);
    rig.direct(&src).source().await.assert_ok();
    write(&dst, "local-only", b"kept: the restore does not commit");
    let before = snapshot(&dst);
    // Every download of one changed file comes back short.
    rig.proxy.inject_matching(
        FaultKind::TruncateResponse,
        1000,
        Some("GET /faults/replica/many/f3"),
    );

    let run = rig.faulty(&dst).destination().await;
    run.assert_failed(75, &["many/f3"]);
    assert!(rig.proxy.faults_injected() >= 3, "each pass tried again");
    assert_same(&before, &snapshot(&dst));

    rig.direct(&dst).destination().await.assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
}
