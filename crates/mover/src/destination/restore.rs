//! Destination, local side: the pure plan (which manifest files to download, which
//! to re-hash, which local paths to delete) and the blocking commit that applies a
//! fully downloaded and verified pass to the tree: deletes, directories, files
//! renamed in from staging, hardlinks, symlinks, then metadata (directories last,
//! deepest first) and the restore records (see `restored`). Every path is reached
//! through [`Tree`], one real directory at a time, so nothing outside the root is
//! ever written, removed or changed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::destination::restored::{self, Record, Verdict};
use crate::destination::tree::Tree;
use crate::error::SyncError;
use crate::fs::local::{FileKind, LocalMeta};
use crate::fs::scan::{STAGING_DIR, ScanEntry};
use crate::manifest::{Entry, EntryKind, RootMeta};
use crate::source::diff::{Keyed, merge3};

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
    /// Files of the right size whose content no record vouches for (or `--checksum`):
    /// hash locally to decide.
    pub hash_checks: Vec<usize>,
    /// Local paths the manifest does not have, in path order.
    pub deletes: Vec<String>,
}

/// Pure: compares the manifest with the local scan. A local regular file of the
/// manifest's size is trusted without re-hashing only when its restore record
/// (`records`, by path) vouches for the manifest's content at the file's current
/// size and mtime, and is downloaded when the record says it holds other content;
/// anything else is re-hashed. `checksum` re-hashes every candidate.
pub fn plan(
    manifest: &[Entry],
    local: &[ScanEntry],
    records: &HashMap<String, Record>,
    checksum: bool,
) -> Plan {
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
                        let verdict = records
                            .get(&m.path)
                            .map_or(Verdict::Unknown, |r| r.verdict(&l.meta, m));
                        match verdict {
                            Verdict::Same if !checksum => {}
                            Verdict::Different => p.downloads.push(i),
                            _ => p.hash_checks.push(i),
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

/// A downloaded, verified file waiting in staging, as [`staged_name`] of its index
/// (no path is kept per file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    pub index: usize,
}

/// The name, in the staging directory, of the file staged for manifest entry `index`.
pub fn staged_name(index: usize) -> String {
    format!("f-{index}")
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
    /// Restore records that could not be kept (no user xattrs here, or not
    /// permitted): those files are re-hashed next time. Reported once.
    pub records_unsupported: u64,
}

/// What one commit applies.
pub struct Commit<'a> {
    pub entries: &'a [Entry],
    pub root_meta: Option<&'a RootMeta>,
    pub staged: &'a [Staged],
    /// Local paths to remove (in path order), and local names no manifest can hold
    /// (not UTF-8, control characters), relative to the root.
    pub deletes: &'a [String],
    pub foreign: &'a [PathBuf],
    /// Restore records as read before the pass, by path.
    pub records: &'a HashMap<String, Record>,
}

/// Applies one verified pass to the tree (blocking). The staging directory must be
/// `<root>/.scribe-staging`.
pub fn commit(tree: &Tree, c: &Commit<'_>) -> Result<CommitStats, SyncError> {
    let mut stats = CommitStats::default();
    let io = |action: &'static str, rel: &str| {
        let p = tree.display(rel);
        move |e| SyncError::io(action, p, e)
    };
    let entries = c.entries;

    for rel in c.foreign {
        if tree
            .remove(rel.as_os_str())
            .map_err(|e| SyncError::io("deleting", tree.display(&rel.to_string_lossy()), e))?
        {
            stats.deleted += 1;
        }
    }
    // Children sort after their parents, so reverse order removes the deepest first.
    for rel in c.deletes.iter().rev() {
        if tree.remove(OsStr::new(rel)).map_err(io("deleting", rel))? {
            stats.deleted += 1;
        }
    }

    for e in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        tree.ensure_dir(&e.path)
            .map_err(io("creating directory", &e.path))?;
    }

    for s in c.staged {
        let e = &entries[s.index];
        let temp = format!("{STAGING_DIR}/{}", staged_name(s.index));
        record(tree, &temp, e, None, &mut stats)?;
        apply_meta(tree, &temp, e, None, &mut stats)?;
        tree.rename_into(&temp, &e.path)
            .map_err(io("renaming into place", &e.path))?;
    }

    let mut n = 0usize;
    for e in entries.iter().filter(|e| e.kind == EntryKind::Hardlink) {
        let first = e.target.as_deref().unwrap_or_default();
        let (Some(f), have) = (
            tree.lstat(first).map_err(io("reading", first))?,
            tree.lstat(&e.path).map_err(io("reading", &e.path))?,
        ) else {
            return Err(SyncError::io(
                "linking",
                tree.display(&e.path),
                std::io::Error::other("first path of the hardlink is missing"),
            ));
        };
        if have.is_some_and(|h| h.kind == FileKind::File && h.ino == f.ino && h.dev == f.dev) {
            continue;
        }
        n += 1;
        let tmp = format!("{STAGING_DIR}/link-{n}");
        tree.hard_link(first, &tmp, &e.path)
            .map_err(io("linking", &e.path))?;
    }

    for e in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let target = e.target.as_deref().unwrap_or_default();
        if tree.read_link(&e.path).as_deref() != Some(Path::new(target)) {
            n += 1;
            let tmp = format!("{STAGING_DIR}/link-{n}");
            tree.symlink(target, &tmp, &e.path)
                .map_err(io("creating symlink", &e.path))?;
        }
    }

    // Sorted indexes, not a set: 8 bytes per download.
    let mut downloaded: Vec<usize> = c.staged.iter().map(|s| s.index).collect();
    downloaded.sort_unstable();
    for (i, e) in entries.iter().enumerate() {
        if matches!(e.kind, EntryKind::File | EntryKind::Symlink)
            && downloaded.binary_search(&i).is_err()
        {
            let have = tree.lstat(&e.path).map_err(io("reading", &e.path))?;
            if e.kind == EntryKind::File {
                record(tree, &e.path, e, c.records.get(&e.path), &mut stats)?;
            }
            apply_meta(tree, &e.path, e, have.as_ref(), &mut stats)?;
        }
    }

    // Staging lives in the root: drop it before the directory times are set.
    tree.remove(OsStr::new(STAGING_DIR))
        .map_err(io("removing staging", STAGING_DIR))?;
    for e in entries
        .iter()
        .rev()
        .filter(|e| e.kind == EntryKind::Dir && e.mode.is_some())
    {
        let have = tree.lstat(&e.path).map_err(io("reading", &e.path))?;
        apply_meta(tree, &e.path, e, have.as_ref(), &mut stats)?;
    }
    if let Some(r) = c.root_meta {
        let mut e = Entry::new("", EntryKind::Dir);
        (e.mode, e.uid, e.gid, e.mtime_sec, e.mtime_nsec) = (
            Some(r.mode),
            Some(r.uid),
            Some(r.gid),
            r.mtime_sec,
            r.mtime_nsec,
        );
        let have = tree.lstat("").map_err(io("reading", ""))?;
        apply_meta(tree, "", &e, have.as_ref(), &mut stats)?;
    }
    report(&stats);
    Ok(stats)
}

fn report(stats: &CommitStats) {
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
    if stats.records_unsupported > 0 {
        warn!(
            count = stats.records_unsupported,
            xattr = restored::XATTR,
            "could not record what was restored (no user extended attributes here, or not permitted); those files are re-hashed on the next restore"
        );
    }
}

/// Writes the restore record of `rel` (which holds `e`'s content) unless `have`
/// already is that record. Not being able to keep records is counted, not failed.
fn record(
    tree: &Tree,
    rel: &str,
    e: &Entry,
    have: Option<&Record>,
    stats: &mut CommitStats,
) -> Result<(), SyncError> {
    let Some(want) = Record::for_entry(e) else {
        return Ok(());
    };
    if have == Some(&want) {
        return Ok(());
    }
    match tree.set_xattr(rel, restored::XATTR, &want.encode()) {
        Ok(()) => Ok(()),
        Err(err) if restored::is_unsupported(&err) => {
            stats.records_unsupported += 1;
            Ok(())
        }
        Err(err) => Err(SyncError::io(
            "recording what was restored in",
            tree.display(rel),
            err,
        )),
    }
}

/// Owner, then mode (chown may clear setuid/setgid bits), then times; only what
/// differs from `have` (everything when `have` is unknown). Never follows a symlink.
fn apply_meta(
    tree: &Tree,
    rel: &str,
    e: &Entry,
    have: Option<&LocalMeta>,
    stats: &mut CommitStats,
) -> Result<(), SyncError> {
    let io = |action: &'static str| {
        let p = tree.display(rel);
        move |err| SyncError::io(action, p, err)
    };
    let uid = e.uid.filter(|u| have.is_none_or(|h| h.uid != *u));
    let gid = e.gid.filter(|g| have.is_none_or(|h| h.gid != *g));
    if uid.is_some() || gid.is_some() {
        match tree.set_owner(rel, uid, gid) {
            Err(err) if is_not_permitted(&err) => stats.chown_denied += 1,
            r => r.map_err(io("changing owner of"))?,
        }
    }
    if e.kind != EntryKind::Symlink
        && let Some(mode) = e.mode
    {
        let after = tree.lstat(rel).map_err(io("reading"))?;
        if after.is_none_or(|a| a.mode != mode) {
            let r = tree.set_mode(rel, mode);
            permitted_or_counted(r, &tree.display(rel), stats).map_err(io("changing mode of"))?;
        }
    }
    if have.is_none_or(|h| (h.mtime_sec, h.mtime_nsec) != (e.mtime_sec, e.mtime_nsec)) {
        let r = tree.set_times(rel, e.mtime_sec, e.mtime_nsec);
        permitted_or_counted(r, &tree.display(rel), stats).map_err(io("setting times of"))?;
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
    fn plan_trusts_only_what_a_restore_record_vouches_for() {
        let mut rewritten = file("rewritten", 3, (5, 7));
        rewritten.sha256 = Some("b".repeat(64));
        let manifest = [
            file("missing", 1, (5, 0)),
            rewritten,
            file("same", 3, (5, 7)),
            file("sized", 4, (5, 7)),
            file("touched", 3, (5, 7)),
            file("unrecorded", 3, (5, 7)),
            file("was-dir", 1, (5, 0)),
            file("was-link", 1, (5, 0)),
            Entry::new("z-dir", EntryKind::Dir),
        ];
        let here = [
            local("extra", FileKind::File, 1, (1, 0)),
            local("extra-dir", FileKind::Dir, 0, (1, 0)),
            local("rewritten", FileKind::File, 3, (5, 7)),
            local("same", FileKind::File, 3, (5, 7)),
            local("sized", FileKind::File, 5, (5, 7)),
            local("touched", FileKind::File, 3, (5, 8)),
            local("unrecorded", FileKind::File, 3, (5, 7)),
            local("was-dir", FileKind::Dir, 0, (5, 0)),
            local("was-link", FileKind::Symlink, 1, (5, 0)),
            local("z-dir", FileKind::Dir, 0, (5, 0)),
        ];
        // What an earlier restore recorded: content "a…" at size 3, mtime (5, 7).
        let old = Record::for_entry(&file("x", 3, (5, 7))).unwrap();
        let records: HashMap<String, Record> = ["rewritten", "same", "touched"]
            .into_iter()
            .map(|p| (p.to_string(), old.clone()))
            .collect();
        let p = plan(&manifest, &here, &records, false);
        // "rewritten" keeps size and mtime but the manifest wants other content.
        assert_eq!(p.downloads, vec![0, 1, 3, 6, 7]);
        // Touched since the record, or never recorded (no xattrs): hash to decide.
        assert_eq!(p.hash_checks, vec![4, 5]);
        assert_eq!(
            p.deletes,
            vec!["extra".to_string(), "extra-dir".to_string()]
        );
        let with_checksum = plan(&manifest, &here, &records, true);
        assert_eq!(with_checksum.hash_checks, vec![2, 4, 5]);
        assert_eq!(with_checksum.downloads, vec![0, 1, 3, 6, 7]);
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
