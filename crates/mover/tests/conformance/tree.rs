//! Building test trees and taking exact snapshots of them (type, size, SHA-256,
//! mode, owner, mtime to the nanosecond, link target, hardlink grouping) so two
//! trees can be compared with one assertion.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub size: u64,
    pub sha256: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub target: Option<String>,
    /// For multiply-linked files: the first path (sorted) sharing the inode.
    pub link_group: Option<String>,
}

/// Every path under `root` (and the root itself as "."), skipping the destination's staging dir.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let mut paths: Vec<_> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == ".scribe-staging"))
        .map(|e| e.expect("walk"))
        .collect();
    paths.sort_by(|a, b| {
        a.path()
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path().as_os_str().as_encoded_bytes())
    });
    for e in paths {
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let ft = m.file_type();
        let (kind, sha, target) = if ft.is_symlink() {
            (
                "symlink",
                None,
                Some(
                    std::fs::read_link(e.path())
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string(),
                ),
            )
        } else if ft.is_dir() {
            ("dir", None, None)
        } else {
            (
                "file",
                Some(hex::encode(Sha256::digest(
                    std::fs::read(e.path()).unwrap(),
                ))),
                None,
            )
        };
        let link_group = (kind == "file" && m.nlink() > 1).then(|| {
            inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        out.insert(
            rel,
            Node {
                kind,
                size: if kind == "file" { m.len() } else { 0 },
                sha256: sha,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                target,
                link_group,
            },
        );
    }
    out
}

/// Asserts two snapshots are identical, listing the first differences.
pub fn assert_same(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) {
    let mut diffs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => diffs.push(format!("{k}: missing in second tree")),
            Some(w) if w != v => diffs.push(format!("{k}:\n  {v:?}\n  {w:?}")),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        diffs.push(format!("{k}: only in second tree"));
    }
    assert!(
        diffs.is_empty(),
        "trees differ ({} paths):\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
}

pub fn chmod(root: &Path, rel: &str, mode: u32) {
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets mtime (and atime) of a path, not following a symlink.
pub fn set_mtime(root: &Path, rel: &str, sec: i64, nsec: u32) {
    scribe_mover::fs::local::set_times_nofollow(&root.join(rel), sec, nsec).unwrap();
}

/// A small tree with every kind of entry.
pub fn small_tree(root: &Path) {
    write(root, "a.txt", b"hello");
    write(root, "dir/b.bin", &bytes(1, 100_000));
    write(root, "dir/sub/c", b"c");
    write(root, "zero", b"");
    std::fs::create_dir_all(root.join("empty/nested")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link-to-a")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dir/dangling")).unwrap();
    std::fs::hard_link(root.join("dir/b.bin"), root.join("dir/hard")).unwrap();
    chmod(root, "dir/b.bin", 0o600);
    chmod(root, "empty", 0o700);
    set_mtime(root, "a.txt", 1_600_000_000, 123_456_789);
    set_mtime(root, "dir/b.bin", 1_500_000_000, 5);
    set_mtime(root, "link-to-a", 1_400_000_000, 7);
    set_mtime(root, "empty/nested", 1_300_000_000, 0);
}

/// Whether a file has fewer blocks allocated than its size needs.
pub fn is_sparse(path: &Path) -> bool {
    let m = std::fs::metadata(path).unwrap();
    m.blocks() * 512 < m.len()
}

/// Thousands of small files, empty files, a multipart-sized file, unicode and spaces,
/// deep paths, empty dirs, every kind of symlink, hardlinks, modes 0600/0755/setgid,
/// other owners (when root), and a sparse file.
pub fn torture_tree(root: &Path) {
    for i in 0..2000 {
        let rel = format!("many/d{:02}/f{i:04}.dat", i % 40);
        write(root, &rel, &bytes(i, (i % 97) as usize * 13));
        set_mtime(
            root,
            &rel,
            1_600_000_000 + i as i64,
            (i as u32 * 7919) % 1_000_000_000,
        );
    }
    for i in 0..5 {
        write(root, &format!("empty-files/e{i}"), b"");
    }
    write(
        root,
        "large/twelve-mib.bin",
        &bytes(77, 12 * 1024 * 1024 + 3),
    );
    write(root, "unicodé/日本語 ファイル.txt", "こんにちは".as_bytes());
    write(root, "with space/and  two  spaces .txt", b"spaces");
    write(root, "odd/#hash%percent&amp;=equals+plus", b"odd");
    let deep: String = (0..30).map(|i| format!("level{i}/")).collect();
    write(root, &format!("{deep}bottom.txt"), b"deep");
    std::fs::create_dir_all(root.join("empty/a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty-top")).unwrap();
    std::os::unix::fs::symlink("../unicodé/日本語 ファイル.txt", root.join("odd/to-file")).unwrap();
    std::os::unix::fs::symlink("../many", root.join("odd/to-dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("odd/dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("odd/absolute")).unwrap();
    write(root, "links/original", b"linked content");
    std::fs::hard_link(root.join("links/original"), root.join("links/second")).unwrap();
    std::fs::hard_link(root.join("links/original"), root.join("other-dir-link")).unwrap();
    write(root, "modes/private", b"secret");
    chmod(root, "modes/private", 0o600);
    write(root, "modes/exec", b"#!/bin/sh\n");
    chmod(root, "modes/exec", 0o755);
    std::fs::create_dir_all(root.join("modes/setgid-dir")).unwrap();
    write(root, "modes/setgid-dir/inside", b"in");
    chmod(root, "modes/setgid-dir", 0o2775);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(root.join("modes/private"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("odd/to-file"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::lchown(root.join("modes/setgid-dir"), Some(1000), Some(1000)).unwrap();
        chmod(root, "modes/setgid-dir", 0o2775);
    }
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(8 * 1024 * 1024).unwrap();
    use std::os::unix::fs::FileExt;
    sparse
        .write_all_at(b"data in the middle", 3 * 1024 * 1024 + 5)
        .unwrap();
    drop(sparse);
    set_mtime(root, "odd/to-dir", 1_000_000_000, 1);
    set_mtime(root, "empty/a/b/c", 1_000_000_001, 2);
    set_mtime(root, "modes/setgid-dir", 1_000_000_002, 3);
}
