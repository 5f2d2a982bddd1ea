//! The source's plan as a streaming merge of three sorted streams: the local walk,
//! the previous manifest and the remote listing (all in path byte order). One pass
//! ([`merge_pass`]) decides every path it can on the spot — an unchanged file is
//! written straight to the new manifest's sink and forgotten — and keeps only the
//! work: entries that must be hashed or transferred, and objects to delete. Memory
//! is independent of the number of unchanged files. [`merge_into`] hands the work
//! and the deletes to a [`MergeOut`] as they are found (the source spills them to
//! scratch files); [`merge_pass`] collects them in a [`Pass`]. [`finish`] completes
//! the work items once their files are hashed.

use std::borrow::Borrow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::fs::local::FileKind;
use crate::fs::paths::path_cmp;
use crate::fs::scan::ScanEntry;
use crate::manifest::{Entry, EntryKind};
use crate::source::diff::{
    Action, Keyed, RemoteObject, Row, Transfer, classify, copy_candidate, merge3,
};
use crate::source::digest::Sha256;

/// A path the merge could not settle: it needs hashing, or a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// The new manifest entry (no digests yet when it must be hashed).
    pub entry: Entry,
    /// The previous manifest's entry and the remote object at this path, for
    /// [`classify`] (boxed: most work items have neither, e.g. in a first sync).
    pub prev: Option<Box<Entry>>,
    pub remote: Option<Box<RemoteObject>>,
    /// Whether the object must be written (set by the merge or by [`finish`]).
    pub transfer: bool,
    /// The first path of a multiply-linked inode (later paths are hardlinks to it).
    #[serde(default)]
    pub linked: bool,
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
    /// Work items, in path order (filled by [`merge_pass`] only).
    pub work: Vec<Work>,
    /// Remote objects no path needs any more, in path order ([`merge_pass`] only).
    pub deletes: Vec<String>,
    /// Work items and deletes handed out (kept after collecting too).
    pub work_items: usize,
    pub delete_items: usize,
    /// Files of the work still to hash, and their bytes.
    pub to_hash: usize,
    pub to_hash_bytes: u64,
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

/// Where a merge pass puts what it finds, in path order.
pub trait MergeOut {
    /// A complete, unchanged entry of the new manifest.
    fn settled(&mut self, e: &Entry) -> Result<(), SyncError>;
    /// A usable server-side copy source (see [`copy_candidate`]); `work` when its
    /// path is also a work item (it may be overwritten in this run).
    fn candidate(&mut self, sha: &str, path: &str, work: bool) -> Result<(), SyncError>;
    /// A path to hash or transfer.
    fn work(&mut self, w: Work) -> Result<(), SyncError>;
    /// A remote object no path needs any more.
    fn delete(&mut self, path: String) -> Result<(), SyncError>;
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
    struct Collect<'a> {
        sink: &'a mut dyn FnMut(&Entry) -> Result<(), SyncError>,
        candidates: &'a mut dyn FnMut(&str, &str) -> Result<(), SyncError>,
        work: Vec<Work>,
        deletes: Vec<String>,
    }
    impl MergeOut for Collect<'_> {
        fn settled(&mut self, e: &Entry) -> Result<(), SyncError> {
            (self.sink)(e)
        }
        fn candidate(&mut self, sha: &str, path: &str, _work: bool) -> Result<(), SyncError> {
            (self.candidates)(sha, path)
        }
        fn work(&mut self, w: Work) -> Result<(), SyncError> {
            self.work.push(w);
            Ok(())
        }
        fn delete(&mut self, path: String) -> Result<(), SyncError> {
            self.deletes.push(path);
            Ok(())
        }
    }
    let mut out = Collect {
        sink,
        candidates,
        work: Vec::new(),
        deletes: Vec::new(),
    };
    let mut pass = merge_into(local, prev, remote, opts, &mut out)?;
    pass.work = out.work;
    pass.deletes = out.deletes;
    Ok(pass)
}

/// Merges the three sorted streams, handing everything it finds to `out`; the
/// returned [`Pass`] holds the counts only.
pub fn merge_into<L, P, R>(
    local: L,
    prev: P,
    remote: R,
    opts: MergeOptions,
    out: &mut dyn MergeOut,
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
        let local = row.a.as_ref().map(Borrow::borrow);
        let work = match local {
            Some(s) => decide(s, prev, remote, opts, &mut pass, &mut first_links, out)?,
            None => {
                if let Some(r) = remote {
                    pass.delete_items += 1;
                    out.delete(r.path.clone())?;
                }
                false
            }
        };
        if let (Some(p), Some(r)) = (prev, remote)
            && let Some(sha) = copy_candidate(p, r)
        {
            out.candidate(sha, &p.path, work)?;
        }
    }
    Ok(pass)
}

/// Decides one local path; returns whether it became a work item.
fn decide(
    s: &ScanEntry,
    prev: Option<&Entry>,
    remote: Option<&RemoteObject>,
    opts: MergeOptions,
    pass: &mut Pass,
    first_links: &mut HashMap<String, Option<(String, String)>>,
    out: &mut dyn MergeOut,
) -> Result<bool, SyncError> {
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
    let linked = e.kind == EntryKind::File && s.meta.nlink > 1;
    if linked {
        first_links.insert(e.path.clone(), e.sha256.clone().zip(e.md5.clone()));
    }
    if e.kind == EntryKind::Hardlink
        && let Some(Some((sha, md5))) = e.target.as_ref().and_then(|t| first_links.get(t))
    {
        e.sha256 = Some(sha.clone());
        e.md5 = Some(md5.clone());
    }
    forget_racy_stat(&mut e, opts.scan_started);
    let work = |e: Entry, transfer: bool| Work {
        entry: e,
        prev: prev.cloned().map(Box::new),
        remote: remote.cloned().map(Box::new),
        transfer,
        linked,
    };
    if e.kind.has_object() && e.sha256.is_none() {
        pass.work_items += 1;
        if e.kind == EntryKind::File {
            pass.to_hash += 1;
            pass.to_hash_bytes += e.size;
        }
        out.work(work(e, false))?;
        return Ok(true);
    }
    match classify(Row {
        a: Some(&e),
        b: prev,
        c: remote,
    }) {
        Some(Action::Transfer { .. }) => {
            pass.work_items += 1;
            out.work(work(e, true))?;
            return Ok(true);
        }
        Some(Action::Keep { etag, .. }) => e.etag = etag,
        Some(Action::Delete { path }) => {
            pass.delete_items += 1;
            out.delete(path)?;
        }
        None => {}
    }
    pass.same_as_prev += usize::from(prev == Some(&e));
    out.settled(&e)?;
    pass.settled += 1;
    Ok(false)
}

/// Digests of the first path of a multiply-linked inode, for its hardlinks in a
/// later batch of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDigests {
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub size: u64,
}

/// First paths of multiply-linked inodes hashed in earlier batches.
pub type Links = HashMap<String, LinkDigests>;

/// Completes the work items once every file among them is hashed: hardlinks take
/// their first path's digests, then each item is classified. Returns the transfers
/// in path order.
pub fn finish(work: &mut [Work]) -> Result<Vec<Transfer>, SyncError> {
    finish_with(work, &Links::new())
}

/// [`finish`] for one batch of the work: a hardlink whose first path is not in
/// `work` takes the digests recorded in `links`.
pub fn finish_with(work: &mut [Work], links: &Links) -> Result<Vec<Transfer>, SyncError> {
    for i in 0..work.len() {
        let e = &work[i].entry;
        if e.kind != EntryKind::Hardlink || e.sha256.is_some() {
            continue;
        }
        let target = e.target.clone().unwrap_or_default();
        let found = match work.binary_search_by(|w| path_cmp(&w.entry.path, &target)) {
            Ok(j) => {
                let f = &work[j].entry;
                Some((f.sha256.clone(), f.md5.clone(), f.size))
            }
            Err(_) => links
                .get(&target)
                .map(|l| (l.sha256.clone(), l.md5.clone(), l.size)),
        };
        let Some((sha, md5, size)) = found else {
            return Err(SyncError::Internal(format!(
                "hardlink {} lost its first path {target}",
                e.path
            )));
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
