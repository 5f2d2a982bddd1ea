//! Keeping the last committed state restorable while a run overwrites objects.
//!
//! A source run writes data objects in place before it commits its manifest, so
//! until the commit the committed manifest names content some of its keys no
//! longer hold. Before the first write of each batch of work, every committed
//! content the batch is about to overwrite is server-side copied to
//! `<prefix>/.scribe/committed/<sha256>` (content-addressed: one copy per distinct
//! content in the batch, none when a copy was already there before the run). A destination that finds a key not holding what the manifest promises
//! takes that copy instead (see `destination::fetch`), so it restores the last
//! commit exactly at every moment, whether a run is in progress or was killed.
//!
//! After the commit every entry of the new manifest is at its own key, so the run
//! deletes every committed copy it made or found (a killed run's are found by the
//! merge's listing, at no extra request, and kept until a run commits). A run that
//! overwrites nothing makes no request here. Deletes happen only after the commit,
//! so they never need a copy. The copies live under `.scribe/`, which no listing
//! treats as data; rclone sees them as files in the `.scribe/` folder, like the
//! manifest.
//!
//! A failed copy fails the run before anything is overwritten. The copy is
//! described to the store ([`CopyMetadata`]: no metadata of its own, its size), so
//! S3 copies an object above `copy_cutoff` in parts (one CopyObject copies at most
//! 5 GiB).

use std::collections::HashSet;

use futures::{StreamExt, stream};
use object_store::{Attributes, CopyOptions, ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::SyncError;
use crate::fs::paths::{committed_key, key_for};
use crate::source::diff::{Action, Row, classify};
use crate::source::digest::Sha256;
use crate::source::plan::Work;
use crate::store::remote::CopyMetadata;
use crate::store::remote::Remote;

/// What to do before the run's first write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preserve {
    /// One server-side copy each.
    pub copies: Vec<KeepCopy>,
    /// Paths whose committed content is neither at its key nor kept (an earlier
    /// run without this protection overwrote it, or the object was changed by
    /// hand): nothing can be copied for them.
    pub lost: Vec<String>,
}

/// A committed content to keep: its SHA-256, the object holding it, its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepCopy {
    pub sha256: Sha256,
    pub from: String,
    pub size: u64,
}

/// Whether the remote object at a committed entry's key still holds that entry's
/// content (size, and the ETag recorded at the commit, as the merge decides it).
fn holds(committed: &crate::manifest::Entry, work: &Work) -> bool {
    matches!(
        classify(Row {
            a: Some(committed),
            b: Some(committed),
            c: work.remote.as_deref(),
        }),
        Some(Action::Keep { .. })
    )
}

/// Which committed contents the planned writes overwrite and where to copy each
/// from; contents already kept under `.scribe/committed/` (`held`) need nothing.
pub fn plan(work: &[Work], held: &HashSet<String>) -> Preserve {
    let mut planned: HashSet<&str> = HashSet::new();
    let mut out = Preserve::default();
    let mut lost: Vec<(&str, &str)> = Vec::new();
    for w in work.iter().filter(|w| w.transfer) {
        let Some(p) = w.prev.as_ref().filter(|p| p.kind.has_object()) else {
            continue;
        };
        // Manifest digests are validated when read.
        let Some((sha, digest)) = p
            .sha256
            .as_deref()
            .and_then(|s| Some((s, Sha256::parse(s)?)))
        else {
            continue;
        };
        if held.contains(sha) || planned.contains(sha) {
            continue;
        }
        if holds(p, w) {
            planned.insert(sha);
            out.copies.push(KeepCopy {
                sha256: digest,
                from: p.path.clone(),
                size: p.size,
            });
        } else {
            lost.push((sha, p.path.as_str()));
        }
    }
    // The same content may still be held by another overwritten key.
    out.lost = lost
        .into_iter()
        .filter(|(sha, _)| !planned.contains(sha))
        .map(|(_, path)| path.to_string())
        .collect();
    out
}

/// Copies each committed content to its `.scribe/committed/` key, concurrently;
/// returns the SHA-256 of each one copied. A failure fails the run before anything
/// is overwritten; `cancel` stops a copy made of several requests.
pub async fn preserve(
    remote: &Remote,
    p: &Preserve,
    transfers: usize,
    cancel: &CancellationToken,
) -> Result<Vec<String>, SyncError> {
    for path in &p.lost {
        warn!(path = %path, "the committed version of this object is already gone; a destination cannot restore the last commit until this run commits");
    }
    if p.copies.is_empty() {
        return Ok(Vec::new());
    }
    let results: Vec<Result<Option<String>, SyncError>> = stream::iter(p.copies.clone())
        .map(
            |KeepCopy {
                 sha256: sha,
                 from,
                 size,
             }| async move {
                let from_key = key_for(&remote.prefix, &from)?;
                let to = committed_key(&remote.prefix, sha.as_str());
                let mut options = CopyOptions::default();
                options.extensions.insert(CopyMetadata {
                    attributes: Attributes::new(),
                    md5chksum: None,
                    size,
                    cancel: cancel.clone(),
                });
                match remote.store.copy_opts(&from_key, &to, options).await {
                    Ok(()) => Ok(Some(sha.into_string())),
                    Err(e) => Err(SyncError::store("keeping the committed version", &to, e)),
                }
            },
        )
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let total = results.len();
    let mut copied = Vec::new();
    let mut errs = Vec::new();
    for r in results {
        match r {
            Ok(Some(sha)) => copied.push(sha),
            Ok(None) => {}
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() {
        info!(
            objects = copied.len(),
            "kept the committed versions of the objects this run overwrites"
        );
        return Ok(copied);
    }
    Err(SyncError::Transfers {
        failed: errs.len(),
        total,
        first: Box::new(errs.remove(0)),
    })
}

/// After the commit: deletes the committed copies (`shas`); a failure is only
/// logged (the next run finds the copy in its listing and deletes it then).
/// Returns how many were deleted.
pub async fn release<I>(remote: &Remote, shas: I, transfers: usize) -> usize
where
    I: IntoIterator<Item = String>,
{
    let done: Vec<bool> = stream::iter(shas)
        .map(|sha: String| async move {
            let key = committed_key(&remote.prefix, &sha);
            match remote.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => true,
                Err(e) => {
                    warn!(key = %key, error = %e, "cannot delete a committed version no longer needed; the next run deletes it");
                    false
                }
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let deleted = done.into_iter().filter(|d| *d).count();
    if deleted > 0 {
        info!(
            objects = deleted,
            "deleted the committed versions the new commit no longer needs"
        );
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, EntryKind};
    use crate::source::diff::RemoteObject;

    /// A distinct valid digest per label.
    fn digest(label: &str) -> String {
        let hex: String = label.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{hex:0>64}")
    }

    fn keep(label: &str, from: &str, size: u64) -> KeepCopy {
        KeepCopy {
            sha256: Sha256::parse(&digest(label)).unwrap(),
            from: from.to_string(),
            size,
        }
    }

    fn file(path: &str, sha: &str, size: u64, etag: &str) -> Entry {
        let mut e = Entry::new(path, EntryKind::File);
        e.sha256 = Some(digest(sha));
        e.md5 = Some(format!("md5-{sha}"));
        e.size = size;
        e.etag = Some(etag.to_string());
        e
    }

    fn object(path: &str, size: u64, etag: &str) -> RemoteObject {
        RemoteObject {
            path: path.to_string(),
            size,
            etag: Some(etag.to_string()),
        }
    }

    /// A work item writing `new` over the committed `prev` at the same path.
    fn overwrite(prev: Option<Entry>, remote: Option<RemoteObject>, new_sha: &str) -> Work {
        let path = prev
            .as_ref()
            .map(|p| p.path.clone())
            .or(remote.as_ref().map(|r| r.path.clone()))
            .unwrap_or_else(|| "new".into());
        Work {
            entry: file(&path, new_sha, 9, "-"),
            prev: prev.map(Box::new),
            remote: remote.map(Box::new),
            transfer: true,
            linked: false,
        }
    }

    #[test]
    fn each_overwritten_committed_content_is_copied_once_from_a_key_still_holding_it() {
        let work = vec![
            overwrite(
                Some(file("a", "A", 3, "ea")),
                Some(object("a", 3, "ea")),
                "N1",
            ),
            // Same committed content at another key: one copy serves both.
            overwrite(
                Some(file("b", "A", 3, "eb")),
                Some(object("b", 3, "eb")),
                "N2",
            ),
            overwrite(
                Some(file("c", "C", 4, "ec")),
                Some(object("c", 4, "ec")),
                "N3",
            ),
            // A new path overwrites nothing committed.
            overwrite(None, None, "N4"),
        ];
        let p = plan(&work, &HashSet::new());
        assert_eq!(p.copies, [keep("A", "a", 3), keep("C", "c", 4)]);
        assert!(p.lost.is_empty());
    }

    #[test]
    fn unchanged_objects_and_deletions_need_no_copy() {
        let mut kept = overwrite(
            Some(file("k", "K", 3, "ek")),
            Some(object("k", 3, "ek")),
            "K",
        );
        kept.transfer = false;
        // A directory where a file was: its object is deleted after the commit.
        let mut dir = overwrite(
            Some(file("d", "D", 3, "ed")),
            Some(object("d", 3, "ed")),
            "-",
        );
        dir.transfer = false;
        dir.entry = Entry::new("d", EntryKind::Dir);
        let p = plan(&[kept, dir], &HashSet::new());
        assert_eq!(p, Preserve::default());
    }

    #[test]
    fn content_already_kept_by_a_killed_run_is_not_copied_again() {
        // The killed run overwrote `a` (its ETag moved) after keeping A.
        let work = vec![
            overwrite(
                Some(file("a", "A", 3, "ea")),
                Some(object("a", 5, "new")),
                "N",
            ),
            overwrite(
                Some(file("c", "C", 4, "ec")),
                Some(object("c", 4, "ec")),
                "N2",
            ),
        ];
        let held: HashSet<String> = [digest("A"), digest("C")].into();
        assert_eq!(plan(&work, &held), Preserve::default());
    }

    #[test]
    fn a_committed_version_overwritten_without_a_copy_is_reported_lost() {
        let work = vec![
            overwrite(
                Some(file("a", "A", 3, "ea")),
                Some(object("a", 3, "other")),
                "N",
            ),
            overwrite(Some(file("m", "M", 3, "em")), None, "N2"),
            // Lost at `x`, but still at `y`: copied from `y`.
            overwrite(
                Some(file("x", "X", 3, "ex")),
                Some(object("x", 3, "zz")),
                "N3",
            ),
            overwrite(
                Some(file("y", "X", 3, "ey")),
                Some(object("y", 3, "ey")),
                "N4",
            ),
        ];
        let p = plan(&work, &HashSet::new());
        assert_eq!(p.copies, [keep("X", "y", 3)]);
        assert_eq!(p.lost, ["a", "m"]);
    }
}
