//! The S3 store as the mover uses it: object_store's `AmazonS3` for everything but
//! the listing, which is our own ListObjectsV2 (keys URL-encoded in the reply). One
//! page holding a key object_store cannot represent (`a//b`, a `.` or `..` segment,
//! a control character) fails object_store's whole listing, so a single foreign key
//! under the prefix would fail every sync in both directions. Here such a key is
//! skipped with a warning naming it: it is not Scribe's (Scribe never writes one),
//! it cannot be addressed to be deleted or restored, and everything else still is.
//! A reply is used only when complete (`</ListBucketResult>`, `KeyCount` matching),
//! so a body cut short is retried, never taken as the end of the listing.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use reqwest::{Method, StatusCode};
use tracing::warn;

use super::listing::FOLDER_MARKER;
use super::s3::BucketClient;
use super::sigv4::uri_encode;

/// Attempts for one page before the listing fails (transient).
const LIST_ATTEMPTS: u32 = 8;

/// See the module doc.
pub(super) struct Listed {
    inner: Arc<dyn ObjectStore>,
    client: Arc<BucketClient>,
}

impl Listed {
    pub(super) fn new(inner: Arc<dyn ObjectStore>, client: Arc<BucketClient>) -> Self {
        Self { inner, client }
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
    objects: Vec<(String, u64, Option<String>, String)>,
    next: Option<String>,
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

/// The text of the first `<tag>…</tag>` in `xml`, entity-decoded.
pub(super) fn field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(unescape_xml(&xml[start..end]))
}

fn unescape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
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

/// Parses one reply body; an incomplete or inconsistent one is an error.
fn parse_page(body: &str) -> Result<Page, String> {
    if !body.trim_end().ends_with("</ListBucketResult>") {
        return Err("listing reply is incomplete (cut short)".into());
    }
    let mut page = Page::default();
    let mut rest = body;
    while let Some(i) = rest.find("<Contents>") {
        let block_end = rest[i..]
            .find("</Contents>")
            .ok_or("listing reply has an unterminated <Contents>")?
            + i;
        let block = &rest[i..block_end];
        let raw = field(block, "Key").ok_or("listing entry without <Key>")?;
        let key = url_decode(&raw).ok_or_else(|| format!("listing key {raw:?} does not decode"))?;
        let size = field(block, "Size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("listing entry {key:?} without a size"))?;
        let modified = field(block, "LastModified").unwrap_or_default();
        page.objects
            .push((key, size, field(block, "ETag"), modified));
        rest = &rest[block_end..];
    }
    let prefixes = body.matches("<CommonPrefixes>").count();
    if let Some(n) = field(body, "KeyCount").and_then(|n| n.trim().parse::<usize>().ok())
        && n != page.objects.len() + prefixes
    {
        return Err(format!(
            "listing reply says {n} keys but holds {}",
            page.objects.len()
        ));
    }
    if field(body, "IsTruncated").is_some_and(|t| t.trim() == "true") {
        page.next =
            Some(field(body, "NextContinuationToken").ok_or("truncated listing without a token")?);
    }
    Ok(page)
}

impl BucketClient {
    /// One page of ListObjectsV2 under `prefix` (a key prefix ending in `/`, or empty).
    async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<Page> {
        let mut query = vec![
            ("encoding-type".to_owned(), "url".to_owned()),
            ("list-type".to_owned(), "2".to_owned()),
        ];
        if !prefix.is_empty() {
            query.push(("prefix".to_owned(), uri_encode(prefix)));
        }
        if let Some(t) = token {
            query.push(("continuation-token".to_owned(), uri_encode(t)));
        }
        query.sort();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reply = self
                .send_with_attempts(
                    "listing",
                    LIST_ATTEMPTS,
                    Method::GET,
                    &query,
                    &[],
                    Vec::new(),
                )
                .await
                .map_err(|e| generic(e.to_string()))?;
            let failure = |status: StatusCode| {
                let e = self.failure("listing bucket", &reply);
                let source: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
                match status {
                    StatusCode::FORBIDDEN => object_store::Error::PermissionDenied {
                        path: prefix.to_owned(),
                        source,
                    },
                    StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated {
                        path: prefix.to_owned(),
                        source,
                    },
                    _ => object_store::Error::Generic {
                        store: "S3",
                        source,
                    },
                }
            };
            if !reply.status.is_success() {
                return Err(failure(reply.status));
            }
            match parse_page(&reply.body) {
                Ok(page) => return Ok(page),
                Err(e) if attempt >= LIST_ATTEMPTS => return Err(generic(e)),
                Err(e) => warn!(error = %e, attempt, "retrying a listing page"),
            }
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
                        let last_modified = chrono::DateTime::parse_from_rfc3339(modified.trim())
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .unwrap_or_default();
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
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_decode_keys_entities_and_continuation() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>p/a%20b+c%2Bd</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>5</Size></Contents><Contents><Key>p/x%0Ay</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"def-2"</ETag><Size>0</Size></Contents><NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_page(body).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(keys, ["p/a b c+d", "p/x\ny"]);
        assert_eq!(page.objects[0].2.as_deref(), Some("\"abc\""));
        assert_eq!(page.objects[0].1, 5);
        assert_eq!(page.next.as_deref(), Some("tok/+="));
    }

    #[test]
    fn incomplete_or_inconsistent_pages_are_errors() {
        let whole = "<ListBucketResult><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
        assert_eq!(parse_page(whole).unwrap().objects.len(), 1);
        assert!(parse_page(&whole[..whole.len() / 2]).is_err(), "cut short");
        let miscounted = whole.replace("<KeyCount>1", "<KeyCount>2");
        assert!(parse_page(&miscounted).is_err());
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("a%"), None);
    }
}
