//! Progress of a run: shared atomic counters the engine bumps, and a reporter task
//! that logs files and bytes done / total and the rate every interval (to stderr,
//! through tracing, so it follows the chosen log format).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing::info;

#[derive(Debug)]
pub struct Progress {
    phase: Mutex<&'static str>,
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            phase: Mutex::new("starting"),
            files_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Starts a new phase with the given totals; done counters restart at zero.
    pub fn phase(&self, name: &'static str, files: u64, bytes: u64) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = name;
        self.files_total.store(files, Relaxed);
        self.bytes_total.store(bytes, Relaxed);
        self.files_done.store(0, Relaxed);
        self.bytes_done.store(0, Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Relaxed);
    }

    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Relaxed);
    }

    fn phase_name(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Logs progress periodically until dropped.
pub struct Reporter(tokio::task::JoinHandle<()>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn spawn_reporter(p: Arc<Progress>, every: Duration) -> Reporter {
    Reporter(tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        let mut last_bytes = 0u64;
        let mut last_at = Instant::now();
        loop {
            tick.tick().await;
            let bytes_done = p.bytes_done.load(Relaxed);
            let secs = last_at.elapsed().as_secs_f64().max(0.001);
            let rate = bytes_done.saturating_sub(last_bytes) as f64 / secs;
            last_bytes = bytes_done;
            last_at = Instant::now();
            info!(
                phase = p.phase_name(),
                files_done = p.files_done.load(Relaxed),
                files_total = p.files_total.load(Relaxed),
                bytes_done,
                bytes_total = p.bytes_total.load(Relaxed),
                rate = %format!("{}/s", human_bytes(rate as u64)),
                elapsed_s = start.elapsed().as_secs(),
                "progress"
            );
        }
    }))
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The common start of a sync in either direction: the local root must be a
/// directory, and progress reporting runs until the returned [`Reporter`] drops.
pub(crate) fn begin(
    local: &std::path::Path,
    every: Duration,
) -> Result<(Instant, Arc<Progress>, Reporter), crate::error::SyncError> {
    let started = Instant::now();
    if !local.is_dir() {
        return Err(crate::error::SyncError::LocalRootMissing {
            path: local.to_path_buf(),
        });
    }
    let progress = Arc::new(Progress::default());
    let reporter = spawn_reporter(Arc::clone(&progress), every);
    Ok((started, progress, reporter))
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(super::human_bytes(12), "12 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
