//! What becomes of a source path whose file would not hold still (or vanished)
//! during a run (see `changing`): it keeps its last committed entry when the
//! remote object still holds exactly that, or is left out of the new manifest;
//! a vanished file is left out and its object deleted after the commit. Hardlinks
//! to such a path become files of their own, in its batch of work or a later one.

use std::collections::HashSet;

use crate::manifest::{Entry, EntryKind};
use crate::source::diff::{Action, Row, classify};
use crate::source::plan::Work;

/// Paths given up on so far in this run.
#[derive(Debug, Default)]
pub struct Unsettled {
    /// Files that kept changing (the summary's `filesSkippedChanging`).
    pub changing: u64,
    /// Objects of vanished files, to delete after the commit.
    pub deletes: Vec<String>,
}

/// Whether the previous manifest's entry still describes the remote object, so the
/// new manifest may list it unchanged.
fn keepable(w: &Work) -> Option<Entry> {
    let p = w.prev.as_deref()?;
    if p.kind != EntryKind::File || p.sha256.is_none() {
        return None;
    }
    let row = Row {
        a: Some(p),
        b: Some(p),
        c: w.remote.as_deref(),
    };
    match classify(row) {
        Some(Action::Keep { etag, .. }) => Some(Entry { etag, ..p.clone() }),
        _ => None,
    }
}

impl Unsettled {
    /// Settles the items of one batch of work at `seen` (index, vanished?); returns
    /// how many left the new manifest. Hardlinks to a settled path become files of
    /// their own; with `rehash` they lose their digests, to be hashed as files.
    /// Settled first paths of multiply-linked inodes are added to `targets`, for
    /// the hardlinks of later batches (see [`convert_links`]).
    pub fn settle(
        &mut self,
        work: &mut Vec<Work>,
        seen: Vec<(usize, bool)>,
        rehash: bool,
        targets: &mut HashSet<String>,
    ) -> usize {
        if seen.is_empty() {
            return 0;
        }
        let mut gone = HashSet::new();
        let mut affected = HashSet::new();
        for (i, vanished) in seen {
            let w = &mut work[i];
            affected.insert(w.entry.path.clone());
            if w.linked {
                targets.insert(w.entry.path.clone());
            }
            let kept = if vanished { None } else { keepable(w) };
            if !vanished {
                self.changing += 1;
            }
            match kept {
                Some(e) => {
                    w.entry = e;
                    w.transfer = false;
                }
                None => {
                    if vanished && w.remote.is_some() {
                        self.deletes.push(w.entry.path.clone());
                    }
                    gone.insert(w.entry.path.clone());
                }
            }
        }
        for w in work.iter_mut() {
            let e = &mut w.entry;
            if e.kind == EntryKind::Hardlink
                && !affected.contains(&e.path)
                && e.target.as_ref().is_some_and(|t| affected.contains(t))
            {
                to_file(e, rehash);
            }
        }
        let before = work.len();
        work.retain(|w| !gone.contains(&w.entry.path));
        before - work.len()
    }
}

/// Hardlinks of `work` whose first path was settled in an earlier batch (in
/// `targets`) become files of their own (without digests with `rehash`).
pub fn convert_links(work: &mut [Work], targets: &HashSet<String>, rehash: bool) {
    if targets.is_empty() {
        return;
    }
    for w in work {
        let e = &mut w.entry;
        if e.kind == EntryKind::Hardlink && e.target.as_ref().is_some_and(|t| targets.contains(t)) {
            to_file(e, rehash);
        }
    }
}

fn to_file(e: &mut Entry, rehash: bool) {
    e.kind = EntryKind::File;
    e.target = None;
    if rehash {
        e.sha256 = None;
        e.md5 = None;
    }
}
