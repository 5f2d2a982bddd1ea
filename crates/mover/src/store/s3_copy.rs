//! Server-side copies on S3 that carry the copy's own metadata (rclone's `mtime`,
//! and `md5chksum` where an upload of the same file would carry it), which
//! object_store's copy cannot: it keeps the source's metadata, so rclone would show
//! the source's date and transfer the file again.
//!
//! A copy of at most `copy_cutoff` bytes is one CopyObject with
//! `MetadataDirective=REPLACE`; a larger one is a multipart copy: CreateMultipartUpload
//! (with the metadata), UploadPartCopy of parts of `copy_cutoff` bytes or less (at
//! least 5 MiB, at most 10,000 parts), `upload_concurrency` at once, then
//! CompleteMultipartUpload. A multipart copy that fails, or whose run is cancelled
//! (`CopyMetadata::cancel`), is aborted before the copy returns; one whose future is
//! dropped is aborted in the background, and whatever an abort misses is found by
//! the next run's leftover sweep. The caller verifies the copy's size afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption, StorageClass,
};
use futures::{StreamExt, TryStreamExt};
use object_store::Attribute;
use object_store::path::Path;
use tracing::{debug, warn};

use super::s3::BucketClient;
use super::s3_client::{Failure, SseParams, copy_source, retry, timeouts};
use crate::store::remote::CopyMetadata;

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last) and largest part of a multipart upload.
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 << 30;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// One copy request may take long: the server answers when the bytes are copied.
const COPY_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Attempts of one copy request (transport errors, 5xx, throttling).
const COPY_ATTEMPTS: u32 = 8;

/// Copies within one bucket (see the module doc).
pub(super) struct S3Copier {
    client: Arc<BucketClient>,
}

/// Sets the new object's headers (metadata, content headers, storage class) and
/// server-side encryption on a CopyObject or CreateMultipartUpload builder.
macro_rules! with_headers {
    ($op:expr, $h:expr, $sse:expr) => {
        $op.set_metadata(Some($h.metadata))
            .set_content_type($h.content_type)
            .set_content_encoding($h.content_encoding)
            .set_content_disposition($h.content_disposition)
            .set_content_language($h.content_language)
            .set_cache_control($h.cache_control)
            .set_storage_class($h.storage_class.as_deref().map(StorageClass::from))
            .set_server_side_encryption($sse.algorithm.as_deref().map(ServerSideEncryption::from))
            .set_ssekms_key_id($sse.kms_key_id.clone())
    };
}

/// Sets the SSE-C key on a request builder; with `copy_source`, also the key the
/// copy source is read with (the same key: a copy stays within one remote).
macro_rules! with_customer_key {
    ($op:expr, $sse:expr) => {
        match &$sse.customer {
            Some((alg, key, md5)) => $op
                .sse_customer_algorithm(alg)
                .sse_customer_key(key)
                .sse_customer_key_md5(md5),
            None => $op,
        }
    };
    ($op:expr, $sse:expr, copy_source) => {
        match &$sse.customer {
            Some((alg, key, md5)) => $op
                .sse_customer_algorithm(alg)
                .sse_customer_key(key)
                .sse_customer_key_md5(md5)
                .copy_source_sse_customer_algorithm(alg)
                .copy_source_sse_customer_key(key)
                .copy_source_sse_customer_key_md5(md5),
            None => $op,
        }
    };
}

/// The headers a copy sets on the new object.
#[derive(Debug, Default, PartialEq)]
struct Headers {
    metadata: HashMap<String, String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    storage_class: Option<String>,
}

fn headers(request: &CopyMetadata, multipart: bool) -> Headers {
    let mut h = Headers::default();
    for (attribute, value) in request.attributes.iter() {
        let text = value.as_ref().to_owned();
        let value = Some(text.clone());
        match attribute {
            Attribute::Metadata(name) => {
                h.metadata.insert(name.to_string(), text);
            }
            Attribute::ContentType => h.content_type = value,
            Attribute::ContentEncoding => h.content_encoding = value,
            Attribute::ContentDisposition => h.content_disposition = value,
            Attribute::ContentLanguage => h.content_language = value,
            Attribute::CacheControl => h.cache_control = value,
            Attribute::StorageClass => h.storage_class = value,
            _ => {}
        }
    }
    if multipart && let Some(md5) = &request.md5chksum {
        h.metadata.insert("md5chksum".to_owned(), md5.clone());
    }
    h
}

/// Part size of a multipart copy of `size` bytes: `copy_cutoff`, at least 5 MiB,
/// raised so the copy needs at most 10,000 parts, at most 5 GiB.
fn part_size(size: u64, copy_cutoff: u64) -> u64 {
    copy_cutoff
        .max(MIN_PART)
        .max(size.div_ceil(MAX_PARTS))
        .min(MAX_PART)
}

/// (part number, first byte, last byte) of each part.
fn parts(size: u64, part: u64) -> Vec<(i32, u64, u64)> {
    (0..size.div_ceil(part))
        .map(|i| {
            let start = i * part;
            (i as i32 + 1, start, (start + part).min(size) - 1)
        })
        .collect()
}

fn cancelled(to: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: format!("copy to {to} cancelled").into(),
    }
}

/// Aborts a multipart copy when dropped before [`AbortOnDrop::disarm`].
struct AbortOnDrop {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    fn disarm(&mut self) {
        self.upload_id = None;
    }

    async fn abort(&mut self) {
        if let Some(id) = self.upload_id.take() {
            abort(&self.client, &self.bucket, &self.key, &id).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let (Some(id), Ok(handle)) =
            (self.upload_id.take(), tokio::runtime::Handle::try_current())
        {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            handle.spawn(async move { abort(&client, &bucket, &key, &id).await });
        }
    }
}

async fn abort(client: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    let r = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    match r {
        Ok(_) => debug!(key, "aborted multipart copy"),
        Err(e) => {
            warn!(key, error = ?Failure::of(&e), "could not abort a multipart copy; the next run removes it")
        }
    }
}

impl S3Copier {
    pub(super) fn new(client: Arc<BucketClient>) -> Self {
        Self { client }
    }

    /// Copies `from` to `to` with the metadata of `request` (see the module doc).
    pub(super) async fn copy(
        &self,
        from: &Path,
        to: &Path,
        request: &CopyMetadata,
    ) -> object_store::Result<()> {
        let cutoff = self.client.settings.copy_cutoff;
        if request.size > cutoff {
            self.multipart(from, to, request, part_size(request.size, cutoff))
                .await
        } else {
            // Dropping a single CopyObject leaves at most an uncommitted object.
            tokio::select! {
                r = self.single(from, to, request) => r,
                () = request.cancel.cancelled() => Err(cancelled(to)),
            }
        }
    }

    fn config() -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::Config::builder()
            .retry_config(retry(COPY_ATTEMPTS))
            .timeout_config(timeouts(COPY_ATTEMPT_TIMEOUT))
    }

    fn error(&self, action: &'static str, to: &Path, failure: &Failure) -> object_store::Error {
        let source: Box<dyn std::error::Error + Send + Sync> =
            Box::new(self.client.failure(action, failure));
        let path = to.to_string();
        match failure.status() {
            Some(404) => object_store::Error::NotFound { path, source },
            Some(403) => object_store::Error::PermissionDenied { path, source },
            Some(401) => object_store::Error::Unauthenticated { path, source },
            _ => object_store::Error::Generic {
                store: "S3",
                source,
            },
        }
    }

    async fn single(
        &self,
        from: &Path,
        to: &Path,
        request: &CopyMetadata,
    ) -> object_store::Result<()> {
        let s = &self.client.settings;
        let h = headers(request, false);
        let sse = SseParams::of(s.sse.as_ref());
        let op = self
            .client
            .client
            .copy_object()
            .bucket(&s.bucket)
            .key(to.as_ref())
            .copy_source(copy_source(&s.bucket, from.as_ref()))
            .metadata_directive(MetadataDirective::Replace);
        let op = with_customer_key!(with_headers!(op, h, sse), sse, copy_source);
        op.customize()
            .config_override(Self::config())
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("copying object", to, &Failure::of(&e)))
    }

    async fn multipart(
        &self,
        from: &Path,
        to: &Path,
        request: &CopyMetadata,
        part: u64,
    ) -> object_store::Result<()> {
        let s = &self.client.settings;
        let h = headers(request, true);
        let sse = SseParams::of(s.sse.as_ref());
        let create = self
            .client
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(to.as_ref());
        let create = with_customer_key!(with_headers!(create, h, sse), sse);
        let created = create
            .customize()
            .config_override(Self::config())
            .send()
            .await
            .map_err(|e| self.error("starting multipart copy", to, &Failure::of(&e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        if upload_id.is_empty() {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!("starting multipart copy of {to}: no upload id in the reply")
                    .into(),
            });
        }
        let mut guard = AbortOnDrop {
            client: self.client.client.clone(),
            bucket: s.bucket.clone(),
            key: to.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        let outcome = tokio::select! {
            r = self.copy_parts(from, to, &upload_id, request.size, part, &sse) => r,
            () = request.cancel.cancelled() => Err(cancelled(to)),
        };
        match outcome {
            Ok(()) => {
                guard.disarm();
                Ok(())
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    /// Copies every part, then completes the upload.
    async fn copy_parts(
        &self,
        from: &Path,
        to: &Path,
        upload_id: &str,
        size: u64,
        part: u64,
        sse: &SseParams,
    ) -> object_store::Result<()> {
        let s = &self.client.settings;
        let source = copy_source(&s.bucket, from.as_ref());
        let concurrency = s.upload.upload_concurrency.max(1);
        let mut done: Vec<CompletedPart> = futures::stream::iter(parts(size, part))
            .map(|(number, first, last)| {
                let op = self
                    .client
                    .client
                    .upload_part_copy()
                    .bucket(&s.bucket)
                    .key(to.as_ref())
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={first}-{last}"));
                let op = with_customer_key!(op, sse, copy_source);
                async move {
                    let out = op
                        .customize()
                        .config_override(Self::config())
                        .send()
                        .await
                        .map_err(|e| self.error("copying part", to, &Failure::of(&e)))?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .map(str::to_owned)
                        .ok_or_else(|| object_store::Error::Generic {
                            store: "S3",
                            source: format!("copying part {number} of {to}: no ETag in the reply")
                                .into(),
                        })?;
                    Ok::<_, object_store::Error>(
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .build(),
                    )
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        done.sort_by_key(|p| p.part_number());
        let complete = self
            .client
            .client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(to.as_ref())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            );
        let complete = with_customer_key!(complete, sse);
        complete
            .customize()
            .config_override(Self::config())
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("completing multipart copy", to, &Failure::of(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{AttributeValue, Attributes};

    #[test]
    fn parts_cover_the_object_in_cutoff_sized_ranges() {
        assert_eq!(part_size(12 * MIB, 5 * MIB), 5 * MIB);
        assert_eq!(part_size(12 * MIB, 1), MIN_PART, "S3's smallest part");
        assert_eq!(
            part_size(100 << 30, 5 * MIB),
            (100u64 << 30).div_ceil(MAX_PARTS)
        );
        assert_eq!(part_size(60 << 40, 4656 * MIB), MAX_PART, "at most 5 GiB");
        let p = parts(12 * MIB, 5 * MIB);
        assert_eq!(
            p,
            vec![
                (1, 0, 5 * MIB - 1),
                (2, 5 * MIB, 10 * MIB - 1),
                (3, 10 * MIB, 12 * MIB - 1)
            ]
        );
        assert_eq!(parts(10 * MIB, 5 * MIB).len(), 2, "no empty last part");
    }

    #[test]
    fn headers_carry_metadata_storage_class_and_md5chksum_only_when_multipart() {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata("mtime".into()),
            AttributeValue::from("1700000000.5"),
        );
        attributes.insert(Attribute::StorageClass, AttributeValue::from("STANDARD_IA"));
        attributes.insert(Attribute::ContentType, AttributeValue::from("text/plain"));
        let request = CopyMetadata {
            attributes,
            md5chksum: Some("XrY7u+Ae7tCTyyK7j1rNww==".into()),
            size: 1,
            cancel: Default::default(),
        };
        let single = headers(&request, false);
        assert_eq!(single.metadata.len(), 1);
        assert_eq!(single.metadata["mtime"], "1700000000.5");
        assert_eq!(single.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(single.content_type.as_deref(), Some("text/plain"));
        let multi = headers(&request, true);
        assert_eq!(multi.metadata["md5chksum"], "XrY7u+Ae7tCTyyK7j1rNww==");
    }
}
