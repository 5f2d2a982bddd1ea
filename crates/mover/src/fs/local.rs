//! Local filesystem primitives shared by both directions: lstat-based metadata,
//! opens that never follow a symlink, and setting times without following one.
//! (The destination's writes into the tree go through `tree`, which reaches every
//! path one real directory at a time.)

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, OFlags, Timespec, Timestamps};

use crate::store::remote::ErrorCategory;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// Sockets, FIFOs, devices: not synced.
    Special,
}

/// The lstat facts the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMeta {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
}

impl From<&Metadata> for LocalMeta {
    fn from(m: &Metadata) -> Self {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Special
        };
        Self {
            kind,
            size: m.len(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
        }
    }
}

/// Whether retrying can help after a local I/O error (either side's tree, or a
/// `type = local` remote): permission denied, a read-only filesystem and a name too
/// long for it need a human; a full filesystem or quota, and anything else, may pass.
pub fn io_category(e: &io::Error) -> ErrorCategory {
    const EPERM: i32 = 1;
    const EACCES: i32 = 13;
    const EROFS: i32 = 30;
    const ENAMETOOLONG: i32 = 36;
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem, _)
        | (_, Some(EPERM | EACCES | EROFS | ENAMETOOLONG)) => ErrorCategory::Config,
        _ => ErrorCategory::Transient,
    }
}

/// lstat, with "does not exist" as `None`.
pub fn lstat(path: &Path) -> io::Result<Option<LocalMeta>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(LocalMeta::from(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a file for reading, failing (ELOOP) if the last component is a symlink.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Creates a new file exclusively (never reusing or following an existing name).
pub fn create_new_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Sets atime and mtime of a path without following a final symlink.
pub fn set_times_nofollow(path: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    let ts = Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Removes whatever is at `path` (a directory recursively, never following symlinks);
/// missing is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match lstat(path)? {
        None => Ok(()),
        Some(m) if m.kind == FileKind::Dir => std::fs::remove_dir_all(path),
        Some(_) => std::fs::remove_file(path),
    }
}

/// The parent directory part of a relative path ("" for top-level names).
pub fn parent_rel(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(me) = std::fs::metadata(path) else {
        return false;
    };
    let parent = path.join("..");
    match std::fs::metadata(parent) {
        Ok(p) => p.dev() != me.dev() || p.ino() == me.ino(),
        Err(_) => false,
    }
}
