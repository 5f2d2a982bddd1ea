//! The real binary against moto: a source run SIGKILLed after it overwrote objects
//! but before its commit leaves the bucket restorable to the last commit exactly
//! (a destination run exits 0 with that state, byte for byte, modes and mtimes);
//! the next source run commits and leaves no `.scribe/committed/` object.

use std::time::{Duration, Instant};

use crate::conformance::tree::{assert_same, bytes, chmod, set_mtime, snapshot, write};
use crate::support::mover::{Job, list_bucket};
use crate::support::{FaultKind, FaultProxy, Moto};
use sha2::{Digest, Sha256};

const BUCKET: &str = "killed";
const REMOTE_PATH: &str = "killed/replica";
/// Part uploads of the large file (its multipart upload starts with a POST).
const BIG_PARTS: &str = "PUT /killed/replica/big.bin";
const A_V2: &[u8] = b"a.txt of the run that gets killed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_source_leaves_the_last_commit_restorable() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let extra = "upload_cutoff = 5M\nchunk_size = 5M";
    std::fs::write(
        &conf,
        moto.rclone_section("direct", extra)
            + &moto.rclone_section_at("faulty", &proxy.endpoint, extra),
    )
    .unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir(&dst).unwrap();
    write(&src, "a.txt", b"a.txt, committed");
    write(&src, "dir/b", b"b, committed");
    write(&src, "same", b"never changes");
    chmod(&src, "a.txt", 0o600);
    set_mtime(&src, "a.txt", 1_600_000_000, 123_456_789);
    Job::new(&conf, "direct", REMOTE_PATH, &src)
        .source()
        .await
        .assert_ok();
    let committed = snapshot(&src);

    write(&src, "a.txt", A_V2);
    write(&src, "dir/b", b"b, rewritten");
    write(&src, "big.bin", &bytes(3, 12 * 1024 * 1024 + 1));
    proxy.inject_matching(FaultKind::Stall, 1, Some(BIG_PARTS));
    let log = dir.path().join("termination-log");
    let mut child = Job::new(&conf, "faulty", REMOTE_PATH, &src)
        .command("source", &log)
        .spawn()
        .unwrap();
    // Killed once big.bin's upload is stalled and a.txt is already overwritten.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mover ended ({status}) before it was killed");
        }
        let a = list_bucket(&conf, "direct", BUCKET).await["replica/a.txt"].clone();
        if proxy.faults_injected() >= 1 && a.size == A_V2.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got that far");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let kept = format!(
        "replica/.scribe/committed/{}",
        hex::encode(Sha256::digest(b"a.txt, committed"))
    );
    assert!(
        list_bucket(&conf, "direct", BUCKET)
            .await
            .contains_key(&kept)
    );

    let restore = Job::new(&conf, "direct", REMOTE_PATH, &dst)
        .destination()
        .await;
    restore.assert_ok();
    assert!(
        restore
            .stderr
            .contains("restored the copy kept under .scribe/committed/"),
        "a.txt came from its kept copy: {}",
        restore.tail()
    );
    assert_same(&committed, &snapshot(&dst));

    Job::new(&conf, "direct", REMOTE_PATH, &src)
        .source()
        .await
        .assert_ok();
    let objects = list_bucket(&conf, "direct", BUCKET).await;
    assert!(
        !objects.keys().any(|k| k.contains("/.scribe/committed/")),
        "released after the commit: {objects:?}"
    );
    Job::new(&conf, "direct", REMOTE_PATH, &dst)
        .destination()
        .await
        .assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
}
