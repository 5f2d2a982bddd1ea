//! Files that change while a source run reads them: a live volume (copyMethod
//! `None`), logs being appended to, temp files appearing and disappearing.
//!
//! A file is taken only when it held still while it was read: the same size and
//! mtime before and after the read, and as many bytes read as its size (see
//! [`observe`]); the upload checks the same again, against the hash computed while
//! streaming (see `transfer`). A file that keeps changing is retried
//! [`CHANGE_ATTEMPTS`] times, then left as the last committed manifest had it (or
//! left out, when it is new) and counted in `filesSkippedChanging`; a file that
//! vanished is simply left out. Everything else is still committed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::error::SyncError;
use crate::fs::hash::{Digests, hash_file};
use crate::manifest::Entry;

/// Reads of one changing file (hashing and uploading together) before it is
/// skipped for this run.
pub const CHANGE_ATTEMPTS: u32 = 3;

/// Pause before re-reading a file that changed, times the attempt number.
pub const CHANGE_BACKOFF: Duration = Duration::from_millis(100);

/// What identifies a version of a file without reading it: size and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self {
            size: m.len(),
            mtime_sec: m.mtime(),
            mtime_nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        }
    }

    pub fn of_entry(e: &Entry) -> Self {
        Self {
            size: e.size,
            mtime_sec: e.mtime_sec,
            mtime_nsec: e.mtime_nsec,
        }
    }
}

/// One read of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// It held still while read: these digests are of the version `Stamp` names.
    Stable(Digests, Stamp),
    /// It changed while being read.
    Changing,
    /// It no longer exists.
    Vanished,
}

fn is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn stamp(path: &Path) -> Result<Option<Stamp>, SyncError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(Stamp::of(&m))),
        // Replaced by a directory or symlink: what was scanned as a file is gone.
        Ok(_) => Ok(None),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(SyncError::io("checking", path, e)),
    }
}

/// Hashes `path` once, checking its stamp before and after. Blocking.
pub fn observe(path: &Path) -> Result<Observed, SyncError> {
    let Some(before) = stamp(path)? else {
        return Ok(Observed::Vanished);
    };
    let d = match hash_file(path) {
        Ok(d) => d,
        Err(SyncError::LocalIo { source, .. }) if is_gone(&source) => {
            return Ok(Observed::Vanished);
        }
        Err(e) => return Err(e),
    };
    let Some(after) = stamp(path)? else {
        return Ok(Observed::Vanished);
    };
    if before != after || d.size != after.size {
        return Ok(Observed::Changing);
    }
    Ok(Observed::Stable(d, after))
}

/// [`observe`] until the file holds still, at most `attempts` times. Blocking.
pub fn observe_stable(path: &Path, attempts: u32) -> Result<Observed, SyncError> {
    let mut attempt = 1;
    loop {
        match observe(path)? {
            Observed::Changing if attempt < attempts => {
                std::thread::sleep(CHANGE_BACKOFF * attempt);
                attempt += 1;
            }
            other => return Ok(other),
        }
    }
}

/// Gives `e` the version just read. Its inode and ctime are forgotten, so the next
/// run hashes it again rather than trusting a stat taken while it was moving.
pub fn refresh(e: &mut Entry, d: Digests, s: Stamp) {
    e.size = s.size;
    e.mtime_sec = s.mtime_sec;
    e.mtime_nsec = s.mtime_nsec;
    e.sha256 = Some(d.sha256);
    e.md5 = Some(d.md5);
    e.ino = None;
    e.ctime_sec = None;
    e.ctime_nsec = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_still_file_is_stable_and_a_missing_one_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        match observe_stable(&p, 3).unwrap() {
            Observed::Stable(d, s) => {
                assert_eq!(d.size, 5);
                assert_eq!(s.size, 5);
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&p).unwrap();
        assert_eq!(observe(&p).unwrap(), Observed::Vanished);
        std::fs::create_dir(&p).unwrap();
        assert_eq!(observe(&p).unwrap(), Observed::Vanished);
    }
}
