//! The destination as it runs in Kubernetes: as uid 65532 with an fsGroup, into a
//! volume whose root (and some pre-existing paths) belong to root. The kernel lets
//! only the owner chmod or set explicit times, so those fail with EPERM; the
//! restore must still succeed with the content exact and one warning.
//!
//! The test runs as root and drops to 65532 with `setpriv` (no capabilities left,
//! so the mover is an ordinary user).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::support::mover::{Job, Run, files};

const MOVER_UID: u32 = 65532;

fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A root-owned directory the fsGroup may write into (setgid, like a kubelet-prepared volume).
fn fs_group_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(MOVER_UID)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o2775)).unwrap();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_root_owned_volume_as_non_root_succeeds_with_a_warning() {
    if !is_root() {
        eprintln!("skipped: needs root to prepare paths owned by another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged mover must reach the config, the remote and the volume.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, "[local]\ntype = local\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let remote = dir.path().join("remote");

    let src = dir.path().join("src");
    write(&src, "a.txt", b"hello", 0o644);
    write(&src, "dir/b.bin", &vec![3u8; 40_000], 0o600);
    write(&src, "dir/sub/c", b"c", 0o640);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    Job::new(&conf, "local", remote.to_str().unwrap(), &src)
        .source()
        .await
        .assert_ok();

    // The volume: root-owned root and "dir", and a root-owned a.txt that already
    // holds the right content but another mode and mtime.
    let dst = dir.path().join("data");
    fs_group_dir(&dst);
    fs_group_dir(&dst.join("dir"));
    write(&dst, "a.txt", b"hello", 0o664);
    std::os::unix::fs::chown(dst.join("a.txt"), Some(0), Some(MOVER_UID)).unwrap();

    let job = Job::new(&conf, "local", remote.to_str().unwrap(), &dst).wrapped(&[
        "setpriv",
        "--reuid=65532",
        "--regid=65532",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]);
    // The termination log must be writable by the mover's uid, as in a pod.
    let log = dir.path().join("termination-log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = job.command("destination", &log).output().await.unwrap();
    let run = Run::from_output(out, &log);
    run.assert_ok();
    assert!(
        run.stderr.contains("owned by another user"),
        "one warning about the metadata it could not set:\n{}",
        run.tail()
    );
    assert_eq!(
        run.stderr.matches("owned by another user").count(),
        1,
        "warned once:\n{}",
        run.tail()
    );

    let (want, got) = (files(&src), files(&dst));
    let content = |m: &std::collections::BTreeMap<String, crate::support::mover::FileView>| {
        m.iter()
            .map(|(p, v)| (p.clone(), (v.size, v.sha256.clone())))
            .collect::<Vec<_>>()
    };
    assert_eq!(content(&got), content(&want), "content exact");
    // What the mover owns got the source's metadata; the root kept its own.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&dst.join("dir/b.bin")), 0o600);
    assert_eq!(mode(&dst.join("dir/sub/c")), 0o640);
    assert_eq!(got["dir/b.bin"].mtime_ns, want["dir/b.bin"].mtime_ns);
    assert_eq!(mode(&dst), 0o2775);
    assert_eq!(std::fs::metadata(&dst).unwrap().uid(), 0);
}
