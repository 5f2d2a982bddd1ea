//! rclone's "obscured" option values (`rclone obscure`): AES-256-CTR under a fixed,
//! public key with a random 16-byte IV, written as unpadded base64url of
//! IV || ciphertext. Not secrecy, only protection from a casual glance; crypt's
//! `password` and `password2` are stored this way.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// rclone's fixed obscuring key (fs/config/obscure).
const KEY: [u8; 32] = [
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
    0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
];
const IV_LEN: usize = 16;

/// AES-CTR as Go's `cipher.NewCTR`: the IV is a 128-bit big-endian counter.
fn ctr(iv: &[u8; IV_LEN], data: &mut [u8]) {
    let cipher = Aes256::new(&KEY.into());
    let mut counter = u128::from_be_bytes(*iv);
    for chunk in data.chunks_mut(IV_LEN) {
        let mut ks = GenericArray::from(counter.to_be_bytes());
        cipher.encrypt_block(&mut ks);
        for (b, k) in chunk.iter_mut().zip(ks.iter()) {
            *b ^= k;
        }
        counter = counter.wrapping_add(1);
    }
}

/// The plain value of an obscured one.
pub fn reveal(obscured: &str) -> Result<String, String> {
    let raw = URL_SAFE_NO_PAD
        .decode(obscured.trim_end_matches('='))
        .map_err(|_| {
            "not an obscured value (base64 decoding failed): store it with `rclone obscure`"
                .to_owned()
        })?;
    if raw.len() < IV_LEN {
        return Err("obscured value too short: store it with `rclone obscure`".to_owned());
    }
    let (iv, body) = raw.split_at(IV_LEN);
    let mut plain = body.to_vec();
    ctr(iv.try_into().expect("16 bytes"), &mut plain);
    String::from_utf8(plain).map_err(|_| "revealed value is not UTF-8: is it obscured?".to_owned())
}

/// Obscures `plain` with the given IV (rclone draws a random one).
pub fn obscure(plain: &str, iv: [u8; IV_LEN]) -> String {
    let mut body = plain.as_bytes().to_vec();
    ctr(&iv, &mut body);
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&body);
    URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveals_what_rclone_obscure_printed() {
        // `rclone obscure potato` (rclone 1.60.1).
        assert_eq!(reveal("lTHOdHUHANS7sh2V7BCJzt6jwToL7g").unwrap(), "potato");
    }

    #[test]
    fn obscure_round_trips_and_refuses_plain_text() {
        let o = obscure("correct horse", [9u8; 16]);
        assert_eq!(reveal(&o).unwrap(), "correct horse");
        assert!(reveal("short").is_err());
        assert!(reveal("not base64!").is_err());
    }
}
