//! Destination, local side: the pure plan (which manifest files to download, which
//! to re-hash, which local paths to delete) and the blocking commit that applies a
//! fully downloaded and verified pass to the tree: deletes, directories, files
//! renamed in from staging, hardlinks, symlinks, then metadata (directories last,
//! deepest first). Every path is reached only through real directories.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::diff::{Keyed, merge3};
use crate::error::SyncError;
use crate::localfs::{
    Chown, FileKind, LocalMeta, chmod, ensure_real_dir, lchown_if_needed, lstat, parent_rel,
    remove_any, set_times_nofollow,
};
use crate::manifest::{Entry, EntryKind, RootMeta};
use crate::scan::ScanEntry;

impl Keyed for ScanEntry {
    fn key(&self) -> &str {
        &self.path
    }
}

/// What to do with the tree, by index into the manifest entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files whose content must be downloaded.
    pub downloads: Vec<usize>,
    /// Files of the right size but another mtime (or `--checksum`): hash locally to decide.
    pub hash_checks: Vec<usize>,
    /// Local paths the manifest does not have, in path order.
    pub deletes: Vec<String>,
}

/// Pure: compares the manifest with the local scan. A local regular file with the
/// manifest's size and mtime (to the nanosecond, as a previous restore set it) is
/// trusted without re-hashing unless `checksum`.
pub fn plan(manifest: &[Entry], local: &[ScanEntry], checksum: bool) -> Plan {
    let mut p = Plan::default();
    let none: [&Entry; 0] = [];
    let mut idx = 0usize;
    for row in merge3(manifest.iter(), local.iter(), none.iter().copied()) {
        match (row.a, row.b) {
            (Some(m), l) => {
                let i = idx;
                idx += 1;
                if m.kind != EntryKind::File {
                    continue;
                }
                match l {
                    Some(l) if l.meta.kind == FileKind::File && l.meta.size == m.size => {
                        let same_time =
                            (l.meta.mtime_sec, l.meta.mtime_nsec) == (m.mtime_sec, m.mtime_nsec);
                        if checksum || !same_time {
                            p.hash_checks.push(i);
                        }
                    }
                    _ => p.downloads.push(i),
                }
            }
            (None, Some(l)) => p.deletes.push(l.path.clone()),
            (None, None) => {}
        }
    }
    p
}

/// A downloaded, verified file waiting in staging.
#[derive(Debug, Clone)]
pub struct Staged {
    pub index: usize,
    pub temp: PathBuf,
}

/// Counts from a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub deleted: u64,
    /// Owner changes refused by the kernel (not running as root): reported once.
    pub chown_denied: u64,
    /// Mode or time changes refused (EPERM / EACCES: a path owned by someone else,
    /// such as a volume root owned by root while the mover runs as another uid
    /// with an fsGroup): reported once, never a failure.
    pub meta_denied: u64,
    /// The first path counted in `meta_denied`, for the warning.
    pub first_meta_denied: Option<PathBuf>,
}

/// Applies one verified pass to the tree (blocking).
pub fn commit(
    root: &Path,
    staging: &Path,
    entries: &[Entry],
    root_meta: Option<&RootMeta>,
    staged: &[Staged],
    deletes: &[String],
) -> Result<CommitStats, SyncError> {
    let mut stats = CommitStats::default();
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e| SyncError::io(action, p, e)
    };

    // Children sort after their parents, so reverse order removes the deepest first.
    for rel in deletes.iter().rev() {
        if !parents_are_real_dirs(root, rel) {
            continue;
        }
        let path = root.join(rel);
        remove_any(&path).map_err(io("deleting", &path))?;
        stats.deleted += 1;
    }

    for e in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        ensure_real_dir(root, &e.path, true)
            .map_err(io("creating directory", &root.join(&e.path)))?;
    }

    for s in staged {
        let e = &entries[s.index];
        let dest = place(root, &e.path)?;
        apply_meta(&s.temp, e, None, &mut stats)?;
        std::fs::rename(&s.temp, &dest).map_err(io("renaming into place", &dest))?;
    }

    let mut n = 0usize;
    for e in entries.iter().filter(|e| e.kind == EntryKind::Hardlink) {
        let first = root.join(e.target.as_deref().unwrap_or_default());
        let dest = place(root, &e.path)?;
        let (Some(f), have) = (
            lstat(&first).map_err(io("reading", &first))?,
            lstat(&dest).map_err(io("reading", &dest))?,
        ) else {
            return Err(SyncError::io(
                "linking",
                &dest,
                std::io::Error::other("first path of the hardlink is missing"),
            ));
        };
        if have.is_some_and(|h| h.kind == FileKind::File && h.ino == f.ino && h.dev == f.dev) {
            continue;
        }
        n += 1;
        let tmp = staging.join(format!("link-{n}"));
        std::fs::hard_link(&first, &tmp).map_err(io("linking", &dest))?;
        std::fs::rename(&tmp, &dest).map_err(io("renaming into place", &dest))?;
    }

    for e in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let target = e.target.as_deref().unwrap_or_default();
        let dest = place(root, &e.path)?;
        let current = std::fs::read_link(&dest).ok();
        if current.as_deref() != Some(Path::new(target)) {
            n += 1;
            let tmp = staging.join(format!("link-{n}"));
            std::os::unix::fs::symlink(target, &tmp).map_err(io("creating symlink", &dest))?;
            std::fs::rename(&tmp, &dest).map_err(io("renaming into place", &dest))?;
        }
    }

    let downloaded: std::collections::HashSet<usize> = staged.iter().map(|s| s.index).collect();
    for (i, e) in entries.iter().enumerate() {
        if matches!(e.kind, EntryKind::File | EntryKind::Symlink) && !downloaded.contains(&i) {
            let path = root.join(&e.path);
            let have = lstat(&path).map_err(io("reading", &path))?;
            apply_meta(&path, e, have.as_ref(), &mut stats)?;
        }
    }

    // Staging lives in the root: drop it before the directory times are set.
    remove_any(staging).map_err(io("removing staging", staging))?;
    for e in entries
        .iter()
        .rev()
        .filter(|e| e.kind == EntryKind::Dir && e.mode.is_some())
    {
        let path = root.join(&e.path);
        let have = lstat(&path).map_err(io("reading", &path))?;
        apply_meta(&path, e, have.as_ref(), &mut stats)?;
    }
    if let Some(r) = root_meta {
        let mut e = Entry::new("", EntryKind::Dir);
        (e.mode, e.uid, e.gid, e.mtime_sec, e.mtime_nsec) = (
            Some(r.mode),
            Some(r.uid),
            Some(r.gid),
            r.mtime_sec,
            r.mtime_nsec,
        );
        let have = lstat(root).map_err(io("reading", root))?;
        apply_meta(root, &e, have.as_ref(), &mut stats)?;
    }
    if stats.chown_denied > 0 {
        warn!(
            count = stats.chown_denied,
            "could not restore file ownership (not permitted; run the mover as root to keep owners)"
        );
    }
    if let Some(first) = &stats.first_meta_denied {
        warn!(
            count = stats.meta_denied,
            first = %first.display(),
            "could not restore the mode or times of paths owned by another user (not permitted); their content is restored"
        );
    }
    Ok(stats)
}

/// Prepares `root/rel` to receive a new object: its parent is made a real directory
/// and a directory sitting at the name itself is removed.
fn place(root: &Path, rel: &str) -> Result<PathBuf, SyncError> {
    let parent = parent_rel(rel);
    ensure_real_dir(root, parent, true)
        .map_err(|e| SyncError::io("creating directory", root.join(parent), e))?;
    let dest = root.join(rel);
    if let Some(m) = lstat(&dest).map_err(|e| SyncError::io("reading", &dest, e))?
        && m.kind == FileKind::Dir
    {
        std::fs::remove_dir_all(&dest)
            .map_err(|e| SyncError::io("replacing directory", &dest, e))?;
    }
    Ok(dest)
}

/// Whether every ancestor of `rel` under `root` is a real directory (not a symlink).
fn parents_are_real_dirs(root: &Path, rel: &str) -> bool {
    let mut cur = root.to_path_buf();
    let parent = parent_rel(rel);
    if parent.is_empty() {
        return true;
    }
    for part in parent.split('/') {
        cur.push(part);
        match lstat(&cur) {
            Ok(Some(m)) if m.kind == FileKind::Dir => {}
            _ => return false,
        }
    }
    true
}

/// Owner, then mode (chown may clear setuid/setgid bits), then times; only what
/// differs from `have` (everything when `have` is unknown).
fn apply_meta(
    path: &Path,
    e: &Entry,
    have: Option<&LocalMeta>,
    stats: &mut CommitStats,
) -> Result<(), SyncError> {
    let io = |action: &'static str| {
        let p = path.to_path_buf();
        move |err| SyncError::io(action, p, err)
    };
    if lchown_if_needed(path, have, e.uid, e.gid).map_err(io("changing owner of"))?
        == Chown::NotPermitted
    {
        stats.chown_denied += 1;
    }
    if e.kind != EntryKind::Symlink
        && let Some(mode) = e.mode
    {
        let after = lstat(path).map_err(io("reading"))?;
        // chmod follows symlinks: never let it reach through one that appeared here.
        if after.is_some_and(|a| a.kind == FileKind::Symlink) {
            return Ok(());
        }
        if after.is_none_or(|a| a.mode != mode) {
            let r = chmod(path, mode);
            permitted_or_counted(r, path, stats).map_err(io("changing mode of"))?;
        }
    }
    if have.is_none_or(|h| (h.mtime_sec, h.mtime_nsec) != (e.mtime_sec, e.mtime_nsec)) {
        let r = set_times_nofollow(path, e.mtime_sec, e.mtime_nsec);
        permitted_or_counted(r, path, stats).map_err(io("setting times of"))?;
    }
    Ok(())
}

/// Metadata the kernel does not let us set (only the owner may chmod or set
/// explicit times) is counted for one warning instead of failing the restore.
fn permitted_or_counted(
    r: std::io::Result<()>,
    path: &Path,
    stats: &mut CommitStats,
) -> std::io::Result<()> {
    match r {
        Err(e) if is_not_permitted(&e) => {
            stats.meta_denied += 1;
            stats
                .first_meta_denied
                .get_or_insert_with(|| path.to_path_buf());
            Ok(())
        }
        other => other,
    }
}

/// EPERM or EACCES.
fn is_not_permitted(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: FileKind, size: u64, mtime: (i64, u32)) -> LocalMeta {
        LocalMeta {
            kind,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: mtime.0,
            mtime_nsec: mtime.1,
            ctime_sec: 0,
            ctime_nsec: 0,
            ino: 1,
            dev: 1,
            nlink: 1,
        }
    }

    fn local(path: &str, kind: FileKind, size: u64, mtime: (i64, u32)) -> ScanEntry {
        ScanEntry {
            path: path.into(),
            meta: meta(kind, size, mtime),
            target: None,
            hardlink: false,
        }
    }

    fn file(path: &str, size: u64, mtime: (i64, u32)) -> Entry {
        let mut e = Entry::new(path, EntryKind::File);
        e.size = size;
        (e.mtime_sec, e.mtime_nsec) = mtime;
        e.sha256 = Some("a".repeat(64));
        e
    }

    #[test]
    fn plan_downloads_only_what_size_and_mtime_cannot_vouch_for() {
        let manifest = [
            file("missing", 1, (5, 0)),
            file("same", 3, (5, 7)),
            file("sized", 4, (5, 7)),
            file("touched", 3, (5, 7)),
            file("was-dir", 1, (5, 0)),
            file("was-link", 1, (5, 0)),
            Entry::new("z-dir", EntryKind::Dir),
        ];
        let here = [
            local("extra", FileKind::File, 1, (1, 0)),
            local("extra-dir", FileKind::Dir, 0, (1, 0)),
            local("same", FileKind::File, 3, (5, 7)),
            local("sized", FileKind::File, 5, (5, 7)),
            local("touched", FileKind::File, 3, (5, 8)),
            local("was-dir", FileKind::Dir, 0, (5, 0)),
            local("was-link", FileKind::Symlink, 1, (5, 0)),
            local("z-dir", FileKind::Dir, 0, (5, 0)),
        ];
        let p = plan(&manifest, &here, false);
        assert_eq!(p.downloads, vec![0, 2, 4, 5]);
        assert_eq!(p.hash_checks, vec![3]);
        assert_eq!(
            p.deletes,
            vec!["extra".to_string(), "extra-dir".to_string()]
        );
        let with_checksum = plan(&manifest, &here, true);
        assert_eq!(with_checksum.hash_checks, vec![1, 3]);
    }

    #[test]
    fn metadata_not_permitted_is_counted_not_failed() {
        let mut stats = CommitStats::default();
        let p = Path::new("/data");
        for errno in [1, 13] {
            let r =
                permitted_or_counted(Err(std::io::Error::from_raw_os_error(errno)), p, &mut stats);
            assert!(r.is_ok(), "errno {errno} is not a failure");
        }
        assert_eq!(stats.meta_denied, 2);
        assert_eq!(stats.first_meta_denied.as_deref(), Some(p));
        let other = Err(std::io::Error::from_raw_os_error(30)); // EROFS
        assert!(permitted_or_counted(other, p, &mut stats).is_err());
        assert_eq!(stats.meta_denied, 2);
    }
}
