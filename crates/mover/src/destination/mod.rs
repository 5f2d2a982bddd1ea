//! Destination direction: read the manifest (or, for a bucket written by plain
//! rclone, the listing with its `mtime` / MD5 metadata), plan against the local
//! tree, download what changed into a staging directory inside the tree while
//! verifying every byte, and only when the whole pass verified commit it (see
//! `restore`). Content a local file already holds is copied from it instead (see
//! `reuse`); the summary counts only what was downloaded. A mismatch means the
//! source is mid-upload: the staging is dropped, the manifest re-read and the pass
//! retried; after `max_attempts` the run fails with the tree as it was.
//!
//! What is already in place is decided by content: each restored file carries a
//! record of the content it holds (see `restored`), read before planning; a file
//! without a usable record is re-hashed. Local names no manifest can hold (not
//! UTF-8, control characters) are removed like any other path the manifest lacks.

pub mod restore;
pub mod restored;
pub mod reuse;
pub mod tree;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt};
use tracing::{info, warn};

use self::restore::{Commit, Staged, commit, plan};
use self::restored::Record;
use crate::error::{SyncError, join_error};
use crate::fs::hash::{DualHasher, etag_md5, hash_file, md5_from_chksum, parse_rclone_mtime};
use crate::fs::local::parent_rel;
use crate::fs::local::{create_new_nofollow, remove_any};
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

    let attempts = opts.max_attempts.max(1);
    let mut last_mismatch = String::new();
    for attempt in 1..=attempts {
        match pass(remote, local, &staging, opts, &progress).await? {
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
                warn!(path = %path, attempt, attempts, "remote data does not match the manifest (source mid-upload?); re-reading the manifest");
                last_mismatch = path;
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

    // Creating and removing the staging directory touches the root's times; a failed
    // pass puts them back so it leaves the tree exactly as it was.
    let root_times =
        crate::fs::local::lstat(local).map_err(|e| SyncError::io("reading", local, e))?;
    std::fs::create_dir(staging)
        .map_err(|e| SyncError::io("creating staging directory", staging, e))?;
    progress.phase("downloading", p.downloads.len() as u64, download_bytes);
    // Largest first: a few big files then overlap the many small ones instead of
    // trailing alone at the end of the pass (path order put them last).
    let mut order = p.downloads.clone();
    order.sort_by_key(|i| std::cmp::Reverse(entries[*i].size));
    let results: Vec<Result<Download, SyncError>> = stream::iter(order)
        .map(|i| {
            let temp = staging.join(format!("f-{i}"));
            let progress = Arc::clone(progress);
            let src = from_local(i);
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
    let mut staged = Vec::new();
    let (mut local_files, mut local_bytes) = (0u64, 0u64);
    let (mut remote_files, mut remote_bytes) = (0u64, 0u64);
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
    if mismatch.is_some() || !errors.is_empty() {
        remove_any(staging).map_err(|e| SyncError::io("removing staging", staging, e))?;
        if let Some(t) = root_times {
            crate::fs::local::set_times_nofollow(local, t.mtime_sec, t.mtime_nsec)
                .map_err(|e| SyncError::io("restoring times of", local, e))?;
        }
        let failed = errors.len();
        if let Some(first) = errors.into_iter().next() {
            return Err(SyncError::Transfers {
                failed,
                total: p.downloads.len(),
                first: Box::new(first),
            });
        }
        return Ok(PassResult::Mismatch(mismatch.unwrap_or_default()));
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

/// Streams one object into `temp`, verifying size and digest; zero blocks are
/// skipped (left as holes), so sparse files stay sparse.
async fn download(
    remote: &Remote,
    e: &Entry,
    temp: PathBuf,
    index: usize,
    progress: &Progress,
) -> Result<Download, SyncError> {
    let key = key_for(&remote.prefix, &e.path)?;
    let got = match remote.store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(Download::Mismatch(e.path.clone())),
        Err(err) => return Err(SyncError::store("downloading", &key, err)),
    };
    let mut body = got.into_stream();
    let t = temp.clone();
    let mut writer = Some(
        tokio::task::spawn_blocking(move || create_new_nofollow(&t).map(SparseWriter::new))
            .await
            .map_err(join_error)?
            .map_err(|err| SyncError::io("creating", &temp, err))?,
    );
    let mut hasher = DualHasher::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| SyncError::store("downloading", &key, err))?;
        hasher.update(&chunk);
        progress.add_bytes(chunk.len() as u64);
        let mut w = writer.take().expect("writer present between chunks");
        let t = temp.clone();
        writer = Some(
            tokio::task::spawn_blocking(move || w.write(&chunk).map(|()| w))
                .await
                .map_err(join_error)?
                .map_err(|err| SyncError::io("writing", &t, err))?,
        );
    }
    let w = writer.take().expect("writer present at end");
    let t = temp.clone();
    tokio::task::spawn_blocking(move || w.finish())
        .await
        .map_err(join_error)?
        .map_err(|err| SyncError::io("writing", &t, err))?;
    let d = hasher.finish();
    let ok = d.size == e.size
        && match (&e.sha256, &e.md5) {
            (Some(s), _) => *s == d.sha256,
            (None, Some(m)) => *m == d.md5,
            (None, None) => true,
        };
    progress.file_done();
    if !ok {
        return Ok(Download::Mismatch(e.path.clone()));
    }
    Ok(Download::Verified(Staged { index, temp }))
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
/// metadata). Unsafe keys are refused.
async fn manifest_from_listing(remote: &Remote) -> Result<Manifest, SyncError> {
    let objects = crate::source::list_objects(remote).await?;
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
    for e in &entries {
        let mut p = parent_rel(&e.path);
        while !p.is_empty() {
            dirs.push(p.to_string());
            p = parent_rel(p);
        }
    }
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
