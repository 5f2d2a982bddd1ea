//! Directory plumbing behind volumes and snapshots: a directory appears complete or not at all.
//!
//! [`materialize`] builds `<dst>.tmp` (empty, or a `cp -a` copy of a source tree keeping modes,
//! owners, timestamps and symlinks) and renames it to `dst`, so a crash mid-copy leaves only a
//! `.tmp` directory that the next attempt throws away. Every helper is safe to repeat.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// Mode of a freshly provisioned, empty volume (csi-hostpath creates them `0755`, root-owned).
const EMPTY_VOLUME_MODE: u32 = 0o755;

/// The scratch directory `dst` is assembled in before it is renamed into place.
pub fn tmp_path(dst: &Path) -> PathBuf {
    let mut s: OsString = dst.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.to_path_buf();
    move |source| AgentError::Io {
        action,
        path,
        source,
    }
}

/// Whether anything (even a dangling symlink) exists at `path`.
async fn exists(path: &Path) -> Result<bool, AgentError> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspecting", path)(e)),
    }
}

/// Removes a directory tree; a missing one is already removed.
pub async fn remove_dir_if_exists(path: &Path) -> Result<(), AgentError> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Makes `dst` exist as a complete directory: a copy of `src` when given, else empty with mode
/// `0755`. Returns `false` when `dst` already existed (a previous attempt finished), in which
/// case nothing is touched.
pub async fn materialize(src: Option<&Path>, dst: &Path) -> Result<bool, AgentError> {
    if exists(dst).await? {
        return Ok(false);
    }
    if let Some(src) = src {
        let meta = tokio::fs::metadata(src)
            .await
            .map_err(io_err("reading source directory", src))?;
        if !meta.is_dir() {
            return Err(AgentError::Invalid(format!(
                "copy source {} is not a directory",
                src.display()
            )));
        }
    }
    if let Some(parent) = dst.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_err("creating parent directory", parent))?;
    }
    let tmp = tmp_path(dst);
    // Whatever is there is the debris of an interrupted attempt.
    match tokio::fs::symlink_metadata(&tmp).await {
        Ok(m) if m.is_dir() => remove_dir_if_exists(&tmp).await?,
        Ok(_) => tokio::fs::remove_file(&tmp)
            .await
            .map_err(io_err("removing stale file", &tmp))?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting", &tmp)(e)),
    }
    tokio::fs::create_dir(&tmp)
        .await
        .map_err(io_err("creating directory", &tmp))?;
    // Explicit chmod: the process umask must not decide the volume's mode.
    tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(EMPTY_VOLUME_MODE))
        .await
        .map_err(io_err("setting mode of", &tmp))?;
    if let Some(src) = src {
        copy_tree(src, &tmp).await?;
    }
    tokio::fs::rename(&tmp, dst)
        .await
        .map_err(io_err("renaming into place", dst))?;
    Ok(true)
}

/// `cp -a --reflink=auto SRC/. DST/`: contents and the root directory's own mode, owner and
/// times are carried over; symlinks are copied as symlinks.
async fn copy_tree(src: &Path, dst: &Path) -> Result<(), AgentError> {
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(src.join("."))
        .arg(dst.join("."))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(io_err("running cp for", src))?;
    if out.status.success() {
        return Ok(());
    }
    Err(AgentError::Invalid(format!(
        "copying {} to {}: cp {}: {}",
        src.display(),
        dst.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Total size in bytes of the regular files under `root` (symlinks are not followed).
pub fn tree_size(root: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, symlink};
    use std::time::{Duration, SystemTime};

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn tmp_path_appends_suffix() {
        assert_eq!(
            tmp_path(Path::new("/s/volumes/pvc-1")),
            PathBuf::from("/s/volumes/pvc-1.tmp")
        );
    }

    #[tokio::test]
    async fn empty_volume_is_0755_and_leaves_no_tmp() {
        let root = tempfile::tempdir().unwrap();
        let dst = root.path().join("volumes").join("pvc-a");
        assert!(materialize(None, &dst).await.unwrap());
        assert!(dst.is_dir());
        assert_eq!(mode(&dst), 0o755);
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 0);
        assert!(!tmp_path(&dst).exists());
    }

    #[tokio::test]
    async fn copy_preserves_modes_times_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::write(src.join("data.txt"), b"hello").unwrap();
        std::fs::write(src.join("sub/deeper/bin"), b"0123456789").unwrap();
        std::fs::set_permissions(src.join("data.txt"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::set_permissions(
            src.join("sub/deeper/bin"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        std::fs::File::options()
            .write(true)
            .open(src.join("data.txt"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        symlink("data.txt", src.join("link")).unwrap();
        symlink("/nonexistent/target", src.join("dangling")).unwrap();

        let dst = root.path().join("snapshots").join("snap-1");
        assert!(materialize(Some(&src), &dst).await.unwrap());

        assert_eq!(std::fs::read(dst.join("data.txt")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(dst.join("sub/deeper/bin")).unwrap(),
            b"0123456789"
        );
        assert_eq!(mode(&dst.join("data.txt")), 0o640);
        assert_eq!(mode(&dst.join("sub/deeper/bin")), 0o751);
        // The root directory takes the source root's mode (fsGroup setgid bit included).
        assert_eq!(mode(&dst), 0o2775);
        assert_eq!(
            std::fs::metadata(dst.join("data.txt"))
                .unwrap()
                .modified()
                .unwrap(),
            when
        );
        let src_meta = std::fs::metadata(src.join("data.txt")).unwrap();
        let dst_meta = std::fs::metadata(dst.join("data.txt")).unwrap();
        assert_eq!(
            (dst_meta.uid(), dst_meta.gid()),
            (src_meta.uid(), src_meta.gid())
        );
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            PathBuf::from("data.txt")
        );
        assert_eq!(
            std::fs::read_link(dst.join("dangling")).unwrap(),
            PathBuf::from("/nonexistent/target")
        );
        assert!(!tmp_path(&dst).exists());
        // The copy is independent of its source.
        std::fs::write(src.join("data.txt"), b"changed").unwrap();
        assert_eq!(std::fs::read(dst.join("data.txt")).unwrap(), b"hello");
    }

    #[tokio::test]
    async fn existing_destination_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("new"), b"new").unwrap();
        let dst = root.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(dst.join("old"), b"old").unwrap();
        assert!(!materialize(Some(&src), &dst).await.unwrap());
        assert!(dst.join("old").exists());
        assert!(!dst.join("new").exists());
    }

    #[tokio::test]
    async fn stale_tmp_from_a_crash_is_discarded() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"a").unwrap();
        let dst = root.path().join("dst");
        let tmp = tmp_path(&dst);
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("half-copied"), b"x").unwrap();
        assert!(materialize(Some(&src), &dst).await.unwrap());
        assert!(dst.join("a").exists());
        assert!(!dst.join("half-copied").exists());
        assert!(!tmp.exists());
    }

    #[tokio::test]
    async fn missing_source_fails_without_creating_destination() {
        let root = tempfile::tempdir().unwrap();
        let dst = root.path().join("dst");
        let err = materialize(Some(&root.path().join("nope")), &dst)
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::Io { .. }), "{err}");
        assert!(!dst.exists());
        assert!(!tmp_path(&dst).exists());
    }

    #[tokio::test]
    async fn remove_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("v");
        std::fs::create_dir_all(dir.join("x/y")).unwrap();
        std::fs::write(dir.join("x/y/f"), b"f").unwrap();
        remove_dir_if_exists(&dir).await.unwrap();
        assert!(!dir.exists());
        remove_dir_if_exists(&dir).await.unwrap();
    }

    #[test]
    fn tree_size_counts_regular_files_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join("top"), vec![0u8; 100]).unwrap();
        std::fs::write(root.path().join("a/b/inner"), vec![0u8; 23]).unwrap();
        symlink("top", root.path().join("link")).unwrap();
        assert_eq!(tree_size(root.path()).unwrap(), 123);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(tree_size(empty.path()).unwrap(), 0);
    }
}
