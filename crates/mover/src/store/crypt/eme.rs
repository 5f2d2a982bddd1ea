//! EME (ECB-Mix-ECB, Halevi & Rogaway 2003) over AES-256: the wide-block mode
//! rclone uses for file names. Deterministic, so one name always encrypts to one
//! ciphertext, and a changed byte anywhere changes every output block.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt};

const BLOCK: usize = 16;
/// EME is defined for 1 to 128 blocks (2048 bytes).
pub const MAX_BLOCKS: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// Multiplication by 2 in GF(2^128), little-endian, as EME defines it.
fn double(b: &mut [u8; BLOCK]) {
    let carry = b[15] >> 7;
    for j in (1..BLOCK).rev() {
        b[j] = (b[j] << 1) | (b[j - 1] >> 7);
    }
    b[0] <<= 1;
    if carry == 1 {
        b[0] ^= 135;
    }
}

fn xor(out: &mut [u8], a: &[u8]) {
    for (o, x) in out.iter_mut().zip(a) {
        *o ^= x;
    }
}

fn aes(cipher: &Aes256, block: &mut [u8], dir: Direction) {
    let b = GenericArray::from_mut_slice(block);
    match dir {
        Direction::Encrypt => cipher.encrypt_block(b),
        Direction::Decrypt => cipher.decrypt_block(b),
    }
}

/// Transforms `data` (a whole number of 16-byte blocks, 1..=128 of them) with
/// `tweak`. Callers check the length; a wrong one is a programming error.
pub fn transform(cipher: &Aes256, tweak: &[u8; BLOCK], data: &[u8], dir: Direction) -> Vec<u8> {
    assert!(
        data.len().is_multiple_of(BLOCK) && (1..=MAX_BLOCKS).contains(&(data.len() / BLOCK)),
        "EME input must be 1 to 128 whole blocks"
    );
    let m = data.len() / BLOCK;
    // L_j = 2^(j+1) * AES-enc(K, 0)
    let mut l = [0u8; BLOCK];
    aes(cipher, &mut l, Direction::Encrypt);
    let mut table = Vec::with_capacity(m);
    for _ in 0..m {
        double(&mut l);
        table.push(l);
    }
    let mut c = data.to_vec();
    for (j, chunk) in c.chunks_mut(BLOCK).enumerate() {
        xor(chunk, &table[j]);
        aes(cipher, chunk, dir);
    }
    let mut mp = *tweak;
    for chunk in c.chunks(BLOCK) {
        xor(&mut mp, chunk);
    }
    let mut mc = mp;
    aes(cipher, &mut mc, dir);
    let mut mm = mp;
    xor(&mut mm, &mc);
    for chunk in c.chunks_mut(BLOCK).skip(1) {
        double(&mut mm);
        xor(chunk, &mm);
    }
    let mut first = mc;
    xor(&mut first, tweak);
    for chunk in c.chunks(BLOCK).skip(1) {
        xor(&mut first, chunk);
    }
    c[..BLOCK].copy_from_slice(&first);
    for (j, chunk) in c.chunks_mut(BLOCK).enumerate() {
        aes(cipher, chunk, dir);
        xor(chunk, &table[j]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::KeyInit;

    #[test]
    fn decrypt_inverts_encrypt_for_every_length() {
        let cipher = Aes256::new(&[7u8; 32].into());
        let tweak = [3u8; 16];
        for m in [1, 2, 3, 16, 128] {
            let data: Vec<u8> = (0..m * 16).map(|i| (i * 31 % 251) as u8).collect();
            let enc = transform(&cipher, &tweak, &data, Direction::Encrypt);
            assert_ne!(enc, data);
            assert_eq!(transform(&cipher, &tweak, &enc, Direction::Decrypt), data);
        }
    }
}
