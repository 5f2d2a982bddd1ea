//! The source's writes, phase by phase: copies from objects that existed before the
//! run, uploads (one per distinct content), then copies of just-uploaded content;
//! and the deletes after the commit.
//!
//! A file that changes while it is uploaded is read again and re-uploaded, at most
//! [`CHANGE_ATTEMPTS`] times in all; one that keeps changing ends as
//! [`Outcome::Changing`] and one that disappears as [`Outcome::Vanished`], and the
//! run goes on (see `changing`). A copy of just-uploaded content whose upload did
//! not end with the content planned becomes an upload of its own file. Any other
//! failure fails the whole run.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use object_store::ObjectStoreExt;
use tracing::warn;

use crate::error::{SyncError, join_error};
use crate::fs::paths::key_for;
use crate::manifest::Entry;
use crate::progress::Progress;
use crate::source::changing::{CHANGE_ATTEMPTS, CHANGE_BACKOFF, Observed, observe, refresh};
use crate::source::diff::Step;
use crate::store::remote::Remote;
use crate::store::transfer::{Uploader, Written};

/// How one planned write ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Written and verified; the entry names the version written (it differs from the
    /// planned one when the file changed once and was read again).
    Written(Box<Entry>, Written),
    /// The file kept changing; nothing was written for it.
    Changing(String),
    /// The file disappeared; nothing was written for it.
    Vanished(String),
}

/// Runs the planned writes phase by phase, each phase concurrently; any failure
/// other than a changing or vanished file fails the whole run.
pub async fn run_steps(
    uploader: &Uploader,
    steps: &[Step],
    entries: &HashMap<&str, &Entry>,
    transfers: usize,
    progress: &Progress,
) -> Result<Vec<Outcome>, SyncError> {
    let mut done = Vec::with_capacity(steps.len());
    // Path → SHA-256 of what this run uploaded there.
    let mut uploaded: HashMap<String, Option<String>> = HashMap::new();
    for phase in 0..3 {
        let batch: Vec<Step> = steps
            .iter()
            .filter(|s| phase_of(s) == phase)
            .cloned()
            .collect();
        let results: Vec<Result<Outcome, SyncError>> = stream::iter(batch)
            .map(|s: Step| run_step(uploader, s, entries, &uploaded, progress))
            .buffer_unordered(transfers.max(1))
            .collect()
            .await;
        uploader.check_cancelled()?;
        let total = results.len();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(o) => {
                    if let Outcome::Written(e, _) = &o {
                        uploaded.insert(e.path.clone(), e.sha256.clone());
                    }
                    done.push(o);
                }
                Err(e) => {
                    warn!(error = %e, "transfer failed");
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            let failed = errors.len();
            let first = errors.into_iter().next().expect("non-empty");
            return Err(SyncError::Transfers {
                failed,
                total,
                first: Box::new(first),
            });
        }
    }
    Ok(done)
}

fn phase_of(s: &Step) -> u8 {
    match s {
        Step::CopyExisting { .. } => 0,
        Step::Upload { .. } => 1,
        Step::CopyUploaded { .. } => 2,
    }
}

async fn run_step(
    uploader: &Uploader,
    s: Step,
    entries: &HashMap<&str, &Entry>,
    uploaded: &HashMap<String, Option<String>>,
    progress: &Progress,
) -> Result<Outcome, SyncError> {
    uploader.check_cancelled()?;
    let (to, from) = match s {
        Step::Upload { path } => (path, None),
        Step::CopyExisting { from, to } => (to, Some(from)),
        Step::CopyUploaded { from, to } => (to, Some(from)),
    };
    let e = *entries
        .get(to.as_str())
        .ok_or_else(|| SyncError::Internal(format!("planned a write for unknown path {to}")))?;
    let copy_from = match from {
        // A copy of this run's upload only when that upload wrote the planned content.
        Some(f) if uploaded.contains_key(&f) => (uploaded.get(&f) == Some(&e.sha256)).then_some(f),
        Some(f) if entries.contains_key(f.as_str()) => None,
        other => other,
    };
    let outcome = match copy_from {
        Some(f) => Outcome::Written(Box::new(e.clone()), uploader.copy(&f, e).await?),
        None => upload_retrying(uploader, e).await?,
    };
    progress.file_done();
    Ok(outcome)
}

/// Uploads `e`'s file, reading it again after each change (see the module doc).
async fn upload_retrying(uploader: &Uploader, e: &Entry) -> Result<Outcome, SyncError> {
    let mut e = e.clone();
    for attempt in 1..=CHANGE_ATTEMPTS {
        match uploader.upload(&e).await {
            Ok(w) => return Ok(Outcome::Written(Box::new(e), w)),
            Err(SyncError::SourceVanished { path }) => return Ok(Outcome::Vanished(path)),
            Err(SyncError::SourceChanged { .. }) if attempt < CHANGE_ATTEMPTS => {}
            Err(SyncError::SourceChanged { path }) => {
                warn!(path = %path, attempts = CHANGE_ATTEMPTS, "file kept changing; skipped for this run");
                return Ok(Outcome::Changing(path));
            }
            Err(other) => return Err(other),
        }
        warn!(path = %e.path, attempt, "file changed while uploading; reading it again");
        tokio::time::sleep(CHANGE_BACKOFF * attempt).await;
        let path = uploader.root().join(&e.path);
        let seen = tokio::task::spawn_blocking(move || observe(&path))
            .await
            .map_err(join_error)??;
        match seen {
            Observed::Stable(d, s) => refresh(&mut e, d, s),
            Observed::Vanished => return Ok(Outcome::Vanished(e.path)),
            // The next upload attempt notices again, and counts.
            Observed::Changing => {}
        }
    }
    Ok(Outcome::Changing(e.path))
}

/// Deletes objects concurrently; returns how many were deleted.
pub async fn delete_objects(
    remote: &Remote,
    paths: &[String],
    transfers: usize,
    progress: &Progress,
) -> Result<u64, SyncError> {
    let results: Vec<Result<(), SyncError>> = stream::iter(paths.to_vec())
        .map(|p: String| async move {
            let key = key_for(&remote.prefix, &p)?;
            match remote.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    progress.file_done();
                    Ok(())
                }
                Err(e) => Err(SyncError::store("deleting", &key, e)),
            }
        })
        .buffer_unordered(transfers.max(1))
        .collect()
        .await;
    let total = results.len();
    let mut errs: Vec<SyncError> = results.into_iter().filter_map(Result::err).collect();
    if errs.is_empty() {
        return Ok(total as u64);
    }
    Err(SyncError::Transfers {
        failed: errs.len(),
        total,
        first: Box::new(errs.remove(0)),
    })
}
