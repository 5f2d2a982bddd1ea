//! The stages of a source run, in the order of the module doc: merge, hash, plan
//! the transfers (diff), keep committed versions (preserve), transfer, commit the
//! manifest, then release the kept versions and delete. Each stage is one function
//! of [`Run`]; `sync` calls them in turn.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::diff::{Step, Transfer, plan_transfers};
use super::plan::{Pass, finish};
use super::steps::delete_objects;
use super::unsettled::Unsettled;
use super::{MergeError, Merged, chunked, find_copy_sources, first_upload, hash_work, preserve};
use crate::error::SyncError;
use crate::fs::local::{LocalMeta, is_mount_point};
use crate::manifest::RootMeta;
use crate::manifest::stream::write_merged;
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

/// What the merge stage leaves besides the work (`Pass`).
pub(super) struct Scanned {
    /// The settled entries as JSON lines (see [`Merged::body`]).
    pub body: File,
    /// Server-side copy sources (see [`Merged::candidates`]); the diff stage takes it.
    pub candidates: Option<File>,
    pub root: RootMeta,
    pub prev_root: Option<RootMeta>,
    /// Committed versions kept under `.scribe/committed/`.
    pub held: HashSet<String>,
    /// Whether the previous manifest was read (not ignored as invalid).
    pub used_prev: bool,
    /// Paths the walk skipped.
    pub skipped: usize,
}

/// The writes and deletes the diff stage planned.
pub(super) struct Planned {
    pub steps: Vec<Step>,
    /// Transfers planned (before copies are merged into steps) and their bytes.
    pub count: usize,
    pub bytes: u64,
    pub deletes: Vec<String>,
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
            candidates: Some(merged.candidates),
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

    /// Hash stage: hashes every work file until each holds still or is given up
    /// on, then classifies the work; returns the transfers.
    pub async fn hash(
        &self,
        pass: &mut Pass,
        unsettled: &mut Unsettled,
        skipped: usize,
    ) -> Result<Vec<Transfer>, SyncError> {
        loop {
            let seen = hash_work(&mut pass.work, self.local, self.opts, self.progress).await?;
            if seen.is_empty() {
                break;
            }
            // Hardlinks of a file left unsettled become files of their own, hashed next round.
            unsettled.settle(pass, seen, true);
        }
        let transfers = finish(&mut pass.work)?;
        info!(
            entries = pass.entries,
            unchanged = pass.settled,
            work = pass.work.len(),
            reused = pass.reused,
            skipped,
            "merged and hashed"
        );
        Ok(transfers)
    }

    /// Diff stage: orders the transfers into writes (server-side copies where an
    /// existing object holds the content) and gathers the deletes.
    pub async fn diff(
        &self,
        pass: &mut Pass,
        unsettled: &mut Unsettled,
        transfers: Vec<Transfer>,
        scanned: &mut Scanned,
    ) -> Planned {
        let candidates = scanned.candidates.take();
        let sources = match candidates {
            Some(candidates)
                if scanned.used_prev
                    && pass.prev_entries > 0
                    && transfers.iter().any(|t| t.size > 0) =>
            {
                match find_copy_sources(candidates, &transfers).await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "could not look for server-side copy sources; uploading instead");
                        HashMap::new()
                    }
                }
            }
            _ => HashMap::new(),
        };
        let steps = plan_transfers(&transfers, &sources);
        drop(sources);
        let mut deletes = std::mem::take(&mut pass.deletes);
        deletes.append(&mut unsettled.deletes);
        let planned = Planned {
            steps,
            count: transfers.len(),
            bytes: transfers.iter().map(|t| t.size).sum(),
            deletes,
        };
        info!(
            transfers = planned.steps.len(),
            deletes = planned.deletes.len(),
            unchanged = pass.entries - planned.count,
            "diff done"
        );
        planned
    }

    /// A dry run ends after the diff: the summary of what would be written.
    pub fn dry_run(&self, planned: &Planned, summary: &mut Summary) {
        summary.files_transferred = planned.steps.len() as u64;
        summary.bytes_transferred = planned.bytes;
        summary.files_deleted = planned.deletes.len() as u64;
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

    /// Preserve stage: keeps the committed version of every object the run
    /// overwrites; returns every kept version to release after the commit.
    pub async fn preserve(
        &self,
        pass: &Pass,
        held: HashSet<String>,
    ) -> Result<HashSet<String>, SyncError> {
        let keep = preserve::plan(&pass.work, &held);
        let mut release = held;
        let opts = self.opts;
        release.extend(preserve::preserve(self.remote, &keep, opts.transfers, &opts.cancel).await?);
        Ok(release)
    }

    /// Transfer stage: runs the planned writes in chunks; files that changed
    /// while uploaded keep their committed entry (see `unsettled`).
    pub async fn transfer(
        &self,
        pass: &mut Pass,
        unsettled: &mut Unsettled,
        planned: &mut Planned,
        summary: &mut Summary,
    ) -> Result<(), SyncError> {
        let uploader = Uploader::new(
            self.remote.clone(),
            self.local.to_path_buf(),
            self.opts.memory_budget,
            Arc::clone(self.progress),
        )
        .with_cancel(self.opts.cancel.clone());
        let steps = std::mem::take(&mut planned.steps);
        self.progress
            .phase("transferring", steps.len() as u64, planned.bytes);
        let seen = chunked::run_chunked(
            &uploader,
            &steps,
            &mut pass.work,
            self.opts.transfers,
            self.progress,
            summary,
        )
        .await?;
        drop(steps);
        // Their hardlinks were written as objects of their own: they become plain files.
        unsettled.settle(pass, seen, false);
        summary.files_skipped_changing = unsettled.changing;
        planned.deletes.append(&mut unsettled.deletes);
        if self.opts.cancel.is_cancelled() {
            return Err(SyncError::Interrupted);
        }
        Ok(())
    }

    /// Commit stage: writes the new manifest (the settled entries merged with the
    /// work), then clears the first-upload marker and releases the kept versions.
    pub async fn commit(
        &self,
        pass: Pass,
        scanned: Scanned,
        marker: bool,
        release: &HashSet<String>,
    ) -> Result<(), SyncError> {
        let entries = pass.entries;
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let work = pass.work.into_iter().map(|w| w.entry);
        write_merged(
            self.remote,
            scanned.body,
            work,
            entries,
            &created_at,
            scanned.root,
        )
        .await?;
        info!(entries, "manifest committed");
        if marker {
            first_upload::finish(self.remote).await;
        }
        preserve::release(self.remote, release, self.opts.transfers).await;
        Ok(())
    }

    /// Delete stage, after the commit: objects no longer in the source.
    pub async fn delete(&self, deletes: &[String], summary: &mut Summary) -> Result<(), SyncError> {
        self.progress.phase("deleting", deletes.len() as u64, 0);
        summary.files_deleted =
            delete_objects(self.remote, deletes, self.opts.transfers, self.progress).await?;
        Ok(())
    }
}

/// Nothing to write and every entry as committed: the manifest stays as it is.
pub(super) fn nothing_changed(
    pass: &Pass,
    scanned: &Scanned,
    planned: &Planned,
    unsettled: &Unsettled,
) -> bool {
    scanned.used_prev
        && planned.steps.is_empty()
        && planned.deletes.is_empty()
        && pass.work.is_empty()
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
