//! Walking a local tree in the manifest's order (path bytes), lazily: [`Walk`]
//! yields one entry at a time, so neither direction holds the whole tree. One
//! filesystem only, never following symlinks; second and later links of a hardlinked inode become
//! hardlink entries naming the first path (in path order). Names no manifest can
//! carry (not UTF-8, control characters such as newline or tab) and symlinks whose
//! target is not UTF-8 are not entries: they are collected as [`Unsupported`] for
//! the caller to refuse (source) or remove (destination), never silently dropped.
//! Special files (sockets, FIFOs, devices) are skipped, as rclone skips them.
//!
//! Names at the root that are not data, each logged (never skipped silently):
//! `lost+found` (the filesystem's, as VolSync's rclone mover leaves it out) and
//! `.scribe-staging` (the destination's download area, left by a killed
//! destination run) are left out; `.scribe` is [`Unsupported`]: the remote keeps
//! Scribe's manifest under `<prefix>/.scribe/`, so data there would overwrite it or
//! be refused by every destination. The source refuses to run (exit 78, naming it,
//! nothing uploaded) until it is renamed; the destination removes it.
//!
//! Order: each directory's names are sorted by bytes, with a directory present twice
//! — its own entry under its name, and its contents under `name + "/"`. So `a` comes
//! before `a.b`, which comes before `a/x` (`.` < `/`), and the concatenated output is
//! in global byte order. Memory: the names of the directories on the current path
//! (the widest directory dominates) plus the first path of each inode with more
//! than one link.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::error::SyncError;
use crate::fs::local::{FileKind, LocalMeta};

/// Staging directory the destination downloads into before committing (see `destination`).
pub const STAGING_DIR: &str = ".scribe-staging";

/// The filesystem's own directory at a volume root; not data.
pub const LOST_FOUND: &str = "lost+found";

/// Why `.scribe` at the root cannot be replicated (see the module doc).
pub const RESERVED_REASON: &str = "reserved: the remote keeps Scribe's manifest under \
     <prefix>/.scribe/; rename or remove it";

/// One scanned path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// Relative path, `/`-separated, valid UTF-8.
    pub path: String,
    pub meta: LocalMeta,
    /// Symlink target (as stored in the link), or for a hardlink the first path of its inode.
    pub target: Option<String>,
    /// True for the second and later paths of a hardlinked inode.
    pub hardlink: bool,
}

/// A scanned tree, entries sorted by path bytes.
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct Scan {
    pub root: LocalMeta,
    pub entries: Vec<ScanEntry>,
    /// Special files left out.
    pub skipped: usize,
    /// Paths no manifest can carry, in walk order.
    pub unsupported: Vec<Unsupported>,
}

/// A local path that cannot be an entry: its name, or its symlink target, is not
/// representable in a manifest and an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The path relative to the root, as the filesystem has it.
    pub rel: PathBuf,
    pub reason: &'static str,
}

impl std::fmt::Display for Unsupported {
    /// The path with its odd bytes escaped (`\n`, `\t`, `\xff`), and why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let escaped: String = self.rel.as_os_str().as_bytes().escape_ascii().to_string();
        let shown = match std::str::from_utf8(self.rel.as_os_str().as_bytes()) {
            // Keep non-ASCII UTF-8 readable; escape only control characters.
            Ok(s) => s.escape_debug().to_string(),
            Err(_) => escaped,
        };
        write!(f, "\"{shown}\" ({})", self.reason)
    }
}

/// Walks `root` into memory (blocking), for tests; the mover itself walks lazily
/// ([`Walk`]) so no tree is held whole.
#[cfg(test)]
pub fn scan(root: &Path, group_hardlinks: bool) -> Result<Scan, SyncError> {
    let mut walk = Walk::new(root, group_hardlinks)?;
    let entries = walk.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok(Scan {
        root: *walk.root_meta(),
        entries,
        skipped: walk.skipped(),
        unsupported: walk.take_unsupported(),
    })
}

/// One name of a directory being walked: the entry itself, or (for a directory) the
/// point where its contents come in the order.
struct Item {
    key: Vec<u8>,
    name: OsString,
    descend: bool,
}

struct Frame {
    dir: PathBuf,
    rel: String,
    /// Sorted descending, so `pop` gives the next in order.
    items: Vec<Item>,
    /// Directories of this frame whose contents must not be walked (other
    /// filesystem, unusable name, no longer a directory).
    blocked: HashSet<OsString>,
}

/// Lazy, ordered walk of a tree (blocking I/O in `next`); see the module doc.
pub struct Walk {
    root_meta: LocalMeta,
    group_hardlinks: bool,
    stack: Vec<Frame>,
    /// (dev, ino) → first path, only for files with more than one link.
    first_links: HashMap<(u64, u64), String>,
    skipped: usize,
    unsupported: Vec<Unsupported>,
}

impl Walk {
    pub fn new(root: &Path, group_hardlinks: bool) -> Result<Self, SyncError> {
        let meta =
            std::fs::symlink_metadata(root).map_err(|e| SyncError::io("reading", root, e))?;
        let mut frame = read_frame(root.to_path_buf(), String::new())?;
        let mut unsupported = Vec::new();
        frame.items.retain(|item| {
            let name = item.name.as_bytes();
            if name == LOST_FOUND.as_bytes() || name == STAGING_DIR.as_bytes() {
                if !item.descend {
                    info!(name = %item.name.to_string_lossy(), "leaving out a top-level name that is not data");
                }
                return false;
            }
            if name == crate::fs::paths::SCRIBE_DIR.as_bytes() {
                if !item.descend {
                    unsupported.push(Unsupported {
                        rel: PathBuf::from(&item.name),
                        reason: RESERVED_REASON,
                    });
                }
                return false;
            }
            true
        });
        Ok(Self {
            root_meta: LocalMeta::from(&meta),
            group_hardlinks,
            stack: vec![frame],
            first_links: HashMap::new(),
            skipped: 0,
            unsupported,
        })
    }

    pub fn root_meta(&self) -> &LocalMeta {
        &self.root_meta
    }

    /// Special files left out so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The paths found so far that no manifest can carry (see the module doc).
    pub fn take_unsupported(&mut self) -> Vec<Unsupported> {
        std::mem::take(&mut self.unsupported)
    }

    /// The entry for `name` in the top frame, or `None` when it is skipped.
    fn entry(&mut self, name: &OsString, path: &Path) -> Result<Option<ScanEntry>, SyncError> {
        let frame = self.stack.last_mut().expect("called with a frame");
        let meta = LocalMeta::from(
            &std::fs::symlink_metadata(path).map_err(|e| SyncError::io("reading", path, e))?,
        );
        if meta.kind != FileKind::Dir || meta.dev != self.root_meta.dev {
            // Not (or no longer) a directory, or another filesystem: entry only.
            frame.blocked.insert(name.clone());
        }
        let rel = match name.to_str() {
            Some(n) if !n.chars().any(char::is_control) => join_rel(&frame.rel, n),
            _ => {
                let mut rel = PathBuf::from(&frame.rel);
                rel.push(name);
                frame.blocked.insert(name.clone());
                self.unsupported.push(Unsupported {
                    rel,
                    reason: "name is not UTF-8 or has control characters",
                });
                return Ok(None);
            }
        };
        let mut hardlink = false;
        let target = match meta.kind {
            FileKind::Special => {
                warn!(path = %rel, "skipping a special file (socket, FIFO or device)");
                self.skipped += 1;
                return Ok(None);
            }
            FileKind::Symlink => {
                let t = std::fs::read_link(path)
                    .map_err(|e| SyncError::io("reading symlink", path, e))?;
                match t.to_str() {
                    Some(t) => Some(t.to_string()),
                    None => {
                        self.unsupported.push(Unsupported {
                            rel: PathBuf::from(&rel),
                            reason: "symlink target is not UTF-8",
                        });
                        return Ok(None);
                    }
                }
            }
            FileKind::File if self.group_hardlinks && meta.nlink > 1 => {
                match self.first_links.get(&(meta.dev, meta.ino)) {
                    Some(first) => {
                        hardlink = true;
                        Some(first.clone())
                    }
                    None => {
                        self.first_links.insert((meta.dev, meta.ino), rel.clone());
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Some(ScanEntry {
            path: rel,
            meta,
            target,
            hardlink,
        }))
    }
}

impl Iterator for Walk {
    type Item = Result<ScanEntry, SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let frame = self.stack.last_mut()?;
            let Some(item) = frame.items.pop() else {
                self.stack.pop();
                continue;
            };
            let path = frame.dir.join(&item.name);
            if item.descend {
                if frame.blocked.remove(&item.name) {
                    continue;
                }
                let Some(name) = item.name.to_str() else {
                    continue;
                };
                let rel = join_rel(&frame.rel, name);
                match read_frame(path, rel) {
                    Ok(f) => self.stack.push(f),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            match self.entry(&item.name, &path) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Lists one directory into its ordered items (see the module doc).
fn read_frame(dir: PathBuf, rel: String) -> Result<Frame, SyncError> {
    let mut items = Vec::new();
    let rd = std::fs::read_dir(&dir).map_err(|e| SyncError::io("listing directory", &dir, e))?;
    for de in rd {
        let de = de.map_err(|e| SyncError::io("listing directory", &dir, e))?;
        let name = de.file_name();
        let is_dir = de
            .file_type()
            .map_err(|e| SyncError::io("reading", de.path(), e))?
            .is_dir();
        let key = name.as_bytes().to_vec();
        if is_dir {
            let mut k = key.clone();
            k.push(b'/');
            items.push(Item {
                key: k,
                name: name.clone(),
                descend: true,
            });
        }
        items.push(Item {
            key,
            name,
            descend: false,
        });
    }
    items.sort_unstable_by(|a, b| b.key.cmp(&a.key));
    Ok(Frame {
        dir,
        rel,
        items,
        blocked: HashSet::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sorts_by_bytes_groups_hardlinks_and_skips_lost_found() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::create_dir(r.join("lost+found")).unwrap();
        std::fs::write(r.join("lost+found/x"), b"x").unwrap();
        std::fs::write(r.join("a.b"), b"1").unwrap();
        std::fs::write(r.join("a/b/z"), b"2").unwrap();
        std::fs::hard_link(r.join("a/b/z"), r.join("a/y")).unwrap();
        std::os::unix::fs::symlink("../nowhere", r.join("a/l")).unwrap();
        let s = scan(r, true).unwrap();
        let paths: Vec<_> = s.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a.b", "a/b", "a/b/z", "a/l", "a/y"]);
        let y = &s.entries[5];
        assert!(y.hardlink);
        assert_eq!(y.target.as_deref(), Some("a/b/z"));
        assert_eq!(s.entries[4].target.as_deref(), Some("../nowhere"));
        assert_eq!(s.entries[4].meta.kind, FileKind::Symlink);
    }

    #[test]
    fn walk_order_is_global_byte_order_across_nested_directories() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["a", "a/b", "a-b", "a/b.c", "ab", "a/b/c"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in ["a/b/c/f", "a/b0", "a.b", "a/b.c/g", "a-b/h", "a/b/c.d", "b"] {
            std::fs::write(r.join(f), b"x").unwrap();
        }
        let got: Vec<String> = Walk::new(r, true)
            .unwrap()
            .map(|e| e.unwrap().path)
            .collect();
        let mut sorted = got.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(got, sorted);
        assert_eq!(got.len(), 13);
    }

    #[test]
    fn root_names_that_are_not_data_are_left_out_or_refused_never_nested_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            ".scribe",
            STAGING_DIR,
            LOST_FOUND,
            "d/.scribe",
            "d/lost+found",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
            std::fs::write(r.join(d).join("f"), b"x").unwrap();
        }
        let s = scan(r, true).unwrap();
        let paths: Vec<_> = s.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "d",
                "d/.scribe",
                "d/.scribe/f",
                "d/lost+found",
                "d/lost+found/f"
            ]
        );
        assert_eq!(s.unsupported.len(), 1);
        assert_eq!(s.unsupported[0].rel, PathBuf::from(".scribe"));
        assert!(s.unsupported[0].to_string().contains("manifest"));
        // A file of that name is refused the same way.
        std::fs::remove_dir_all(r.join(".scribe")).unwrap();
        std::fs::write(r.join(".scribe"), b"x").unwrap();
        assert_eq!(scan(r, true).unwrap().unsupported.len(), 1);
    }
}
