//! One destination pass, in the stages of the module doc: read the manifest into
//! its scratch file (see `entries`), plan against a sorted walk of the local tree
//! (restore records, hash checks), find local files holding wanted content, claim
//! content kept from an earlier pass, download (see `fetch`) into the staging
//! directory, and commit. Per-file state is a bit per manifest entry, so memory
//! does not follow the number of files. [`Pass::run`] calls one method per stage.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, stream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::entries::{Bits, Entries};
use super::fetch::{Claimed, Kept, download};
use super::restore::{Commit, Delete, Plan, commit, plan, staged_name};
use super::{Download, manifest_from_listing, restored, reuse};
use crate::error::{SyncError, join_error};
use crate::fs::hash::hash_file;
use crate::fs::local::remove_any;
use crate::fs::scan::Walk;
use crate::manifest::Entry;
use crate::options::SyncOptions;
use crate::progress::Progress;
use crate::source::spill;
use crate::store::remote::Remote;
use crate::summary::{Direction, Summary};

/// Files up to this size take half a download slot (see [`Pass::fetch`]).
const SMALL_FILE: u64 = 1 << 20;
/// Downloads larger than this start first, largest first (at most [`BIG_HELD`] of
/// them are held to sort), so a few big files overlap the many small ones instead
/// of trailing alone at the end of the pass.
const BIG: u64 = 4 << 20;
const BIG_HELD: usize = 65_536;

/// What every stage of a pass works with.
pub(super) struct Pass<'a> {
    pub remote: &'a Remote,
    pub local: &'a Path,
    pub staging: &'a Path,
    pub opts: &'a SyncOptions,
    pub progress: &'a Arc<Progress>,
}

pub(super) enum PassResult {
    Done(Summary),
    /// A downloaded object did not match what the manifest promised.
    Mismatch(String),
}

/// The plan stage's result.
struct Planned {
    plan: Plan,
    /// Local paths the manifest lacks (see `restore::Delete`).
    deletes: spill::Writer<Delete>,
    /// Local names no manifest can hold, removed by the commit.
    foreign: Vec<PathBuf>,
    /// Wanted SHA-256 → a local relative path holding it (see `reuse`).
    sources: reuse::Known,
}

impl Planned {
    /// The local file holding `e`'s content, if any.
    fn local_copy(&self, local: &Path, e: &Entry) -> Option<PathBuf> {
        if self.sources.is_empty() {
            return None;
        }
        e.sha256
            .as_deref()
            .and_then(reuse::digest)
            .and_then(|d| self.sources.get(&d))
            .map(|rel| local.join(rel))
    }
}

/// What the download stage staged and counted.
#[derive(Default)]
struct Fetched {
    staged: Bits,
    /// Downloaded (including content kept from an earlier pass).
    remote_files: u64,
    remote_bytes: u64,
    /// Copied from local files holding the same content.
    local_files: u64,
    local_bytes: u64,
    mismatch: Option<String>,
}

impl Pass<'_> {
    /// Runs the stages in turn.
    pub async fn run(&self, kept: &mut Kept) -> Result<PassResult, SyncError> {
        let entries = self.read_manifest().await?;
        let planned = self.scan_plan(&entries).await?;
        let mut summary = Summary::new(Direction::Destination);
        summary.files_checked = entries.objects;
        summary.bytes_checked = entries.object_bytes;
        if self.opts.dry_run {
            for r in entries.selected(&planned.plan.downloads)? {
                let (_, e) = r?;
                if planned.local_copy(self.local, &e).is_none() {
                    summary.files_transferred += 1;
                    summary.bytes_transferred += e.size;
                }
            }
            summary.files_deleted = planned.plan.deleted_paths + planned.foreign.len() as u64;
            info!("dry run: nothing written");
            return Ok(PassResult::Done(summary));
        }
        let claimed = self.claim(kept, &entries, &planned)?;
        let fetched = self.fetch(&entries, &planned, claimed).await?;
        if let Some(path) = fetched.mismatch {
            // What verified is kept for the next pass; the staging stays.
            kept.keep(self.staging, &fetched.staged, &entries)?;
            return Ok(PassResult::Mismatch(path));
        }
        // The summary counts what crossed the network; local copies are only logged.
        summary.files_transferred = fetched.remote_files;
        summary.bytes_transferred = fetched.remote_bytes;
        if fetched.local_files > 0 {
            info!(
                files = fetched.local_files,
                bytes = fetched.local_bytes,
                "produced from local files holding the same content instead of downloading"
            );
        }
        summary.files_deleted = self.commit(&entries, planned, fetched.staged).await?;
        Ok(PassResult::Done(summary))
    }

    /// Read stage: the manifest, or for a bucket plain rclone wrote, the listing.
    async fn read_manifest(&self) -> Result<Entries, SyncError> {
        if let Some(entries) = Entries::read(self.remote).await? {
            return Ok(entries);
        }
        let remote = crate::source::first_upload::restorable(self.remote).await?;
        let m = manifest_from_listing(remote).await?;
        Entries::from_entries(m.entries, m.root)
    }

    /// Scan/plan stage: walks the local tree against the manifest, hashes files of
    /// the right size to decide, and finds local files holding wanted content.
    /// Refuses an empty manifest over a non-empty tree (unless allowed).
    async fn scan_plan(&self, entries: &Entries) -> Result<Planned, SyncError> {
        self.progress.phase("scanning", 0, 0);
        let (root, es, checksum) = (
            self.local.to_path_buf(),
            entries.clone(),
            self.opts.checksum,
        );
        let (mut p, deletes, foreign) = tokio::task::spawn_blocking(move || {
            let mut walk = Walk::new(&root, false)?;
            let mut deletes = spill::Writer::new("deletes scratch file")?;
            let p = plan(
                es.iter()?,
                es.len(),
                &mut walk,
                |rel| restored::read(&root.join(rel)),
                checksum,
                |d| deletes.push(&d),
            )?;
            let foreign: Vec<PathBuf> =
                walk.take_unsupported().into_iter().map(|u| u.rel).collect();
            Ok::<_, SyncError>((p, deletes, foreign))
        })
        .await
        .map_err(join_error)??;
        if entries.is_empty() && p.local_entries > 0 && !self.opts.allow_empty_source {
            return Err(SyncError::EmptySource {
                path: self.local.to_path_buf(),
                mount_note: "",
                remote: format!(
                    "{} (restoring it would delete every local file)",
                    self.remote.description
                ),
            });
        }
        let digests = self.check_hashes(entries, &mut p).await?;
        let sources = self.local_sources(entries, &p, digests).await?;
        info!(
            downloads = p.downloads.count(),
            download_bytes = p.download_bytes,
            hash_checks = p.hash_checks.count(),
            local_sources = sources.len(),
            deletes = p.deleted_paths,
            entries = entries.len(),
            "plan done"
        );
        Ok(Planned {
            plan: p,
            deletes,
            foreign,
            sources,
        })
    }

    /// Same size, other mtime: hash locally; only a real difference is downloaded.
    /// Returns the local SHA-256 of every checked entry, by index (see
    /// [`Pass::local_sources`]).
    async fn check_hashes(
        &self,
        entries: &Entries,
        p: &mut Plan,
    ) -> Result<spill::Writer<(usize, String)>, SyncError> {
        let n = p.hash_checks.count();
        self.progress.phase("checking", n as u64, 0);
        let mut digests = spill::Writer::new("hash checks scratch file")?;
        if n == 0 {
            return Ok(digests);
        }
        // Taken out while they are read, so the plan can take the downloads.
        let checks = std::mem::take(&mut p.hash_checks);
        let mut results = stream::iter(entries.selected(&checks)?)
            .map(|r| async move {
                let (i, e) = r?;
                let path = self.local.join(&e.path);
                let d = tokio::task::spawn_blocking(move || hash_file(&path))
                    .await
                    .map_err(join_error)??;
                let same = match (&e.sha256, &e.md5) {
                    (Some(s), _) => *s == d.sha256,
                    (None, Some(m)) => *m == d.md5,
                    (None, None) => false,
                };
                Ok::<_, SyncError>((i, e.size, same, d.sha256))
            })
            .buffer_unordered(self.opts.hash_threads.max(1));
        while let Some(r) = results.next().await {
            let (i, size, same, sha) = r?;
            if !same {
                p.download(i, size);
            }
            digests.push(&(i, sha))?;
        }
        drop(results);
        p.hash_checks = checks;
        Ok(digests)
    }

    fn temp_of(&self, i: usize) -> PathBuf {
        self.staging.join(staged_name(i))
    }

    /// Finds, for the content this pass must download, local files already holding
    /// it (see `reuse`): wanted SHA-256 → local relative path. Hashes only local
    /// files of a wanted size whose content the plan does not already know.
    async fn local_sources(
        &self,
        entries: &Entries,
        p: &Plan,
        digests: spill::Writer<(usize, String)>,
    ) -> Result<reuse::Known, SyncError> {
        // Nothing local to take content from (e.g. a restore into an empty
        // directory): no index of the wanted digests at all.
        if !p.any_local_file || p.downloads.count() == 0 {
            return Ok(reuse::Known::new());
        }
        let wanted = reuse::wanted(entries.selected(&p.downloads)?)?;
        if wanted.is_empty() {
            return Ok(reuse::Known::new());
        }
        let mut checked: HashMap<usize, reuse::Digest> = HashMap::new();
        for r in digests.into_reader()? {
            let (i, hex) = r?;
            if let Some(d) = reuse::digest(&hex).filter(|d| wanted.contains_key(d)) {
                checked.insert(i, d);
            }
        }
        let (root, es, plan) = (self.local.to_path_buf(), entries.clone(), p.clone());
        let (mut known, to_hash, wanted) = tokio::task::spawn_blocking(move || {
            let walk = Walk::new(&root, false)?;
            let mut to_hash = spill::Writer::<String>::new("local files to hash scratch file")?;
            let known = reuse::index_plan(es.iter()?, walk, &plan, &checked, &wanted, |rel| {
                to_hash.push(&rel)
            })?;
            Ok::<_, SyncError>((known, to_hash.into_reader()?, wanted))
        })
        .await
        .map_err(join_error)??;
        let mut hashed = stream::iter(to_hash)
            .map(|rel| async move {
                let rel = rel?;
                let path = self.local.join(&rel);
                // A file that vanished or cannot be read is simply no candidate.
                let d = tokio::task::spawn_blocking(move || hash_file(&path).ok())
                    .await
                    .map_err(join_error)?;
                Ok::<_, SyncError>((rel, d.and_then(|d| reuse::digest(&d.sha256))))
            })
            .buffer_unordered(self.opts.hash_threads.max(1));
        while let Some(r) = hashed.next().await {
            let (rel, d) = r?;
            if let Some(d) = d.filter(|d| wanted.contains_key(d)) {
                known.entry(d).or_insert(rel);
            }
        }
        Ok(known)
    }

    /// Claim stage: creates the staging directory (a kept one is reused, see
    /// `fetch::Kept`) and takes the content kept from an earlier pass.
    fn claim(
        &self,
        kept: &mut Kept,
        entries: &Entries,
        planned: &Planned,
    ) -> Result<Claimed, SyncError> {
        if kept.is_empty() {
            std::fs::create_dir(self.staging)
                .map_err(|e| SyncError::io("creating staging directory", self.staging, e))?;
        }
        let p = &planned.plan;
        let claimed = kept.claim(entries.selected(&p.downloads)?, |i| self.temp_of(i))?;
        self.progress
            .phase("downloading", p.downloads.count() as u64, p.download_bytes);
        self.progress.add_bytes(claimed.bytes);
        for _ in 0..claimed.files {
            self.progress.file_done();
        }
        Ok(claimed)
    }

    /// Download stage: every download not claimed — the large ones first, largest
    /// first, then the rest in path order as they are read back — each copied from
    /// a local or staged file holding its content if any.
    async fn fetch(
        &self,
        entries: &Entries,
        planned: &Planned,
        claimed: Claimed,
    ) -> Result<Fetched, SyncError> {
        let Claimed {
            staged,
            files,
            bytes,
            sources: claimed_sources,
        } = claimed;
        let downloads = &planned.plan.downloads;
        let mut big: Vec<(usize, Entry)> = Vec::new();
        for r in entries.selected(downloads)? {
            let (i, e) = r?;
            if e.size > BIG && !staged.get(i) && big.len() < BIG_HELD {
                big.push((i, e));
            }
        }
        big.sort_by_key(|(_, e)| Reverse(e.size));
        // Claimed already, or started first.
        let mut skip = staged.clone();
        big.iter().for_each(|(i, _)| skip.set(*i));
        let rest = entries
            .selected(downloads)?
            .filter(move |r| r.as_ref().map_or(true, |(i, _)| !skip.get(*i)));
        let todo = big.into_iter().map(Ok).chain(rest);
        // `--transfers` large files at once, or twice as many small ones: a small
        // file's time is the request's round trip, not bandwidth.
        let transfers = self.opts.transfers.max(1);
        let slots = Semaphore::new(2 * transfers);
        let results = stream::iter(todo)
            .map(|r| {
                let (slots, claimed_sources) = (&slots, &claimed_sources);
                async move {
                    let (i, e) = r?;
                    let staged_copy = e
                        .sha256
                        .as_ref()
                        .and_then(|s| claimed_sources.get(s))
                        .cloned();
                    let src = staged_copy.or_else(|| planned.local_copy(self.local, &e));
                    let weight = if e.size > SMALL_FILE { 2 } else { 1 };
                    let _slot = slots
                        .acquire_many(weight)
                        .await
                        .map_err(|e| SyncError::Internal(format!("download slots: {e}")))?;
                    self.fetch_one(&e, i, src).await
                }
            })
            .buffer_unordered(2 * transfers);
        let f = Fetched {
            staged,
            remote_files: files,
            remote_bytes: bytes,
            ..Fetched::default()
        };
        tally(f, results, downloads.count()).await
    }

    /// One download: a verified copy of `src` when it still holds the content, else
    /// from the store.
    async fn fetch_one(
        &self,
        e: &Entry,
        i: usize,
        src: Option<PathBuf>,
    ) -> Result<Download, SyncError> {
        let temp = self.temp_of(i);
        if let Some(src) = src {
            let (t, owned) = (temp.clone(), e.clone());
            let from = src.clone();
            let copied =
                tokio::task::spawn_blocking(move || reuse::copy_verified(&from, &t, &owned))
                    .await
                    .map_err(join_error)??;
            if copied == reuse::Copied::Verified {
                self.progress.add_bytes(e.size);
                self.progress.file_done();
                return Ok(Download::Local(i, e.size));
            }
            warn!(path = %e.path, from = %src.display(), "local file no longer holds the wanted content; downloading");
        }
        download(self.remote, e, temp, i, self.progress).await
    }

    /// Commit stage: makes the staged files durable, then moves them into place,
    /// deletes what the manifest lacks and sets metadata (see `restore::commit`).
    /// Returns the number of paths deleted.
    async fn commit(
        &self,
        entries: &Entries,
        planned: Planned,
        staged: Bits,
    ) -> Result<u64, SyncError> {
        self.progress.phase("committing", 0, 0);
        let root = self.local.to_path_buf();
        let staging_dir = self.staging.to_path_buf();
        let Planned {
            plan: p,
            deletes,
            foreign,
            ..
        } = planned;
        let es = entries.clone();
        let stats = tokio::task::spawn_blocking(move || {
            let r = flush_staged(&staging_dir)
                .and_then(|()| {
                    crate::destination::tree::Tree::open(&root)
                        .map_err(|e| SyncError::io("opening", &root, e))
                })
                .and_then(|tree| {
                    let c = Commit {
                        entries: &es,
                        staged: &staged,
                        record_current: &p.record_current,
                        foreign: &foreign,
                    };
                    commit(&tree, &c, deletes.into_reader()?)
                });
            let cleanup = remove_any(&staging_dir);
            let stats = r?;
            cleanup.map_err(|e| SyncError::io("removing staging", &staging_dir, e))?;
            Ok::<_, SyncError>(stats)
        })
        .await
        .map_err(join_error)??;
        Ok(stats.deleted)
    }
}

/// Counts the downloads as they finish (no list of results is held); the first
/// error fails the pass (before a mismatch).
async fn tally(
    f: Fetched,
    results: impl futures::Stream<Item = Result<Download, SyncError>>,
    total: usize,
) -> Result<Fetched, SyncError> {
    let (f, failed, first) = results
        .fold(
            (f, 0usize, None),
            |(mut f, mut failed, mut first), r| async move {
                match r {
                    Ok(Download::Verified(i, size)) => {
                        f.remote_files += 1;
                        f.remote_bytes += size;
                        f.staged.set(i);
                    }
                    Ok(Download::Local(i, size)) => {
                        f.local_files += 1;
                        f.local_bytes += size;
                        f.staged.set(i);
                    }
                    Ok(Download::Mismatch(path)) => f.mismatch = f.mismatch.or(Some(path)),
                    Err(e) => {
                        failed += 1;
                        first = first.or(Some(e));
                    }
                }
                (f, failed, first)
            },
        )
        .await;
    if let Some(first) = first {
        return Err(SyncError::Transfers {
            failed,
            total,
            first: Box::new(first),
        });
    }
    Ok(f)
}

/// Makes every staged file durable before any is renamed into place: one `syncfs` of
/// the filesystem holding the staging directory instead of an fsync per file (which
/// made a restore of many small files wait on the disk once per file).
fn flush_staged(staging: &Path) -> Result<(), SyncError> {
    let dir = std::fs::File::open(staging)
        .map_err(|e| SyncError::io("opening staging directory", staging, e))?;
    rustix::fs::syncfs(&dir)
        .map_err(|e| SyncError::io("flushing staged files to disk", staging, e.into()))
}
