//! The S3 store as the mover uses it: object_store's `AmazonS3` for everything but
//! the listing, which is ListObjectsV2 through aws-sdk-s3 with keys URL-encoded in
//! the reply, and copies that carry the copy's own metadata (`s3_copy`). One
//! page holding a key object_store cannot represent (`a//b`, a `.` or `..` segment,
//! a control character) fails object_store's whole listing, so a single foreign key
//! under the prefix would fail every sync in both directions. Here such a key is
//! skipped with a warning naming it: it is not Scribe's (Scribe never writes one),
//! it cannot be addressed to be deleted or restored, and everything else still is.
//! A reply is used only when complete (`</ListBucketResult>`, checked on the raw
//! body, and `KeyCount` matching), so a body cut short is retried, never taken as
//! the end of the listing.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::types::EncodingType;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tracing::warn;

use super::listing::FOLDER_MARKER;
use super::s3::BucketClient;
use super::s3_client::{Failure, WholeXml, retry};
use super::s3_copy::S3Copier;
use crate::store::remote::CopyMetadata;

/// Attempts for one page before the listing fails (transient).
const LIST_ATTEMPTS: u32 = 8;

/// See the module doc.
pub(super) struct Listed {
    inner: Arc<dyn ObjectStore>,
    client: Arc<BucketClient>,
    copier: S3Copier,
}

impl Listed {
    pub(super) fn new(inner: Arc<dyn ObjectStore>, client: Arc<BucketClient>) -> Self {
        let copier = S3Copier::new(Arc::clone(&client));
        Self {
            inner,
            client,
            copier,
        }
    }
}

impl fmt::Debug for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.inner)
    }
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// One parsed ListObjectsV2 page.
#[derive(Debug, Default, PartialEq)]
struct Page {
    /// Decoded keys with their size, ETag and LastModified.
    objects: Vec<(String, u64, Option<String>, chrono::DateTime<chrono::Utc>)>,
    next: Option<String>,
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

/// Decodes a key of an `encoding-type=url` reply (`+` is a space; a literal plus
/// arrives as `%2B`). `None` when it does not decode to UTF-8.
fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).ok()?, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads one reply (keys URL-encoded); an inconsistent one is an error.
fn page_of(out: ListObjectsV2Output) -> Result<Page, String> {
    let mut page = Page::default();
    for o in out.contents() {
        let raw = o.key().ok_or("listing entry without <Key>")?;
        let key = url_decode(raw).ok_or_else(|| format!("listing key {raw:?} does not decode"))?;
        let size = o
            .size()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| format!("listing entry {key:?} without a size"))?;
        let modified = o
            .last_modified()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
            .unwrap_or_default();
        page.objects
            .push((key, size, o.e_tag().map(str::to_owned), modified));
    }
    let prefixes = out.common_prefixes().len();
    if let Some(n) = out.key_count()
        && usize::try_from(n).ok() != Some(page.objects.len() + prefixes)
    {
        return Err(format!(
            "listing reply says {n} keys but holds {}",
            page.objects.len()
        ));
    }
    if out.is_truncated() == Some(true) {
        page.next = Some(
            out.next_continuation_token()
                .ok_or("truncated listing without a token")?
                .to_owned(),
        );
    }
    Ok(page)
}

impl BucketClient {
    /// One page of ListObjectsV2 under `prefix` (a key prefix ending in `/`, or empty).
    async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<Page> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reply = self
                .client
                .list_objects_v2()
                .bucket(&self.settings.bucket)
                .encoding_type(EncodingType::Url)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                .set_continuation_token(token.map(str::to_owned))
                .customize()
                .interceptor(WholeXml("ListBucketResult"))
                .config_override(aws_sdk_s3::Config::builder().retry_config(retry(LIST_ATTEMPTS)))
                .send()
                .await;
            let problem = match reply {
                Ok(out) => match page_of(out) {
                    Ok(page) => return Ok(page),
                    Err(e) => e,
                },
                // A reply cut short or unreadable (the SDK has retried the rest).
                Err(e @ SdkError::ResponseError(_)) => {
                    self.failure("listing bucket", &Failure::of(&e)).to_string()
                }
                Err(e) => return Err(self.list_failure(prefix, &Failure::of(&e))),
            };
            if attempt >= LIST_ATTEMPTS {
                return Err(generic(problem));
            }
            warn!(error = %problem, attempt, "retrying a listing page");
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt.min(6))).await;
        }
    }

    fn list_failure(&self, prefix: &str, f: &Failure) -> object_store::Error {
        let source: Box<dyn std::error::Error + Send + Sync> =
            Box::new(self.failure("listing bucket", f));
        match f.status() {
            Some(403) => object_store::Error::PermissionDenied {
                path: prefix.to_owned(),
                source,
            },
            Some(401) => object_store::Error::Unauthenticated {
                path: prefix.to_owned(),
                source,
            },
            _ => object_store::Error::Generic {
                store: "S3",
                source,
            },
        }
    }
}

/// Lists every object under `prefix`, skipping (with a warning) keys object_store
/// cannot represent.
fn list_all(
    client: Arc<BucketClient>,
    prefix: Option<&Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let prefix = prefix.map(|p| format!("{p}/")).unwrap_or_default();
    let pages = futures::stream::try_unfold(Some(None::<String>), move |state| {
        let client = Arc::clone(&client);
        let prefix = prefix.clone();
        async move {
            let Some(token) = state else {
                return Ok(None);
            };
            let page = client.list_page(&prefix, token.as_deref()).await?;
            let next = page.next.clone().map(Some);
            Ok(Some((page.objects, next)))
        }
    });
    pages
        .map(|page: Result<Vec<_>>| match page {
            Err(e) => futures::stream::iter(vec![Err(e)]),
            Ok(objects) => futures::stream::iter(
                objects
                    .into_iter()
                    .filter_map(|(key, size, e_tag, modified)| {
                        // A key ending in `/` is a folder marker, not data (see `listing`).
                        let (name, version) = match key.strip_suffix('/') {
                            Some(dir) => (dir, Some(FOLDER_MARKER.to_owned())),
                            None => (key.as_str(), None),
                        };
                        let location = match Path::parse(name) {
                            Ok(p) if p.as_ref() == name => p,
                            _ => {
                                warn!(key = ?key, "skipping an object key that cannot be addressed (empty, `.` or `..` segment, or a control character); it is not Scribe's and is left alone");
                                return None;
                            }
                        };
                        let last_modified = modified;
                        Some(Ok(ObjectMeta {
                            location,
                            last_modified,
                            size,
                            e_tag,
                            version,
                        }))
                    })
                    .collect::<Vec<_>>(),
            ),
        })
        .flatten()
        .boxed()
}

#[async_trait]
impl ObjectStore for Listed {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        list_all(Arc::clone(&self.client), prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        match options.extensions.get::<CopyMetadata>() {
            Some(request) => self.copier.copy(from, to, request).await,
            None => self.inner.copy_opts(from, to, options).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::{CommonPrefix, Object};

    fn object(key: &str, size: i64) -> Object {
        Object::builder()
            .key(key)
            .size(size)
            .e_tag("\"abc\"")
            .last_modified(aws_smithy_types::DateTime::from_secs(1_767_323_045))
            .build()
    }

    #[test]
    fn pages_decode_keys_and_continuation() {
        let out = ListObjectsV2Output::builder()
            .key_count(2)
            .is_truncated(true)
            .contents(object("p/a%20b+c%2Bd", 5))
            .contents(object("p/x%0Ay", 0))
            .next_continuation_token("tok/+=")
            .build();
        let page = page_of(out).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(keys, ["p/a b c+d", "p/x\ny"]);
        assert_eq!(page.objects[0].2.as_deref(), Some("\"abc\""));
        assert_eq!(page.objects[0].1, 5);
        assert_eq!(page.objects[0].3.timestamp(), 1_767_323_045);
        assert_eq!(page.next.as_deref(), Some("tok/+="));
    }

    #[test]
    fn inconsistent_pages_are_errors() {
        let counted = |n| {
            ListObjectsV2Output::builder()
                .key_count(n)
                .is_truncated(false)
                .contents(object("k", 1))
                .common_prefixes(CommonPrefix::builder().prefix("d/").build())
                .build()
        };
        assert_eq!(page_of(counted(2)).unwrap().objects.len(), 1);
        assert!(page_of(counted(3)).is_err(), "miscounted");
        let no_token = ListObjectsV2Output::builder().is_truncated(true).build();
        assert!(page_of(no_token).is_err());
        let no_size = ListObjectsV2Output::builder()
            .contents(Object::builder().key("k").build())
            .build();
        assert!(page_of(no_size).is_err());
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("a%"), None);
    }
}
