//! Encrypting multipart uploads for [`super::CryptStore`]: plaintext parts in,
//! sealed 64 KiB blocks out, in rclone's layout (header, then blocks with
//! consecutive nonces), as parts of the underlying store's multipart upload.
//!
//! Parts are sealed on the blocking pool, so encrypting one part overlaps reading
//! the next and the network I/O of the others; the sealed parts still reach the
//! underlying upload in the order they were given (that order numbers them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use tokio::sync::{Mutex, Notify};

use super::data::{self, BlockCipher};
use super::store::wrap_etag;

/// Smallest part but the last that S3 accepts.
const MIN_PART: usize = 5 * 1024 * 1024;
const BLOCK_DATA: usize = data::BLOCK_DATA as usize;

/// The underlying upload, and whose turn it is to hand it a sealed part.
struct Shared {
    inner: Mutex<Box<dyn MultipartUpload>>,
    /// Sequence number of the next part to hand to `inner`.
    next: AtomicU64,
    turn: Notify,
}

impl Shared {
    /// Waits until part `seq` is next, hands it to the underlying upload (which
    /// numbers it) and returns the underlying part's upload.
    async fn submit(&self, seq: u64, sealed: Vec<u8>) -> UploadPart {
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            if self.next.load(Ordering::Acquire) == seq {
                break;
            }
            turn.await;
        }
        let part = self.inner.lock().await.put_part(sealed.into());
        self.next.store(seq + 1, Ordering::Release);
        self.turn.notify_waiters();
        part
    }
}

/// A multipart upload that encrypts as parts arrive. Parts are sealed in whole
/// 64 KiB blocks; what does not fill a block, or would make a part under 5 MiB,
/// waits for the next part (or for `complete`, which sends it as the last part).
/// So every stored part but the last has at least 5 MiB, whatever the plaintext
/// part sizes, and at most 5 MiB plus one block is held back.
pub(super) struct CryptUpload {
    shared: Arc<Shared>,
    cipher: BlockCipher,
    /// The file header, until the first part carries it.
    header: Option<Vec<u8>>,
    carry: Vec<u8>,
    /// The first block of the next part.
    block: u64,
    /// The sequence number of the next part.
    parts: u64,
}

impl std::fmt::Debug for CryptUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptUpload")
            .field("block", &self.block)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// `header` (if any) followed by `plain` sealed block by block from block `first`.
fn seal_blocks(cipher: &BlockCipher, header: Option<Vec<u8>>, first: u64, plain: &[u8]) -> Vec<u8> {
    let mut out = header.unwrap_or_default();
    out.reserve(plain.len() + plain.len().div_ceil(BLOCK_DATA) * data::TAG_LEN as usize);
    for (n, chunk) in (first..).zip(plain.chunks(BLOCK_DATA)) {
        cipher.seal(n, chunk, &mut out);
    }
    out
}

impl CryptUpload {
    pub(super) fn new(
        inner: Box<dyn MultipartUpload>,
        cipher: BlockCipher,
        header: Vec<u8>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                next: AtomicU64::new(0),
                turn: Notify::new(),
            }),
            cipher,
            header: Some(header),
            carry: Vec::new(),
            block: 0,
            parts: 0,
        }
    }

    /// Seals `plain` (with the header if not sent yet) as the next part, on the
    /// blocking pool, and uploads it in its turn.
    fn send(&mut self, plain: Bytes) -> UploadPart {
        let header = self.header.take();
        let first = self.block;
        self.block += plain.len().div_ceil(BLOCK_DATA) as u64;
        let seq = self.parts;
        self.parts += 1;
        let cipher = self.cipher.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let sealed =
                tokio::task::spawn_blocking(move || seal_blocks(&cipher, header, first, &plain))
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "crypt",
                        source: format!("encrypting a part: {e}").into(),
                    })?;
            shared.submit(seq, sealed).await.await
        })
    }
}

#[async_trait::async_trait]
impl MultipartUpload for CryptUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.carry.is_empty()
            && let [whole_part] = data.as_ref()
        {
            // The usual case, a part of whole blocks: sealed without a copy.
            let whole = whole_part.len() / BLOCK_DATA * BLOCK_DATA;
            if whole >= MIN_PART {
                self.carry.extend_from_slice(&whole_part[whole..]);
                return self.send(whole_part.slice(..whole));
            }
        }
        for b in data.iter() {
            self.carry.extend_from_slice(b);
        }
        let whole = self.carry.len() / BLOCK_DATA * BLOCK_DATA;
        if whole < MIN_PART {
            // Too small to be any part but the last (S3's rule): held for the next
            // part or for `complete`.
            return Box::pin(async { Ok(()) });
        }
        let rest = self.carry.split_off(whole);
        let plain = std::mem::replace(&mut self.carry, rest);
        self.send(plain.into())
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if !self.carry.is_empty() || self.header.is_some() {
            let plain = std::mem::take(&mut self.carry);
            self.send(plain.into()).await?;
        }
        let r = self.shared.inner.lock().await.complete().await?;
        Ok(PutResult {
            e_tag: wrap_etag(r.e_tag),
            ..r
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.shared.inner.lock().await.abort().await
    }
}
