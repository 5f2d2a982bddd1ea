//! The `type = local` backend: a directory holding one file per object, laid out as
//! rclone's local backend lays it out (`<dir>/<path>`), and the classification of
//! what goes wrong there.
//!
//! Reads and listings of files go through object_store's `LocalFileSystem` (a
//! listing adds a folder marker for every directory, see `listing`); writes
//! (puts, multipart uploads, copies, deletes) are done here, because a filesystem is not a
//! key space and object_store's writes do not cope with the differences:
//! - a file and a directory cannot share a name. When the source turns file `a` into
//!   directory `a/` (or back), S3 holds both for a while (the old object is deleted
//!   after the commit); here the new object replaces what stands in its way: a file
//!   where a directory is needed is removed, a directory where the file goes is
//!   removed with everything in it (never following a symlink). Those old objects
//!   belong to the previous manifest only, so a destination restoring that manifest
//!   in the meantime fails (transient) and succeeds after this run commits. Deleting
//!   a key that is now a directory is "not found" (nothing to delete);
//! - object_store stages every write as `<name>#<n>`, one more name component of up
//!   to 255 bytes plus the suffix, so a 255-byte name could not be written. Here the
//!   staging file is `.scribe-upload-<n>#<pid>` next to the target: short, and (as a
//!   `#<digits>` name) invisible to `LocalFileSystem`'s listing;
//! - object_store cannot address a name ending in `#<digits>` (`x#1`): such names are
//!   its staging files, left out of listings and refused by reads. Writing one is
//!   refused with [`LocalError::ReservedName`] (a configuration error, exit 78:
//!   rename the file or use an S3 remote), never a confusing I/O error.
//!
//! Errors carry their `io::Error`; [`category`] maps them: permission denied,
//! read-only filesystem and names too long are a human's problem (config), a full
//! filesystem or quota and anything else may pass on retry (transient).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tracing::warn;

use crate::config::RemoteConfig;
use crate::fs::local::{FileKind, io_category, lstat};
use crate::store::listing::FOLDER_MARKER;
use crate::store::remote::{ErrorCategory, Remote, UploadOptions};
use crate::store::{BackendError, OpenArgs};

/// Options rclone's local backend knows (accepted and ignored here).
const LOCAL_KEYS: &[&str] = &[
    "nounc",
    "copy_links",
    "links",
    "skip_links",
    "zero_size_links",
    "unicode_normalization",
    "no_check_updated",
    "one_file_system",
    "case_sensitive",
    "case_insensitive",
    "no_preallocate",
    "no_sparse",
    "no_set_modtime",
    "encoding",
    "description",
    "time_type",
    "hashes",
    "no_clone",
];

/// Name of the `store` in the errors of this backend (as object_store's own).
const STORE: &str = "LocalFileSystem";

/// Opens a `type = local` section: the remote path is a directory (created if missing).
pub(super) fn open(remote: &RemoteConfig, args: &OpenArgs) -> Result<Remote, BackendError> {
    let unknown = remote.unknown_keys(LOCAL_KEYS);
    if !unknown.is_empty() {
        warn!(section = %remote.name, keys = ?unknown, "ignoring unknown local options");
    }
    open_dir(&args.section, &args.remote_path)
}

/// Opens the directory `remote_path` as a local remote of `section` (also the storage
/// under a crypt section whose `remote` is a plain path).
pub(super) fn open_dir(section: &str, remote_path: &str) -> Result<Remote, BackendError> {
    if remote_path.is_empty() {
        return Err(BackendError::RemotePath {
            section: section.to_owned(),
            path: remote_path.to_owned(),
            message: "a local remote needs a directory path".to_owned(),
        });
    }
    let dir = PathBuf::from(remote_path);
    std::fs::create_dir_all(&dir).map_err(|source| BackendError::LocalDir {
        section: section.to_owned(),
        path: dir.clone(),
        source,
    })?;
    let store = LocalStore::new(&dir).map_err(|e| BackendError::Build {
        section: section.to_owned(),
        kind: "local",
        message: e.to_string(),
    })?;
    Ok(Remote {
        store: Arc::new(store),
        prefix: Key::default(),
        upload: UploadOptions::default(),
        incomplete: None,
        description: format!("local section {section:?} at {}", dir.display()),
    })
}

/// What went wrong in the local backend.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{key}: a local remote cannot hold a name ending in `#<digits>` (object_store \
         reserves those names for its temporary files); rename it, or use an S3 remote"
    )]
    ReservedName { key: String },
}

impl LocalError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Io { source, .. } => io_category(source),
            Self::ReservedName { .. } => ErrorCategory::Config,
        }
    }

    fn into_store(self) -> object_store::Error {
        match self {
            Self::Io { path, source, .. } if source.kind() == io::ErrorKind::NotFound => {
                object_store::Error::NotFound {
                    path: path.display().to_string(),
                    source: Box::new(source),
                }
            }
            Self::Io { path, source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                object_store::Error::AlreadyExists {
                    path: path.display().to_string(),
                    source: Box::new(source),
                }
            }
            e => object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            },
        }
    }
}

/// The category of an error of this backend (ours, or object_store's
/// `LocalFileSystem` one with an `io::Error` inside), by the first [`LocalError`] or
/// `io::Error` in its chain; `None` when there is neither.
pub fn category(e: &(dyn std::error::Error + 'static)) -> Option<ErrorCategory> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(l) = e.downcast_ref::<LocalError>() {
            return Some(l.category());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io_category(io));
        }
        cur = e.source();
    }
    None
}

fn io_err<'a>(action: &'static str, path: &'a FsPath) -> impl FnOnce(io::Error) -> LocalError + 'a {
    move |source| LocalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether object_store's local backend takes `name` for one of its staging files.
pub fn is_reserved_name(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct LocalStore {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at the existing directory `dir`.
    pub fn new(dir: &FsPath) -> Result<Self, object_store::Error> {
        let inner = LocalFileSystem::new_with_prefix(dir)?;
        let root = std::fs::canonicalize(dir)
            .map_err(|source| io_err("resolving", dir)(source).into_store())?;
        Ok(Self { inner, root })
    }

    /// The file of `key`, refusing names object_store cannot address.
    fn file_of(&self, key: &Key) -> Result<PathBuf, LocalError> {
        if key.filename().is_some_and(is_reserved_name) {
            return Err(LocalError::ReservedName {
                key: key.to_string(),
            });
        }
        Ok(self.root.join(key.as_ref()))
    }
}

impl std::fmt::Display for LocalStore {
    /// As `LocalFileSystem` shows itself (the listing code recognizes it by that).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

static STAGING: AtomicU64 = AtomicU64::new(0);

/// Makes every directory between `root` and `dest` (exclusive), replacing a file or
/// symlink standing where a directory is needed: an object the new one replaces.
fn make_parents(root: &FsPath, dest: &FsPath) -> Result<(), LocalError> {
    let Some(parent) = dest.parent() else {
        return Ok(());
    };
    let rel = parent.strip_prefix(root).unwrap_or(parent);
    let mut cur = root.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match lstat(&cur).map_err(io_err("reading", &cur))? {
            Some(m) if m.kind == FileKind::Dir => continue,
            Some(_) => std::fs::remove_file(&cur)
                .map_err(io_err("replacing a file by a directory", &cur))?,
            None => {}
        }
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && cur.is_dir() => {}
            Err(e) => return Err(io_err("creating directory", &cur)(e)),
        }
    }
    Ok(())
}

/// A fresh staging file next to `dest` (parents made first).
fn staging_file(root: &FsPath, dest: &FsPath) -> Result<(File, PathBuf), LocalError> {
    make_parents(root, dest)?;
    let dir = dest.parent().unwrap_or(root);
    loop {
        let n = STAGING.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".scribe-upload-{n}#{}", std::process::id()));
        match File::options().write(true).create_new(true).open(&temp) {
            Ok(f) => return Ok((f, temp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &temp)(e)),
        }
    }
}

/// Puts `temp` at `dest` (rename, or a hard link with `create`), replacing a
/// directory standing there; `temp` is gone afterwards either way.
fn publish(temp: &FsPath, dest: &FsPath, create: bool) -> Result<PutResult, LocalError> {
    let result = publish_inner(temp, dest, create);
    if result.is_err() || create {
        let _ = std::fs::remove_file(temp);
    }
    result
}

fn publish_inner(temp: &FsPath, dest: &FsPath, create: bool) -> Result<PutResult, LocalError> {
    let place = || {
        if create {
            std::fs::hard_link(temp, dest)
        } else {
            std::fs::rename(temp, dest)
        }
    };
    if let Err(e) = place() {
        let is_dir = lstat(dest)
            .map_err(io_err("reading", dest))?
            .is_some_and(|m| m.kind == FileKind::Dir);
        if !is_dir || create {
            return Err(io_err("writing", dest)(e));
        }
        std::fs::remove_dir_all(dest).map_err(io_err("replacing a directory by a file", dest))?;
        place().map_err(io_err("writing", dest))?;
    }
    let m = std::fs::symlink_metadata(dest).map_err(io_err("reading", dest))?;
    Ok(PutResult {
        e_tag: Some(etag(&m)),
        version: None,
        extensions: Default::default(),
    })
}

/// The ETag `LocalFileSystem` reports for a file (inode, mtime in µs, size).
fn etag(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{mtime:x}-{:x}\"", m.ino(), m.len())
}

/// Removes the file of one object. A key whose path is missing, or is now a
/// directory (the objects under it replaced this one), holds no object: not found.
fn delete_file(path: &FsPath) -> Result<(), LocalError> {
    let gone = |why: &str| io_err("deleting", path)(io::Error::new(io::ErrorKind::NotFound, why));
    let found = match lstat(path) {
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => None,
        r => r.map_err(io_err("reading", path))?,
    };
    match found {
        None => Err(gone("no such object")),
        Some(m) if m.kind == FileKind::Dir => Err(gone("a directory, not an object")),
        Some(_) => std::fs::remove_file(path).map_err(io_err("deleting", path)),
    }
}

/// A folder marker for every directory under `under` (never following a symlink).
fn folders(root: &FsPath, under: &FsPath) -> Vec<object_store::Result<ObjectMeta>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(under).min_depth(1) {
        let e = match e {
            Ok(e) => e,
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
            {
                continue;
            }
            Err(e) => {
                let path = e.path().unwrap_or(under).to_path_buf();
                let source = io::Error::other(e.to_string());
                out.push(Err(LocalError::Io {
                    action: "listing",
                    path,
                    source,
                }
                .into_store()));
                continue;
            }
        };
        if !e.file_type().is_dir() {
            continue;
        }
        let Some(rel) = e.path().strip_prefix(root).ok().and_then(|p| p.to_str()) else {
            continue;
        };
        let Ok(location) = Key::parse(rel) else {
            continue;
        };
        if location.as_ref() != rel {
            continue;
        }
        let last_modified = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_default();
        out.push(Ok(ObjectMeta {
            location,
            last_modified,
            size: 0,
            e_tag: None,
            version: Some(FOLDER_MARKER.to_owned()),
        }));
    }
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LocalError> + Send + 'static,
) -> object_store::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(LocalError::into_store),
        Err(e) => Err(object_store::Error::JoinError { source: e }),
    }
}

fn not_implemented(what: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: what.to_owned(),
        implementer: STORE.to_owned(),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !opts.attributes.is_empty() {
            return Err(not_implemented(
                "`put_opts` with `opts.attributes` specified",
            ));
        }
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => return Err(not_implemented("`put_opts` with `PutMode::Update`")),
        };
        let dest = self.file_of(location).map_err(LocalError::into_store)?;
        let root = self.root.clone();
        blocking(move || {
            let (mut file, temp) = staging_file(&root, &dest)?;
            let written = payload
                .iter()
                .try_for_each(|b| file.write_all(b))
                .and_then(|()| file.flush());
            drop(file);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(io_err("writing", &temp)(e));
            }
            publish(&temp, &dest, create)
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(not_implemented(
                "`put_multipart_opts` with `opts.attributes` specified",
            ));
        }
        let dest = self.file_of(location).map_err(LocalError::into_store)?;
        let root = self.root.clone();
        let (file, temp) = {
            let dest = dest.clone();
            blocking(move || staging_file(&root, &dest)).await?
        };
        Ok(Box::new(Upload {
            file: Some(Arc::new(file)),
            temp: Some(temp),
            dest,
            offset: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Key>>,
    ) -> BoxStream<'static, object_store::Result<Key>> {
        let root = self.root.clone();
        locations
            .map(move |k| {
                let root = root.clone();
                async move {
                    let k = k?;
                    let path = root.join(k.as_ref());
                    blocking(move || delete_file(&path)).await.map(|()| k)
                }
            })
            .buffered(10)
            .boxed()
    }

    /// The files, then a folder marker (see `listing`) for every directory, so a
    /// destination restoring a remote without a manifest (written by `rclone sync
    /// --create-empty-src-dirs`) gets its empty directories too.
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = self.root.clone();
        let under = prefix
            .map(|p| root.join(p.as_ref()))
            .unwrap_or(root.clone());
        let dirs = futures::stream::once(async move {
            match tokio::task::spawn_blocking(move || folders(&root, &under)).await {
                Ok(found) => futures::stream::iter(found),
                Err(e) => {
                    futures::stream::iter(vec![Err(object_store::Error::JoinError { source: e })])
                }
            }
        })
        .flatten();
        self.inner.list(prefix).chain(dirs).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Key,
        to: &Key,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let create = matches!(options.mode, CopyMode::Create);
        let src = self.file_of(from).map_err(LocalError::into_store)?;
        let dest = self.file_of(to).map_err(LocalError::into_store)?;
        let root = self.root.clone();
        blocking(move || {
            make_parents(&root, &dest)?;
            let dir = dest.parent().unwrap_or(&root);
            let n = STAGING.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".scribe-upload-{n}#{}", std::process::id()));
            std::fs::hard_link(&src, &temp).map_err(io_err("copying", &src))?;
            publish(&temp, &dest, create).map(drop)
        })
        .await
    }
}

/// A multipart upload into a staging file, renamed into place on completion.
#[derive(Debug)]
struct Upload {
    file: Option<Arc<File>>,
    temp: Option<PathBuf>,
    dest: PathBuf,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = self.file.clone();
        let temp = self.temp.clone().unwrap_or_default();
        async move {
            let file = file.ok_or_else(|| not_implemented("writing to a finished upload"))?;
            blocking(move || {
                let mut at = offset;
                for b in data.iter() {
                    file.write_all_at(b, at).map_err(io_err("writing", &temp))?;
                    at += b.len() as u64;
                }
                Ok(())
            })
            .await
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (Some(file), Some(temp)) = (self.file.take(), self.temp.take()) else {
            return Err(not_implemented("completing a finished upload"));
        };
        drop(file);
        let dest = self.dest.clone();
        blocking(move || publish(&temp, &dest, false)).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.file = None;
        if let Some(temp) = self.temp.take() {
            blocking(move || std::fs::remove_file(&temp).map_err(io_err("removing", &temp)))
                .await?;
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests;
