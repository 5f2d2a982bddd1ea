//! Destination direction: read the manifest (or, for a bucket written by plain
//! rclone, the listing with its `mtime` / MD5 metadata), plan against the local
//! tree, download what changed into a staging directory inside the tree while
//! verifying every byte, and only when the whole pass verified commit it (see
//! `restore`). Content a local file already holds is copied from it instead (see
//! `reuse`); the summary counts only what was downloaded. The manifest waits in a
//! scratch file and every per-file decision is a bit per entry (see `entries`), so
//! memory does not follow the number of files.
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

pub mod entries;
pub mod fetch;
mod pass;
pub mod restore;
pub mod restored;
pub mod reuse;
pub mod tree;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::{Attribute, GetOptions, ObjectStore};
use tracing::{info, warn};

use self::fetch::Kept;
use self::pass::{Pass, PassResult};
use crate::error::SyncError;
use crate::fs::hash::{etag_md5, md5_from_chksum, parse_rclone_mtime};
use crate::fs::local::parent_rel;
use crate::fs::local::{LocalMeta, remove_any};
use crate::fs::paths::{check_relative, key_for, path_cmp};
use crate::fs::scan::STAGING_DIR;
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::options::SyncOptions;
use crate::store::remote::Remote;
use crate::summary::Summary;

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
        let pass = Pass {
            remote,
            local,
            staging: &staging,
            opts,
            progress: &progress,
        };
        let result = pass.run(&mut kept).await;
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

/// How one download ended: staged (manifest index and size), or a mismatch (path).
enum Download {
    Verified(usize, u64),
    /// Copied from a local file holding the same content, verified while copying.
    Local(usize, u64),
    Mismatch(String),
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
