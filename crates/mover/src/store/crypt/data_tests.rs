//! Golden bytes from rclone 1.60.1: `fox.txt` ("The quick brown fox jumps over
//! the lazy dog.\n") copied into a crypt remote with password `potato` and
//! password2 `sausage`.

use super::*;
use crate::store::crypt::names::Keys;

const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog.\n";
const FOX_RCLONE: &str = "52434c4f4e4500003cba5dd8f4314a2ddd3347b502050900d48dd6f88f4baf0c7dea27df711f98659a058393c2a44a56904f1ddc31a7b940bac9e5c9e53bbff45b4ea774f98313a34550fe70f9db76d41e7300bbf4aa1d18aec1ad3e86";

#[test]
fn encrypts_byte_for_byte_like_rclone_given_its_nonce() {
    let keys = Keys::derive("potato", "sausage");
    let stored = hex::decode(FOX_RCLONE).unwrap();
    let nonce = parse_header(&stored).unwrap();
    assert_eq!(hex::encode(encrypt_all(&keys.data, nonce, FOX)), FOX_RCLONE);
    let c = BlockCipher::new(&keys.data, nonce);
    assert_eq!(c.open(0, &stored[32..]).unwrap(), FOX);
    assert_eq!(
        decrypted_size(stored.len() as u64).unwrap(),
        FOX.len() as u64
    );
}

#[test]
fn a_flipped_bit_or_another_key_fails_authentication() {
    let keys = Keys::derive("potato", "sausage");
    let mut stored = hex::decode(FOX_RCLONE).unwrap();
    let nonce = parse_header(&stored).unwrap();
    stored[40] ^= 1;
    let c = BlockCipher::new(&keys.data, nonce);
    assert_eq!(
        c.open(0, &stored[32..]),
        Err(DataError::BadBlock { block: 0 })
    );
    let stored = hex::decode(FOX_RCLONE).unwrap();
    let wrong = BlockCipher::new(&Keys::derive("potato", "").data, nonce);
    assert_eq!(
        wrong.open(0, &stored[32..]),
        Err(DataError::BadBlock { block: 0 })
    );
    // A block is bound to its position: block 0 does not open as block 1.
    assert_eq!(
        c.open(1, &stored[32..]),
        Err(DataError::BadBlock { block: 1 })
    );
}

#[test]
fn sizes_follow_rclone_formulas() {
    for (plain, cipher) in [
        (0, 32),
        (1, 49),
        (65536, 32 + 65552),
        (65537, 32 + 65552 + 17),
        (3 * 65536 + 5, 32 + 3 * 65552 + 21),
    ] {
        assert_eq!(encrypted_size(plain), cipher, "{plain}");
        assert_eq!(decrypted_size(cipher), Ok(plain), "{cipher}");
    }
    assert_eq!(decrypted_size(31), Err(DataError::TooShort));
    assert_eq!(decrypted_size(32 + 16), Err(DataError::TruncatedBlock));
    assert_eq!(
        decrypted_size(32 + 65552 + 3),
        Err(DataError::TruncatedBlock)
    );
}

#[test]
fn nonce_increments_little_endian_with_carry() {
    let mut base = [0u8; NONCE_LEN];
    base[0] = 0xff;
    base[1] = 0xff;
    let n = block_nonce(&base, 1);
    assert_eq!(&n[..3], &[0, 0, 1]);
    let n = block_nonce(&[0xff; NONCE_LEN], 1);
    assert_eq!(n, [0u8; NONCE_LEN]);
    assert_eq!(block_nonce(&[0u8; NONCE_LEN], 0x0102)[..2], [2, 1]);
}

#[test]
fn block_span_covers_the_range() {
    assert_eq!(block_span(0, 10), (0, 32..32 + 65552));
    assert_eq!(block_span(65536, 65537), (1, 32 + 65552..32 + 2 * 65552));
    assert_eq!(block_span(10, 65537), (0, 32..32 + 2 * 65552));
}
