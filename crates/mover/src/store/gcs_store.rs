//! An `ObjectStore` over the Google Cloud Storage JSON API — the API rclone uses,
//! and the one emulators (fake-gcs-server) implement; object_store's own GCS store
//! speaks the XML API. Objects carry rclone's metadata in the JSON `metadata` map;
//! single puts are `uploadType=multipart`, larger files one resumable session
//! whose chunks (multiples of 256 KiB) are sent in order; copies are `rewriteTo`.
//! Every upload states the MD5 of the bytes sent (single puts in the request, so
//! GCS refuses a corrupted body) and fails when the stored object's MD5 differs.
//! Tokens come from object_store's GCP credential providers (service account,
//! application default credentials, metadata server).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest as _, Md5};
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::gcs_object::{Listing, Object, Rewrite, resource};
use super::remote::CopyMetadata;

const STORE: &str = "GoogleCloudStorage";
const ATTEMPTS: u32 = 6;

/// One bucket through the JSON API.
#[derive(Clone)]
pub struct GcsJson {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// API root, e.g. `https://storage.googleapis.com` (no trailing `/`).
    root: Url,
    bucket: String,
    credentials: Option<GcpCredentialProvider>,
    user_project: Option<String>,
}

impl std::fmt::Debug for GcsJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for GcsJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{STORE}({})", self.inner.bucket)
    }
}

pub(super) fn generic(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into().into(),
    }
}

/// Maps an HTTP failure on `path` to object_store's error kinds.
pub(super) fn status_error(path: &str, status: StatusCode, body: &str) -> object_store::Error {
    let source: Box<dyn std::error::Error + Send + Sync> = format!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )
    .into();
    let path = path.to_owned();
    match status {
        StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated { path, source },
        StatusCode::FORBIDDEN => object_store::Error::PermissionDenied { path, source },
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition { path, source },
        StatusCode::NOT_MODIFIED => object_store::Error::NotModified { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

impl GcsJson {
    pub fn new(
        http: reqwest::Client,
        root: Url,
        bucket: String,
        credentials: Option<GcpCredentialProvider>,
        user_project: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                root,
                bucket,
                credentials,
                user_project,
            }),
        }
    }

    /// `<root>/<api...>/b/<bucket>/o[/<name>]`, every part percent-encoded.
    fn url(&self, api: &[&str], object: Option<&str>) -> Url {
        let mut url = self.inner.root.clone();
        {
            let mut s = url.path_segments_mut().expect("http(s) URL");
            s.pop_if_empty()
                .extend(api)
                .push("b")
                .push(&self.inner.bucket)
                .push("o");
            if let Some(name) = object {
                s.push(name);
            }
        }
        if let Some(p) = &self.inner.user_project {
            url.query_pairs_mut().append_pair("userProject", p);
        }
        url
    }

    /// `Authorization` value for the next request, when signed.
    pub async fn authorization(&self) -> Result<Option<String>, object_store::Error> {
        match &self.inner.credentials {
            None => Ok(None),
            Some(c) => Ok(Some(format!("Bearer {}", c.get_credential().await?.bearer))),
        }
    }

    /// Sends the request `build` makes (rebuilt per attempt), retrying transport
    /// errors, 408, 429 and 5xx with exponential backoff; returns the final reply.
    pub async fn send<F>(&self, build: F) -> Result<reqwest::Response, object_store::Error>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = build(&self.inner.http);
            if let Some(auth) = self.authorization().await? {
                request = request.header("authorization", auth);
            }
            let retry = match request.send().await {
                Ok(reply) => {
                    let s = reply.status();
                    let transient = s.is_server_error()
                        || s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::REQUEST_TIMEOUT;
                    if !transient || attempt >= ATTEMPTS {
                        return Ok(reply);
                    }
                    format!("HTTP {s}")
                }
                Err(e) if attempt >= ATTEMPTS => return Err(generic(e.to_string())),
                Err(e) => e.to_string(),
            };
            tracing::debug!(attempt, %retry, "retrying a GCS request");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }

    /// Sends and decodes a JSON reply; failures map through [`status_error`].
    async fn json<T: for<'de> Deserialize<'de>, F>(
        &self,
        path: &str,
        build: F,
    ) -> Result<T, object_store::Error>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let reply = self.send(build).await?;
        let status = reply.status();
        let body = reply.bytes().await.map_err(|e| generic(e.to_string()))?;
        if !status.is_success() {
            return Err(status_error(path, status, &String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| generic(format!("{path}: bad JSON reply: {e}")))
    }

    async fn object(&self, location: &Path) -> Result<Object, object_store::Error> {
        let url = self.url(&["storage", "v1"], Some(location.as_ref()));
        self.json(location.as_ref(), |c| c.get(url.clone())).await
    }

    fn list_pages(
        &self,
        prefix: Option<&Path>,
        delimiter: bool,
    ) -> BoxStream<'static, Result<Listing, object_store::Error>> {
        let this = self.clone();
        let prefix = prefix.map(|p| format!("{p}/")).filter(|p| p != "/");
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let this = this.clone();
            let prefix = prefix.clone();
            async move {
                let Some(token) = state else { return Ok(None) };
                let mut url = this.url(&["storage", "v1"], None);
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("maxResults", "1000");
                    if let Some(p) = &prefix {
                        q.append_pair("prefix", p);
                    }
                    if delimiter {
                        q.append_pair("delimiter", "/");
                    }
                    if let Some(t) = &token {
                        q.append_pair("pageToken", t);
                    }
                }
                let page: Listing = this.json("(listing)", |c| c.get(url.clone())).await?;
                let next = page.next_page_token.clone().map(Some);
                Ok(Some((page, next)))
            }
        })
        .boxed()
    }
}

#[async_trait::async_trait]
impl ObjectStore for GcsJson {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult, object_store::Error> {
        let mut url = self.url(&["upload", "storage", "v1"], None);
        url.query_pairs_mut().append_pair("uploadType", "multipart");
        match opts.mode {
            PutMode::Overwrite => {}
            PutMode::Create => {
                url.query_pairs_mut().append_pair("ifGenerationMatch", "0");
            }
            PutMode::Update(v) => {
                let generation = v
                    .version
                    .ok_or_else(|| generic("update needs a generation"))?;
                url.query_pairs_mut()
                    .append_pair("ifGenerationMatch", &generation);
            }
        }
        let mut md5 = Md5::new();
        for chunk in &payload {
            md5.update(chunk);
        }
        let md5 = BASE64.encode(md5.finalize());
        let mut meta = resource(location.as_ref(), &opts.attributes);
        // GCS refuses the upload when the bytes it got do not have this MD5.
        meta["md5Hash"] = json!(md5);
        let meta = meta.to_string();
        // Derived from the content, so the content cannot contain its own delimiter.
        let boundary = format!(
            "scribe-{}",
            hex::encode(BASE64.decode(&md5).unwrap_or_default())
        );
        let mut body = Vec::with_capacity(payload.content_length() + meta.len() + 200);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        for chunk in &payload {
            body.extend_from_slice(chunk);
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        let content_type = format!("multipart/related; boundary={boundary}");
        let reply = self
            .json::<Object, _>(location.as_ref(), |c| {
                c.post(url.clone())
                    .header("content-type", &content_type)
                    .body(body.clone())
            })
            .await;
        match reply {
            Ok(o) => {
                check_md5(location.as_ref(), o.md5_hash.as_deref(), &md5)?;
                Ok(PutResult {
                    e_tag: o.etag,
                    version: o.generation,
                    extensions: Default::default(),
                })
            }
            Err(object_store::Error::Precondition { path, source }) if opts_is_create(&url) => {
                Err(object_store::Error::AlreadyExists { path, source })
            }
            Err(e) => Err(e),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>, object_store::Error> {
        let mut url = self.url(&["upload", "storage", "v1"], None);
        url.query_pairs_mut().append_pair("uploadType", "resumable");
        let meta = resource(location.as_ref(), &opts.attributes).to_string();
        let reply = self
            .send(|c| {
                c.post(url.clone())
                    .header("content-type", "application/json; charset=UTF-8")
                    .body(meta.clone())
            })
            .await?;
        let status = reply.status();
        let session = reply
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = reply.text().await.unwrap_or_default();
        let session = match (status.is_success(), session) {
            (true, Some(s)) => {
                Url::parse(&s).map_err(|e| generic(format!("bad session URL: {e}")))?
            }
            (true, None) => return Err(generic("resumable upload started without a session URL")),
            (false, _) => return Err(status_error(location.as_ref(), status, &body)),
        };
        Ok(Box::new(super::gcs_upload::Resumable::new(
            self.clone(),
            location.to_string(),
            session,
        )))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> Result<GetResult, object_store::Error> {
        let object = self.object(location).await?;
        let meta = object.meta()?;
        let attributes = object.attributes();
        if let Some(m) = &options.if_match
            && Some(m) != meta.e_tag.as_ref()
        {
            return Err(status_error(
                location.as_ref(),
                StatusCode::PRECONDITION_FAILED,
                "etag",
            ));
        }
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| generic(format!("{location}: {e}")))?,
            None => 0..meta.size,
        };
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                meta,
                range,
                attributes,
                extensions: Default::default(),
            });
        }
        let mut url = self.url(&["storage", "v1"], Some(location.as_ref()));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("alt", "media");
            if let Some(g) = &meta.version {
                // The bytes of exactly the generation described by `meta`.
                q.append_pair("generation", g);
            }
        }
        let header = (range != (0..meta.size) && !range.is_empty())
            .then(|| format!("bytes={}-{}", range.start, range.end - 1));
        let reply = self
            .send(|c| {
                let r = c.get(url.clone());
                match &header {
                    Some(h) => r.header("range", h),
                    None => r,
                }
            })
            .await?;
        let status = reply.status();
        if !status.is_success() {
            let body = reply.text().await.unwrap_or_default();
            return Err(status_error(location.as_ref(), status, &body));
        }
        let stream = reply
            .bytes_stream()
            .map_err(|e| generic(format!("reading body: {e}")))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path, object_store::Error>>,
    ) -> BoxStream<'static, Result<Path, object_store::Error>> {
        let this = self.clone();
        locations
            .map(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    let url = this.url(&["storage", "v1"], Some(location.as_ref()));
                    let reply = this.send(|c| c.delete(url.clone())).await?;
                    let status = reply.status();
                    // Deleting what is already gone is success, as on S3.
                    if status.is_success() || status == StatusCode::NOT_FOUND {
                        return Ok(location);
                    }
                    let body = reply.text().await.unwrap_or_default();
                    Err(status_error(location.as_ref(), status, &body))
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta, object_store::Error>> {
        self.list_pages(prefix, false)
            .map_ok(|page| futures::stream::iter(page.items.into_iter().map(|o| o.meta())))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> Result<ListResult, object_store::Error> {
        let pages: Vec<Listing> = self.list_pages(prefix, true).try_collect().await?;
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for page in pages {
            for p in page.prefixes {
                result
                    .common_prefixes
                    .push(Path::parse(p.trim_end_matches('/'))?);
            }
            for o in page.items {
                result.objects.push(o.meta()?);
            }
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> Result<(), object_store::Error> {
        let base = self.url(&["storage", "v1"], Some(from.as_ref()));
        let mut url = base.clone();
        url.path_segments_mut()
            .expect("http(s) URL")
            .push("rewriteTo")
            .push("b")
            .push(&self.inner.bucket)
            .push("o")
            .push(to.as_ref());
        if matches!(options.mode, CopyMode::Create) {
            url.query_pairs_mut().append_pair("ifGenerationMatch", "0");
        }
        // The copy's own metadata (its `mtime`), when the caller names it: a rewrite's
        // body is the destination resource, overriding what the source carries.
        let body = match options.extensions.get::<CopyMetadata>() {
            Some(m) => {
                // The destination is named in the URL; the body carries only metadata.
                let mut r = resource(to.as_ref(), &m.attributes);
                if let Some(fields) = r.as_object_mut() {
                    fields.remove("name");
                }
                Bytes::from(r.to_string())
            }
            None => Bytes::from_static(b"{}"),
        };
        let mut token: Option<String> = None;
        loop {
            let mut u = url.clone();
            if let Some(t) = &token {
                u.query_pairs_mut().append_pair("rewriteToken", t);
            }
            let reply: Result<Rewrite, _> = self
                .json(from.as_ref(), |c| {
                    c.post(u.clone())
                        .header("content-type", "application/json")
                        .body(body.clone())
                })
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(object_store::Error::Precondition { path, source })
                    if matches!(options.mode, CopyMode::Create) =>
                {
                    return Err(object_store::Error::AlreadyExists { path, source });
                }
                Err(e) => return Err(e),
            };
            if reply.done || reply.resource.is_some() && reply.rewrite_token.is_none() {
                return Ok(());
            }
            token = reply.rewrite_token;
            if token.is_none() {
                return Err(generic("rewrite not done and no rewrite token"));
            }
        }
    }
}

/// Fails when the server states an MD5 for the stored object other than the one of
/// the bytes sent (a server that states none is not contradicted).
pub(super) fn check_md5(
    path: &str,
    stored: Option<&str>,
    sent: &str,
) -> Result<(), object_store::Error> {
    match stored {
        Some(stored) if stored != sent => Err(generic(format!(
            "{path}: stored MD5 {stored} differs from the MD5 {sent} of the bytes sent"
        ))),
        _ => Ok(()),
    }
}

fn opts_is_create(url: &Url) -> bool {
    url.query_pairs()
        .any(|(k, v)| k == "ifGenerationMatch" && v == "0")
}
