//! Source direction: merge → hash → transfer → verify → commit → delete.
//!
//! The merge (see `plan`) streams three sorted inputs at once — the local walk
//! (`scan::Walk`), the previous manifest read line by line from the store, and the
//! remote listing — and writes every unchanged entry straight to a scratch file in
//! `TMPDIR` (unlinked at once). The work it finds (files to hash or write, with
//! their previous entry and remote object) and the objects to delete go to scratch
//! files too (see `spill`). The later stages read the work back in batches of
//! `SyncOptions::source_batch` items: the hash stage hashes and classifies a batch
//! and writes it to another scratch file; the write stage then, per batch, plans
//! its writes, keeps the committed versions it overwrites (see `preserve`) and
//! transfers it (see `chunked`), writing its finished entries to a third scratch
//! file. The new manifest is the settled scratch file merged with the finished
//! one, uploaded in parts as it is produced; the deletes and the releases of kept
//! versions are read back in batches after the commit. So memory holds one batch,
//! whatever the number of files, changed or not. What still scales with the tree:
//! the names of the widest directory being walked, one small record per
//! multiply-linked inode (its first path, and its digests while hardlinks in later
//! batches need them), the committed versions a killed run left, and a fixed 8 MiB filter
//! of the server-side copy sources. A listing from a store that does not list in
//! order (local, crypt) is sorted through scratch files (see `store::external_sort`).
//!
//! Copy sources are the objects that, by the previous manifest, hold a content
//! (noted by the merge, so a run reads the previous manifest and lists the prefix
//! once) and the objects this run uploaded in earlier batches; a batch looks them
//! up in their scratch file only when the filter says one of its contents may be
//! there. So content uploaded in one batch is copied, not uploaded again, in later
//! ones. A committed version overwritten in several batches is kept once per
//! batch (the same key, written again). A run that finds nothing to write, nothing
//! to delete and every entry as the previous manifest has it leaves that manifest
//! as it is.
//!
//! The manifest written at the end is the commit point; remote objects no longer in
//! the source are deleted only after it is committed, and nothing is deleted or
//! committed if any earlier step failed. Before a batch's first write, the
//! committed version of every object the batch overwrites is kept under
//! `.scribe/committed/` until the commit, so the last commit stays restorable (see
//! `preserve`).
//!
//! A live volume keeps changing under a run: a file that changes while it is
//! hashed or uploaded is read again a bounded number of times, then keeps its last
//! committed entry (or is left out, when new) and is counted in
//! `filesSkippedChanging`; a file that vanished is left out. The rest commits.
//! Incomplete multipart uploads a killed run left under the prefix are aborted
//! before this run uploads anything (see `leftovers`). A cancelled run
//! (`SyncOptions::cancel`, SIGTERM) aborts its uploads and commits nothing.
//!
//! `sync` runs one function of `stages` per stage: merge, hash, write (diff,
//! preserve and transfer per batch), commit, release, delete.

pub mod changing;
pub mod chunked;
pub mod diff;
pub mod digest;
pub mod first_upload;
pub mod leftovers;
pub mod plan;
pub mod preserve;
pub mod spill;
mod stages;
pub mod steps;
pub mod unsettled;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::changing::{CHANGE_ATTEMPTS, Observed, Stamp, observe_stable, refresh};
use self::diff::RemoteObject;
use self::plan::{MergeOptions, MergeOut, Pass, Work, merge_into};
use self::spill::Sources;
use self::stages::Run;
use self::unsettled::Unsettled;
use crate::error::{SyncError, join_error};
use crate::fs::local::LocalMeta;
use crate::fs::paths::path_cmp;
use crate::fs::scan::Walk;
use crate::manifest::stream::{scratch_file, spawn_reader_root};
use crate::manifest::{Entry, RootMeta};
use crate::options::SyncOptions;
use crate::progress::Progress;
use crate::store::listing::{Held, ListError, spawn_listing};
use crate::store::remote::Remote;
use crate::summary::{Direction, Summary};

pub use crate::store::listing::list_objects;

/// Items buffered between a producer (manifest reader, listing) and the merge.
const CHANNEL: usize = 1024;

/// Syncs `local` to `remote`; see the module doc for the order of stages.
pub async fn sync(remote: &Remote, local: &Path, opts: &SyncOptions) -> Result<Summary, SyncError> {
    let (started, progress, _reporter) = crate::progress::begin(local, opts.progress_interval)?;
    info!(remote = %remote.description, local = %local.display(), "source sync starting");
    let run = Run {
        remote,
        local,
        opts,
        progress: &progress,
    };
    let (mut pass, mut scanned) = run.merge().await?;
    let mut unsettled = Unsettled::default();
    let hashed = run.hash(&mut pass, &mut scanned, &mut unsettled).await?;
    let mut summary = Summary::new(Direction::Source);
    summary.files_skipped_changing = unsettled.changing;
    summary.files_checked = pass.files_checked;
    summary.bytes_checked = pass.bytes_checked;
    if opts.dry_run {
        run.dry_run(&hashed, &scanned, &mut summary);
        summary.duration_seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let marker = run.prepare_writes(&pass, &scanned).await?;
    if stages::nothing_changed(&pass, &scanned, &unsettled) {
        summary.duration_seconds = started.elapsed().as_secs_f64();
        info!(
            entries = pass.entries,
            "nothing changed; the committed manifest stays"
        );
        return Ok(summary);
    }
    let written = run
        .write(
            hashed,
            &mut pass,
            &mut scanned,
            &mut unsettled,
            &mut summary,
        )
        .await?;
    run.commit(&pass, scanned.body, scanned.root, written.entries, marker)
        .await?;
    run.release(scanned.held, written.release).await?;
    run.delete(scanned.deletes, &mut summary).await?;
    summary.duration_seconds = started.elapsed().as_secs_f64();
    info!(
        files_skipped_changing = summary.files_skipped_changing,
        files_transferred = summary.files_transferred,
        bytes_transferred = summary.bytes_transferred,
        files_deleted = summary.files_deleted,
        "source sync done"
    );
    Ok(summary)
}

/// Why a merge pass did not complete.
enum MergeError {
    /// The previous manifest is unreadable as a manifest: redo without it.
    PrevInvalid(SyncError),
    /// The listing came out of order: redo with a sorted listing.
    Unsorted {
        after: String,
        key: String,
    },
    Failed(SyncError),
}

/// A completed merge pass.
struct Merged {
    pass: Pass,
    /// The settled entries as JSON lines, in path order (an unlinked scratch file).
    body: File,
    /// Server-side copy sources by the previous manifest.
    sources: Sources,
    /// The work items, in path order.
    work: spill::Writer<Work>,
    /// Objects to delete after the commit.
    deletes: spill::Writer<String>,
    root: LocalMeta,
    /// The previous manifest's root metadata, if it was read.
    prev_root: Option<RootMeta>,
    skipped: usize,
    unsupported: Vec<crate::fs::scan::Unsupported>,
    /// Committed versions kept under `.scribe/committed/` (see `preserve`).
    held: HashSet<String>,
}

/// One merge pass: the walk runs on a blocking thread, fed by the manifest reader
/// and the listing through bounded channels.
async fn merge(
    remote: &Remote,
    local: &Path,
    opts: &SyncOptions,
    use_prev: bool,
    sort_listing: bool,
) -> Result<Merged, MergeError> {
    let (prev_rx, prev_root) = match use_prev.then(|| spawn_reader_root(remote, CHANNEL)) {
        Some((rx, slot)) => (Some(rx), Some(slot)),
        None => (None, None),
    };
    let held = Held::default();
    let list_rx = spawn_listing(remote, sort_listing, CHANNEL, Some(Arc::clone(&held)));
    let root = local.to_path_buf();
    let mopts = MergeOptions {
        checksum: opts.checksum,
        scan_started: chrono::Utc::now().timestamp(),
    };
    let mut merged =
        tokio::task::spawn_blocking(move || merge_blocking(&root, prev_rx, list_rx, mopts))
            .await
            .map_err(|e| MergeError::Failed(join_error(e)))??;
    // The merge read the listing to its end, so every committed version is noted.
    merged.held = std::mem::take(&mut *held.lock().expect("held lock"))
        .into_iter()
        .collect();
    merged.prev_root = prev_root.and_then(|s| {
        s.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    });
    Ok(merged)
}

/// Items of a channel until its first error, which is kept in `slot`.
fn until_error<'a, T, E>(
    mut rx: Option<mpsc::Receiver<Result<T, E>>>,
    slot: &'a RefCell<Option<E>>,
) -> impl Iterator<Item = T> + 'a
where
    T: 'a,
    E: 'a,
{
    std::iter::from_fn(move || rx.as_mut()?.blocking_recv()).map_while(move |r| match r {
        Ok(v) => Some(v),
        Err(e) => {
            *slot.borrow_mut() = Some(e);
            None
        }
    })
}

/// Where the merge puts what it finds: settled lines, copy sources, work and
/// deletes, each in a scratch file.
struct Spill<'a> {
    body: BufWriter<&'a File>,
    sources: Sources,
    work: spill::Writer<Work>,
    deletes: spill::Writer<String>,
}

impl MergeOut for Spill<'_> {
    fn settled(&mut self, e: &Entry) -> Result<(), SyncError> {
        let fail = |err| SyncError::io("writing", "manifest scratch file", err);
        serde_json::to_writer(&mut self.body, e).map_err(|err| fail(err.into()))?;
        self.body.write_all(b"\n").map_err(fail)
    }

    fn candidate(&mut self, sha: &str, path: &str, work: bool) -> Result<(), SyncError> {
        self.sources.add(sha, path, work)
    }

    fn work(&mut self, w: Work) -> Result<(), SyncError> {
        self.work.push(&w)
    }

    fn delete(&mut self, path: String) -> Result<(), SyncError> {
        self.deletes.push(&path)
    }
}

fn merge_blocking(
    root: &Path,
    prev_rx: Option<mpsc::Receiver<Result<Entry, SyncError>>>,
    list_rx: mpsc::Receiver<Result<RemoteObject, ListError>>,
    mopts: MergeOptions,
) -> Result<Merged, MergeError> {
    let mut walk = Walk::new(root, true).map_err(MergeError::Failed)?;
    let body = scratch_file().map_err(MergeError::Failed)?;
    let walk_err = RefCell::new(None);
    let prev_err = RefCell::new(None);
    let list_err = RefCell::new(None);
    let result = (|| {
        let mut out = Spill {
            body: BufWriter::new(&body),
            sources: Sources::new()?,
            work: spill::Writer::new("work scratch file")?,
            deletes: spill::Writer::new("deletes scratch file")?,
        };
        let local = walk.by_ref().map_while(|r| match r {
            Ok(v) => Some(v),
            Err(e) => {
                *walk_err.borrow_mut() = Some(e);
                None
            }
        });
        let pass = merge_into(
            local,
            until_error(prev_rx, &prev_err),
            until_error(Some(list_rx), &list_err),
            mopts,
            &mut out,
        )?;
        out.body
            .flush()
            .map_err(|err| SyncError::io("writing", "manifest scratch file", err))?;
        Ok((pass, out.sources, out.work, out.deletes))
    })();
    if let Some(e) = walk_err.into_inner() {
        return Err(MergeError::Failed(e));
    }
    match list_err.into_inner() {
        Some(ListError::Unsorted { after, key }) => {
            return Err(MergeError::Unsorted { after, key });
        }
        Some(ListError::Failed(e)) => return Err(MergeError::Failed(e)),
        None => {}
    }
    match prev_err.into_inner() {
        Some(e @ (SyncError::ManifestInvalid { .. } | SyncError::UnsafePath { .. })) => {
            return Err(MergeError::PrevInvalid(e));
        }
        Some(e) => return Err(MergeError::Failed(e)),
        None => {}
    }
    let (pass, sources, work, deletes) = result.map_err(MergeError::Failed)?;
    Ok(Merged {
        pass,
        body,
        sources,
        work,
        deletes,
        root: *walk.root_meta(),
        prev_root: None,
        skipped: walk.skipped(),
        unsupported: walk.take_unsupported(),
        held: HashSet::new(),
    })
}

/// Hashes every work file still without digests (bounded parallelism), each read
/// until it holds still (see `changing`). Returns the items given up on: (index,
/// vanished?).
async fn hash_work(
    work: &mut [Work],
    root: &Path,
    opts: &SyncOptions,
    progress: &Arc<Progress>,
) -> Result<Vec<(usize, bool)>, SyncError> {
    // Indices only: each path is built when its file is hashed.
    let todo: Vec<usize> = (0..work.len()).filter(|i| work[*i].needs_hash()).collect();
    let paths = &*work;
    let results: Vec<(usize, Observed)> = stream::iter(todo)
        .map(|i| (i, root.join(&paths[i].entry.path)))
        .map(|(i, path)| {
            let progress = Arc::clone(progress);
            let cancel = opts.cancel.clone();
            async move {
                if cancel.is_cancelled() {
                    return Err(SyncError::Interrupted);
                }
                let seen =
                    tokio::task::spawn_blocking(move || observe_stable(&path, CHANGE_ATTEMPTS))
                        .await
                        .map_err(join_error)??;
                if let Observed::Stable(d, _) = &seen {
                    progress.add_bytes(d.size);
                }
                progress.file_done();
                Ok::<_, SyncError>((i, seen))
            }
        })
        .buffer_unordered(opts.hash_threads.max(1))
        .try_collect()
        .await?;
    let mut unsettled = Vec::new();
    for (i, seen) in results {
        let e = &mut work[i].entry;
        match seen {
            Observed::Stable(d, s) if s == Stamp::of_entry(e) => {
                e.sha256 = Some(d.sha256);
                e.md5 = Some(d.md5);
            }
            // Changed since the walk, then held still: take that version.
            Observed::Stable(d, s) => refresh(e, d, s),
            Observed::Changing => {
                warn!(path = %e.path, attempts = CHANGE_ATTEMPTS, "file kept changing while hashed; skipped for this run");
                unsettled.push((i, false));
            }
            Observed::Vanished => unsettled.push((i, true)),
        }
    }
    Ok(unsettled)
}

/// Index of the work item at `path`.
fn work_index(work: &[Work], path: &str) -> Result<usize, SyncError> {
    work.binary_search_by(|x| path_cmp(&x.entry.path, path))
        .map_err(|_| SyncError::Internal(format!("wrote an unplanned path {path}")))
}
