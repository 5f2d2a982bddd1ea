//! Directory trees: a declarative description ([`Tree`]) written onto a volume with
//! [`write_tree`], a listing of what is on disk ([`read_tree`]), and a comparison of the two
//! ([`compare`]) that names every difference (content, type, mode, owner, mtime to the
//! second, symlink target, hardlink grouping, missing and unexpected paths).
//!
//! The description and comparison are pure; the filesystem side (`disk`) is plain std::fs
//! code, no cluster: the volume backends in [`crate::volumes`] call it on the host directory
//! of a PVC. Writing needs root to set owners other than the caller's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

mod disk;

pub use disk::{read_tree, remove_path, write_tree};

/// Uid and gid of the controller's default (non-root) mover.
pub const MOVER_ID: u32 = 65532;

/// Names at a volume's root that are not data: the filesystem's `lost+found` and the
/// mover's staging directory.
pub const IGNORED_AT_ROOT: &[&str] = &["lost+found", ".scribe-staging"];

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    /// A second name of the file at the given path (written after it).
    Hardlink(String),
}

/// One path of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (`0o7777` mask); ignored for symlinks and hardlinks.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time in whole seconds since the epoch; ignored for symlinks and hardlinks.
    pub mtime: i64,
}

/// A tree to write: relative `/`-separated paths to entries. Parent directories that are not
/// listed are created with mode 0755 and the tree's default owner and mtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// An empty tree whose entries default to owner 65532:65532 and an mtime of
    /// 2024-05-06T07:08:09Z (in the past, with a non-zero seconds part).
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            uid: MOVER_ID,
            gid: MOVER_ID,
            mtime: 1_714_979_289,
        }
    }

    /// Changes the default owner of entries added from now on.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Changes the default mtime of entries added from now on.
    pub fn mtime(mut self, mtime: i64) -> Self {
        self.mtime = mtime;
        self
    }

    fn entry(&self, kind: Kind, mode: u32) -> Entry {
        Entry {
            kind,
            mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
        }
    }

    fn add(mut self, path: &str, entry: Entry) -> Self {
        let path = normalize(path);
        assert!(!path.is_empty(), "a tree entry needs a relative path");
        self.entries.insert(path, entry);
        self
    }

    /// A regular file.
    pub fn file(self, path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        let e = self.entry(Kind::File(content.into()), mode);
        self.add(path, e)
    }

    /// A regular file with its own mtime.
    pub fn file_at(self, path: &str, content: impl Into<Vec<u8>>, mode: u32, mtime: i64) -> Self {
        let mut e = self.entry(Kind::File(content.into()), mode);
        e.mtime = mtime;
        self.add(path, e)
    }

    /// A directory (empty unless other entries are under it).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        let e = self.entry(Kind::Dir, mode);
        self.add(path, e)
    }

    /// A symbolic link to `target` (stored verbatim).
    pub fn symlink(self, path: &str, target: &str) -> Self {
        let e = self.entry(Kind::Symlink(target.to_string()), 0o777);
        self.add(path, e)
    }

    /// A hard link to the file at `existing` (a path of this tree).
    pub fn hardlink(self, path: &str, existing: &str) -> Self {
        let e = self.entry(Kind::Hardlink(normalize(existing)), 0);
        self.add(path, e)
    }

    /// Removes a path (and everything under it) from the description.
    pub fn remove(mut self, path: &str) -> Self {
        let path = normalize(path);
        let under = format!("{path}/");
        self.entries
            .retain(|p, _| p != &path && !p.starts_with(&under));
        self
    }

    /// The entries with every implied parent directory added (0755, default owner and mtime).
    pub fn with_parents(&self) -> BTreeMap<String, Entry> {
        let mut all = self.entries.clone();
        for path in self.entries.keys() {
            let mut parent = Path::new(path).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                let key = p.to_string_lossy().into_owned();
                all.entry(key)
                    .or_insert_with(|| self.entry(Kind::Dir, 0o755));
                parent = p.parent();
            }
        }
        all
    }

    /// What [`read_tree`] should find after this tree is restored somewhere. Hardlinked
    /// names form a group named by its first path in byte order, as [`read_tree`] names it.
    pub fn expected(&self) -> Listing {
        let all = self.with_parents();
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (path, e) in &all {
            if let Kind::Hardlink(original) = &e.kind {
                groups
                    .entry(original.as_str())
                    .or_insert_with(|| vec![original.as_str()])
                    .push(path.as_str());
            }
        }
        let group_of = |path: &str| {
            groups
                .values()
                .find(|names| names.contains(&path))
                .and_then(|names| names.iter().min())
                .map(|first| first.to_string())
        };
        let mut out = BTreeMap::new();
        for (path, e) in &all {
            let observed = match &e.kind {
                Kind::File(content) => Observed::file(content, e),
                Kind::Dir => Observed {
                    kind: ObservedKind::Dir,
                    mode: e.mode & 0o7777,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: Some(e.mtime),
                    hardlink_group: None,
                },
                Kind::Symlink(target) => Observed {
                    kind: ObservedKind::Symlink(target.clone()),
                    mode: 0,
                    uid: e.uid,
                    gid: e.gid,
                    mtime: None,
                    hardlink_group: None,
                },
                Kind::Hardlink(original) => match all.get(original) {
                    Some(
                        first @ Entry {
                            kind: Kind::File(content),
                            ..
                        },
                    ) => Observed::file(content, first),
                    _ => continue,
                },
            };
            let hardlink_group = group_of(path);
            out.insert(
                path.clone(),
                Observed {
                    hardlink_group,
                    ..observed
                },
            );
        }
        Listing { entries: out }
    }
}

fn normalize(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// What a path on disk is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedKind {
    /// Size and SHA-256 of the content.
    File {
        size: u64,
        sha256: String,
    },
    Dir,
    Symlink(String),
}

/// One path as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub kind: ObservedKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch (None for symlinks: their times are not compared).
    pub mtime: Option<i64>,
    /// For files with more than one name: the first path (in byte order) of the inode.
    pub hardlink_group: Option<String>,
}

impl Observed {
    fn file(content: &[u8], e: &Entry) -> Self {
        Self {
            kind: ObservedKind::File {
                size: content.len() as u64,
                sha256: hex::encode(Sha256::digest(content)),
            },
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            mtime: Some(e.mtime),
            hardlink_group: None,
        }
    }
}

/// Every path under a root (the root itself excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: BTreeMap<String, Observed>,
}

impl Listing {
    /// Number of regular files.
    pub fn files(&self) -> usize {
        self.entries
            .values()
            .filter(|o| matches!(o.kind, ObservedKind::File { .. }))
            .count()
    }
}

/// Every difference between what was expected and what was found, one line each
/// (empty when they match).
pub fn compare(expected: &Listing, actual: &Listing) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want) in &expected.entries {
        let Some(got) = actual.entries.get(path) else {
            out.push(format!("{path}: missing (expected {})", describe(want)));
            continue;
        };
        if want.kind != got.kind {
            out.push(format!(
                "{path}: expected {}, found {}",
                describe(want),
                describe(got)
            ));
            continue;
        }
        if want.mode != got.mode {
            out.push(format!(
                "{path}: mode expected {:04o}, found {:04o}",
                want.mode, got.mode
            ));
        }
        if (want.uid, want.gid) != (got.uid, got.gid) {
            out.push(format!(
                "{path}: owner expected {}:{}, found {}:{}",
                want.uid, want.gid, got.uid, got.gid
            ));
        }
        if let (Some(w), Some(g)) = (want.mtime, got.mtime)
            && w != g
        {
            out.push(format!(
                "{path}: mtime expected {} ({w}), found {} ({g})",
                rfc3339(w),
                rfc3339(g)
            ));
        }
        if want.hardlink_group != got.hardlink_group {
            out.push(format!(
                "{path}: hardlink group expected {:?}, found {:?}",
                want.hardlink_group, got.hardlink_group
            ));
        }
    }
    for (path, got) in &actual.entries {
        if !expected.entries.contains_key(path) {
            out.push(format!("{path}: unexpected {}", describe(got)));
        }
    }
    out
}

fn describe(o: &Observed) -> String {
    match &o.kind {
        ObservedKind::File { size, sha256 } => {
            format!("file of {size} bytes, sha256 {}", &sha256[..12])
        }
        ObservedKind::Dir => "directory".to_string(),
        ObservedKind::Symlink(t) => format!("symlink -> {t}"),
    }
}

fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Deterministic pseudo-random bytes (xorshift64*), for file content that does not compress
/// and differs between seeds.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The tree most scenarios replicate: files with content and varied modes and mtimes, nested
/// directories, an empty directory, a read-only directory, a symlink (relative and dangling),
/// a hardlink, an empty file, a name with spaces and non-ASCII letters, and one larger file;
/// everything owned by 65532:65532.
pub fn sample_tree(seed: u64) -> Tree {
    Tree::new()
        .file("README.md", format!("sample tree {seed}\n"), 0o644)
        .file_at(
            "config/app.yaml",
            "replicas: 3\nname: db\n",
            0o640,
            1_600_000_001,
        )
        .file("config/secret.key", noise(seed ^ 1, 64), 0o600)
        .file("bin/run.sh", "#!/bin/sh\necho run\n", 0o755)
        .file("data/empty.bin", Vec::new(), 0o644)
        .file_at(
            "data/blob.bin",
            noise(seed ^ 2, 3 * 1024 * 1024 + 17),
            0o644,
            1_650_000_003,
        )
        .file("data/nested/deeper/leaf.txt", "leaf\n", 0o444)
        .file("docs with space/ünïcødé.txt", "naïve café\n", 0o664)
        .dir("empty-dir", 0o750)
        .dir("read-only", 0o555)
        .file("read-only/inside.txt", "inside a 0555 directory\n", 0o644)
        .symlink("current", "data/nested/deeper/leaf.txt")
        .symlink("dangling", "does/not/exist")
        .hardlink("data/blob-hardlink.bin", "data/blob.bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_seed_dependent() {
        assert_eq!(noise(1, 100), noise(1, 100));
        assert_ne!(noise(1, 100), noise(2, 100));
        assert_eq!(noise(3, 13).len(), 13);
    }
}
