//! rclone crypt's file contents: `RCLONE\0\0`, a 24-byte random nonce, then the
//! plaintext in 64 KiB blocks, each sealed with NaCl secretbox (XSalsa20-Poly1305,
//! 16-byte tag first) under the data key, the nonce incremented (little-endian,
//! carrying across all 24 bytes) after every block. An empty file is the header
//! alone. Every block authenticates itself, so a changed byte, a truncated block
//! or the wrong key is caught before any of its plaintext is handed out.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};

pub const MAGIC: &[u8; 8] = b"RCLONE\0\0";
pub const NONCE_LEN: usize = 24;
pub const HEADER_LEN: u64 = 32;
pub const TAG_LEN: u64 = 16;
pub const BLOCK_DATA: u64 = 64 * 1024;
pub const BLOCK: u64 = TAG_LEN + BLOCK_DATA;

/// Why stored bytes are not a valid rclone crypt file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("file is too short to be encrypted")]
    TooShort,
    #[error("not an encrypted file - bad magic string")]
    BadMagic,
    #[error("file has truncated block header")]
    TruncatedBlock,
    #[error("block {block} failed to authenticate: the data is corrupted or the password is wrong")]
    BadBlock { block: u64 },
}

/// Ciphertext size of `size` plaintext bytes.
pub fn encrypted_size(size: u64) -> u64 {
    let (blocks, rest) = (size / BLOCK_DATA, size % BLOCK_DATA);
    HEADER_LEN + blocks * BLOCK + if rest == 0 { 0 } else { TAG_LEN + rest }
}

/// Plaintext size of a `size`-byte ciphertext (rclone's `DecryptedSize`).
pub fn decrypted_size(size: u64) -> Result<u64, DataError> {
    let body = size.checked_sub(HEADER_LEN).ok_or(DataError::TooShort)?;
    let (blocks, rest) = (body / BLOCK, body % BLOCK);
    if rest != 0 && rest <= TAG_LEN {
        return Err(DataError::TruncatedBlock);
    }
    Ok(blocks * BLOCK_DATA + rest.saturating_sub(TAG_LEN))
}

/// The nonce of block `n` of a file whose header nonce is `base`.
pub fn block_nonce(base: &[u8; NONCE_LEN], n: u64) -> [u8; NONCE_LEN] {
    let mut out = *base;
    let mut carry = u128::from(n);
    for b in out.iter_mut() {
        if carry == 0 {
            break;
        }
        carry += u128::from(*b);
        *b = carry as u8;
        carry >>= 8;
    }
    out
}

/// The header of a file: magic and nonce.
pub fn header(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(nonce);
    h
}

/// The nonce in a file header.
pub fn parse_header(h: &[u8]) -> Result<[u8; NONCE_LEN], DataError> {
    if (h.len() as u64) < HEADER_LEN {
        return Err(DataError::TooShort);
    }
    if &h[..8] != MAGIC {
        return Err(DataError::BadMagic);
    }
    Ok(h[8..32].try_into().expect("24 bytes"))
}

/// Seals and opens blocks with one file's data key and base nonce.
#[derive(Clone)]
pub struct BlockCipher {
    aead: XSalsa20Poly1305,
    nonce: [u8; NONCE_LEN],
}

impl BlockCipher {
    pub fn new(data_key: &[u8; 32], nonce: [u8; NONCE_LEN]) -> Self {
        Self {
            aead: XSalsa20Poly1305::new(data_key.into()),
            nonce,
        }
    }

    /// Appends block `n` (at most 64 KiB of `plain`) sealed: tag, then ciphertext.
    pub fn seal(&self, n: u64, plain: &[u8], out: &mut Vec<u8>) {
        debug_assert!(plain.len() as u64 <= BLOCK_DATA);
        let nonce = block_nonce(&self.nonce, n);
        let start = out.len();
        out.extend_from_slice(&[0u8; TAG_LEN as usize]);
        out.extend_from_slice(plain);
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut out[start + 16..])
            .expect("secretbox seals any block of at most 64 KiB");
        out[start..start + 16].copy_from_slice(&tag);
    }

    /// Opens sealed block `n` (tag + ciphertext, more than the tag alone).
    pub fn open(&self, n: u64, sealed: &[u8]) -> Result<Vec<u8>, DataError> {
        if sealed.len() as u64 <= TAG_LEN {
            return Err(DataError::TruncatedBlock);
        }
        let nonce = block_nonce(&self.nonce, n);
        let (tag, body) = sealed.split_at(TAG_LEN as usize);
        let mut plain = body.to_vec();
        self.aead
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                b"",
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| DataError::BadBlock { block: n })?;
        Ok(plain)
    }
}

/// The whole ciphertext of `plain` (header included) with `nonce`.
pub fn encrypt_all(data_key: &[u8; 32], nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
    let c = BlockCipher::new(data_key, nonce);
    let mut out = header(&nonce);
    out.reserve(encrypted_size(plain.len() as u64) as usize);
    for (n, chunk) in plain.chunks(BLOCK_DATA as usize).enumerate() {
        c.seal(n as u64, chunk, &mut out);
    }
    out
}

/// A fresh random nonce (the OS generator, as rclone).
pub fn random_nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    use std::io::Read;
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

/// Where the blocks covering plaintext `start..end` lie: (first block, ciphertext
/// byte range of the blocks from the first to the one holding `end - 1`).
pub fn block_span(start: u64, end: u64) -> (u64, std::ops::Range<u64>) {
    let first = start / BLOCK_DATA;
    let last = end.saturating_sub(1).max(start) / BLOCK_DATA;
    let from = HEADER_LEN + first * BLOCK;
    (first, from..HEADER_LEN + (last + 1) * BLOCK)
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
