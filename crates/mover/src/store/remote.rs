//! The storage seam shared by every part of the mover: an opened remote (an
//! `ObjectStore` plus the key prefix inside it and the upload options that came
//! from rclone.conf), and the error category every mover error maps to.
//!
//! `config` + `backend` produce a [`Remote`]; `source` / `destination` consume it.
//! Tests build a `Remote` directly around `InMemory` or `LocalFileSystem`.
//!
//! A server-side copy names the metadata the new object must carry with a
//! [`CopyMetadata`] in `CopyOptions::extensions`: the S3 and GCS stores honour it
//! (the copy gets its own `mtime`, see `s3_copy`, `gcs_store`); Azure copies keep
//! the source's metadata (object_store's copy takes no metadata); stores without
//! object metadata (local, in-memory) ignore it and copy as object_store does.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;

/// How a failure should be treated by whoever runs the mover (the controller reads
/// the exit code): retrying a configuration error cannot help, a transient one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    /// Bad flags, bad rclone.conf, missing section, wrong credentials, missing bucket,
    /// access denied (remote, or a source file the mover may not read: fix
    /// `moverSecurityContext`), unsafe manifest: a human has to change something.
    Config,
    /// Network trouble, 5xx / SlowDown, a truncated body, a source changing under us,
    /// a destination verification mismatch that outlived its retries: retry later.
    Transient,
}

/// Upload tuning and per-object settings taken from the rclone.conf section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// Files of this size or larger are uploaded with multipart (rclone `upload_cutoff`, default 200 MiB).
    pub upload_cutoff: u64,
    /// Part size for multipart uploads (rclone `chunk_size`, default 5 MiB; raised so a
    /// file needs at most 10,000 parts).
    pub chunk_size: u64,
    /// Parts of one file uploaded at once (rclone `upload_concurrency`, default 4).
    pub upload_concurrency: usize,
    /// `storage_class` (sent as x-amz-storage-class), if any.
    pub storage_class: Option<String>,
    /// True when the backend's ETags are not plain MD5s (SSE-KMS, SSE-C), so upload
    /// verification must rely on size and the `md5chksum` metadata instead.
    pub etag_is_not_md5: bool,
    /// How rclone writes the `mtime` metadata on this backend.
    pub mtime_format: MtimeFormat,
    /// The store sends an encrypted copy of a single-request upload's payload (crypt),
    /// so while it is sent the file is held twice: such uploads count twice against
    /// the memory budget.
    pub sealed_copy: bool,
}

/// The `mtime` metadata's spelling, per rclone backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MtimeFormat {
    /// Decimal seconds since the epoch, `1600000000.123456789` (s3).
    #[default]
    UnixSeconds,
    /// RFC 3339 with nanoseconds, `2020-09-13T12:26:40.123456789Z` (azureblob, google
    /// cloud storage).
    Rfc3339,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            upload_cutoff: 200 * 1024 * 1024,
            chunk_size: 5 * 1024 * 1024,
            upload_concurrency: 4,
            storage_class: None,
            etag_is_not_md5: false,
            mtime_format: MtimeFormat::UnixSeconds,
            sealed_copy: false,
        }
    }
}

/// The metadata a server-side copy gives the new object (passed in
/// `object_store::CopyOptions::extensions`; see the module doc).
#[derive(Debug, Clone)]
pub struct CopyMetadata {
    /// What an upload of the same file would carry (`mtime`, storage class, and
    /// `md5chksum` when the upload would be multipart).
    pub attributes: object_store::Attributes,
    /// rclone's `md5chksum` value, added when the copy itself is multipart (its ETag
    /// is then not the content MD5).
    pub md5chksum: Option<String>,
    /// Size of the object copied.
    pub size: u64,
    /// The run's cancellation: a store that copies in several requests stops, and
    /// cleans up (aborts a multipart copy), when it fires.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// Incomplete multipart uploads of a store: what a killed run leaves behind (the
/// parts are stored, and billed, until the upload is aborted).
#[async_trait::async_trait]
pub trait IncompleteUploads: Send + Sync {
    /// (key, upload id) of every incomplete upload whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, object_store::Error>;
    /// Aborts one upload, dropping its parts.
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), object_store::Error>;
}

/// An opened remote: where the data lives and how to write it.
#[derive(Clone)]
pub struct Remote {
    /// The object store, already scoped to the bucket (for `type = local`, rooted at
    /// the remote path itself).
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store (the part of `bucket/prefix` after the bucket);
    /// empty for the bucket root. Data objects live at `<prefix>/<relative path>`,
    /// the manifest under `<prefix>/.scribe/`.
    pub prefix: Path,
    pub upload: UploadOptions,
    /// Lists and aborts incomplete multipart uploads (S3); `None` where the store
    /// leaves none behind or cannot list them.
    pub incomplete: Option<Arc<dyn IncompleteUploads>>,
    /// Human-readable description for logs, with no secret in it, e.g.
    /// `s3 section "aws-s3-bucket" bucket "scribe-test-bucket" prefix "db" at https://s3.amazonaws.com`.
    pub description: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("prefix", &self.prefix)
            .field("upload", &self.upload)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}
