//! One destination pass, in the stages of the module doc: read the manifest,
//! scan the local tree and plan (hash checks, local files holding wanted
//! content), claim content kept from an earlier pass, download (see `fetch`) into
//! the staging directory, and commit. [`Pass::run`] calls one method per stage.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::fetch::{Claimed, Kept, download};
use super::restore::{Commit, Plan, Staged, commit, plan, staged_name};
use super::restored::{self, Record};
use super::{Download, manifest_from_listing, reuse};
use crate::error::{SyncError, join_error};
use crate::fs::hash::hash_file;
use crate::fs::local::remove_any;
use crate::fs::paths::path_cmp;
use crate::fs::scan::{Scan, ScanEntry, scan};
use crate::manifest::{self, Entry, EntryKind, Manifest};
use crate::options::SyncOptions;
use crate::progress::Progress;
use crate::store::remote::Remote;
use crate::summary::{Direction, Summary};

/// Files up to this size take half a download slot (see [`Pass::fetch`]).
const SMALL_FILE: u64 = 1 << 20;

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
    scan: Scan,
    /// Restore records of local files, by path (see `restored`).
    records: HashMap<String, Record>,
    plan: Plan,
    /// Wanted SHA-256 → a local relative path holding it (see `reuse`).
    sources: HashMap<String, String>,
    download_bytes: u64,
}

impl Planned {
    /// The local file holding `e`'s content, if any.
    fn local_copy(&self, local: &Path, e: &Entry) -> Option<PathBuf> {
        e.sha256
            .as_ref()
            .and_then(|s| self.sources.get(s))
            .map(|rel| local.join(rel))
    }
}

/// What the download stage staged and counted.
#[derive(Default)]
struct Fetched {
    staged: Vec<Staged>,
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
        let manifest = self.read_manifest().await?;
        let entries = &manifest.entries;
        let planned = self.scan_plan(&manifest).await?;
        let mut summary = Summary::new(Direction::Destination);
        for e in entries.iter().filter(|e| e.kind.has_object()) {
            summary.files_checked += 1;
            summary.bytes_checked += e.size;
        }
        if self.opts.dry_run {
            let remote_only = planned.plan.downloads.iter();
            let remote_only =
                remote_only.filter(|i| planned.local_copy(self.local, &entries[**i]).is_none());
            summary.files_transferred = remote_only.clone().count() as u64;
            summary.bytes_transferred = remote_only.map(|i| entries[*i].size).sum();
            summary.files_deleted =
                (planned.plan.deletes.len() + planned.scan.unsupported.len()) as u64;
            info!("dry run: nothing written");
            return Ok(PassResult::Done(summary));
        }
        let claimed = self.claim(kept, entries, &planned)?;
        let fetched = self.fetch(entries, &planned, claimed).await?;
        if let Some(path) = fetched.mismatch {
            // What verified is kept for the next pass; the staging stays.
            kept.keep(self.staging, &fetched.staged, entries)?;
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
        summary.files_deleted = self.commit(manifest, planned, fetched.staged).await?;
        Ok(PassResult::Done(summary))
    }

    /// Read stage: the manifest, or for a bucket plain rclone wrote, the listing.
    async fn read_manifest(&self) -> Result<Manifest, SyncError> {
        Ok(match manifest::read(self.remote).await? {
            Some((m, _)) => m,
            None => {
                let remote = crate::source::first_upload::restorable(self.remote).await?;
                manifest_from_listing(remote).await?
            }
        })
    }

    /// Scan/plan stage: scans the local tree, plans against it, hashes files of the
    /// right size to decide, and finds local files holding wanted content.
    async fn scan_plan(&self, manifest: &Manifest) -> Result<Planned, SyncError> {
        let scan = self.scan_local(manifest).await?;
        let entries = &manifest.entries;
        let records = read_records(self.local, entries, &scan.entries).await?;
        let mut p = plan(entries, &scan.entries, &records, self.opts.checksum);
        let checks = self.check_hashes(entries, &p.hash_checks).await?;
        p.downloads
            .extend(checks.iter().filter(|(_, same, _)| !same).map(|(i, ..)| *i));
        p.downloads.sort_unstable();
        let sources =
            local_sources(self.local, entries, &scan.entries, &p, checks, self.opts).await?;
        let download_bytes = p.downloads.iter().map(|i| entries[*i].size).sum();
        let planned = Planned {
            scan,
            records,
            plan: p,
            sources,
            download_bytes,
        };
        let p = &planned.plan;
        info!(
            downloads = p.downloads.len(),
            local_candidates = p
                .downloads
                .iter()
                .filter(|i| planned.local_copy(self.local, &entries[**i]).is_some())
                .count(),
            deletes = p.deletes.len(),
            entries = entries.len(),
            "plan done"
        );
        Ok(planned)
    }

    /// Scans the local tree; refuses an empty manifest over a non-empty tree
    /// (unless allowed).
    async fn scan_local(&self, manifest: &Manifest) -> Result<Scan, SyncError> {
        self.progress.phase("scanning", 0, 0);
        let root = self.local.to_path_buf();
        let scanned = tokio::task::spawn_blocking(move || scan(&root, false))
            .await
            .map_err(join_error)??;
        if manifest.entries.is_empty()
            && !scanned.entries.is_empty()
            && !self.opts.allow_empty_source
        {
            return Err(SyncError::EmptySource {
                path: self.local.to_path_buf(),
                mount_note: "",
                remote: format!(
                    "{} (restoring it would delete every local file)",
                    self.remote.description
                ),
            });
        }
        Ok(scanned)
    }

    /// Same size, other mtime: hash locally; only a real difference is downloaded.
    /// Returns (index, same content?, local SHA-256) per check.
    async fn check_hashes(
        &self,
        entries: &[Entry],
        hash_checks: &[usize],
    ) -> Result<Vec<(usize, bool, String)>, SyncError> {
        self.progress.phase("checking", hash_checks.len() as u64, 0);
        stream::iter(hash_checks.to_vec())
            .map(|i| {
                let path = self.local.join(&entries[i].path);
                let e = entries[i].clone();
                async move {
                    let d = tokio::task::spawn_blocking(move || hash_file(&path))
                        .await
                        .map_err(join_error)??;
                    let same = match (&e.sha256, &e.md5) {
                        (Some(s), _) => *s == d.sha256,
                        (None, Some(m)) => *m == d.md5,
                        (None, None) => false,
                    };
                    Ok::<_, SyncError>((i, same, d.sha256))
                }
            })
            .buffer_unordered(self.opts.hash_threads.max(1))
            .try_collect()
            .await
    }

    fn temp_of(&self, i: usize) -> PathBuf {
        self.staging.join(staged_name(i))
    }

    /// Claim stage: creates the staging directory (a kept one is reused, see
    /// `fetch::Kept`) and takes the content kept from an earlier pass.
    fn claim(
        &self,
        kept: &mut Kept,
        entries: &[Entry],
        planned: &Planned,
    ) -> Result<Claimed, SyncError> {
        if kept.is_empty() {
            std::fs::create_dir(self.staging)
                .map_err(|e| SyncError::io("creating staging directory", self.staging, e))?;
        }
        let downloads = &planned.plan.downloads;
        let claimed = kept.claim(entries, downloads, |i| self.temp_of(i))?;
        self.progress.phase(
            "downloading",
            downloads.len() as u64,
            planned.download_bytes,
        );
        for s in &claimed.staged {
            self.progress.add_bytes(entries[s.index].size);
            self.progress.file_done();
        }
        Ok(claimed)
    }

    /// Download stage: every download not claimed, largest first (a few big files
    /// then overlap the many small ones instead of trailing alone at the end of the
    /// pass), each copied from a local or staged file holding its content if any.
    async fn fetch(
        &self,
        entries: &[Entry],
        planned: &Planned,
        claimed: Claimed,
    ) -> Result<Fetched, SyncError> {
        let claimed_index: HashSet<usize> = claimed.staged.iter().map(|s| s.index).collect();
        let mut todo: Vec<usize> = planned
            .plan
            .downloads
            .iter()
            .copied()
            .filter(|i| !claimed_index.contains(i))
            .collect();
        todo.sort_by_key(|i| std::cmp::Reverse(entries[*i].size));
        // `--transfers` large files at once, or twice as many small ones: a small
        // file's time is the request's round trip, not bandwidth.
        let transfers = self.opts.transfers.max(1);
        let slots = Semaphore::new(2 * transfers);
        let results = stream::iter(todo)
            .map(|i| {
                let staged_copy = entries[i]
                    .sha256
                    .as_ref()
                    .and_then(|s| claimed.sources.get(s))
                    .cloned();
                let src = staged_copy.or_else(|| planned.local_copy(self.local, &entries[i]));
                let weight = if entries[i].size > SMALL_FILE { 2 } else { 1 };
                let slots = &slots;
                async move {
                    let _slot = slots
                        .acquire_many(weight)
                        .await
                        .map_err(|e| SyncError::Internal(format!("download slots: {e}")))?;
                    self.fetch_one(&entries[i], i, src).await
                }
            })
            .buffer_unordered(2 * transfers);
        tally(
            entries,
            claimed.staged,
            results,
            planned.plan.downloads.len(),
        )
        .await
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
                return Ok(Download::Local(Staged { index: i }));
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
        manifest: Manifest,
        planned: Planned,
        staged: Vec<Staged>,
    ) -> Result<u64, SyncError> {
        self.progress.phase("committing", 0, 0);
        let root = self.local.to_path_buf();
        let staging_dir = self.staging.to_path_buf();
        let Planned {
            scan,
            records,
            plan: p,
            ..
        } = planned;
        let deletes = p.deletes;
        let foreign: Vec<PathBuf> = scan.unsupported.into_iter().map(|u| u.rel).collect();
        let stats = tokio::task::spawn_blocking(move || {
            let r = flush_staged(&staging_dir)
                .and_then(|()| {
                    crate::destination::tree::Tree::open(&root)
                        .map_err(|e| SyncError::io("opening", &root, e))
                })
                .and_then(|tree| {
                    commit(
                        &tree,
                        &Commit {
                            entries: &manifest.entries,
                            root_meta: manifest.root.as_ref(),
                            staged: &staged,
                            deletes: &deletes,
                            foreign: &foreign,
                            records: &records,
                        },
                    )
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
    entries: &[Entry],
    claimed: Vec<Staged>,
    results: impl futures::Stream<Item = Result<Download, SyncError>>,
    total: usize,
) -> Result<Fetched, SyncError> {
    // Content kept from an earlier pass was downloaded by this run.
    let f = Fetched {
        remote_files: claimed.len() as u64,
        remote_bytes: claimed.iter().map(|s| entries[s.index].size).sum(),
        staged: claimed,
        ..Fetched::default()
    };
    let (f, failed, first) = results
        .fold(
            (f, 0usize, None),
            |(mut f, mut failed, mut first), r| async move {
                match r {
                    Ok(Download::Verified(s)) => {
                        f.remote_files += 1;
                        f.remote_bytes += entries[s.index].size;
                        f.staged.push(s);
                    }
                    Ok(Download::Local(s)) => {
                        f.local_files += 1;
                        f.local_bytes += entries[s.index].size;
                        f.staged.push(s);
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

/// Reads the restore records of the local files that could already hold a manifest
/// file (a regular file of the same size at the same path), by path.
async fn read_records(
    local: &Path,
    entries: &[Entry],
    scanned: &[ScanEntry],
) -> Result<HashMap<String, Record>, SyncError> {
    let candidates: Vec<String> = scanned
        .iter()
        .filter(|l| l.meta.kind == crate::fs::local::FileKind::File)
        .filter(|l| {
            entries
                .binary_search_by(|e| path_cmp(&e.path, &l.path))
                .is_ok_and(|i| entries[i].kind == EntryKind::File && entries[i].size == l.meta.size)
        })
        .map(|l| l.path.clone())
        .collect();
    let root = local.to_path_buf();
    tokio::task::spawn_blocking(move || {
        candidates
            .into_iter()
            .filter_map(|rel| restored::read(&root.join(&rel)).map(|r| (rel, r)))
            .collect()
    })
    .await
    .map_err(join_error)
}

/// Finds, for the content this pass must download, local files already holding it
/// (see `reuse`): wanted SHA-256 → local relative path. Hashes only local files of
/// a wanted size whose content the plan does not already know.
async fn local_sources(
    local: &Path,
    entries: &[Entry],
    scanned: &[ScanEntry],
    p: &Plan,
    checks: Vec<(usize, bool, String)>,
    opts: &SyncOptions,
) -> Result<HashMap<String, String>, SyncError> {
    // Nothing local to take content from (e.g. a restore into an empty directory):
    // no index of the wanted digests at all.
    let any_local_file = scanned
        .iter()
        .any(|l| l.meta.kind == crate::fs::local::FileKind::File);
    let wanted = if any_local_file {
        reuse::wanted(entries, &p.downloads)
    } else {
        HashMap::new()
    };
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let checked: HashMap<usize, String> = checks
        .into_iter()
        .filter(|(_, _, d)| wanted.contains_key(d.as_str()))
        .map(|(i, _, d)| (i, d))
        .collect();
    let mut ip = reuse::index_plan(entries, scanned, p, &checked, &wanted);
    let hashed: Vec<(String, Option<String>)> = stream::iter(std::mem::take(&mut ip.to_hash))
        .map(|rel| {
            let path = local.join(&rel);
            async move {
                // A file that vanished or cannot be read is simply no candidate.
                let d = tokio::task::spawn_blocking(move || hash_file(&path).ok())
                    .await
                    .map_err(join_error)?;
                Ok::<_, SyncError>((rel, d.map(|d| d.sha256)))
            }
        })
        .buffer_unordered(opts.hash_threads.max(1))
        .try_collect()
        .await?;
    for (rel, d) in hashed {
        if let Some(d) = d.filter(|d| wanted.contains_key(d.as_str())) {
            ip.known.entry(d).or_insert(rel);
        }
    }
    Ok(ip.known)
}
