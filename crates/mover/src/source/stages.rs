//! The stages of a source run, in the order of the module doc: merge, hash, then
//! per batch of work plan the writes (diff), keep committed versions (preserve)
//! and transfer; commit the manifest, then release the kept versions and delete.
//! Each stage is one function of [`Run`]; `sync` calls them in turn. The work
//! passes from stage to stage through scratch files (see `spill`), at most
//! `SyncOptions::source_batch` items in memory at once.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::diff::{Transfer, copy_candidate, plan_transfers};
use super::digest::Sha256;
use super::plan::{LinkDigests, Links, Pass, Work, finish_with};
use super::spill::{self, Sources};
use super::steps::delete_objects;
use super::unsettled::{Unsettled, convert_links};
use super::{MergeError, Merged, chunked, first_upload, hash_work, preserve};
use crate::error::SyncError;
use crate::fs::local::{LocalMeta, is_mount_point};
use crate::manifest::stream::write_merged;
use crate::manifest::{Entry, RootMeta};
use crate::options::SyncOptions;
use crate::progress::Progress;
use crate::store::listing::lists_in_order;
use crate::store::remote::Remote;
use crate::store::transfer::Uploader;
use crate::summary::Summary;

/// What every stage works with.
pub(super) struct Run<'a> {
    pub remote: &'a Remote,
    pub local: &'a Path,
    pub opts: &'a SyncOptions,
    pub progress: &'a Arc<Progress>,
}

/// What the merge stage leaves besides the counts (`Pass`).
pub(super) struct Scanned {
    /// The settled entries as JSON lines (see [`Merged::body`]).
    pub body: File,
    /// Server-side copy sources, then this run's uploads.
    pub sources: Sources,
    /// The work items (the hash stage takes them).
    pub work: Option<spill::Writer<Work>>,
    /// Objects to delete after the commit.
    pub deletes: spill::Writer<String>,
    pub root: RootMeta,
    pub prev_root: Option<RootMeta>,
    /// Committed versions kept under `.scribe/committed/`.
    pub held: HashSet<String>,
    /// Whether the previous manifest was read (not ignored as invalid).
    pub used_prev: bool,
    /// Paths the walk skipped.
    pub skipped: usize,
}

/// The work once hashed and classified.
pub(super) struct Hashed {
    pub work: spill::Reader<Work>,
    /// Objects to write and their bytes.
    pub transfers: usize,
    pub bytes: u64,
}

/// What the write stage leaves for the commit.
pub(super) struct Written {
    /// The work's entries as written, in path order.
    pub entries: spill::Writer<Entry>,
    /// Committed versions kept by this run, to release after the commit.
    pub release: spill::Writer<String>,
}

impl Run<'_> {
    /// Merge stage: merges walk, previous manifest and listing, redoing the pass
    /// without the manifest (invalid) or with a sorted listing (out of order), then
    /// refuses unsupported names and an unexpectedly empty source.
    pub async fn merge(&self) -> Result<(Pass, Scanned), SyncError> {
        self.progress.phase("scanning", 0, 0);
        let (mut use_prev, mut sort_listing) = (true, !lists_in_order(self.remote));
        let merged = loop {
            match super::merge(self.remote, self.local, self.opts, use_prev, sort_listing).await {
                Ok(m) => break m,
                Err(MergeError::PrevInvalid(e)) if use_prev => {
                    warn!(error = %e, "ignoring the previous manifest; every file will be hashed and checked");
                    use_prev = false;
                }
                Err(MergeError::Unsorted { after, key }) if !sort_listing => {
                    warn!(after = %after, key = %key, "the store does not list keys in byte order; listing again and sorting");
                    sort_listing = true;
                }
                Err(MergeError::PrevInvalid(e) | MergeError::Failed(e)) => return Err(e),
                Err(MergeError::Unsorted { after, key }) => {
                    return Err(SyncError::Internal(format!(
                        "sorted listing out of order: {key} after {after}"
                    )));
                }
            }
        };
        self.check_merged(&merged)?;
        let scanned = Scanned {
            body: merged.body,
            sources: merged.sources,
            work: Some(merged.work),
            deletes: merged.deletes,
            root: root_meta(&merged.root),
            prev_root: merged.prev_root,
            held: merged.held,
            used_prev: use_prev,
            skipped: merged.skipped,
        };
        Ok((merged.pass, scanned))
    }

    /// Refuses paths that cannot be replicated, and an empty source where the
    /// remote has files (unless allowed).
    fn check_merged(&self, merged: &Merged) -> Result<(), SyncError> {
        if !merged.unsupported.is_empty() {
            // Never report success without them: a human has to rename them.
            for u in &merged.unsupported {
                warn!(path = %u, "cannot replicate this path");
            }
            return Err(SyncError::unsupported_names(&merged.unsupported));
        }
        let pass = &merged.pass;
        if pass.entries == 0
            && (pass.prev_entries > 0 || pass.remote_objects > 0)
            && !self.opts.allow_empty_source
        {
            return Err(SyncError::EmptySource {
                path: self.local.to_path_buf(),
                mount_note: if is_mount_point(self.local) {
                    ""
                } else {
                    " (and is not a mount point)"
                },
                remote: self.remote.description.clone(),
            });
        }
        Ok(())
    }

    /// Hash stage: hashes the work batch by batch, each file until it holds still
    /// or is given up on, then classifies it; the hashed work goes to a scratch file.
    pub async fn hash(
        &self,
        pass: &mut Pass,
        scanned: &mut Scanned,
        unsettled: &mut Unsettled,
    ) -> Result<Hashed, SyncError> {
        let mut work = scanned
            .work
            .take()
            .ok_or_else(|| SyncError::Internal("the work was hashed twice".into()))?
            .into_reader()?;
        let mut out = spill::Writer::new("hashed work scratch file")?;
        self.progress
            .phase("hashing", pass.to_hash as u64, pass.to_hash_bytes);
        let (mut links, mut targets) = (Links::new(), HashSet::new());
        let (mut transfers, mut bytes) = (0, 0);
        loop {
            let mut batch = work.batch(self.opts.source_batch)?;
            if batch.is_empty() {
                break;
            }
            convert_links(&mut batch, &targets, true);
            loop {
                let seen = hash_work(&mut batch, self.local, self.opts, self.progress).await?;
                if seen.is_empty() {
                    break;
                }
                // Hardlinks of a file left unsettled become files of their own, hashed next round.
                pass.entries -= unsettled.settle(&mut batch, seen, true, &mut targets);
                for path in unsettled.deletes.drain(..) {
                    scanned.deletes.push(&path)?;
                }
            }
            let planned = finish_with(&mut batch, &links)?;
            transfers += planned.len();
            bytes += planned.iter().map(|t| t.size).sum::<u64>();
            for w in &batch {
                if w.linked {
                    let e = &w.entry;
                    links.insert(
                        e.path.clone(),
                        LinkDigests {
                            sha256: e.sha256.clone(),
                            md5: e.md5.clone(),
                            size: e.size,
                        },
                    );
                }
                out.push(w)?;
            }
        }
        info!(
            entries = pass.entries,
            unchanged = pass.settled,
            work = out.count(),
            reused = pass.reused,
            transfers,
            deletes = scanned.deletes.count(),
            skipped = scanned.skipped,
            "merged and hashed"
        );
        Ok(Hashed {
            work: out.into_reader()?,
            transfers,
            bytes,
        })
    }

    /// A dry run ends after the hash stage: the summary of what would be written.
    pub fn dry_run(&self, hashed: &Hashed, scanned: &Scanned, summary: &mut Summary) {
        summary.files_transferred = hashed.transfers as u64;
        summary.bytes_transferred = hashed.bytes;
        summary.files_deleted = scanned.deletes.count() as u64;
        info!("dry run: nothing written");
    }

    /// Before the first write: marks a first upload (when no manifest with
    /// entries was read) and aborts uploads a killed run left. Returns whether the
    /// marker was written.
    pub async fn prepare_writes(&self, pass: &Pass, scanned: &Scanned) -> Result<bool, SyncError> {
        // A manifest with entries was just read, so only an empty or absent one needs the check.
        let marker = if scanned.used_prev && pass.prev_entries > 0 {
            false
        } else {
            let m = first_upload::Marker {
                started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                host: first_upload::host_name(),
            };
            first_upload::begin(self.remote, &m).await?
        };
        super::leftovers::abort_incomplete_uploads(self.remote).await;
        Ok(marker)
    }

    /// Write stage, batch by batch: orders the batch's transfers into writes
    /// (server-side copies where an object holds the content, see [`Sources`]),
    /// keeps the committed version of every object it overwrites (see `preserve`),
    /// then runs the writes in chunks; files that changed while uploaded keep their
    /// committed entry (see `unsettled`). Each finished batch goes to a scratch file.
    pub async fn write(
        &self,
        mut hashed: Hashed,
        pass: &mut Pass,
        scanned: &mut Scanned,
        unsettled: &mut Unsettled,
        summary: &mut Summary,
    ) -> Result<Written, SyncError> {
        let uploader = Uploader::new(
            self.remote.clone(),
            self.local.to_path_buf(),
            self.opts.memory_budget,
            Arc::clone(self.progress),
        )
        .with_cancel(self.opts.cancel.clone());
        self.progress
            .phase("transferring", hashed.transfers as u64, hashed.bytes);
        let mut written = Written {
            entries: spill::Writer::new("written entries scratch file")?,
            release: spill::Writer::new("kept versions scratch file")?,
        };
        let mut targets = HashSet::new();
        loop {
            if self.opts.cancel.is_cancelled() {
                return Err(SyncError::Interrupted);
            }
            let mut batch = hashed.work.batch(self.opts.source_batch)?;
            if batch.is_empty() {
                break;
            }
            convert_links(&mut batch, &targets, false);
            let seen = self
                .write_batch(&uploader, &mut batch, scanned, &mut written, summary)
                .await?;
            // Their hardlinks were written as objects of their own: they become plain files.
            pass.entries -= unsettled.settle(&mut batch, seen, false, &mut targets);
            summary.files_skipped_changing = unsettled.changing;
            for path in unsettled.deletes.drain(..) {
                scanned.deletes.push(&path)?;
            }
            if self.opts.cancel.is_cancelled() {
                return Err(SyncError::Interrupted);
            }
            for w in batch {
                if w.transfer && w.entry.size > 0 {
                    // Written and verified: a copy source for later batches.
                    if let Some(sha) = &w.entry.sha256 {
                        scanned.sources.add(sha, &w.entry.path, false)?;
                    }
                } else if !w.transfer
                    && let (Some(p), Some(r)) = (&w.prev, &w.remote)
                    && let Some(sha) = copy_candidate(p, r)
                {
                    // Not overwritten after all: still a copy source for later batches.
                    scanned.sources.add(sha, &p.path, false)?;
                }
                written.entries.push(&w.entry)?;
            }
        }
        Ok(written)
    }

    /// One batch of the write stage; returns the items given up on: (index, vanished?).
    async fn write_batch(
        &self,
        uploader: &Uploader,
        batch: &mut [Work],
        scanned: &mut Scanned,
        written: &mut Written,
        summary: &mut Summary,
    ) -> Result<Vec<(usize, bool)>, SyncError> {
        let transfers: Vec<Transfer> = batch
            .iter()
            .filter(|w| w.transfer)
            .filter_map(|w| {
                Some(Transfer {
                    path: w.entry.path.clone(),
                    sha256: w.entry.sha256.as_deref().and_then(Sha256::parse)?,
                    size: w.entry.size,
                })
            })
            .collect();
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: HashSet<Sha256> = transfers
            .iter()
            .filter(|t| t.size > 0)
            .map(|t| t.sha256.clone())
            .collect();
        let overwritten: HashSet<&str> = transfers.iter().map(|t| t.path.as_str()).collect();
        let first = batch.first().map_or("", |w| w.entry.path.as_str());
        let sources = match scanned.sources.find(&wanted, first, &overwritten) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "could not look for server-side copy sources; uploading instead");
                Default::default()
            }
        };
        drop(overwritten);
        let steps = plan_transfers(&transfers, &sources);
        drop((sources, wanted, transfers));
        let keep = preserve::plan(batch, &scanned.held);
        let opts = self.opts;
        for sha in preserve::preserve(self.remote, &keep, opts.transfers, &opts.cancel).await? {
            written.release.push(&sha)?;
        }
        drop(keep);
        chunked::run_chunked(
            uploader,
            &steps,
            batch,
            opts.transfers,
            self.progress,
            summary,
        )
        .await
    }

    /// Commit stage: writes the new manifest (the settled entries merged with the
    /// written work), then clears the first-upload marker.
    pub async fn commit(
        &self,
        pass: &Pass,
        body: File,
        root: RootMeta,
        work: spill::Writer<Entry>,
        marker: bool,
    ) -> Result<(), SyncError> {
        let entries = pass.entries;
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let work = work.into_reader()?;
        write_merged(self.remote, body, work, entries, &created_at, root).await?;
        info!(entries, "manifest committed");
        if marker {
            first_upload::finish(self.remote).await;
        }
        Ok(())
    }

    /// After the commit: releases the committed versions kept (found, or made by
    /// this run), a batch at a time.
    pub async fn release(
        &self,
        held: HashSet<String>,
        kept: spill::Writer<String>,
    ) -> Result<(), SyncError> {
        let transfers = self.opts.transfers;
        preserve::release(self.remote, held, transfers).await;
        let mut kept = kept.into_reader()?;
        loop {
            let batch = kept.batch(self.opts.source_batch)?;
            if batch.is_empty() {
                return Ok(());
            }
            preserve::release(self.remote, batch, transfers).await;
        }
    }

    /// Delete stage, after the commit: objects no longer in the source, a batch at
    /// a time.
    pub async fn delete(
        &self,
        deletes: spill::Writer<String>,
        summary: &mut Summary,
    ) -> Result<(), SyncError> {
        let mut deletes = deletes.into_reader()?;
        self.progress.phase("deleting", deletes.len() as u64, 0);
        loop {
            let batch = deletes.batch(self.opts.source_batch)?;
            if batch.is_empty() {
                return Ok(());
            }
            summary.files_deleted +=
                delete_objects(self.remote, &batch, self.opts.transfers, self.progress).await?;
        }
    }
}

/// Nothing to write and every entry as committed: the manifest stays as it is.
pub(super) fn nothing_changed(pass: &Pass, scanned: &Scanned, unsettled: &Unsettled) -> bool {
    scanned.used_prev
        && pass.work_items == 0
        && scanned.deletes.count() == 0
        && unsettled.changing == 0
        && pass.entries == pass.prev_entries
        && pass.same_as_prev == pass.prev_entries
        && scanned.prev_root.as_ref() == Some(&scanned.root)
        && scanned.held.is_empty()
}

/// The root directory's metadata as the manifest records it.
fn root_meta(m: &LocalMeta) -> RootMeta {
    RootMeta {
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime_sec: m.mtime_sec,
        mtime_nsec: m.mtime_nsec,
    }
}
