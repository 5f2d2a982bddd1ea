//! Destination direction: read the manifest (or, for a bucket written by plain
//! rclone, the listing with its `mtime` / MD5 metadata), plan against the local
//! tree, download what changed into a staging directory inside the tree while
//! verifying every byte, and only when the whole pass verified commit it (see
//! `restore`). Content a local file already holds is copied from it instead (see
//! `reuse`); the summary counts only what was downloaded.
//!
//! The last committed state is restorable at every moment: an object that does not
//! hold what the manifest promises (a source run overwrote it and has not committed
//! yet, or was killed) is taken from the committed version the source kept under
//! `.scribe/committed/` (see `fetch`, `source::preserve`). Only when neither
//! verifies is it a mismatch (a source committed again under us): the pass keeps
//! what it verified, re-reads the manifest and retries, taking still-wanted content
//! from what it kept; after `max_attempts` the run fails (transient) with the tree
//! as it was.
//!
//! What is already in place is decided by content: each restored file carries a
//! record of the content it holds (see `restored`), read before planning; a file
//! without a usable record is re-hashed. Local names no manifest can hold (not
//! UTF-8, control characters) are removed like any other path the manifest lacks.

pub mod fetch;
pub mod restore;
pub mod restored;
pub mod reuse;
pub mod tree;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::{Attribute, GetOptions, ObjectStore};
use tracing::{info, warn};

use self::fetch::{Kept, download};
use self::restore::{Commit, Staged, commit, plan};
use self::restored::Record;
use crate::error::{SyncError, join_error};
use crate::fs::hash::{etag_md5, hash_file, md5_from_chksum, parse_rclone_mtime};
use crate::fs::local::parent_rel;
use crate::fs::local::{LocalMeta, remove_any};
use crate::fs::paths::{check_relative, key_for, path_cmp};
use crate::fs::scan::{STAGING_DIR, scan};
use crate::manifest::{self, Entry, EntryKind, Manifest};
use crate::options::SyncOptions;
use crate::progress::Progress;
use crate::store::remote::Remote;
use crate::summary::{Direction, Summary};

/// Restores `remote` into `local`; see the module doc.
pub async fn sync(remote: &Remote, local: &Path, opts: &SyncOptions) -> Result<Summary, SyncError> {
    let (started, progress, _reporter) = crate::progress::begin(local, opts.progress_interval)?;
    info!(remote = %remote.description, local = %local.display(), "destination sync starting");
    let staging = local.join(STAGING_DIR);
    if !opts.dry_run {
        remove_any(&staging)
            .map_err(|e| SyncError::io("removing leftover staging", &staging, e))?;
    }

    // Creating and removing the staging directory touches the root's times; a failed
    // run puts them back so it leaves the tree exactly as it was.
    let root_times = if opts.dry_run {
        None
    } else {
        crate::fs::local::lstat(local).map_err(|e| SyncError::io("reading", local, e))?
    };
    let attempts = opts.max_attempts.max(1);
    let mut last_mismatch = String::new();
    let mut kept = Kept::default();
    for attempt in 1..=attempts {
        let result = pass(remote, local, &staging, opts, &progress, &mut kept).await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                drop_staging(local, &staging, root_times.as_ref())?;
                return Err(e);
            }
        };
        match result {
            PassResult::Done(mut summary) => {
                summary.duration_seconds = started.elapsed().as_secs_f64();
                info!(
                    files_transferred = summary.files_transferred,
                    bytes_transferred = summary.bytes_transferred,
                    files_deleted = summary.files_deleted,
                    attempt,
                    "destination sync done"
                );
                return Ok(summary);
            }
            PassResult::Mismatch(path) => {
                warn!(path = %path, attempt, attempts, "remote data does not match the manifest (a source committed under us?); re-reading the manifest");
                last_mismatch = path;
                if kept.is_empty() || attempt == attempts {
                    drop_staging(local, &staging, root_times.as_ref())?;
                    kept = Kept::default();
                }
                if attempt < attempts {
                    tokio::time::sleep(opts.retry_delay).await;
                }
            }
        }
    }
    Err(SyncError::DownloadMismatch {
        path: last_mismatch,
        attempts,
    })
}

/// Removes the staging directory, if any, and puts the root's times back.
fn drop_staging(local: &Path, staging: &Path, root: Option<&LocalMeta>) -> Result<(), SyncError> {
    if crate::fs::local::lstat(staging)
        .map_err(|e| SyncError::io("reading", staging, e))?
        .is_none()
    {
        return Ok(());
    }
    remove_any(staging).map_err(|e| SyncError::io("removing staging", staging, e))?;
    if let Some(t) = root {
        crate::fs::local::set_times_nofollow(local, t.mtime_sec, t.mtime_nsec)
            .map_err(|e| SyncError::io("restoring times of", local, e))?;
    }
    Ok(())
}

enum PassResult {
    Done(Summary),
    /// A downloaded object did not match what the manifest promised.
    Mismatch(String),
}

async fn pass(
    remote: &Remote,
    local: &Path,
    staging: &Path,
    opts: &SyncOptions,
    progress: &Arc<Progress>,
    kept: &mut Kept,
) -> Result<PassResult, SyncError> {
    let manifest = match manifest::read(remote).await? {
        Some((m, _)) => m,
        None => {
            manifest_from_listing(crate::source::first_upload::restorable(remote).await?).await?
        }
    };
    progress.phase("scanning", 0, 0);
    let root = local.to_path_buf();
    let scanned = tokio::task::spawn_blocking(move || scan(&root, false))
        .await
        .map_err(join_error)??;
    if manifest.entries.is_empty() && !scanned.entries.is_empty() && !opts.allow_empty_source {
        return Err(SyncError::EmptySource {
            path: local.to_path_buf(),
            mount_note: "",
            remote: format!(
                "{} (restoring it would delete every local file)",
                remote.description
            ),
        });
    }
    let entries = &manifest.entries;
    let records = read_records(local, entries, &scanned.entries).await?;
    let mut p = plan(entries, &scanned.entries, &records, opts.checksum);

    let mut summary = Summary::new(Direction::Destination);
    for e in entries.iter().filter(|e| e.kind.has_object()) {
        summary.files_checked += 1;
        summary.bytes_checked += e.size;
    }

    // Same size, other mtime: hash locally; only a real difference is downloaded.
    progress.phase("checking", p.hash_checks.len() as u64, 0);
    let checks: Vec<(usize, bool, String)> = stream::iter(p.hash_checks.clone())
        .map(|i| {
            let path = local.join(&entries[i].path);
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
        .buffer_unordered(opts.hash_threads.max(1))
        .try_collect()
        .await?;
    p.downloads
        .extend(checks.iter().filter(|(_, same, _)| !same).map(|(i, ..)| *i));
    p.downloads.sort_unstable();

    let sources = local_sources(local, entries, &scanned.entries, &p, checks, opts).await?;
    let from_local = |i: usize| {
        entries[i]
            .sha256
            .as_ref()
            .and_then(|s| sources.get(s))
            .map(|rel| local.join(rel))
    };
    let download_bytes: u64 = p.downloads.iter().map(|i| entries[*i].size).sum();
    info!(
        downloads = p.downloads.len(),
        local_candidates = p
            .downloads
            .iter()
            .filter(|i| from_local(**i).is_some())
            .count(),
        deletes = p.deletes.len(),
        entries = entries.len(),
        "plan done"
    );
    if opts.dry_run {
        let remote_only = p.downloads.iter().filter(|i| from_local(**i).is_none());
        summary.files_transferred = remote_only.clone().count() as u64;
        summary.bytes_transferred = remote_only.map(|i| entries[*i].size).sum();
        summary.files_deleted = (p.deletes.len() + scanned.unsupported.len()) as u64;
        info!("dry run: nothing written");
        return Ok(PassResult::Done(summary));
    }

    // A kept staging directory (see `fetch::Kept`) is reused.
    if kept.is_empty() {
        std::fs::create_dir(staging)
            .map_err(|e| SyncError::io("creating staging directory", staging, e))?;
    }
    let temp_of = |i: usize| staging.join(format!("f-{i}"));
    let claimed = kept.claim(entries, &p.downloads, temp_of)?;
    let claimed_index: std::collections::HashSet<usize> =
        claimed.staged.iter().map(|s| s.index).collect();
    progress.phase("downloading", p.downloads.len() as u64, download_bytes);
    for s in &claimed.staged {
        progress.add_bytes(entries[s.index].size);
        progress.file_done();
    }
    // Largest first: a few big files then overlap the many small ones instead of
    // trailing alone at the end of the pass (path order put them last).
    let mut todo: Vec<usize> = p
        .downloads
        .iter()
        .copied()
        .filter(|i| !claimed_index.contains(i))
        .collect();
    todo.sort_by_key(|i| std::cmp::Reverse(entries[*i].size));
    let results: Vec<Result<Download, SyncError>> = stream::iter(todo)
        .map(|i| {
            let temp = temp_of(i);
            let progress = Arc::clone(progress);
            let staged_copy = entries[i]
                .sha256
                .as_ref()
                .and_then(|s| claimed.sources.get(s))
                .cloned();
            let src = staged_copy.or_else(|| from_local(i));
            async move {
                if let Some(src) = src {
                    let e = &entries[i];
                    let (t, owned) = (temp.clone(), e.clone());
                    let from = src.clone();
                    let copied = tokio::task::spawn_blocking(move || {
                        reuse::copy_verified(&from, &t, &owned)
                    })
                    .await
                    .map_err(join_error)??;
                    if copied == reuse::Copied::Verified {
                        progress.add_bytes(e.size);
                        progress.file_done();
                        return Ok(Download::Local(Staged { index: i, temp }));
                    }
                    warn!(path = %e.path, from = %src.display(), "local file no longer holds the wanted content; downloading");
                }
                download(remote, &entries[i], temp, i, &progress).await
            }
        })
        .buffer_unordered(opts.transfers.max(1))
        .collect()
        .await;
    let (mut local_files, mut local_bytes) = (0u64, 0u64);
    // Content kept from an earlier pass was downloaded by this run.
    let mut remote_files = claimed.staged.len() as u64;
    let mut remote_bytes: u64 = claimed.staged.iter().map(|s| entries[s.index].size).sum();
    let mut staged = claimed.staged;
    let mut mismatch = None;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(Download::Verified(s)) => {
                remote_files += 1;
                remote_bytes += entries[s.index].size;
                staged.push(s);
            }
            Ok(Download::Local(s)) => {
                local_files += 1;
                local_bytes += entries[s.index].size;
                staged.push(s);
            }
            Ok(Download::Mismatch(path)) => mismatch = mismatch.or(Some(path)),
            Err(e) => errors.push(e),
        }
    }
    let failed = errors.len();
    if let Some(first) = errors.into_iter().next() {
        return Err(SyncError::Transfers {
            failed,
            total: p.downloads.len(),
            first: Box::new(first),
        });
    }
    if let Some(path) = mismatch {
        // What verified is kept for the next pass; the staging stays.
        kept.keep(staging, &staged, entries)?;
        return Ok(PassResult::Mismatch(path));
    }
    // The summary counts what crossed the network; local copies are only logged.
    summary.files_transferred = remote_files;
    summary.bytes_transferred = remote_bytes;
    if local_files > 0 {
        info!(
            files = local_files,
            bytes = local_bytes,
            "produced from local files holding the same content instead of downloading"
        );
    }

    progress.phase("committing", 0, 0);
    let root = local.to_path_buf();
    let staging_dir = staging.to_path_buf();
    let deletes = std::mem::take(&mut p.deletes);
    let foreign: Vec<PathBuf> = scanned.unsupported.into_iter().map(|u| u.rel).collect();
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
    summary.files_deleted = stats.deleted;
    Ok(PassResult::Done(summary))
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

enum Download {
    Verified(Staged),
    /// Copied from a local file holding the same content, verified while copying.
    Local(Staged),
    Mismatch(String),
}

/// Reads the restore records of the local files that could already hold a manifest
/// file (a regular file of the same size at the same path), by path.
async fn read_records(
    local: &Path,
    entries: &[Entry],
    scanned: &[crate::fs::scan::ScanEntry],
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
    scanned: &[crate::fs::scan::ScanEntry],
    p: &crate::destination::restore::Plan,
    checks: Vec<(usize, bool, String)>,
    opts: &SyncOptions,
) -> Result<HashMap<String, String>, SyncError> {
    let wanted = reuse::wanted(entries, &p.downloads);
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let checked: HashMap<usize, String> = checks
        .into_iter()
        .filter(|(_, _, d)| wanted.contains_key(d))
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
        if let Some(d) = d.filter(|d| wanted.contains_key(d)) {
            ip.known.entry(d).or_insert(rel);
        }
    }
    Ok(ip.known)
}

/// Writes a file in 64 KiB blocks, seeking over all-zero blocks.
pub(crate) struct SparseWriter {
    file: std::fs::File,
    buf: Vec<u8>,
    len: u64,
}

const BLOCK: usize = 64 * 1024;

impl SparseWriter {
    pub(crate) fn new(file: std::fs::File) -> Self {
        Self {
            file,
            buf: Vec::with_capacity(BLOCK),
            len: 0,
        }
    }

    pub(crate) fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BLOCK {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.buf.iter().all(|b| *b == 0) {
            self.file.seek(SeekFrom::Current(self.buf.len() as i64))?;
        } else {
            self.file.write_all(&self.buf)?;
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.flush_block()?;
        }
        // Trailing holes need the length set explicitly. Made durable by one
        // `flush_staged` before the commit, not an fsync per file.
        self.file.set_len(self.len)
    }
}

/// Mode of a file restored from a bucket without a manifest: rclone's default.
pub const RCLONE_FILE_MODE: u32 = 0o644;

/// For a bucket with no manifest (written by plain rclone): the listing as a manifest,
/// with mtimes from rclone's `mtime` metadata (else LastModified), MD5s from the
/// ETag or `md5chksum`, and the implied parent directories (left with their local
/// metadata), and a directory for each folder marker (`dir/`) no file holds the
/// name of. Unsafe keys are refused.
async fn manifest_from_listing(remote: &Remote) -> Result<Manifest, SyncError> {
    let (mut objects, folders) = crate::store::listing::list_tree(remote).await?;
    // The destination's download area, copied by a tool that synced a volume while
    // a destination ran: Scribe's scratch, never data.
    objects.retain(|o| {
        let scratch = o.path.split('/').next() == Some(STAGING_DIR);
        if scratch {
            warn!(key = %o.path, "skipping an object under the staging directory's name");
        }
        !scratch
    });
    let mut entries: Vec<Entry> = stream::iter(objects)
        .map(|o| async move {
            check_relative(&format!("object key under {}", remote.prefix), &o.path)?;
            let key = key_for(&remote.prefix, &o.path)?;
            let head = remote
                .store
                .get_opts(
                    &key,
                    GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|err| SyncError::store("reading metadata of", &key, err))?;
            let meta = |name: &'static str| {
                head.attributes
                    .get(&Attribute::Metadata(name.into()))
                    .map(|v| v.as_ref().to_string())
            };
            let mut e = Entry::new(o.path.clone(), EntryKind::File);
            e.size = o.size;
            // What rclone gives the files it writes (0666 less the usual umask).
            e.mode = Some(RCLONE_FILE_MODE);
            e.md5 = o
                .etag
                .as_deref()
                .and_then(etag_md5)
                .or_else(|| meta("md5chksum").as_deref().and_then(md5_from_chksum));
            let (sec, nsec) = meta("mtime")
                .as_deref()
                .and_then(parse_rclone_mtime)
                .unwrap_or_else(|| {
                    let t = head.meta.last_modified;
                    (t.timestamp(), t.timestamp_subsec_nanos())
                });
            (e.mtime_sec, e.mtime_nsec) = (sec, nsec);
            e.etag = o.etag;
            Ok::<_, SyncError>(e)
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut dirs: Vec<String> = Vec::new();
    {
        let files: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        for f in folders {
            if let Some(reason) = crate::fs::paths::unsafe_reason(&f) {
                warn!(marker = %f, reason, "skipping a folder marker");
                continue;
            }
            let mut at = f.as_str();
            while !at.is_empty() && !files.contains(at) {
                at = parent_rel(at);
            }
            if at.is_empty() {
                dirs.push(f);
            } else {
                warn!(marker = %f, file = %at, "a folder marker conflicts with a file; restoring the file");
            }
        }
    }
    let mut implied: Vec<String> = Vec::new();
    for path in entries
        .iter()
        .map(|e| e.path.as_str())
        .chain(dirs.iter().map(String::as_str))
    {
        let mut p = parent_rel(path);
        while !p.is_empty() {
            implied.push(p.to_string());
            p = parent_rel(p);
        }
    }
    dirs.extend(implied);
    dirs.sort();
    dirs.dedup();
    entries.extend(dirs.into_iter().map(|d| Entry::new(d, EntryKind::Dir)));
    entries.sort_by(|a, b| path_cmp(&a.path, &b.path));
    // A key that is both an object and a prefix ("a" and "a/b") cannot be a tree.
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(SyncError::UnsafePath {
            origin: "object listing".into(),
            path: w[0].path.clone(),
            reason: "is both a file and a directory",
        });
    }
    Ok(Manifest {
        created_at: String::new(),
        root: None,
        entries,
    })
}
