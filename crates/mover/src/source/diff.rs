//! The source's decision of what to transfer: pure functions over lists sorted by
//! path bytes. [`merge3`] streams three sorted inputs into rows per path (no lookups,
//! memory independent of the number of unchanged files); [`classify`] turns rows into
//! keep / transfer / delete; [`copy_sources`] and [`plan_transfers`] turn transfers
//! whose content already exists remotely into server-side copies.

use super::digest::Sha256;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::iter::Peekable;

use crate::fs::hash::{etag_md5, normalize_etag};
use crate::fs::paths::path_cmp;
use crate::manifest::Entry;

/// Anything that sits in a sorted list at a path.
pub trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for Entry {
    fn key(&self) -> &str {
        &self.path
    }
}

/// A data object found by listing the remote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteObject {
    pub path: String,
    pub size: u64,
    pub etag: Option<String>,
}

impl Keyed for RemoteObject {
    fn key(&self) -> &str {
        &self.path
    }
}

/// One path and what each input holds there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row<A, B, C> {
    pub a: Option<A>,
    pub b: Option<B>,
    pub c: Option<C>,
}

/// Streaming merge of three sorted, duplicate-free iterators.
pub struct Merge3<IA: Iterator, IB: Iterator, IC: Iterator> {
    a: Peekable<IA>,
    b: Peekable<IB>,
    c: Peekable<IC>,
}

pub fn merge3<IA, IB, IC>(a: IA, b: IB, c: IC) -> Merge3<IA::IntoIter, IB::IntoIter, IC::IntoIter>
where
    IA: IntoIterator,
    IB: IntoIterator,
    IC: IntoIterator,
{
    Merge3 {
        a: a.into_iter().peekable(),
        b: b.into_iter().peekable(),
        c: c.into_iter().peekable(),
    }
}

fn min_key(keys: [Option<&str>; 3]) -> Option<&str> {
    keys.into_iter().flatten().min_by(|x, y| path_cmp(x, y))
}

impl<IA, IB, IC> Iterator for Merge3<IA, IB, IC>
where
    IA: Iterator,
    IB: Iterator,
    IC: Iterator,
    IA::Item: Keyed,
    IB::Item: Keyed,
    IC::Item: Keyed,
{
    type Item = Row<IA::Item, IB::Item, IC::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let k = min_key([
            self.a.peek().map(Keyed::key),
            self.b.peek().map(Keyed::key),
            self.c.peek().map(Keyed::key),
        ])?
        .to_string();
        let at = |x: Option<&str>| x.is_some_and(|x| path_cmp(x, &k) == Ordering::Equal);
        let a = if at(self.a.peek().map(Keyed::key)) {
            self.a.next()
        } else {
            None
        };
        let b = if at(self.b.peek().map(Keyed::key)) {
            self.b.next()
        } else {
            None
        };
        let c = if at(self.c.peek().map(Keyed::key)) {
            self.c.next()
        } else {
            None
        };
        Some(Row { a, b, c })
    }
}

/// What the source must do about one path's data object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The remote object already holds this content; `etag` is the remote's.
    Keep { path: String, etag: Option<String> },
    /// The object must be written (uploaded or server-side copied).
    Transfer {
        path: String,
        sha256: String,
        size: u64,
    },
    /// A remote object no path needs any more (deleted only after the commit).
    Delete { path: String },
}

/// Whether an object's ETag is consistent with a recorded one (unknown counts as consistent).
fn etag_consistent(recorded: Option<&str>, remote: Option<&str>) -> bool {
    match (recorded, remote) {
        (Some(a), Some(b)) => normalize_etag(a) == normalize_etag(b),
        _ => true,
    }
}

/// Classifies one row of (new local entry, previous manifest entry, remote object).
/// The local entry must carry sha256/md5 for files and hardlinks.
pub fn classify(row: Row<&Entry, &Entry, &RemoteObject>) -> Option<Action> {
    let Row {
        a: local,
        b: prev,
        c: remote,
    } = row;
    let wants_object = local.filter(|l| l.kind.has_object());
    match (wants_object, remote) {
        (None, None) => None,
        (None, Some(r)) => Some(Action::Delete {
            path: r.path.clone(),
        }),
        (Some(l), r) => {
            let sha = l.sha256.clone().unwrap_or_default();
            let unchanged = r.is_some_and(|r| {
                r.size == l.size
                    && (prev.is_some_and(|p| {
                        p.kind.has_object()
                            && p.sha256 == l.sha256
                            && p.size == l.size
                            && etag_consistent(p.etag.as_deref(), r.etag.as_deref())
                    }) || r
                        .etag
                        .as_deref()
                        .and_then(etag_md5)
                        .is_some_and(|m| Some(&m) == l.md5.as_ref()))
            });
            if unchanged {
                Some(Action::Keep {
                    path: l.path.clone(),
                    etag: r.and_then(|r| r.etag.clone()),
                })
            } else {
                Some(Action::Transfer {
                    path: l.path.clone(),
                    sha256: sha,
                    size: l.size,
                })
            }
        }
    }
}

/// The full diff: classify every row of the three sorted inputs, lazily.
pub fn diff<'a>(
    local: &'a [Entry],
    prev: &'a [Entry],
    remote: &'a [RemoteObject],
) -> impl Iterator<Item = Action> + 'a {
    merge3(local.iter(), prev.iter(), remote.iter()).filter_map(|row| {
        classify(Row {
            a: row.a,
            b: row.b,
            c: row.c,
        })
    })
}

impl<T: Keyed> Keyed for &T {
    fn key(&self) -> &str {
        (*self).key()
    }
}

/// Remote objects that, by the previous manifest, hold a wanted content and will not be
/// overwritten in this run (so they are safe to copy from): sha256 → path. Both inputs
/// are sorted streams; memory is the wanted set and the result.
pub fn copy_sources<P, R>(
    prev: P,
    remote: R,
    wanted: &HashSet<&str>,
    overwritten: &HashSet<&str>,
) -> HashMap<String, String>
where
    P: IntoIterator,
    P::Item: Borrow<Entry> + Keyed,
    R: IntoIterator,
    R::Item: Borrow<RemoteObject> + Keyed,
{
    let mut out = HashMap::new();
    let none: [&Entry; 0] = [];
    for row in merge3(prev, remote, none.iter().copied()) {
        let (Some(p), Some(r)) = (row.a.as_ref(), row.b.as_ref()) else {
            continue;
        };
        let (p, r): (&Entry, &RemoteObject) = (p.borrow(), r.borrow());
        let Some(sha) = copy_candidate(p, r) else {
            continue;
        };
        if wanted.contains(sha) && !overwritten.contains(p.path.as_str()) {
            out.entry(sha.to_string()).or_insert_with(|| p.path.clone());
        }
    }
    out
}

/// The content (sha256) the object `r` holds by the previous manifest's entry `p` at
/// the same path, when it is a usable server-side copy source: a non-empty data object
/// whose size and ETag agree with the entry.
pub fn copy_candidate<'a>(p: &'a Entry, r: &RemoteObject) -> Option<&'a str> {
    let sha = p.sha256.as_deref()?;
    (p.kind.has_object()
        && p.size > 0
        && p.size == r.size
        && etag_consistent(p.etag.as_deref(), r.etag.as_deref()))
    .then_some(sha)
}

/// A file whose object must be written: its path, content and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub path: String,
    pub sha256: Sha256,
    pub size: u64,
}

/// One write of a data object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Server-side copy from an object that existed before this run.
    CopyExisting { from: String, to: String },
    /// Upload from the local file.
    Upload { path: String },
    /// Server-side copy from an object uploaded earlier in this run.
    CopyUploaded { from: String, to: String },
}

/// Orders the writes: copies from pre-existing objects, uploads (one per distinct
/// content), then copies of just-uploaded content. Empty files are always uploaded.
pub fn plan_transfers(transfers: &[Transfer], sources: &HashMap<Sha256, String>) -> Vec<Step> {
    let mut existing = Vec::new();
    let mut uploads = Vec::new();
    let mut later = Vec::new();
    let mut uploaded: HashMap<&Sha256, &str> = HashMap::new();
    for Transfer {
        path,
        sha256: sha,
        size,
    } in transfers
    {
        if *size == 0 {
            uploads.push(Step::Upload { path: path.clone() });
        } else if let Some(from) = sources.get(sha) {
            existing.push(Step::CopyExisting {
                from: from.clone(),
                to: path.clone(),
            });
        } else if let Some(from) = uploaded.get(sha) {
            later.push(Step::CopyUploaded {
                from: (*from).to_string(),
                to: path.clone(),
            });
        } else {
            uploaded.insert(sha, path);
            uploads.push(Step::Upload { path: path.clone() });
        }
    }
    existing.extend(uploads);
    existing.extend(later);
    existing
}

#[cfg(test)]
mod tests;
