//! Encrypting multipart uploads for [`super::CryptStore`]: plaintext parts in,
//! sealed 64 KiB blocks out, in rclone's layout (header, then blocks with
//! consecutive nonces), as parts of the underlying store's multipart upload.

use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use super::data::{self, BlockCipher};
use super::store::wrap_etag;

/// Smallest part but the last that S3 accepts.
const MIN_PART: usize = 5 * 1024 * 1024;

/// A multipart upload that encrypts as parts arrive. Parts are sealed in whole
/// 64 KiB blocks; what does not fill a block, or would make a part under 5 MiB,
/// waits for the next part (or for `complete`, which sends it as the last part).
/// So every stored part but the last has at least 5 MiB, whatever the plaintext
/// part sizes, and at most 5 MiB plus one block is held back.
pub(super) struct CryptUpload {
    inner: Box<dyn MultipartUpload>,
    cipher: BlockCipher,
    /// The file header, until the first part carries it.
    header: Option<Vec<u8>>,
    carry: Vec<u8>,
    block: u64,
}

impl std::fmt::Debug for CryptUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptUpload")
            .field("inner", &self.inner)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl CryptUpload {
    pub(super) fn new(
        inner: Box<dyn MultipartUpload>,
        cipher: BlockCipher,
        header: Vec<u8>,
    ) -> Self {
        Self {
            inner,
            cipher,
            header: Some(header),
            carry: Vec::new(),
            block: 0,
        }
    }

    /// Seals `carry[..len]` into a part (with the header if not sent yet).
    fn seal(&mut self, len: usize) -> Vec<u8> {
        let mut out = self.header.take().unwrap_or_default();
        out.reserve(len + len.div_ceil(data::BLOCK_DATA as usize) * 16);
        for chunk in self.carry[..len].chunks(data::BLOCK_DATA as usize) {
            self.cipher.seal(self.block, chunk, &mut out);
            self.block += 1;
        }
        self.carry.drain(..len);
        out
    }
}

#[async_trait::async_trait]
impl MultipartUpload for CryptUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for b in data.iter() {
            self.carry.extend_from_slice(b);
        }
        let whole = self.carry.len() / data::BLOCK_DATA as usize * data::BLOCK_DATA as usize;
        if whole < MIN_PART {
            // Too small to be any part but the last (S3's rule): held for the next
            // part or for `complete`.
            return Box::pin(async { Ok(()) });
        }
        let part = self.seal(whole);
        self.inner.put_part(part.into())
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if !self.carry.is_empty() || self.header.is_some() {
            let part = self.seal(self.carry.len());
            self.inner.put_part(part.into()).await?;
        }
        let r = self.inner.complete().await?;
        Ok(PutResult {
            e_tag: wrap_etag(r.e_tag),
            ..r
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
