//! Knobs of one sync run, shared by both directions.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Files transferred at once (`--transfers`).
    pub transfers: usize,
    /// Re-hash every local file instead of trusting size/mtime/ctime/inode.
    pub checksum: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Allow an empty source to empty a non-empty remote (and a destination to
    /// restore a remote holding nothing).
    pub allow_empty_source: bool,
    /// Files hashed at once.
    pub hash_threads: usize,
    /// Destination passes before a remote that keeps changing is a transient failure.
    pub max_attempts: u32,
    /// Pause before re-reading the manifest after a mismatch.
    pub retry_delay: Duration,
    /// How often progress is logged.
    pub progress_interval: Duration,
    /// Upper bound on file data held in memory by all concurrent uploads together, in
    /// bytes (each upload holds at most one part per part in flight; see `transfer`).
    pub memory_budget: u64,
    /// Cancelled on SIGTERM: uploads in flight are aborted (multipart uploads too),
    /// nothing more is written and nothing is committed; the run ends `Interrupted`.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Work items (files to hash or write) the source holds in memory at once; the
    /// rest waits in scratch files (see `source`).
    pub source_batch: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            transfers: 16,
            checksum: false,
            dry_run: false,
            allow_empty_source: false,
            hash_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
            max_attempts: 3,
            retry_delay: Duration::from_secs(5),
            progress_interval: Duration::from_secs(2),
            memory_budget: 256 * 1024 * 1024,
            cancel: tokio_util::sync::CancellationToken::new(),
            source_batch: 4096,
        }
    }
}
