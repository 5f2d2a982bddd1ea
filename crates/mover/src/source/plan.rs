//! The source's plan as a streaming merge of three sorted streams: the local walk,
//! the previous manifest and the remote listing (all in path byte order). One pass
//! ([`merge_pass`]) decides every path it can on the spot — an unchanged file is
//! written straight to the new manifest's sink and forgotten — and keeps only the
//! work: entries that must be hashed or transferred, and objects to delete. Memory
//! is independent of the number of unchanged files. [`finish`] completes the work
//! items once their files are hashed.

use std::borrow::Borrow;
use std::collections::HashMap;

use crate::error::SyncError;
use crate::fs::local::FileKind;
use crate::fs::scan::ScanEntry;
use crate::manifest::{Entry, EntryKind};
use crate::source::diff::{
    Action, Keyed, RemoteObject, Row, Transfer, classify, copy_candidate, merge3,
};
use crate::source::digest::Sha256;

/// A path the merge could not settle: it needs hashing, or a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// The new manifest entry (no digests yet when it must be hashed).
    pub entry: Entry,
    /// The previous manifest's entry and the remote object at this path, for
    /// [`classify`] (boxed: most work items have neither, e.g. in a first sync).
    pub prev: Option<Box<Entry>>,
    pub remote: Option<Box<RemoteObject>>,
    /// Whether the object must be written (set by the merge or by [`finish`]).
    pub transfer: bool,
}

impl Work {
    /// Still needs its file hashed.
    pub fn needs_hash(&self) -> bool {
        self.entry.kind == EntryKind::File && self.entry.sha256.is_none()
    }
}

/// What one merge pass found.
#[derive(Debug, Default)]
pub struct Pass {
    /// Work items, in path order.
    pub work: Vec<Work>,
    /// Remote objects no path needs any more, in path order.
    pub deletes: Vec<String>,
    /// Entries of the new manifest (sink lines plus work items).
    pub entries: usize,
    /// Entries handed to the sink (complete, unchanged).
    pub settled: usize,
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// Files whose digests came from the previous manifest.
    pub reused: usize,
    pub prev_entries: usize,
    pub remote_objects: usize,
    /// Settled entries identical to the previous manifest's entry at their path.
    pub same_as_prev: usize,
}

/// Knobs of the merge.
#[derive(Debug, Clone, Copy)]
pub struct MergeOptions {
    /// `--checksum`: never reuse a digest.
    pub checksum: bool,
    /// Unix second the walk started (see [`forget_racy_stat`]).
    pub scan_started: i64,
}

/// Merges the three sorted streams; every settled entry goes to `sink` in path order.
pub fn merge_pass<L, P, R>(
    local: L,
    prev: P,
    remote: R,
    opts: MergeOptions,
    sink: &mut dyn FnMut(&Entry) -> Result<(), SyncError>,
) -> Result<Pass, SyncError>
where
    L: Iterator,
    L::Item: Borrow<ScanEntry> + Keyed,
    P: Iterator,
    P::Item: Borrow<Entry> + Keyed,
    R: Iterator,
    R::Item: Borrow<RemoteObject> + Keyed,
{
    merge_pass_with(local, prev, remote, opts, sink, &mut |_, _| Ok(()))
}

/// [`merge_pass`], also handing every usable server-side copy source (see
/// [`copy_candidate`]: sha256 and path, in path order) to `candidates`, so the
/// previous manifest is read only once per run.
pub fn merge_pass_with<L, P, R>(
    local: L,
    prev: P,
    remote: R,
    opts: MergeOptions,
    sink: &mut dyn FnMut(&Entry) -> Result<(), SyncError>,
    candidates: &mut dyn FnMut(&str, &str) -> Result<(), SyncError>,
) -> Result<Pass, SyncError>
where
    L: Iterator,
    L::Item: Borrow<ScanEntry> + Keyed,
    P: Iterator,
    P::Item: Borrow<Entry> + Keyed,
    R: Iterator,
    R::Item: Borrow<RemoteObject> + Keyed,
{
    let mut pass = Pass::default();
    // First path of each multiply-linked inode → its digests, once known.
    let mut first_links: HashMap<String, Option<(String, String)>> = HashMap::new();
    for row in merge3(local, prev, remote) {
        let prev = row.b.as_ref().map(Borrow::borrow);
        let remote = row.c.as_ref().map(Borrow::borrow);
        pass.prev_entries += usize::from(prev.is_some());
        pass.remote_objects += usize::from(remote.is_some());
        if let (Some(p), Some(r)) = (prev, remote)
            && let Some(sha) = copy_candidate(p, r)
        {
            candidates(sha, &p.path)?;
        }
        let Some(s) = row.a.as_ref().map(Borrow::borrow) else {
            if let Some(r) = remote {
                pass.deletes.push(r.path.clone());
            }
            continue;
        };
        let mut e = to_entry(s);
        pass.entries += 1;
        if e.kind.has_object() {
            pass.files_checked += 1;
            pass.bytes_checked += e.size;
        }
        if !opts.checksum && prev.is_some_and(|p| reusable(&e, p)) {
            let p = prev.expect("checked");
            e.sha256.clone_from(&p.sha256);
            e.md5.clone_from(&p.md5);
            pass.reused += 1;
        }
        if e.kind == EntryKind::File && s.meta.nlink > 1 {
            first_links.insert(e.path.clone(), e.sha256.clone().zip(e.md5.clone()));
        }
        if e.kind == EntryKind::Hardlink
            && let Some(Some((sha, md5))) = e.target.as_ref().and_then(|t| first_links.get(t))
        {
            e.sha256 = Some(sha.clone());
            e.md5 = Some(md5.clone());
        }
        forget_racy_stat(&mut e, opts.scan_started);
        if e.kind.has_object() && e.sha256.is_none() {
            pass.work.push(Work {
                entry: e,
                prev: prev.cloned().map(Box::new),
                remote: remote.cloned().map(Box::new),
                transfer: false,
            });
            continue;
        }
        match classify(Row {
            a: Some(&e),
            b: prev,
            c: remote,
        }) {
            Some(Action::Transfer { .. }) => {
                pass.work.push(Work {
                    entry: e,
                    prev: prev.cloned().map(Box::new),
                    remote: remote.cloned().map(Box::new),
                    transfer: true,
                });
                continue;
            }
            Some(Action::Keep { etag, .. }) => e.etag = etag,
            Some(Action::Delete { path }) => pass.deletes.push(path),
            None => {}
        }
        pass.same_as_prev += usize::from(prev == Some(&e));
        sink(&e)?;
        pass.settled += 1;
    }
    Ok(pass)
}

/// Completes the work items once every file among them is hashed: hardlinks take
/// their first path's digests, then each item is classified. Returns the transfers
/// in path order.
pub fn finish(work: &mut [Work]) -> Result<Vec<Transfer>, SyncError> {
    for i in 0..work.len() {
        let e = &work[i].entry;
        if e.kind != EntryKind::Hardlink || e.sha256.is_some() {
            continue;
        }
        let target = e.target.clone().unwrap_or_default();
        let Ok(j) = work.binary_search_by(|w| w.entry.path.as_bytes().cmp(target.as_bytes()))
        else {
            return Err(SyncError::Internal(format!(
                "hardlink {} lost its first path {target}",
                e.path
            )));
        };
        let (sha, md5, size) = {
            let f = &work[j].entry;
            (f.sha256.clone(), f.md5.clone(), f.size)
        };
        let e = &mut work[i].entry;
        (e.sha256, e.md5, e.size) = (sha, md5, size);
    }
    let mut transfers = Vec::new();
    for w in work.iter_mut() {
        // Local digests are hex by construction, manifest ones validated when read.
        let Some(sha256) = w.entry.sha256.as_deref().and_then(Sha256::parse) else {
            return Err(SyncError::Internal(format!(
                "{} was never hashed",
                w.entry.path
            )));
        };
        match classify(Row {
            a: Some(&w.entry),
            b: w.prev.as_deref(),
            c: w.remote.as_deref(),
        }) {
            Some(Action::Keep { etag, .. }) if !w.transfer => w.entry.etag = etag,
            _ => {
                w.transfer = true;
                transfers.push(Transfer {
                    path: w.entry.path.clone(),
                    sha256,
                    size: w.entry.size,
                });
            }
        }
    }
    Ok(transfers)
}

/// Whether a previous entry's digests still describe the local file: size, mtime,
/// ctime and inode unchanged.
fn reusable(l: &Entry, p: &Entry) -> bool {
    l.kind == EntryKind::File
        && p.kind.has_object()
        && p.sha256.is_some()
        && p.md5.is_some()
        && l.size == p.size
        && (l.mtime_sec, l.mtime_nsec) == (p.mtime_sec, p.mtime_nsec)
        && (l.ctime_sec, l.ctime_nsec) == (p.ctime_sec, p.ctime_nsec)
        && l.ino == p.ino
}

/// A scan entry as a manifest entry (digests still missing).
pub fn to_entry(s: &ScanEntry) -> Entry {
    let kind = match (s.meta.kind, s.hardlink) {
        (FileKind::Dir, _) => EntryKind::Dir,
        (FileKind::Symlink, _) => EntryKind::Symlink,
        (_, true) => EntryKind::Hardlink,
        _ => EntryKind::File,
    };
    let mut e = Entry::new(s.path.clone(), kind);
    e.mode = Some(s.meta.mode);
    e.uid = Some(s.meta.uid);
    e.gid = Some(s.meta.gid);
    e.mtime_sec = s.meta.mtime_sec;
    e.mtime_nsec = s.meta.mtime_nsec;
    e.target.clone_from(&s.target);
    if kind.has_object() {
        e.size = s.meta.size;
        e.ino = Some(s.meta.ino);
        e.ctime_sec = Some(s.meta.ctime_sec);
        e.ctime_nsec = Some(s.meta.ctime_nsec);
    }
    e
}

/// A file changed within the same second as the scan (or later) may change again
/// without its ctime moving past what we record (coarse kernel clocks), so its stat
/// fields are not kept and the next sync re-hashes it (git's "racily clean" rule).
pub fn forget_racy_stat(e: &mut Entry, scan_started_sec: i64) {
    if e.ctime_sec.is_some_and(|c| c >= scan_started_sec - 1) || e.mtime_sec >= scan_started_sec - 1
    {
        e.ino = None;
        e.ctime_sec = None;
        e.ctime_nsec = None;
    }
}

#[cfg(test)]
mod tests;
