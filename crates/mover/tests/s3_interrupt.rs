//! Interrupted source runs against moto leave no garbage: SIGTERM mid multipart
//! upload aborts the upload and exits 75 with an `Interrupted` summary, the last
//! committed manifest intact; an upload left by a SIGKILLed run is aborted by the
//! next source run, which succeeds.

use std::path::{Path, PathBuf};

use crate::conformance::tree::{bytes, write};
use crate::support::FaultKind;
use crate::support::mover::{Job, list_bucket};
use crate::support::proxied::{ProxiedMoto, terminate, wait_for_faults};

const BUCKET: &str = "interrupt";
const REMOTE_PATH: &str = "interrupt/replica";
const MANIFEST_KEY: &str = "replica/.scribe/manifest.jsonl";
/// Part uploads of the large file (its multipart upload starts with a POST).
const BIG_PARTS: &str = "PUT /interrupt/replica/big.bin";

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

    /// A committed v1, then v2 with a three-part file, in `src`.
    async fn committed_then_changed(&self) -> PathBuf {
        let src = self.dir.path().join("src");
        write(&src, "a.txt", b"v1");
        Job::new(&self.conf, "direct", REMOTE_PATH, &src)
            .source()
            .await
            .assert_ok();
        write(&src, "a.txt", b"v2");
        write(&src, "big.bin", &bytes(3, 12 * 1024 * 1024 + 1));
        src
    }

    /// A source run through the proxy, its first part upload of big.bin stalled.
    async fn stalled_source(&self, src: &Path, log: &Path) -> tokio::process::Child {
        self.proxy
            .inject_matching(FaultKind::Stall, 1, Some(BIG_PARTS));
        let mut child = Job::new(&self.conf, "faulty", REMOTE_PATH, src)
            .command("source", log)
            .spawn()
            .unwrap();
        wait_for_faults(&self.proxy, &mut child, 1).await;
        child
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_multipart_aborts_the_upload_and_exits_75() {
    let rig = Rig::start().await;
    let src = rig.committed_then_changed().await;
    let manifest_before = list_bucket(&rig.conf, "direct", BUCKET).await[MANIFEST_KEY].clone();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("termination-log");
    let child = rig.stalled_source(&src, &log).await;
    assert_eq!(rig.moto.multipart_uploads(BUCKET).len(), 1, "mid upload");
    let run = terminate(child, &log).await;
    assert_eq!(run.code, 75, "{}", run.tail());
    assert_eq!(run.summary["result"], "Interrupted", "{}", run.stdout);
    assert_eq!(
        rig.moto.multipart_uploads(BUCKET),
        Vec::<String>::new(),
        "the in-flight multipart upload was aborted"
    );
    let objects = list_bucket(&rig.conf, "direct", BUCKET).await;
    assert_eq!(objects[MANIFEST_KEY], manifest_before, "nothing committed");
    assert!(!objects.contains_key("replica/big.bin"));

    Job::new(&rig.conf, "direct", REMOTE_PATH, &src)
        .source()
        .await
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_left_by_a_killed_run_is_aborted_by_the_next_run() {
    let rig = Rig::start().await;
    let src = rig.committed_then_changed().await;
    let log_dir = tempfile::tempdir().unwrap();
    let mut child = rig
        .stalled_source(&src, &log_dir.path().join("termination-log"))
        .await;
    child.kill().await.unwrap();
    assert_eq!(
        rig.moto.multipart_uploads(BUCKET),
        vec!["replica/big.bin".to_owned()],
        "SIGKILL leaves the upload behind"
    );

    let run = Job::new(&rig.conf, "direct", REMOTE_PATH, &src)
        .source()
        .await;
    run.assert_ok();
    assert!(
        run.stderr
            .contains("aborted an incomplete multipart upload"),
        "{}",
        run.tail()
    );
    assert_eq!(rig.moto.multipart_uploads(BUCKET), Vec::<String>::new());
}
