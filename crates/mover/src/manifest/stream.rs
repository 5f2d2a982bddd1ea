//! The manifest as a stream, for the source: [`spawn_reader`] reads the previous
//! manifest line by line from the store's get stream (checking each line as it
//! comes: header, safe and strictly increasing paths, digests), and
//! [`write_merged`] assembles a new one from a scratch file of settled lines and the
//! changed entries, uploading it in parts ([`ChunkWriter`] → [`upload_chunks`]) as it
//! is produced, so neither holds every entry. The commit stays atomic: a manifest
//! of one part is a single put, a larger one a multipart upload, visible only once
//! completed. [`BodyDigest`] checks a read body against its ETag.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use md5::{Digest as _, Md5};

use super::{Entry, EntryKind, FORMAT, Header, RootMeta, VERSION, header_line};
use crate::error::{SyncError, join_error};
use crate::fs::hash::{etag_md5, is_multipart_etag, multipart_etag, normalize_etag};
use crate::fs::paths::{check_relative, manifest_key, path_cmp};
use crate::store::remote::Remote;

/// Size of the parts a manifest is written in (at least S3's 5 MiB minimum).
pub const PART: usize = 8 * 1024 * 1024;

/// Starts reading the previous manifest of `remote`; entries arrive in path order
/// through a channel of `capacity`. No manifest: the channel just closes. An error
/// (store, or an invalid line) is the last item.
pub fn spawn_reader(remote: &Remote, capacity: usize) -> mpsc::Receiver<Result<Entry, SyncError>> {
    spawn_reader_root(remote, capacity).0
}

/// The previous manifest's root metadata, set once its whole body was read and
/// checked (still `None` before, or when it has none).
pub type RootSlot = Arc<Mutex<Option<RootMeta>>>;

/// [`spawn_reader`], also returning where the header's root metadata is put.
pub fn spawn_reader_root(
    remote: &Remote,
    capacity: usize,
) -> (mpsc::Receiver<Result<Entry, SyncError>>, RootSlot) {
    let (tx, rx) = mpsc::channel(capacity);
    let remote = remote.clone();
    let slot = RootSlot::default();
    let root = Arc::clone(&slot);
    tokio::spawn(async move {
        if let Err(e) = read_into(&remote, &tx, &root).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    (rx, slot)
}

async fn read_into(
    remote: &Remote,
    tx: &mpsc::Sender<Result<Entry, SyncError>>,
    root: &Mutex<Option<RootMeta>>,
) -> Result<(), SyncError> {
    let key = manifest_key(&remote.prefix);
    let got = match remote.store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(SyncError::store("reading manifest", &key, e)),
    };
    let etag = got.meta.e_tag.clone();
    let mut body = got.into_stream();
    let mut checker = LineChecker::new(key.as_ref());
    let mut digest = BodyDigest::default();
    let mut lines = Lines::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| SyncError::store("reading manifest", &key, e))?;
        digest.update(&chunk);
        lines.feed(&chunk);
        while let Some(line) = lines.next_line() {
            if let Some(e) = checker.line(line)?
                && tx.send(Ok(e)).await.is_err()
            {
                return Ok(()); // The reader stopped listening.
            }
        }
    }
    // Before the last (possibly cut) line and the count check: a short body is a
    // transfer fault to retry, not an invalid manifest.
    if !remote.upload.etag_is_not_md5 {
        digest.check(key.as_ref(), etag.as_deref())?;
    }
    if let Some(e) = checker.line(lines.rest())? {
        let _ = tx.send(Ok(e)).await;
    }
    let header_root = checker.header.as_ref().and_then(|h| h.root.clone());
    checker.finish()?;
    *root
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = header_root;
    Ok(())
}

/// Splits a body arriving in chunks into lines (without their newline).
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    start: usize,
}

impl Lines {
    /// Adds the next chunk (the lines taken so far are dropped).
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line, if one arrived.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let i = self.buf[self.start..].iter().position(|b| *b == b'\n')?;
        let line = &self.buf[self.start..self.start + i];
        self.start += i + 1;
        Some(line)
    }

    /// What follows the last newline (the last line when the body has ended).
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// MD5s of a manifest body as it arrives: whole, and per [`PART`] (how Scribe writes
/// a multipart manifest), to check it against its ETag. A server or proxy that cuts
/// a reply short while fixing `Content-Length` is caught here.
#[derive(Default)]
pub struct BodyDigest {
    whole: Md5,
    part: Md5,
    in_part: usize,
    parts: Vec<[u8; 16]>,
}

impl BodyDigest {
    pub fn update(&mut self, mut data: &[u8]) {
        self.whole.update(data);
        while !data.is_empty() {
            let n = (PART - self.in_part).min(data.len());
            self.part.update(&data[..n]);
            self.in_part += n;
            data = &data[n..];
            if self.in_part == PART {
                self.parts
                    .push(std::mem::take(&mut self.part).finalize().into());
                self.in_part = 0;
            }
        }
    }

    /// Fails (transiently) when an MD5-shaped ETag does not match the bytes read;
    /// other ETags (no MD5, or parts of another size) are not checked.
    pub fn check(mut self, key: &str, etag: Option<&str>) -> Result<(), SyncError> {
        let Some(etag) = etag else {
            return Ok(());
        };
        let computed = if let Some(md5) = etag_md5(etag) {
            (hex::encode(self.whole.finalize()), md5)
        } else if is_multipart_etag(etag) {
            if self.in_part > 0 {
                self.parts.push(self.part.finalize().into());
            }
            let want = normalize_etag(etag).to_ascii_lowercase();
            let n = want.rsplit('-').next().unwrap_or_default().to_string();
            if n != self.parts.len().to_string() {
                // Another part layout (or a short body): only a count that matches is
                // comparable; a different count with the same size cannot be judged.
                return if self.parts.len() < n.parse().unwrap_or(0) {
                    Err(short(key, etag))
                } else {
                    Ok(())
                };
            }
            (multipart_etag(&self.parts), want)
        } else {
            return Ok(());
        };
        if computed.0 == computed.1 {
            Ok(())
        } else {
            Err(short(key, etag))
        }
    }
}

fn short(key: &str, etag: &str) -> SyncError {
    SyncError::store(
        "reading manifest",
        key,
        object_store::Error::Generic {
            store: "scribe",
            source: format!(
                "the body read does not match ETag {etag} (cut short or changed in flight)"
            )
            .into(),
        },
    )
}

/// Checks a manifest one line at a time, keeping only the previous path. (The
/// destination's full [`super::Manifest::parse`] also checks what needs the whole
/// tree: hardlink targets and parents being directories.)
pub struct LineChecker {
    key: String,
    line: usize,
    header: Option<Header>,
    last: Option<String>,
    count: usize,
}

impl LineChecker {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            line: 0,
            header: None,
            last: None,
            count: 0,
        }
    }

    fn bad(&self, reason: String) -> SyncError {
        SyncError::ManifestInvalid {
            key: self.key.clone(),
            line: self.line,
            reason,
        }
    }

    /// The entry on this line, if it is one (not the header, not blank).
    pub fn line(&mut self, raw: &[u8]) -> Result<Option<Entry>, SyncError> {
        self.line += 1;
        let text = std::str::from_utf8(raw).map_err(|e| self.bad(format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        if self.header.is_none() {
            let h: Header =
                serde_json::from_str(text).map_err(|e| self.bad(format!("header: {e}")))?;
            if h.format != FORMAT {
                return Err(self.bad(format!("format is {:?}, expected {FORMAT:?}", h.format)));
            }
            if h.version != VERSION {
                return Err(self.bad(format!(
                    "version {} is not supported (this mover reads {VERSION})",
                    h.version
                )));
            }
            self.header = Some(h);
            return Ok(None);
        }
        let e: Entry = serde_json::from_str(text).map_err(|err| self.bad(err.to_string()))?;
        check_relative(
            &format!("manifest {} line {}", self.key, self.line),
            &e.path,
        )?;
        if let Some(prev) = &self.last
            && path_cmp(prev, &e.path) != std::cmp::Ordering::Less
        {
            return Err(self.bad(format!(
                "path {:?} is not after {prev:?} (unsorted or duplicate)",
                e.path
            )));
        }
        let ok = match e.kind {
            EntryKind::File => e.sha256.is_some() || e.md5.is_some(),
            EntryKind::Symlink | EntryKind::Hardlink => {
                e.target.as_deref().is_some_and(|t| !t.is_empty())
            }
            EntryKind::Dir => true,
        };
        if !ok {
            return Err(self.bad(format!("{:?} has no digest or target", e.path)));
        }
        if let Some(sha) = &e.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(self.bad(format!("sha256 of {:?} is not 64 hex digits", e.path)));
        }
        self.last = Some(e.path.clone());
        self.count += 1;
        Ok(Some(e))
    }

    /// The header's root metadata, once the header was read.
    pub fn root(&self) -> Option<&RootMeta> {
        self.header.as_ref().and_then(|h| h.root.as_ref())
    }

    /// Checks the end: a header was seen and its entry count matches.
    pub fn finish(self) -> Result<(), SyncError> {
        match &self.header {
            None => Err(self.bad("empty manifest".into())),
            Some(h) if h.entries != self.count => Err(self.bad(format!(
                "header says {} entries, found {}",
                h.entries, self.count
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Uploads a manifest arriving as chunks (each at least [`PART`] bytes but the last):
/// one chunk is a single put, more a multipart upload, aborted on any error.
pub async fn upload_chunks<S>(remote: &Remote, chunks: S) -> Result<(), SyncError>
where
    S: Stream<Item = Result<Bytes, SyncError>>,
{
    let key = manifest_key(&remote.prefix);
    let fail = |e| SyncError::store("writing manifest", &key, e);
    let mut chunks = std::pin::pin!(chunks);
    let first = chunks.next().await.transpose()?.unwrap_or_default();
    let Some(second) = chunks.next().await.transpose()? else {
        remote
            .store
            .put(&key, PutPayload::from(first))
            .await
            .map_err(fail)?;
        return Ok(());
    };
    let mut up = remote.store.put_multipart(&key).await.map_err(fail)?;
    let sent: Result<(), SyncError> = async {
        up.put_part(PutPayload::from(first)).await.map_err(fail)?;
        up.put_part(PutPayload::from(second)).await.map_err(fail)?;
        while let Some(c) = chunks.next().await {
            up.put_part(PutPayload::from(c?)).await.map_err(fail)?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = sent {
        let _ = up.abort().await;
        return Err(e);
    }
    up.complete().await.map_err(fail)?;
    Ok(())
}

/// A blocking `Write` that hands [`PART`]-sized chunks to [`upload_chunks`] through a
/// channel (call [`ChunkWriter::finish`] to send the rest).
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, SyncError>>,
}

impl ChunkWriter {
    pub fn new(tx: mpsc::Sender<Result<Bytes, SyncError>>) -> Self {
        Self {
            buf: Vec::with_capacity(PART),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PART)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("manifest upload stopped"))
    }

    /// Sends what is left (possibly nothing, for an empty manifest body).
    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PART {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A read-write file in `TMPDIR`, unlinked at once so nothing is left behind.
pub fn scratch_file() -> Result<File, SyncError> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("scribe-manifest-{}-{nanos}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SyncError::io("creating scratch file", &path, e))?;
    std::fs::remove_file(&path).map_err(|e| SyncError::io("removing scratch file", &path, e))?;
    Ok(f)
}

/// Only the path of a manifest line, to merge lines without decoding them.
#[derive(serde::Deserialize)]
struct PathOnly {
    path: String,
}

/// Writes a new manifest of `entries` entries: header, then the lines of `body` (a
/// file of JSON lines in path order, e.g. from [`scratch_file`]) merged with `extra`
/// (entries in path order, read fallibly, e.g. from another scratch file, and
/// consumed as they are written), uploaded in parts while it is assembled. The
/// first error of `extra` fails the write before anything is committed.
pub async fn write_merged<I>(
    remote: &Remote,
    body: File,
    extra: I,
    entries: usize,
    created_at: &str,
    root: RootMeta,
) -> Result<(), SyncError>
where
    I: Iterator<Item = Result<Entry, SyncError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(1);
    let created_at = created_at.to_string();
    let assemble = tokio::task::spawn_blocking(move || {
        let r = assemble(body, extra, entries, &created_at, &root, &tx);
        if let Err(e) = &r {
            let _ = tx.blocking_send(Err(SyncError::Internal(format!(
                "assembling the manifest: {e}"
            ))));
        }
        r
    });
    let uploaded =
        upload_chunks(remote, futures::stream::poll_fn(move |cx| rx.poll_recv(cx))).await;
    let assembled = assemble.await.map_err(join_error)?;
    match (uploaded, assembled) {
        (Ok(()), r) => r,
        // The assembly stopped because the upload did: the upload's error is the cause.
        (
            Err(u),
            Err(SyncError::LocalIo {
                action: "writing manifest",
                ..
            }),
        ) => Err(u),
        (Err(_), Err(a)) => Err(a),
        (Err(u), Ok(())) => Err(u),
    }
}

fn assemble(
    body: File,
    extra: impl Iterator<Item = Result<Entry, SyncError>>,
    entries: usize,
    created_at: &str,
    root: &RootMeta,
    tx: &mpsc::Sender<Result<bytes::Bytes, SyncError>>,
) -> Result<(), SyncError> {
    let scratch = |err: std::io::Error| SyncError::io("reading", "manifest scratch file", err);
    let mut out = ChunkWriter::new(tx.clone());
    let sent = |err| SyncError::io("writing manifest", "upload", err);
    out.write_all(&header_line(created_at, entries, Some(root)))
        .map_err(sent)?;
    let mut body = body;
    body.rewind().map_err(scratch)?;
    let mut lines = BufReader::new(body);
    let mut extra = extra.peekable();
    let mut line = Vec::new();
    let mut written = 0usize;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).map_err(scratch)? == 0 {
            break;
        }
        let at: PathOnly = serde_json::from_slice(&line)
            .map_err(|e| SyncError::Internal(format!("manifest scratch line: {e}")))?;
        while let Some(e) = extra.next_if(|e| {
            e.as_ref()
                .map_or(true, |e| path_cmp(&e.path, &at.path).is_lt())
        }) {
            write_entry(&mut out, &e?).map_err(sent)?;
            written += 1;
        }
        out.write_all(&line).map_err(sent)?;
        written += 1;
    }
    for e in extra {
        write_entry(&mut out, &e?).map_err(sent)?;
        written += 1;
    }
    if written != entries {
        return Err(SyncError::Internal(format!(
            "manifest has {written} entries, expected {entries}"
        )));
    }
    out.finish().map_err(sent)
}

fn write_entry(out: &mut ChunkWriter, e: &Entry) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    out.write_all(b"\n")
}
