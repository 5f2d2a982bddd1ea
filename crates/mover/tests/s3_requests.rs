//! What a re-sync asks of the server, counted by the proxy in front of moto: a
//! no-change sync reads the manifest once, lists the prefix once and writes nothing
//! (the committed manifest is not rewritten); a sync with changes also reads the
//! previous manifest once and lists once (server-side copy sources come from that
//! same read), then writes the changes and one manifest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::conformance::tree::{assert_same, bytes, set_mtime, small_tree, snapshot, write};
use crate::support::mover::Job;
use crate::support::proxied::ProxiedMoto;

const REMOTE_PATH: &str = "requests/replica";
const MANIFEST: &str = "/requests/replica/.scribe/manifest.jsonl";

struct Rig(ProxiedMoto);

impl std::ops::Deref for Rig {
    type Target = ProxiedMoto;
    fn deref(&self) -> &ProxiedMoto {
        &self.0
    }
}

impl Rig {
    async fn start() -> Rig {
        Rig(ProxiedMoto::start("counted", "").await)
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn counted(&self, mount: &Path) -> Job {
        Job::new(&self.conf, "counted", REMOTE_PATH, mount)
    }
}

/// The requests of one run, by kind.
#[derive(Debug, Default)]
struct Counts {
    manifest_gets: usize,
    manifest_puts: usize,
    /// ListObjectsV2 of the prefix (not the one-key bucket check).
    listings: usize,
    /// PUT, POST and DELETE of anything.
    writes: usize,
}

fn count(log: &[String]) -> Counts {
    let mut c = Counts::default();
    for r in log {
        let (method, target) = r.split_once(' ').unwrap_or((r.as_str(), ""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: Vec<&str> = query.split('&').collect();
        if path == MANIFEST && method == "GET" {
            c.manifest_gets += 1;
        }
        if path == MANIFEST && method == "PUT" {
            c.manifest_puts += 1;
        }
        if method == "GET" && params.contains(&"list-type=2") && !params.contains(&"max-keys=1") {
            c.listings += 1;
        }
        if matches!(method, "PUT" | "POST" | "DELETE") {
            c.writes += 1;
        }
    }
    c
}

/// A tree of every entry kind plus `n` small files, all older than the racy-stat window.
fn tree(root: &Path, n: usize) {
    small_tree(root);
    for i in 0..n {
        let rel = format!("many/f{i:03}");
        write(root, &rel, &bytes(1000 + i as u64, 300 + i));
        set_mtime(root, &rel, 1_700_000_000 + i as i64, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_sync_reads_once_and_writes_nothing() {
    let rig = Rig::start().await;
    let src = rig.path("src");
    tree(&src, 40);
    // Files changed within a second of a scan are re-hashed next time (racy stat).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rig.counted(&src).source().await.assert_ok();

    rig.proxy.clear_log();
    let run = rig.counted(&src).source().await;
    run.assert_ok();
    let log = rig.proxy.request_log();
    let c = count(&log);
    assert_eq!(run.count("filesTransferred"), 0, "{}", run.summary);
    assert_eq!(c.manifest_gets, 1, "manifest read once: {log:#?}");
    assert_eq!(c.listings, 1, "prefix listed once: {log:#?}");
    assert_eq!(
        c.writes, 0,
        "nothing written, not even the manifest: {log:#?}"
    );

    // The kept manifest still restores the tree.
    let dst = rig.path("dst");
    rig.counted(&dst).destination().await.assert_ok();
    assert_same(&snapshot(&src), &snapshot(&dst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_changes_reads_the_previous_manifest_once() {
    let rig = Rig::start().await;
    let src = rig.path("src");
    tree(&src, 40);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    rig.counted(&src).source().await.assert_ok();

    // Two files rewritten, one deleted, and a new file holding content an existing
    // object holds (a server-side copy source found in the same manifest read).
    write(&src, "many/f001", &bytes(7, 500));
    write(&src, "many/f002", &bytes(8, 600));
    std::fs::remove_file(src.join("many/f003")).unwrap();
    write(&src, "copied", &bytes(1010, 310));
    rig.proxy.clear_log();
    let run = rig.counted(&src).source().await;
    run.assert_ok();
    let log = rig.proxy.request_log();
    let c = count(&log);
    assert_eq!(run.count("filesTransferred"), 3, "{}", run.summary);
    assert_eq!(run.count("filesDeleted"), 1, "{}", run.summary);
    assert_eq!(c.manifest_gets, 1, "previous manifest read once: {log:#?}");
    assert_eq!(c.listings, 1, "prefix listed once: {log:#?}");
    assert_eq!(c.manifest_puts, 1, "one new manifest: {log:#?}");
    assert!(
        log.iter()
            .any(|r| r.starts_with("PUT /requests/replica/copied")),
        "{log:#?}"
    );

    let dst = rig.path("dst");
    rig.counted(&dst).destination().await.assert_ok();
    let (mut a, mut b) = (snapshot(&src), snapshot(&dst));
    for s in [&mut a, &mut b] {
        if let Some(root) = s.get_mut(".") {
            root.mtime = (0, 0);
        }
    }
    assert_same(&a, &b);
}
