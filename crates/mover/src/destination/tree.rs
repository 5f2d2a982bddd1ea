//! Destination, local writes: [`Tree`] is a handle on the restore root through which
//! every path of a restore is reached one component at a time, each directory opened
//! `O_PATH | O_DIRECTORY | O_NOFOLLOW` relative to the one before. A symlink (or any
//! non-directory) where a directory is needed is never passed through: when reading,
//! the path counts as absent; when writing, the link itself is replaced by a real
//! directory. So whatever a manifest says or the local tree holds, no creation,
//! rename, link, removal or metadata change reaches outside the root.
//!
//! Metadata is applied relative to the parent's descriptor without following a final
//! symlink: owner with `fchownat(AT_SYMLINK_NOFOLLOW)`, times with
//! `utimensat(AT_SYMLINK_NOFOLLOW)`, the mode through a descriptor of the object
//! itself opened `O_PATH | O_NOFOLLOW` (Linux has no `fchmodat` that refuses a
//! symlink), so a symlink's target never changes.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, CWD, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::fs::local::{FileKind, LocalMeta};

/// The restore root, opened once; see the module doc.
pub struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

/// Flags of every directory opened on the way down.
fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// Splits `rel` into its parent and last name; the root itself is `(“”, “.”)`.
fn split(rel: &OsStr) -> (&OsStr, &OsStr) {
    let b = rel.as_bytes();
    if b.is_empty() {
        return (OsStr::new(""), OsStr::new("."));
    }
    match b.iter().rposition(|c| *c == b'/') {
        Some(i) => (OsStr::from_bytes(&b[..i]), OsStr::from_bytes(&b[i + 1..])),
        None => (OsStr::new(""), rel),
    }
}

impl From<&Stat> for LocalMeta {
    // `struct stat` field types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from(s: &Stat) -> Self {
        let kind = match FileType::from_raw_mode(s.st_mode as _) {
            FileType::Symlink => FileKind::Symlink,
            FileType::Directory => FileKind::Dir,
            FileType::RegularFile => FileKind::File,
            _ => FileKind::Special,
        };
        Self {
            kind,
            size: s.st_size as u64,
            mode: s.st_mode as u32 & 0o7777,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            mtime_sec: s.st_mtime as i64,
            mtime_nsec: s.st_mtime_nsec as u32,
            ctime_sec: s.st_ctime as i64,
            ctime_nsec: s.st_ctime_nsec as u32,
            ino: s.st_ino as u64,
            dev: s.st_dev as u64,
            nlink: s.st_nlink as u64,
        }
    }
}

impl Tree {
    /// Opens the root (itself trusted: it is the mount path).
    pub fn open(path: &Path) -> io::Result<Self> {
        let root = rustix::fs::openat(CWD, path, dir_flags() & !OFlags::NOFOLLOW, Mode::empty())
            .map_err(errno)?;
        Ok(Self {
            root,
            path: path.to_path_buf(),
        })
    }

    /// The absolute path of `rel`, for messages only (never used to reach a file).
    pub fn display(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// The directory `rel` (relative to the root) reached through real directories
    /// only. Without `create`: `None` when a component is missing or not a real
    /// directory. With `create`: missing components are made, and anything else in
    /// the way (a symlink, a file) is removed and replaced by a directory.
    fn dir(&self, rel: &OsStr, create: bool) -> io::Result<Option<OwnedFd>> {
        let mut cur = rustix::io::dup(&self.root).map_err(errno)?;
        if rel.is_empty() {
            return Ok(Some(cur));
        }
        for part in rel.as_bytes().split(|c| *c == b'/') {
            let part = OsStr::from_bytes(part);
            cur = match rustix::fs::openat(&cur, part, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, part, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(errno(e)),
                    }
                    rustix::fs::openat(&cur, part, dir_flags(), Mode::empty()).map_err(errno)?
                }
                Err(Errno::LOOP | Errno::NOTDIR) if create => {
                    rustix::fs::unlinkat(&cur, part, AtFlags::empty()).map_err(errno)?;
                    rustix::fs::mkdirat(&cur, part, Mode::from_raw_mode(0o777)).map_err(errno)?;
                    rustix::fs::openat(&cur, part, dir_flags(), Mode::empty()).map_err(errno)?
                }
                Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(errno(e)),
            };
        }
        Ok(Some(cur))
    }

    /// The parent directory of `rel` and its last name; `None` when the parent is not
    /// reachable through real directories (without `create`).
    fn parent<'a>(&self, rel: &'a OsStr, create: bool) -> io::Result<Option<(OwnedFd, &'a OsStr)>> {
        let (parent, name) = split(rel);
        Ok(self.dir(parent, create)?.map(|fd| (fd, name)))
    }

    /// lstat of `rel`; `None` when it does not exist or lies under a non-directory.
    pub fn lstat(&self, rel: &str) -> io::Result<Option<LocalMeta>> {
        let Some((dir, name)) = self.parent(OsStr::new(rel), false)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => Ok(Some(LocalMeta::from(&s))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Makes `rel` a real directory (see `Tree::dir` with `create`).
    pub fn ensure_dir(&self, rel: &str) -> io::Result<()> {
        self.dir(OsStr::new(rel), true).map(drop)
    }

    /// Removes whatever is at `rel` (a directory with everything in it). Returns
    /// false, touching nothing, when `rel` lies under a non-directory (so is not in
    /// this tree at all) or does not exist.
    pub fn remove(&self, rel: &OsStr) -> io::Result<bool> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(false);
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(errno(e)),
            Ok(s) if FileType::from_raw_mode(s.st_mode as _) == FileType::Directory => {
                remove_tree_at(dir.as_fd(), name)?;
                Ok(true)
            }
            Ok(_) => {
                rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(errno)?;
                Ok(true)
            }
        }
    }

    /// Readies `rel` to receive a new object: its parent becomes a real directory and
    /// a directory sitting at the name itself is removed.
    fn place<'a>(&self, rel: &'a str) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (dir, name) = self
            .parent(OsStr::new(rel), true)?
            .expect("created parents are reachable");
        if let Ok(s) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(s.st_mode as _) == FileType::Directory
        {
            remove_tree_at(dir.as_fd(), name)?;
        }
        Ok((dir, name))
    }

    /// Renames `from` (a staging path) over `to`, replacing what is there.
    pub fn rename_into(&self, from: &str, to: &str) -> io::Result<()> {
        let (fdir, fname) = self.existing_parent(from)?;
        let (tdir, tname) = self.place(to)?;
        rustix::fs::renameat(&fdir, fname, &tdir, tname).map_err(errno)
    }

    /// Hardlinks `first` as `tmp` (a staging path), then renames it over `to`.
    pub fn hard_link(&self, first: &str, tmp: &str, to: &str) -> io::Result<()> {
        let (fdir, fname) = self.existing_parent(first)?;
        let (sdir, sname) = self.existing_parent(tmp)?;
        rustix::fs::linkat(&fdir, fname, &sdir, sname, AtFlags::empty()).map_err(errno)?;
        self.rename_into(tmp, to)
    }

    /// Creates a symlink to `target` as `tmp` (a staging path), then renames it over `to`.
    pub fn symlink(&self, target: &str, tmp: &str, to: &str) -> io::Result<()> {
        let (sdir, sname) = self.existing_parent(tmp)?;
        rustix::fs::symlinkat(target, &sdir, sname).map_err(errno)?;
        self.rename_into(tmp, to)
    }

    /// The target of the symlink at `rel`, if there is one.
    pub fn read_link(&self, rel: &str) -> Option<PathBuf> {
        let (dir, name) = self.parent(OsStr::new(rel), false).ok()??;
        let t = rustix::fs::readlinkat(&dir, name, Vec::new()).ok()?;
        Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    fn existing_parent<'a>(&self, rel: &'a str) -> io::Result<(OwnedFd, &'a OsStr)> {
        self.parent(OsStr::new(rel), false)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not reachable through real directories",
                    self.display(rel).display()
                ),
            )
        })
    }

    /// Sets the owner of `rel` (never following a final symlink).
    pub fn set_owner(&self, rel: &str, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        // -1 means "unchanged" to the kernel and is no owner to restore.
        let uid = uid.filter(|u| *u != u32::MAX).map(Uid::from_raw);
        let gid = gid.filter(|g| *g != u32::MAX).map(Gid::from_raw);
        let (dir, name) = self.existing_parent(rel)?;
        rustix::fs::chownat(&dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    /// Sets the permission bits of `rel` unless it is a symlink (whose mode means
    /// nothing and whose target must not change).
    pub fn set_mode(&self, rel: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.existing_parent(rel)?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(errno)?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(errno)?.st_mode as _);
        if !matches!(kind, FileType::RegularFile | FileType::Directory) {
            return Ok(());
        }
        let mode = Mode::from_raw_mode(mode);
        // An O_PATH descriptor cannot be fchmod-ed; its /proc link names exactly this
        // inode (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does). Without /proc, open
        // the object itself (never a symlink: O_NOFOLLOW) and fchmod that.
        let proc = PathBuf::from(format!(
            "/proc/self/fd/{}",
            rustix::fd::AsRawFd::as_raw_fd(&fd)
        ));
        match rustix::fs::chmodat(CWD, &proc, mode, AtFlags::empty()) {
            Err(Errno::NOENT) => {
                let o = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
                let f = rustix::fs::openat(&dir, name, o | OFlags::CLOEXEC, Mode::empty())
                    .map_err(errno)?;
                rustix::fs::fchmod(&f, mode).map_err(errno)
            }
            other => other.map_err(errno),
        }
    }

    /// Sets atime and mtime of `rel` (never following a final symlink).
    pub fn set_times(&self, rel: &str, sec: i64, nsec: u32) -> io::Result<()> {
        let (dir, name) = self.existing_parent(rel)?;
        let ts = Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        let times = Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    /// Sets the extended attribute `name` of the regular file at `rel`.
    pub fn set_xattr(&self, rel: &str, attr: &str, value: &[u8]) -> io::Result<()> {
        let (dir, name) = self.existing_parent(rel)?;
        let o = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let f =
            rustix::fs::openat(&dir, name, o | OFlags::CLOEXEC, Mode::empty()).map_err(errno)?;
        if FileType::from_raw_mode(rustix::fs::fstat(&f).map_err(errno)?.st_mode as _)
            != FileType::RegularFile
        {
            return Err(io::Error::other("not a regular file"));
        }
        rustix::fs::fsetxattr(&f, attr, value, XattrFlags::empty()).map_err(errno)
    }
}

/// Removes the directory `name` in `dir` and everything in it, never following a
/// symlink (each level is opened `O_NOFOLLOW` relative to its parent).
fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(errno)?;
    let mut names = Vec::new();
    for de in rustix::fs::Dir::read_from(&fd).map_err(errno)? {
        let de = de.map_err(errno)?;
        let n = de.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        let n = OsStr::from_bytes(&n);
        match rustix::fs::unlinkat(&fd, n, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => remove_tree_at(fd.as_fd(), n)?,
            Err(e) => return Err(errno(e)),
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outside_and_mount() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        let mount = base.path().join("mount");
        std::fs::create_dir_all(outside.join("d")).unwrap();
        std::fs::write(outside.join("d/f"), b"keep").unwrap();
        std::fs::create_dir(&mount).unwrap();
        std::os::unix::fs::symlink(&outside, mount.join("a")).unwrap();
        (base, outside, mount)
    }

    #[test]
    fn nothing_is_reached_through_a_symlinked_directory() {
        let (_base, outside, mount) = outside_and_mount();
        let t = Tree::open(&mount).unwrap();
        assert_eq!(t.lstat("a/d/f").unwrap(), None);
        assert!(!t.remove(OsStr::new("a/d/f")).unwrap());
        assert!(t.set_mode("a/d/f", 0o777).is_err());
        assert!(t.set_times("a/d", 1, 0).is_err());
        assert_eq!(std::fs::read(outside.join("d/f")).unwrap(), b"keep");
        // Writing below `a` replaces the link by a real directory.
        t.ensure_dir("a/d").unwrap();
        assert!(mount.join("a").symlink_metadata().unwrap().is_dir());
        assert_eq!(std::fs::read(outside.join("d/f")).unwrap(), b"keep");
    }

    #[test]
    fn metadata_of_a_symlink_never_reaches_its_target() {
        let (_base, outside, mount) = outside_and_mount();
        let before = std::fs::metadata(&outside).unwrap();
        let t = Tree::open(&mount).unwrap();
        t.set_mode("a", 0o700).unwrap();
        t.set_times("a", 5, 0).unwrap();
        let after = std::fs::metadata(&outside).unwrap();
        assert_eq!(
            (before.permissions(), before.modified().unwrap()),
            (after.permissions(), after.modified().unwrap())
        );
        assert_eq!(t.lstat("a").unwrap().unwrap().mtime_sec, 5);
        assert!(t.remove(OsStr::new("a")).unwrap());
        assert!(outside.join("d/f").exists(), "only the link is removed");
    }

    #[test]
    fn removing_a_directory_does_not_follow_links_inside_it() {
        let (_base, outside, mount) = outside_and_mount();
        std::fs::create_dir_all(mount.join("x/y")).unwrap();
        std::os::unix::fs::symlink(&outside, mount.join("x/y/out")).unwrap();
        std::fs::write(mount.join("x/y/f"), b"1").unwrap();
        let t = Tree::open(&mount).unwrap();
        assert!(t.remove(OsStr::new("x")).unwrap());
        assert!(!mount.join("x").exists());
        assert_eq!(std::fs::read(outside.join("d/f")).unwrap(), b"keep");
    }
}
