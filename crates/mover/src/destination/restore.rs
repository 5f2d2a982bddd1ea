//! Destination, local side: the pure plan (which manifest files to download, which
//! to re-hash, which local paths to delete), made by merge-joining the manifest
//! (read back from its scratch file, see `entries`) with a sorted walk of the local
//! tree, and the blocking commit that applies a fully downloaded and verified pass
//! to the tree in one more pass over the manifest: deletes, then in path order
//! directories, files renamed in from staging, hardlinks, symlinks and the metadata
//! and restore records of what stayed (see `restored`), then directory metadata
//! (deepest first). Every path is reached through [`Tree`], one real directory at a
//! time, so nothing outside the root is ever written, removed or changed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::destination::entries::{Bits, Entries};
use crate::destination::restored::{self, Record, Verdict};
use crate::destination::tree::Tree;
use crate::error::SyncError;
use crate::fs::local::{FileKind, LocalMeta};
use crate::fs::paths::path_cmp;
use crate::fs::scan::{STAGING_DIR, ScanEntry};
use crate::manifest::{Entry, EntryKind};
use crate::source::diff::Keyed;

impl Keyed for ScanEntry {
    fn key(&self) -> &str {
        &self.path
    }
}

/// What to do with the tree, as bits by index into the manifest entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files whose content must be downloaded.
    pub downloads: Bits,
    /// Files of the right size whose content no record vouches for (or `--checksum`):
    /// hash locally to decide.
    pub hash_checks: Bits,
    /// Files whose restore record already names the manifest's content (the commit
    /// leaves it alone unless the file is replaced).
    pub record_current: Bits,
    /// Bytes of the downloads.
    pub download_bytes: u64,
    /// Paths removed by the deletes (each delete counts the paths below it).
    pub deleted_paths: u64,
    /// Local paths scanned, and whether any was a regular file.
    pub local_entries: u64,
    pub any_local_file: bool,
}

impl Plan {
    /// Marks entry `i` (of `size` bytes) for download.
    pub fn download(&mut self, i: usize, size: u64) {
        if !self.downloads.get(i) {
            self.downloads.set(i);
            self.download_bytes += size;
        }
    }
}

/// A local path the manifest does not have, with the number of local paths below it
/// that go with it (none of them is a delete of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    pub path: String,
    pub below: u64,
}

/// Merge-joins the manifest (with indexes) and a local walk, both in path byte
/// order: `f` gets each path with what each side has.
pub fn join<M, L, F>(manifest: M, local: L, mut f: F) -> Result<(), SyncError>
where
    M: IntoIterator<Item = Result<(usize, Entry), SyncError>>,
    L: IntoIterator<Item = Result<ScanEntry, SyncError>>,
    F: FnMut(Option<(usize, Entry)>, Option<ScanEntry>) -> Result<(), SyncError>,
{
    let (mut manifest, mut local) = (manifest.into_iter(), local.into_iter());
    let mut m = manifest.next().transpose()?;
    let mut l = local.next().transpose()?;
    loop {
        let order = match (&m, &l) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((_, a)), Some(b)) => path_cmp(&a.path, &b.path),
        };
        let (take_m, take_l) = match order {
            std::cmp::Ordering::Less => (true, false),
            std::cmp::Ordering::Equal => (true, true),
            std::cmp::Ordering::Greater => (false, true),
        };
        let a = if take_m {
            std::mem::replace(&mut m, manifest.next().transpose()?)
        } else {
            None
        };
        let b = if take_l {
            std::mem::replace(&mut l, local.next().transpose()?)
        } else {
            None
        };
        f(a, b)?;
    }
}

/// Pure: compares the manifest with the local walk. A local regular file of the
/// manifest's size is trusted without re-hashing only when its restore record (read
/// by `record`, only for such files) vouches for the manifest's content at the
/// file's current size and mtime, and is downloaded when the record says it holds
/// other content; anything else is re-hashed. `checksum` re-hashes every candidate.
/// Local paths the manifest lacks go to `delete`, a directory with everything
/// below it as one [`Delete`].
pub fn plan<M, L>(
    manifest: M,
    len: usize,
    local: L,
    mut record: impl FnMut(&str) -> Option<Record>,
    checksum: bool,
    mut delete: impl FnMut(Delete) -> Result<(), SyncError>,
) -> Result<Plan, SyncError>
where
    M: IntoIterator<Item = Result<(usize, Entry), SyncError>>,
    L: IntoIterator<Item = Result<ScanEntry, SyncError>>,
{
    let mut p = Plan {
        downloads: Bits::new(len),
        hash_checks: Bits::new(len),
        record_current: Bits::new(len),
        ..Plan::default()
    };
    // Deletes still open: each a byte prefix of the next (see `TreeCheck`).
    let mut open: Vec<Delete> = Vec::new();
    join(manifest, local, |m, l| {
        if let Some(l) = &l {
            p.local_entries += 1;
            p.any_local_file |= l.meta.kind == FileKind::File;
        }
        match (m, l) {
            (Some((i, m)), l) => {
                if m.kind != EntryKind::File {
                    return Ok(());
                }
                match l {
                    Some(l) if l.meta.kind == FileKind::File && l.meta.size == m.size => {
                        let have = record(&m.path);
                        if have.is_some() && have == Record::for_entry(&m) {
                            p.record_current.set(i);
                        }
                        let verdict = have.map_or(Verdict::Unknown, |r| r.verdict(&l.meta, &m));
                        match verdict {
                            Verdict::Same if !checksum => {}
                            Verdict::Different => p.download(i, m.size),
                            _ => p.hash_checks.set(i),
                        }
                    }
                    _ => p.download(i, m.size),
                }
                Ok(())
            }
            (None, Some(l)) => {
                while open.last().is_some_and(|d| !l.path.starts_with(&d.path)) {
                    delete(open.pop().expect("checked"))?;
                }
                p.deleted_paths += 1;
                if let Some(d) = open
                    .iter_mut()
                    .rev()
                    .find(|d| l.path.as_bytes().get(d.path.len()) == Some(&b'/'))
                {
                    d.below += 1;
                } else {
                    open.push(Delete {
                        path: l.path,
                        below: 0,
                    });
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    })?;
    while let Some(d) = open.pop() {
        delete(d)?;
    }
    Ok(p)
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
    pub entries: &'a Entries,
    /// Downloads verified in staging, as [`staged_name`] of their index.
    pub staged: &'a Bits,
    /// See [`Plan::record_current`].
    pub record_current: &'a Bits,
    /// Local names no manifest can hold (not UTF-8, control characters), relative
    /// to the root.
    pub foreign: &'a [PathBuf],
}

/// Applies one verified pass to the tree (blocking): `foreign` names and `deletes`
/// first, then the manifest in path order (see the module doc). The staging
/// directory must be `<root>/.scribe-staging`.
pub fn commit(
    tree: &Tree,
    c: &Commit<'_>,
    deletes: impl IntoIterator<Item = Result<Delete, SyncError>>,
) -> Result<CommitStats, SyncError> {
    let mut stats = CommitStats::default();
    let io = |action: &'static str, rel: &str| {
        let p = tree.display(rel);
        move |e| SyncError::io(action, p, e)
    };

    for rel in c.foreign {
        if tree
            .remove(rel.as_os_str())
            .map_err(|e| SyncError::io("deleting", tree.display(&rel.to_string_lossy()), e))?
        {
            stats.deleted += 1;
        }
    }
    // Deletes never overlap (a directory carries what is below it).
    for d in deletes {
        let d = d?;
        if tree
            .remove(OsStr::new(&d.path))
            .map_err(io("deleting", &d.path))?
        {
            stats.deleted += 1 + d.below;
        }
    }

    // Directory metadata waits until everything inside is in place.
    let mut dirs: Vec<Entry> = Vec::new();
    let mut n = 0usize;
    for r in c.entries.iter()? {
        let (i, e) = r?;
        match e.kind {
            EntryKind::Dir => {
                tree.ensure_dir(&e.path)
                    .map_err(io("creating directory", &e.path))?;
                if e.mode.is_some() {
                    dirs.push(e);
                }
            }
            EntryKind::File if c.staged.get(i) => {
                let temp = format!("{STAGING_DIR}/{}", staged_name(i));
                record(tree, &temp, &e, false, &mut stats)?;
                apply_meta(tree, &temp, &e, None, &mut stats)?;
                tree.rename_into(&temp, &e.path)
                    .map_err(io("renaming into place", &e.path))?;
            }
            EntryKind::File => {
                let have = tree.lstat(&e.path).map_err(io("reading", &e.path))?;
                record(tree, &e.path, &e, c.record_current.get(i), &mut stats)?;
                apply_meta(tree, &e.path, &e, have.as_ref(), &mut stats)?;
            }
            EntryKind::Hardlink => {
                // The first path sorts earlier: it is in place already.
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
                if have
                    .is_some_and(|h| h.kind == FileKind::File && h.ino == f.ino && h.dev == f.dev)
                {
                    continue;
                }
                n += 1;
                let tmp = format!("{STAGING_DIR}/link-{n}");
                tree.hard_link(first, &tmp, &e.path)
                    .map_err(io("linking", &e.path))?;
            }
            EntryKind::Symlink => {
                let target = e.target.as_deref().unwrap_or_default();
                if tree.read_link(&e.path).as_deref() != Some(Path::new(target)) {
                    n += 1;
                    let tmp = format!("{STAGING_DIR}/link-{n}");
                    tree.symlink(target, &tmp, &e.path)
                        .map_err(io("creating symlink", &e.path))?;
                }
                let have = tree.lstat(&e.path).map_err(io("reading", &e.path))?;
                apply_meta(tree, &e.path, &e, have.as_ref(), &mut stats)?;
            }
        }
    }

    // Staging lives in the root: drop it before the directory times are set.
    tree.remove(OsStr::new(STAGING_DIR))
        .map_err(io("removing staging", STAGING_DIR))?;
    for e in dirs.iter().rev() {
        let have = tree.lstat(&e.path).map_err(io("reading", &e.path))?;
        apply_meta(tree, &e.path, e, have.as_ref(), &mut stats)?;
    }
    if let Some(r) = &c.entries.root {
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

/// Writes the restore record of `rel` (which holds `e`'s content) unless it is
/// `current` already. Not being able to keep records is counted, not failed.
fn record(
    tree: &Tree,
    rel: &str,
    e: &Entry,
    current: bool,
    stats: &mut CommitStats,
) -> Result<(), SyncError> {
    let Some(want) = Record::for_entry(e) else {
        return Ok(());
    };
    if current {
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
    use std::collections::HashMap;

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
        let (p, deletes) = run(&manifest, &here, &records, false);
        // "rewritten" keeps size and mtime but the manifest wants other content.
        assert_eq!(ones(&p.downloads), vec![0, 1, 3, 6, 7]);
        // Touched since the record, or never recorded (no xattrs): hash to decide.
        assert_eq!(ones(&p.hash_checks), vec![4, 5]);
        assert_eq!(
            ones(&p.record_current),
            vec![2, 4],
            "the record names this content"
        );
        // Deletes never overlap, so they come in no particular order.
        let mut names: Vec<&str> = deletes.iter().map(|d| d.path.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["extra", "extra-dir"]);
        assert_eq!((p.deleted_paths, p.local_entries), (2, 10));
        assert!(p.any_local_file);
        let (with_checksum, _) = run(&manifest, &here, &records, true);
        assert_eq!(ones(&with_checksum.hash_checks), vec![2, 4, 5]);
        assert_eq!(ones(&with_checksum.downloads), vec![0, 1, 3, 6, 7]);
    }

    fn ones(b: &Bits) -> Vec<usize> {
        b.ones().collect()
    }

    fn run(
        manifest: &[Entry],
        here: &[ScanEntry],
        records: &HashMap<String, Record>,
        checksum: bool,
    ) -> (Plan, Vec<Delete>) {
        let mut deletes = Vec::new();
        let p = plan(
            manifest.iter().cloned().enumerate().map(Ok),
            manifest.len(),
            here.iter().cloned().map(Ok),
            |path| records.get(path).cloned(),
            checksum,
            |d| {
                deletes.push(d);
                Ok(())
            },
        )
        .unwrap();
        (p, deletes)
    }

    #[test]
    fn a_deleted_directory_carries_everything_below_it_even_across_byte_order() {
        // Byte order puts "x-1" between "x" and "x/a".
        let here = [
            local("x", FileKind::Dir, 0, (1, 0)),
            local("x-1", FileKind::File, 1, (1, 0)),
            local("x/a", FileKind::File, 1, (1, 0)),
            local("x/b", FileKind::Dir, 0, (1, 0)),
            local("x/b/c", FileKind::File, 1, (1, 0)),
            local("y", FileKind::File, 1, (1, 0)),
        ];
        let manifest = [file("y", 1, (1, 0))];
        let (p, deletes) = run(&manifest, &here, &HashMap::new(), false);
        let got: Vec<(&str, u64)> = deletes.iter().map(|d| (d.path.as_str(), d.below)).collect();
        assert_eq!(got, [("x-1", 0), ("x", 3)]);
        assert_eq!(p.deleted_paths, 5);
        assert_eq!(ones(&p.hash_checks), vec![0]);
    }

    #[test]
    fn join_pairs_equal_paths_and_passes_errors_on() {
        let manifest = [file("a", 1, (1, 0)), file("c", 1, (1, 0))];
        let here = [
            local("b", FileKind::File, 1, (1, 0)),
            local("c", FileKind::File, 1, (1, 0)),
        ];
        let mut rows = Vec::new();
        join(
            manifest.iter().cloned().enumerate().map(Ok),
            here.iter().cloned().map(Ok),
            |m, l| {
                rows.push((m.map(|(i, _)| i), l.map(|l| l.path)));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                (Some(0), None),
                (None, Some("b".into())),
                (Some(1), Some("c".into()))
            ]
        );
        let failing = [Err(SyncError::Internal("cut".into()))];
        let r = join(failing, here.iter().cloned().map(Ok), |_, _| Ok(()));
        assert!(matches!(r, Err(SyncError::Internal(m)) if m == "cut"));
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
