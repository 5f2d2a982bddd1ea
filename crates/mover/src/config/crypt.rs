//! rclone's encrypted configuration (`rclone config encryption set`): the first
//! meaningful line is `RCLONE_ENCRYPT_V0:`, the rest base64 of a 24-byte nonce
//! followed by a NaCl secretbox; the key is SHA-256 of
//! `"[" + NFKC(password) + "][rclone-config]"`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use super::ConfigError;

const MARKER: &str = "RCLONE_ENCRYPT_V0:";
const NONCE_LEN: usize = 24;
/// Poly1305 tag length: the box is at least this long even for an empty config.
const TAG_LEN: usize = 16;

/// `Some(base64 payload)` when `text` is an encrypted config, `None` when plain.
/// Only comment and blank lines may precede the marker, as in rclone.
pub(crate) fn encrypted_payload(text: &str, origin: &str) -> Result<Option<String>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    for line in lines.by_ref() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l == MARKER {
            break;
        }
        if l.starts_with("RCLONE_ENCRYPT_V") {
            return Err(ConfigError::Decrypt {
                origin: origin.to_owned(),
                message: format!("unsupported encryption version {l:?} (only {MARKER} is known)"),
            });
        }
        return Ok(None);
    }
    Ok(Some(
        lines
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect(),
    ))
}

fn config_key(password: &str) -> Result<[u8; 32], String> {
    let normalized: String = password.nfkc().collect();
    if password.trim().is_empty() {
        return Err("RCLONE_CONFIG_PASS is empty or only whitespace".to_owned());
    }
    let digest = Sha256::digest(format!("[{normalized}][rclone-config]").as_bytes());
    Ok(digest.into())
}

/// Decrypt the base64 payload that follows the marker.
pub(crate) fn decrypt(payload: &str, password: &str, origin: &str) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError::Decrypt {
        origin: origin.to_owned(),
        message,
    };
    let sealed = STANDARD
        .decode(payload)
        .map_err(|e| fail(format!("encrypted payload is not valid base64: {e}")))?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(fail("encrypted payload is too short".to_owned()));
    }
    let key = config_key(password).map_err(fail)?;
    let cipher = XSalsa20Poly1305::new(&key.into());
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let plain = cipher
        .decrypt(Nonce::from_slice(nonce), body)
        .map_err(|_| fail("cannot decrypt: most likely RCLONE_CONFIG_PASS is wrong".to_owned()))?;
    String::from_utf8(plain).map_err(|_| fail("decrypted config is not UTF-8".to_owned()))
}

/// Encrypt `plain` the way `rclone config encryption set` does, with the given
/// nonce (tests and tooling; rclone itself uses a random one).
pub fn encrypt(plain: &str, password: &str, nonce: [u8; NONCE_LEN]) -> Result<String, ConfigError> {
    let key = config_key(password).map_err(|message| ConfigError::Decrypt {
        origin: "encrypt".to_owned(),
        message,
    })?;
    let cipher = XSalsa20Poly1305::new(&key.into());
    let body = cipher
        .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
        .map_err(|_| ConfigError::Decrypt {
            origin: "encrypt".to_owned(),
            message: "secretbox failed".to_owned(),
        })?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&body);
    Ok(format!(
        "# Encrypted rclone configuration File\n\n{MARKER}\n{}\n",
        STANDARD.encode(sealed)
    ))
}
