//! [`CryptStore`]: an `ObjectStore` that reads and writes rclone crypt objects in
//! another store. Keys are plaintext paths relative to the crypt root; each is
//! stored encrypted (see `names`) under the underlying remote's prefix, and every
//! body is encrypted (see `data`). Listings decrypt names and skip, with a warning,
//! objects whose name does not decrypt (as rclone does). Sizes are plaintext sizes.
//! ETags are the underlying ones with a `crypt-` prefix: still stable identities
//! for change detection, never mistaken for an MD5 of the plaintext. `md5chksum`
//! metadata (an MD5 of the plaintext) is not stored: on the underlying object it
//! would claim to be the ciphertext's. Other metadata (rclone's `mtime`) passes through.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload,
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};
use tracing::warn;

use crate::store::remote::CopyMetadata;

use super::data::{self, BlockCipher, DataError};
use super::names::{NameCipher, NameMode};
use super::upload::CryptUpload;

const STORE: &str = "crypt";
const ETAG_PREFIX: &str = "crypt-";

/// What a [`CryptStore`] shares with its streams and uploads.
struct Core {
    inner: Arc<dyn ObjectStore>,
    /// The underlying remote's key prefix (`bucket/<this>` of `remote = s3:bucket/this`).
    inner_prefix: String,
    names: NameCipher,
    data_key: [u8; 32],
}

/// rclone crypt over another object store.
#[derive(Clone)]
pub struct CryptStore {
    core: Arc<Core>,
}

impl std::fmt::Debug for CryptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CryptStore({})", self.core.inner)
    }
}

impl std::fmt::Display for CryptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CryptStore({})", self.core.inner)
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

/// Stored bytes that are not a crypt object under these keys (bad header, size
/// or authentication), as opposed to a transfer cut short.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Undecryptable(String);

fn undecryptable(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(Undecryptable(message)),
    }
}

/// Whether `e` says stored bytes do not decrypt (see [`Undecryptable`]).
pub fn is_undecryptable(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { store: STORE, source } if source.is::<Undecryptable>())
}

fn bad_name(path: &str, why: String) -> object_store::Error {
    object_store::Error::InvalidPath {
        source: object_store::path::Error::InvalidPath {
            path: format!("{path}: {why}").into(),
        },
    }
}

pub(super) fn wrap_etag(e: Option<String>) -> Option<String> {
    e.map(|e| format!("{ETAG_PREFIX}{e}"))
}

fn unwrap_etag(e: Option<String>) -> Option<String> {
    e.map(|e| e.strip_prefix(ETAG_PREFIX).map(str::to_owned).unwrap_or(e))
}

/// Attributes as stored underneath: without the plaintext MD5.
fn stored_attributes(mut a: Attributes) -> Attributes {
    a.remove(&Attribute::Metadata("md5chksum".into()));
    a
}

/// A copy request as the store underneath must carry it: the ciphertext's size, and
/// no plaintext MD5 (the S3 store sets metadata and sizes multipart copies from it).
fn stored_copy(request: CopyMetadata) -> CopyMetadata {
    CopyMetadata {
        attributes: stored_attributes(request.attributes),
        md5chksum: None,
        size: data::encrypted_size(request.size),
        cancel: request.cancel,
    }
}

impl Core {
    fn join(&self, enc: &str) -> String {
        match (self.inner_prefix.is_empty(), enc.is_empty()) {
            (true, _) => enc.to_owned(),
            (false, true) => self.inner_prefix.clone(),
            (false, false) => format!("{}/{enc}", self.inner_prefix),
        }
    }

    fn file_key(&self, location: &Path) -> object_store::Result<Path> {
        let enc = self
            .names
            .encrypt_file(location.as_ref())
            .map_err(|why| bad_name(location.as_ref(), why))?;
        Path::parse(self.join(&enc)).map_err(|source| object_store::Error::InvalidPath { source })
    }

    fn dir_key(&self, prefix: Option<&Path>) -> object_store::Result<Option<Path>> {
        let plain = prefix.map(|p| p.as_ref()).unwrap_or("");
        let enc = self
            .names
            .encrypt_dir(plain)
            .map_err(|why| bad_name(plain, why))?;
        let full = self.join(&enc);
        if full.is_empty() {
            return Ok(None);
        }
        Path::parse(full)
            .map(Some)
            .map_err(|source| object_store::Error::InvalidPath { source })
    }

    /// The stored key relative to the crypt root, `None` when outside it.
    fn strip<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.inner_prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(&self.inner_prefix)?.strip_prefix('/')
    }

    /// The plaintext view of a listed object, `None` (with a warning) when its
    /// name or size is not that of a crypt object.
    fn plain_meta(&self, m: ObjectMeta) -> Option<ObjectMeta> {
        let stored = m.location.as_ref();
        let rel = self.strip(stored)?;
        let plain = match self.names.decrypt_file(rel) {
            Ok(p) => p,
            Err(why) => {
                warn!(key = %stored, reason = %why, "crypt: skipping undecryptable file name");
                return None;
            }
        };
        let size = match data::decrypted_size(m.size) {
            Ok(s) => s,
            Err(why) => {
                warn!(key = %stored, reason = %why, "crypt: skipping an object too short to be encrypted");
                return None;
            }
        };
        let location = match Path::parse(&plain) {
            Ok(p) => p,
            Err(why) => {
                warn!(key = %stored, reason = %why, "crypt: skipping a decrypted name that is not a valid key");
                return None;
            }
        };
        Some(ObjectMeta {
            location,
            size,
            e_tag: wrap_etag(m.e_tag),
            ..m
        })
    }

    fn plain_meta_of(&self, location: &Path, m: ObjectMeta) -> object_store::Result<ObjectMeta> {
        let size =
            data::decrypted_size(m.size).map_err(|e| undecryptable(format!("{location}: {e}")))?;
        Ok(ObjectMeta {
            location: location.clone(),
            size,
            e_tag: wrap_etag(m.e_tag),
            ..m
        })
    }
}

fn inner_get_options(o: &GetOptions) -> GetOptions {
    GetOptions {
        if_match: unwrap_etag(o.if_match.clone()),
        if_none_match: unwrap_etag(o.if_none_match.clone()),
        if_modified_since: o.if_modified_since,
        if_unmodified_since: o.if_unmodified_since,
        range: None,
        version: o.version.clone(),
        head: o.head,
        extensions: o.extensions.clone(),
    }
}

/// Decrypts the blocks arriving in `body` (starting with block `first`), emitting
/// plaintext bytes `skip..skip + len` of them.
fn decrypt_stream(
    body: BoxStream<'static, object_store::Result<Bytes>>,
    cipher: BlockCipher,
    first: u64,
    skip: u64,
    len: u64,
    key: String,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    struct State {
        body: BoxStream<'static, object_store::Result<Bytes>>,
        cipher: BlockCipher,
        block: u64,
        skip: u64,
        left: u64,
        buf: Vec<u8>,
        key: String,
    }
    let state = State {
        body,
        cipher,
        block: first,
        skip,
        left: len,
        buf: Vec::with_capacity(data::BLOCK as usize),
        key,
    };
    stream::try_unfold(state, |mut s| async move {
        if s.left == 0 {
            return Ok(None);
        }
        let mut ended = false;
        while (s.buf.len() as u64) < data::BLOCK {
            match s.body.next().await {
                Some(chunk) => s.buf.extend_from_slice(&chunk?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let take = s.buf.len().min(data::BLOCK as usize);
        if take == 0 && ended {
            return Err(generic(format!(
                "decrypting {}: the object ended {} bytes early",
                s.key, s.left
            )));
        }
        let sealed: Vec<u8> = s.buf.drain(..take).collect();
        let plain = s
            .cipher
            .open(s.block, &sealed)
            .map_err(|e: DataError| undecryptable(format!("decrypting {}: {e}", s.key)))?;
        s.block += 1;
        let from = (s.skip as usize).min(plain.len());
        s.skip = 0;
        let to = plain.len().min(from + s.left as usize);
        s.left -= (to - from) as u64;
        Ok(Some((Bytes::copy_from_slice(&plain[from..to]), s)))
    })
    .boxed()
}

async fn collect(
    body: BoxStream<'static, object_store::Result<Bytes>>,
) -> object_store::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut body = body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn into_stream(r: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    r.into_stream()
}

#[async_trait::async_trait]
impl ObjectStore for CryptStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let key = self.core.file_key(location)?;
        let plain = Bytes::from(payload);
        let nonce = data::random_nonce().map_err(|e| generic(format!("random nonce: {e}")))?;
        let data_key = self.core.data_key;
        // Sealed on the blocking pool, off the threads driving the network I/O.
        let body = tokio::task::spawn_blocking(move || data::encrypt_all(&data_key, nonce, &plain))
            .await
            .map_err(|e| generic(format!("encrypting {location}: {e}")))?;
        let mode = match opts.mode {
            PutMode::Update(mut v) => {
                v.e_tag = unwrap_etag(v.e_tag);
                PutMode::Update(v)
            }
            m => m,
        };
        let opts = PutOptions {
            mode,
            attributes: stored_attributes(opts.attributes),
            ..opts
        };
        let r = self.core.inner.put_opts(&key, body.into(), opts).await?;
        Ok(PutResult {
            e_tag: wrap_etag(r.e_tag),
            ..r
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let key = self.core.file_key(location)?;
        let nonce = data::random_nonce().map_err(|e| generic(format!("random nonce: {e}")))?;
        let opts = PutMultipartOptions {
            attributes: stored_attributes(opts.attributes),
            ..opts
        };
        let inner = self.core.inner.put_multipart_opts(&key, opts).await?;
        Ok(Box::new(CryptUpload::new(
            inner,
            BlockCipher::new(&self.core.data_key, nonce),
            data::header(&nonce),
        )))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = self.core.file_key(location)?;
        let mut inner_opts = inner_get_options(&options);
        if options.head {
            let r = self.core.inner.get_opts(&key, inner_opts).await?;
            let meta = self.core.plain_meta_of(location, r.meta)?;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: r.attributes,
                extensions: r.extensions,
            });
        }
        let name = location.to_string();
        let Some(range) = options.range else {
            // The whole object in one request: header, then every block.
            let r = self.core.inner.get_opts(&key, inner_opts).await?;
            let meta = self.core.plain_meta_of(location, r.meta.clone())?;
            let (attributes, extensions) = (r.attributes.clone(), r.extensions.clone());
            let mut body = into_stream(r);
            let mut head = Vec::new();
            while (head.len() as u64) < data::HEADER_LEN {
                match body.next().await {
                    Some(c) => head.extend_from_slice(&c?),
                    None => break,
                }
            }
            let nonce = data::parse_header(&head)
                .map_err(|e| undecryptable(format!("decrypting {name}: {e}")))?;
            let rest = Bytes::from(head.split_off(data::HEADER_LEN as usize));
            let body = stream::once(async move { Ok(rest) }).chain(body).boxed();
            let cipher = BlockCipher::new(&self.core.data_key, nonce);
            return Ok(GetResult {
                payload: GetResultPayload::Stream(decrypt_stream(
                    body, cipher, 0, 0, meta.size, name,
                )),
                range: 0..meta.size,
                meta,
                attributes,
                extensions,
            });
        };
        // A range: the header first (which also gives the size), then the blocks.
        inner_opts.range = Some(GetRange::Bounded(0..data::HEADER_LEN));
        let r = self.core.inner.get_opts(&key, inner_opts.clone()).await?;
        let meta = self.core.plain_meta_of(location, r.meta.clone())?;
        let (attributes, extensions) = (r.attributes.clone(), r.extensions.clone());
        let head = collect(into_stream(r)).await?;
        let nonce = data::parse_header(&head)
            .map_err(|e| undecryptable(format!("decrypting {name}: {e}")))?;
        let want = range
            .as_range(meta.size)
            .map_err(|e| generic(format!("{name}: {e}")))?;
        let cipher = BlockCipher::new(&self.core.data_key, nonce);
        let (first, stored) = data::block_span(want.start, want.end);
        let body = if want.is_empty() {
            stream::empty().boxed()
        } else {
            inner_opts.range = Some(GetRange::Bounded(stored));
            into_stream(self.core.inner.get_opts(&key, inner_opts).await?)
        };
        let skip = want.start - first * data::BLOCK_DATA;
        Ok(GetResult {
            payload: GetResultPayload::Stream(decrypt_stream(
                body,
                cipher,
                first,
                skip,
                want.end - want.start,
                name,
            )),
            range: want,
            meta,
            attributes,
            extensions,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let core = Arc::clone(&self.core);
        let pairs = locations.map(move |p| p.and_then(|p| Ok((core.file_key(&p)?, p))));
        let core = Arc::clone(&self.core);
        pairs
            .then(move |pair| {
                let core = Arc::clone(&core);
                async move {
                    let (key, plain) = pair?;
                    let mut done = core
                        .inner
                        .delete_stream(stream::once(async { Ok(key) }).boxed());
                    while let Some(r) = done.next().await {
                        r?;
                    }
                    Ok(plain)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner_prefix = match self.core.dir_key(prefix) {
            Ok(p) => p,
            Err(e) => return stream::once(async { Err(e) }).boxed(),
        };
        let core = Arc::clone(&self.core);
        self.core
            .inner
            .list(inner_prefix.as_ref())
            .filter_map(move |r| {
                let out = match r {
                    Err(e) => Some(Err(e)),
                    Ok(m) => core.plain_meta(m).map(Ok),
                };
                async move { out }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let inner_prefix = self.core.dir_key(prefix)?;
        let r = self
            .core
            .inner
            .list_with_delimiter(inner_prefix.as_ref())
            .await?;
        let objects = r
            .objects
            .into_iter()
            .filter_map(|m| self.core.plain_meta(m))
            .collect();
        let common_prefixes = r
            .common_prefixes
            .into_iter()
            .filter_map(|p| {
                let rel = self.core.strip(p.as_ref())?;
                match self.core.names.decrypt_dir(rel).map(|d| Path::parse(&d)) {
                    Ok(Ok(d)) => Some(d),
                    _ => {
                        warn!(key = %p, "crypt: skipping undecryptable directory name");
                        None
                    }
                }
            })
            .collect();
        Ok(ListResult {
            common_prefixes,
            objects,
            ..r
        })
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        mut options: CopyOptions,
    ) -> object_store::Result<()> {
        let (from, to) = (self.core.file_key(from)?, self.core.file_key(to)?);
        // The copy request describes the plaintext; underneath it is ciphertext.
        if let Some(request) = options.extensions.remove::<CopyMetadata>() {
            options.extensions.insert(stored_copy(request));
        }
        self.core.inner.copy_opts(&from, &to, options).await
    }
}

impl CryptStore {
    /// A crypt view of `inner`, storing under `inner_prefix`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        inner_prefix: &Path,
        names: NameCipher,
        data_key: [u8; 32],
    ) -> Self {
        Self {
            core: Arc::new(Core {
                inner,
                inner_prefix: inner_prefix.as_ref().to_owned(),
                names,
                data_key,
            }),
        }
    }

    /// Whether a stored object (as listed underneath) decrypts with these keys:
    /// `Some(true)` when its first block does (or, for an empty file, its
    /// `standard` name), `Some(false)` when its name, size or first block do not,
    /// `None` when it proves nothing (an empty file under obfuscated or plain names).
    pub async fn decrypts(&self, stored: &ObjectMeta) -> object_store::Result<Option<bool>> {
        let Some(rel) = self.core.strip(stored.location.as_ref()) else {
            return Ok(None);
        };
        if self.core.names.decrypt_file(rel).is_err() {
            return Ok(Some(false));
        }
        let Ok(size) = data::decrypted_size(stored.size) else {
            return Ok(Some(false));
        };
        if size == 0 {
            return Ok((self.core.names.mode() == NameMode::Standard).then_some(true));
        }
        // Read by the stored key: under a wrong key an obfuscated name does not
        // encrypt back to the same stored name.
        let first = stored.size.min(data::HEADER_LEN + data::BLOCK);
        let body = self
            .core
            .inner
            .get_opts(
                &stored.location,
                GetOptions {
                    range: Some(GetRange::Bounded(0..first)),
                    ..Default::default()
                },
            )
            .await?;
        let body = collect(into_stream(body)).await?;
        let opened = data::parse_header(&body).and_then(|nonce| {
            BlockCipher::new(&self.core.data_key, nonce).open(0, &body[data::HEADER_LEN as usize..])
        });
        Ok(Some(opened.is_ok()))
    }

    /// The stored key of a plaintext file key (for tests and diagnostics).
    pub fn stored_key(&self, location: &Path) -> object_store::Result<Path> {
        self.core.file_key(location)
    }
}
