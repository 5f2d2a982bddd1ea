//! Writing data objects: uploads streamed from disk, server-side copies, and the
//! verification of each (size, and the ETag against the MD5 computed while reading,
//! unless the backend's ETags are not MD5s). Objects carry rclone's `mtime` metadata
//! and, for multipart uploads, `md5chksum` (so rclone and `rclone check` can still
//! compare content of a multipart object); a copy carries its own entry's metadata,
//! not its source's (see `CopyMetadata`), so rclone sees the copy's date.
//!
//! No file is ever held in memory whole beyond one part. The rule: the part size is
//! `chunk_size` (at least 5 MiB, raised so a file needs at most 10,000 parts); a file
//! of at most one part is one single put (read into memory: at most one part), and
//! any larger file — or any file of `upload_cutoff` or more, when the cutoff is the
//! smaller — is a multipart upload reading one part at a time, at most
//! `upload_concurrency` parts in flight, more (up to 64 MiB of parts) while half the
//! budget is free. A global memory budget (a semaphore in MiB,
//! `SyncOptions::memory_budget`) caps the file data held by all concurrent uploads.
//!
//! A file is uploaded only as the version its entry names: same size and mtime
//! when opened and after the last byte is read, and the SHA-256 computed while
//! streaming equal to the entry's; otherwise nothing is written (a multipart upload
//! is aborted) and the upload fails with `SourceChanged` (`SourceVanished` when the
//! file is gone) for the caller to retry (see `changing`). Cancelling the run's
//! token aborts a multipart upload in flight and fails with `Interrupted`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use md5::{Digest as _, Md5};
use object_store::path::Path as Key;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyOptions, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload,
};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::{SyncError, join_error};
use crate::fs::hash::{
    etag_md5, format_rclone_mtime, format_rfc3339_mtime, is_multipart_etag, md5chksum,
    multipart_etag, normalize_etag,
};
use crate::fs::local::open_nofollow;
use crate::fs::paths::key_for;
use crate::manifest::Entry;
use crate::progress::Progress;
use crate::source::changing::Stamp;
use crate::store::remote::{CopyMetadata, MtimeFormat, Remote, UploadOptions};

const MIB: u64 = 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Bytes of one file's parts in flight beyond `upload_concurrency`, budget permitting.
const FILE_IN_FLIGHT: u64 = 64 * MIB;

/// Shared state of the uploads of one run.
pub struct Uploader {
    remote: Remote,
    root: PathBuf,
    /// Cleared the first time the store says it cannot store attributes (e.g. a plain
    /// local filesystem store), so later uploads go without them.
    attributes_supported: AtomicBool,
    /// Memory budget in MiB units for file data held by uploads.
    budget: Arc<Semaphore>,
    budget_mib: u32,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

/// The verified result of writing one object.
#[derive(Debug, Clone)]
pub struct Written {
    pub etag: Option<String>,
    /// Bytes sent over the network (0 for a server-side copy).
    pub bytes_sent: u64,
}

impl Uploader {
    pub fn new(remote: Remote, root: PathBuf, memory_budget: u64, progress: Arc<Progress>) -> Self {
        let budget_mib = (memory_budget / MIB).clamp(16, u32::MAX as u64 / 2) as u32;
        Self {
            remote,
            root,
            attributes_supported: AtomicBool::new(true),
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            progress,
            cancel: CancellationToken::new(),
        }
    }

    /// Stops uploads when `cancel` is cancelled (see the module doc).
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The local directory files are read from.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Fails with `Interrupted` once the run is cancelled.
    pub fn check_cancelled(&self) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            return Err(SyncError::Interrupted);
        }
        Ok(())
    }

    fn attributes(&self, e: &Entry, multipart: bool) -> Attributes {
        let mut a = Attributes::new();
        a.insert(
            Attribute::Metadata("mtime".into()),
            AttributeValue::from(match self.remote.upload.mtime_format {
                MtimeFormat::UnixSeconds => format_rclone_mtime(e.mtime_sec, e.mtime_nsec),
                MtimeFormat::Rfc3339 => format_rfc3339_mtime(e.mtime_sec, e.mtime_nsec),
            }),
        );
        if multipart && let Some(v) = e.md5.as_deref().and_then(md5chksum) {
            a.insert(
                Attribute::Metadata("md5chksum".into()),
                AttributeValue::from(v),
            );
        }
        if let Some(class) = &self.remote.upload.storage_class {
            a.insert(Attribute::StorageClass, AttributeValue::from(class.clone()));
        }
        a
    }

    fn with_attributes(&self) -> bool {
        self.attributes_supported.load(Ordering::Relaxed)
    }

    fn attributes_unsupported(&self, key: &Key) {
        if self.attributes_supported.swap(false, Ordering::Relaxed) {
            warn!(key = %key, "the store cannot keep object metadata; uploading without rclone's mtime/md5chksum");
        }
    }

    async fn permits(&self, mib: u64) -> Result<tokio::sync::SemaphorePermit<'_>, SyncError> {
        let n = mib.clamp(1, self.budget_mib as u64) as u32;
        self.budget
            .acquire_many(n)
            .await
            .map_err(|e| SyncError::Internal(format!("memory budget closed: {e}")))
    }

    /// A permit for one more part beyond `upload_concurrency`, while at least half
    /// the budget stays free for the uploads' own permits (so extra parts never take
    /// more than half the budget).
    fn spare_permit(&self, mib: u32) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.budget.available_permits() < (self.budget_mib / 2 + mib) as usize {
            return None;
        }
        Arc::clone(&self.budget).try_acquire_many_owned(mib).ok()
    }

    /// Uploads the local file of `e` (whose sha256/md5 the scan computed) and verifies it.
    pub async fn upload(&self, e: &Entry) -> Result<Written, SyncError> {
        self.check_cancelled()?;
        let key = key_for(&self.remote.prefix, &e.path)?;
        let opts = &self.remote.upload;
        let (expected_etag, sent) = if is_multipart(e.size, opts) {
            self.upload_multipart(&key, e).await?
        } else {
            self.upload_single(&key, e).await?
        };
        let etag = self.verify(&key, e.size, expected_etag.as_ref()).await?;
        Ok(Written {
            etag,
            bytes_sent: sent,
        })
    }

    async fn upload_single(
        &self,
        key: &Key,
        e: &Entry,
    ) -> Result<(Option<String>, u64), SyncError> {
        let held = single_upload_held(e.size, &self.remote.upload);
        let _permit = self.permits(held.div_ceil(MIB)).await?;
        let path = self.root.join(&e.path);
        let want = e.size;
        let e_path = e.path.clone();
        let stamp = Stamp::of_entry(e);
        // The MD5 only where the ETag is checked against it (see `verify`).
        let with_md5 = !self.remote.upload.etag_is_not_md5;
        let (data, sha256, md5) = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut f = open_for_upload(&path, &e_path)?;
            let mut data = Vec::with_capacity(want as usize);
            // Read one byte past the expected size so growth is noticed.
            (&mut f)
                .take(want + 1)
                .read_to_end(&mut data)
                .map_err(|err| SyncError::io("reading for upload", &path, err))?;
            if file_stamp(&f) != Some(stamp) {
                return Err(SyncError::SourceChanged { path: e_path });
            }
            let sha256 = hex::encode(Sha256::digest(&data));
            let md5 = with_md5.then(|| hex::encode(Md5::digest(&data)));
            Ok::<_, SyncError>((data, sha256, md5))
        })
        .await
        .map_err(join_error)??;
        if Some(&sha256) != e.sha256.as_ref() || data.len() as u64 != e.size {
            return Err(SyncError::SourceChanged {
                path: e.path.clone(),
            });
        }
        let payload = PutPayload::from(bytes::Bytes::from(data));
        let mut attempt_attrs = self.with_attributes();
        loop {
            let opts = PutOptions {
                attributes: if attempt_attrs {
                    self.attributes(e, false)
                } else {
                    Attributes::new()
                },
                ..Default::default()
            };
            let put = tokio::select! {
                r = self.remote.store.put_opts(key, payload.clone(), opts) => r,
                () = self.cancel.cancelled() => return Err(SyncError::Interrupted),
            };
            match put {
                Ok(_) => break,
                Err(object_store::Error::NotImplemented { .. }) if attempt_attrs => {
                    self.attributes_unsupported(key);
                    attempt_attrs = false;
                }
                Err(err) => return Err(SyncError::store("uploading", key, err)),
            }
        }
        self.progress.add_bytes(e.size);
        Ok((md5, e.size))
    }

    async fn upload_multipart(
        &self,
        key: &Key,
        e: &Entry,
    ) -> Result<(Option<String>, u64), SyncError> {
        let opts = &self.remote.upload;
        let chunk = part_size(e.size, opts);
        let concurrency = opts.upload_concurrency.max(1);
        let most = most_in_flight(chunk, concurrency);
        let part_mib = (chunk.div_ceil(MIB).min(self.budget_mib as u64)) as u32;
        let _permit = self
            .permits((chunk * concurrency as u64).div_ceil(MIB))
            .await?;
        let path = self.root.join(&e.path);
        let file = Arc::new(open_for_upload(&path, &e.path)?);
        if file_stamp(&file) != Some(Stamp::of_entry(e)) {
            return Err(SyncError::SourceChanged {
                path: e.path.clone(),
            });
        }

        let mut upload = {
            let mut attempt_attrs = self.with_attributes();
            loop {
                let o = PutMultipartOptions {
                    attributes: if attempt_attrs {
                        self.attributes(e, true)
                    } else {
                        Attributes::new()
                    },
                    ..Default::default()
                };
                match self.remote.store.put_multipart_opts(key, o).await {
                    Ok(u) => break u,
                    Err(object_store::Error::NotImplemented { .. }) if attempt_attrs => {
                        self.attributes_unsupported(key);
                        attempt_attrs = false;
                    }
                    Err(err) => {
                        return Err(SyncError::store("starting multipart upload", key, err));
                    }
                }
            }
        };
        // Part MD5s only where the ETag is checked against them (see `verify`).
        let with_md5 = !opts.etag_is_not_md5;
        let parts = async {
            let mut hasher = Sha256::new();
            let mut part_md5s = Vec::new();
            let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
            let mut offset = 0u64;
            while offset < e.size {
                // Wait for a free slot before reading, so at most `concurrency` parts
                // (what the budget permit covers) are in memory at once, plus those
                // holding a permit of their own for budget that was free (see
                // `most_in_flight`).
                let extra = loop {
                    if in_flight.len() < concurrency {
                        break None;
                    }
                    if in_flight.len() < most
                        && let Some(p) = self.spare_permit(part_mib)
                    {
                        break Some(p);
                    }
                    if let Some(r) = in_flight.next().await {
                        r.map_err(|err| SyncError::store("uploading part", key, err))?;
                    }
                };
                let len = chunk.min(e.size - offset);
                let f = Arc::clone(&file);
                let p = path.clone();
                let (buf, h, md5) = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len as usize];
                    f.read_exact_at(&mut buf, offset)
                        .map_err(|err| SyncError::io("reading for upload", &p, err))?;
                    let mut h = hasher;
                    h.update(&buf);
                    let md5: Option<[u8; 16]> = with_md5.then(|| Md5::digest(&buf).into());
                    Ok::<_, SyncError>((buf, h, md5))
                })
                .await
                .map_err(join_error)??;
                hasher = h;
                part_md5s.extend(md5);
                let part = upload.put_part(PutPayload::from(bytes::Bytes::from(buf)));
                in_flight.push(match extra {
                    None => part,
                    Some(permit) => Box::pin(async move {
                        let _permit = permit;
                        part.await
                    }),
                });
                self.progress.add_bytes(len);
                offset += len;
            }
            while let Some(r) = in_flight.next().await {
                r.map_err(|err| SyncError::store("uploading part", key, err))?;
            }
            Ok::<_, SyncError>((hasher, part_md5s))
        };
        let result: Result<(Sha256, Vec<[u8; 16]>), SyncError> = tokio::select! {
            r = parts => r,
            () = self.cancel.cancelled() => Err(SyncError::Interrupted),
        };
        let (hasher, part_md5s) = match result {
            Ok(v) => v,
            Err(err) => {
                let _ = upload.abort().await;
                return Err(err);
            }
        };
        // A file whose size, mtime or bytes changed must not be committed.
        let moved = file_stamp(&file) != Some(Stamp::of_entry(e));
        let sha256 = hex::encode(hasher.finalize());
        if moved || Some(&sha256) != e.sha256.as_ref() {
            let _ = upload.abort().await;
            return Err(SyncError::SourceChanged {
                path: e.path.clone(),
            });
        }
        if self.cancel.is_cancelled() {
            let _ = upload.abort().await;
            return Err(SyncError::Interrupted);
        }
        upload
            .complete()
            .await
            .map_err(|err| SyncError::store("completing multipart upload", key, err))?;
        Ok((with_md5.then(|| multipart_etag(&part_md5s)), e.size))
    }

    /// Server-side copy of an object holding the same content, carrying the metadata
    /// an upload of `e` would (see [`CopyMetadata`]), then verification.
    pub async fn copy(&self, from: &str, e: &Entry) -> Result<Written, SyncError> {
        let from_key = key_for(&self.remote.prefix, from)?;
        let key = key_for(&self.remote.prefix, &e.path)?;
        let mut options = CopyOptions::new();
        options.extensions.insert(CopyMetadata {
            attributes: self.attributes(e, is_multipart(e.size, &self.remote.upload)),
            md5chksum: e.md5.as_deref().and_then(md5chksum),
            size: e.size,
            cancel: self.cancel.clone(),
        });
        // The store watches the token itself, so a multipart copy is aborted, not dropped.
        let copied = self.remote.store.copy_opts(&from_key, &key, options).await;
        self.check_cancelled()?;
        copied.map_err(|err| SyncError::store("copying", &key, err))?;
        let expected = e.md5.clone();
        let etag = self.verify(&key, e.size, expected.as_ref()).await?;
        Ok(Written {
            etag,
            bytes_sent: 0,
        })
    }

    /// Checks the stored object's size, and its ETag when it is an MD5-shaped one the
    /// backend vouches for; returns the ETag.
    async fn verify(
        &self,
        key: &Key,
        size: u64,
        expected: Option<&String>,
    ) -> Result<Option<String>, SyncError> {
        let meta = self
            .remote
            .store
            .head(key)
            .await
            .map_err(|err| SyncError::store("verifying upload of", key, err))?;
        if meta.size != size {
            return Err(SyncError::VerifyUpload {
                key: key.to_string(),
                reason: format!("stored size {} differs from the file's {size}", meta.size),
            });
        }
        if !self.remote.upload.etag_is_not_md5
            && let (Some(etag), Some(want)) = (meta.e_tag.as_deref(), expected)
        {
            let plain = etag_md5(etag);
            let matches = if let Some(m) = plain {
                // A copy of a multipart object may come back with a plain ETag; the
                // expected value is then the content MD5, which the caller passes.
                want.eq_ignore_ascii_case(&m) || is_multipart_etag(want)
            } else if is_multipart_etag(etag) {
                !is_multipart_etag(want) || normalize_etag(etag).eq_ignore_ascii_case(want)
            } else {
                true
            };
            if !matches {
                return Err(SyncError::VerifyUpload {
                    key: key.to_string(),
                    reason: format!("ETag {etag} does not match the MD5 {want} of the bytes sent"),
                });
            }
        }
        Ok(meta.e_tag)
    }
}

/// Bytes a single-request upload of `size` bytes holds while it is sent: the file,
/// and the sealed copy of a store that makes one (crypt).
pub fn single_upload_held(size: u64, opts: &UploadOptions) -> u64 {
    if opts.sealed_copy { 2 * size } else { size }
}

/// Part size of a multipart upload of `size` bytes: `chunk_size`, at least S3's 5 MiB
/// minimum, raised so the file needs at most 10,000 parts.
pub fn part_size(size: u64, opts: &UploadOptions) -> u64 {
    opts.chunk_size.max(5 * MIB).max(size.div_ceil(MAX_PARTS))
}

/// Parts of one file in flight at most: `upload_concurrency`, or more while half
/// the memory budget is free (see `spare_permit`), up to [`FILE_IN_FLIGHT`] bytes of parts: one
/// large file alone keeps enough requests going to fill the link (a server answers
/// each part only once it has stored it, so a few parts at once leave it idle).
pub fn most_in_flight(chunk: u64, concurrency: usize) -> usize {
    concurrency.max((FILE_IN_FLIGHT / chunk.max(1)) as usize)
}

/// Whether a file of `size` bytes is uploaded in parts: when it is larger than one
/// part (so no upload buffers more than a part), or reaches `upload_cutoff`.
pub fn is_multipart(size: u64, opts: &UploadOptions) -> bool {
    size > 0 && (size > part_size(size, opts) || size >= opts.upload_cutoff)
}

fn file_stamp(f: &File) -> Option<Stamp> {
    f.metadata().ok().map(|m| Stamp::of(&m))
}

/// Opens a file to upload; one that is gone is `SourceVanished`.
fn open_for_upload(path: &std::path::Path, rel: &str) -> Result<File, SyncError> {
    open_nofollow(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
            SyncError::SourceVanished {
                path: rel.to_owned(),
            }
        }
        _ => SyncError::io("opening for upload", path, err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cutoff: u64, chunk: u64) -> UploadOptions {
        UploadOptions {
            upload_cutoff: cutoff,
            chunk_size: chunk,
            ..UploadOptions::default()
        }
    }

    #[test]
    fn a_store_that_seals_a_copy_counts_the_file_twice_against_the_budget() {
        let plain = opts(200 * MIB, 5 * MIB);
        assert_eq!(single_upload_held(64 * MIB, &plain), 64 * MIB);
        let crypt = UploadOptions {
            sealed_copy: true,
            ..plain
        };
        assert_eq!(single_upload_held(64 * MIB, &crypt), 128 * MIB);
        assert_eq!(single_upload_held(0, &crypt), 0);
    }

    #[test]
    fn files_larger_than_one_part_go_multipart_even_below_the_cutoff() {
        let o = opts(200 * MIB, 5 * MIB);
        assert!(!is_multipart(0, &o), "empty files are a single put");
        assert!(
            !is_multipart(5 * MIB, &o),
            "exactly one part is a single put"
        );
        assert!(is_multipart(5 * MIB + 1, &o), "more than one part");
        assert!(is_multipart(150 * MIB, &o), "below the 200 MiB cutoff");
    }

    #[test]
    fn large_files_keep_up_to_64_mib_of_parts_in_flight_never_fewer_than_configured() {
        assert_eq!(most_in_flight(5 * MIB, 4), 12, "64 MiB of 5 MiB parts");
        assert_eq!(most_in_flight(8 * MIB, 4), 8);
        assert_eq!(
            most_in_flight(64 * MIB, 4),
            4,
            "upload_concurrency is the floor"
        );
        assert_eq!(most_in_flight(5 * MIB, 32), 32);
    }

    #[test]
    fn a_smaller_cutoff_still_forces_multipart_and_parts_are_at_least_5_mib() {
        let o = opts(MIB, 64 * MIB);
        assert!(is_multipart(2 * MIB, &o), "cutoff below the part size");
        assert!(!is_multipart(MIB - 1, &o));
        let tiny = opts(200 * MIB, MIB);
        assert_eq!(part_size(10 * MIB, &tiny), 5 * MIB, "S3's minimum part");
        assert!(!is_multipart(5 * MIB, &tiny));
        let huge = 100_000 * MIB;
        assert!(
            huge.div_ceil(part_size(huge, &tiny)) <= MAX_PARTS,
            "at most 10,000 parts"
        );
    }
}
