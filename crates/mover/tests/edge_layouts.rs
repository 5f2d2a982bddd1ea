//! Edge layouts, with the real binary against a `type = local` remote and moto:
//! S3 folder markers (`dir/`) in a bucket rclone wrote; `.scribe`, `.scribe-staging`
//! and `lost+found` at a source root; a file turned into a directory and back
//! between runs (the local remote cannot hold both, S3 can); 255-byte names; names
//! object_store's local backend cannot address (`x#1`).

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::Moto;
use crate::support::mover::{Job, assert_same_files, files};
use crate::support::rclone::rclone;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Every directory under `root` (relative paths), to compare trees beyond files.
fn dirs(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_dir())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The files under a local remote directory, Scribe's own left out.
fn remote_files(dir: &Path) -> BTreeSet<String> {
    files(dir)
        .into_keys()
        .filter(|k| !k.starts_with(".scribe/"))
        .collect()
}

fn assert_same_tree(src: &Path, dst: &Path) {
    assert_same_files(&files(src), &files(dst), 0);
    assert_eq!(dirs(src), dirs(dst), "directories of {}", dst.display());
}

fn local_conf(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("rclone.conf");
    std::fs::write(&conf, "[local]\ntype = local\n").unwrap();
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_markers_become_directories_and_the_source_leaves_them_alone() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    write(&src, "docs/a.txt", b"a");
    write(&src, "top", b"top");
    let out = rclone(
        &conf,
        &["copy", src.to_str().unwrap(), "moto:markers/data"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the S3 console and other tools write for folders: an empty one, one
    // nested in a missing parent, one that has files anyway, one named like a file.
    for key in ["data/empty/", "data/x/y/", "data/docs/", "data/top/"] {
        moto.put_raw("markers", key, b"");
    }

    std::fs::create_dir(&dst).unwrap();
    let run = Job::new(&conf, "moto", "markers/data", &dst)
        .destination()
        .await;
    run.assert_ok();
    assert_eq!(
        dirs(&dst),
        BTreeSet::from(["docs", "empty", "x", "x/y"].map(String::from)),
        "{}",
        run.stderr
    );
    assert_same_files(&files(&src), &files(&dst), 1_000);
    assert!(
        run.stderr.contains("conflicts with a file"),
        "{}",
        run.stderr
    );

    // The source syncs over them without taking `dir/` for a file named "" and
    // without deleting them (they are not data), then restores as usual.
    std::fs::remove_file(src.join("top")).unwrap();
    std::fs::create_dir(src.join("new-empty")).unwrap();
    Job::new(&conf, "moto", "markers/data", &src)
        .source()
        .await
        .assert_ok();
    let objects = crate::support::mover::list_bucket(&conf, "moto", "markers").await;
    for marker in ["data/empty", "data/x/y", "data/docs"] {
        assert!(objects.contains_key(marker), "{marker} kept: {objects:?}");
    }
    assert!(
        !objects
            .keys()
            .any(|k| k.ends_with("/top") && !k.starts_with("data/top"))
    );
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    Job::new(&conf, "moto", "markers/data", &restored)
        .destination()
        .await
        .assert_ok();
    assert_same_tree(&src, &restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scribe_directory_at_the_source_root_is_refused_and_nothing_is_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let conf = local_conf(dir.path());
    let (src, remote) = (dir.path().join("src"), dir.path().join("remote"));
    // As `rclone sync` of a Scribe bucket into a volume leaves it.
    write(&src, ".scribe/manifest.jsonl", b"{\"not\":\"ours\"}\n");
    write(&src, "data.txt", b"data");
    let job = Job::new(&conf, "local", remote.to_str().unwrap(), &src);
    let run = job.source().await;
    run.assert_failed(78, &["\".scribe\"", "reserved", "<prefix>/.scribe/"]);
    assert!(remote_files(&remote).is_empty(), "nothing uploaded");
    assert!(!remote.join(".scribe/manifest.jsonl").exists());

    // Renamed away, the rest replicates; the staging directory and lost+found at
    // the root are left out, and said so.
    std::fs::rename(src.join(".scribe"), src.join("scribe-copy")).unwrap();
    write(&src, ".scribe-staging/leftover", b"scratch");
    write(&src, "lost+found/#1234", b"orphan");
    let run = job.source().await;
    run.assert_ok();
    assert_eq!(
        remote_files(&remote),
        BTreeSet::from(["data.txt", "scribe-copy/manifest.jsonl"].map(String::from))
    );
    for name in [".scribe-staging", "lost+found"] {
        assert!(
            run.stderr.contains(&format!("name={name}")) && run.stderr.contains("not data"),
            "{name} is logged: {}",
            run.stderr
        );
    }

    // A destination holding `.scribe` at its root gets the manifest's tree, never wedged.
    let dst = dir.path().join("dst");
    write(&dst, ".scribe/junk", b"junk");
    Job::new(&conf, "local", remote.to_str().unwrap(), &dst)
        .destination()
        .await
        .assert_ok();
    assert!(!dst.join(".scribe").exists());
    std::fs::remove_dir_all(src.join(".scribe-staging")).unwrap();
    std::fs::remove_dir_all(src.join("lost+found")).unwrap();
    assert_same_tree(&src, &dst);
}

/// Three generations of one tree: `a` a file then a directory then a file again,
/// `b` the reverse, `c/d/e` a deep directory that becomes a file `c`.
fn generation(src: &Path, n: u32) {
    if src.exists() {
        std::fs::remove_dir_all(src).unwrap();
    }
    std::fs::create_dir_all(src).unwrap();
    write(src, "keep", b"kept");
    if n.is_multiple_of(2) {
        write(src, "a", format!("a file {n}").as_bytes());
        write(src, "b/x", b"b/x");
        write(src, "b/y/z", b"b/y/z");
        write(src, "c/d/e", b"deep");
    } else {
        write(src, "a/n", format!("a dir {n}").as_bytes());
        std::fs::create_dir_all(src.join("a/empty")).unwrap();
        write(src, "b", b"b is a file");
        write(src, "c", b"c is a file");
    }
}

async fn swaps_sync(conf: &Path, section: &str, remote_path: &str, dir: &Path) {
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir(&dst).unwrap();
    for n in 0..3 {
        generation(&src, n);
        let run = Job::new(conf, section, remote_path, &src).source().await;
        run.assert_ok();
        let run = Job::new(conf, section, remote_path, &dst)
            .destination()
            .await;
        run.assert_ok();
        assert_same_tree(&src, &dst);
        // A second source run over the swapped layout has nothing to do.
        let again = Job::new(conf, section, remote_path, &src).source().await;
        again.assert_ok();
        assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_directory_swaps_sync_on_a_local_remote() {
    let dir = tempfile::tempdir().unwrap();
    let conf = local_conf(dir.path());
    let remote = dir.path().join("remote");
    swaps_sync(&conf, "local", remote.to_str().unwrap(), dir.path()).await;
    // The remote holds exactly the last generation's files, as rclone lays them out.
    assert_eq!(
        remote_files(&remote),
        BTreeSet::from(["a", "b/x", "b/y/z", "c/d/e", "keep"].map(String::from))
    );
    let leftovers: Vec<_> = walkdir::WalkDir::new(&remote)
        .into_iter()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('#'))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_directory_swaps_sync_on_s3() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
    swaps_sync(&conf, "moto", "swaps/p", dir.path()).await;
    let objects = crate::support::mover::list_bucket(&conf, "moto", "swaps").await;
    let data: BTreeSet<&str> = objects
        .keys()
        .filter_map(|k| k.strip_prefix("p/"))
        .filter(|k| !k.starts_with(".scribe/"))
        .collect();
    assert_eq!(data, BTreeSet::from(["a", "b/x", "b/y/z", "c/d/e", "keep"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_replicate_and_hash_suffixed_names_are_refused_on_a_local_remote() {
    let dir = tempfile::tempdir().unwrap();
    let conf = local_conf(dir.path());
    let (src, dst, remote) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("remote"),
    );
    let long = "l".repeat(255);
    write(&src, &long, b"long name");
    write(&src, &format!("d/{long}"), &vec![7u8; 300_000]);
    let job = Job::new(&conf, "local", remote.to_str().unwrap(), &src);
    job.source().await.assert_ok();
    assert!(remote.join(&long).is_file());
    std::fs::create_dir(&dst).unwrap();
    Job::new(&conf, "local", remote.to_str().unwrap(), &dst)
        .destination()
        .await
        .assert_ok();
    assert_same_tree(&src, &dst);

    // object_store's local backend takes `x#1` for one of its staging files.
    write(&src, "x#1", b"hash");
    let run = job.source().await;
    run.assert_failed(78, &["x#1", "`#<digits>`", "rename it"]);
    // Nothing was lost: the last commit still restores.
    std::fs::remove_file(src.join("x#1")).unwrap();
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    Job::new(&conf, "local", remote.to_str().unwrap(), &again)
        .destination()
        .await
        .assert_ok();
    assert_same_tree(&src, &again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_replaces_swapped_paths_and_symlinks_without_following_them() {
    let dir = tempfile::tempdir().unwrap();
    let conf = local_conf(dir.path());
    let remote = dir.path().join("remote");
    let (src, dst, outside) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("outside"),
    );
    generation(&src, 1); // a/n, a/empty, b and c files
    Job::new(&conf, "local", remote.to_str().unwrap(), &src)
        .source()
        .await
        .assert_ok();
    // The destination's tree has every name in the other shape, as links leading
    // out of it: `a` a link to a directory, `b` and `c` directories holding links.
    write(&outside, "n", b"outside, must survive");
    write(&outside, "f", b"outside file");
    write(&dst, "keep/old", b"a directory where a file goes");
    std::os::unix::fs::symlink(&outside, dst.join("a")).unwrap();
    std::fs::create_dir_all(dst.join("b")).unwrap();
    std::os::unix::fs::symlink(outside.join("f"), dst.join("b/link")).unwrap();
    std::fs::create_dir_all(dst.join("c/deeper")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("c/deeper/dir-link")).unwrap();
    let before = files(&outside);
    Job::new(&conf, "local", remote.to_str().unwrap(), &dst)
        .destination()
        .await
        .assert_ok();
    assert_same_tree(&src, &dst);
    assert!(!dst.join("a").is_symlink());
    assert_eq!(files(&outside), before, "nothing outside the tree changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rclone_written_local_remote_restores_its_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let conf = local_conf(dir.path());
    let (src, dst, remote) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("remote"),
    );
    write(&src, "f", b"file");
    write(&src, "full/g", b"nested");
    std::fs::create_dir_all(src.join("empty/inner-empty")).unwrap();
    let out = rclone(
        &conf,
        &[
            "sync",
            "--create-empty-src-dirs",
            src.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(remote.join("empty/inner-empty").is_dir());
    std::fs::create_dir(&dst).unwrap();
    Job::new(&conf, "local", remote.to_str().unwrap(), &dst)
        .destination()
        .await
        .assert_ok();
    assert_same_files(&files(&src), &files(&dst), 1_000);
    assert_eq!(dirs(&src), dirs(&dst));
}
