//! The source's writes in bounded chunks, so what the transfers hold in memory does
//! not grow with the number of files written: the planned steps (in their phase
//! order: copies of existing objects, uploads, copies of just-uploaded content) run
//! [`CHUNK`] at a time through `steps::run_steps`, and each chunk's outcomes are
//! applied to the work items and dropped before the next chunk starts.
//!
//! A copy of content uploaded in an earlier chunk becomes a copy of that object when
//! its upload wrote exactly the planned content (only the sources of such copies are
//! remembered), else an upload of its own file — never a copy of something else.

use std::collections::{HashMap, HashSet};

use crate::error::SyncError;
use crate::manifest::Entry;
use crate::progress::Progress;
use crate::source::diff::Step;
use crate::source::plan::Work;
use crate::source::steps::{Outcome, run_steps};
use crate::store::transfer::Uploader;
use crate::summary::Summary;

/// Steps run (and outcomes held) at once.
pub const CHUNK: usize = 4096;

/// Runs `steps` chunk by chunk, updating `work` (entries as written, with their
/// ETags) and `summary`; returns the work items given up on: (index, vanished?).
pub async fn run_chunked(
    uploader: &Uploader,
    steps: &[Step],
    work: &mut [Work],
    transfers: usize,
    progress: &Progress,
    summary: &mut Summary,
) -> Result<Vec<(usize, bool)>, SyncError> {
    let copy_sources: HashSet<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::CopyUploaded { from, .. } => Some(from.as_str()),
            _ => None,
        })
        .collect();
    // Copy source path → SHA-256 its upload wrote.
    let mut uploaded: HashMap<String, Option<String>> = HashMap::new();
    let mut seen = Vec::new();
    for chunk in steps.chunks(CHUNK) {
        let uploads_here: HashSet<&str> = chunk
            .iter()
            .filter_map(|s| match s {
                Step::Upload { path } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        let mut planned = Vec::with_capacity(chunk.len());
        for s in chunk {
            planned.push(match s {
                Step::CopyUploaded { from, to } if !uploads_here.contains(from.as_str()) => {
                    let want = &work[super::work_index(work, to)?].entry.sha256;
                    match uploaded.get(from) {
                        Some(got) if got == want => Step::CopyExisting {
                            from: from.clone(),
                            to: to.clone(),
                        },
                        _ => Step::Upload { path: to.clone() },
                    }
                }
                other => other.clone(),
            });
        }
        let outcomes = {
            let mut by_path: HashMap<&str, &Entry> = HashMap::with_capacity(planned.len());
            for s in &planned {
                let to = match s {
                    Step::Upload { path } => path,
                    Step::CopyExisting { to, .. } | Step::CopyUploaded { to, .. } => to,
                };
                let e = &work[super::work_index(work, to)?].entry;
                by_path.insert(e.path.as_str(), e);
            }
            run_steps(uploader, &planned, &by_path, transfers, progress).await?
        };
        for o in outcomes {
            match o {
                Outcome::Written(e, w) => {
                    summary.files_transferred += 1;
                    summary.bytes_transferred += w.bytes_sent;
                    if copy_sources.contains(e.path.as_str()) {
                        uploaded.insert(e.path.clone(), e.sha256.clone());
                    }
                    let i = super::work_index(work, &e.path)?;
                    work[i].entry = Entry { etag: w.etag, ..*e };
                }
                Outcome::Changing(p) => seen.push((super::work_index(work, &p)?, false)),
                Outcome::Vanished(p) => seen.push((super::work_index(work, &p)?, true)),
            }
        }
    }
    Ok(seen)
}
