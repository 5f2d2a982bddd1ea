//! rclone crypt's keys and file-name encryption. Keys: scrypt(N=16384, r=8, p=1)
//! of `password` salted with `password2` (rclone's fixed salt when empty) → 80
//! bytes: data key, name key, name tweak. Names, per path segment:
//! - `standard`: PKCS#7 pad to 16, EME-AES-256 with the tweak, then base32hex
//!   lower case without padding (or base64url without padding);
//! - `obfuscate`: rclone's character rotation keyed by the name key;
//! - `off`: the path unchanged plus `.bin` (files only).
//!
//! With `directory_name_encryption = false` only the last segment of a file path
//! changes.

use aes::Aes256;
use aes::cipher::KeyInit;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::eme::{self, Direction};

/// rclone's salt when `password2` is empty.
const DEFAULT_SALT: [u8; 16] = [
    0xA8, 0x0D, 0xF4, 0x3A, 0x8F, 0xBD, 0x03, 0x08, 0xA7, 0xCA, 0xB8, 0x3E, 0x58, 0x1F, 0x86, 0xB1,
];
const OFF_SUFFIX: &str = ".bin";
const QUOTE: char = '!';

/// Go's `base64.RawURLEncoding` (which does not insist on zero trailing bits).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// `filename_encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    Standard,
    Obfuscate,
    Off,
}

/// `filename_encoding` (for `standard` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEncoding {
    Base32,
    Base64,
}

/// The 80 bytes of key material rclone derives from the passwords.
#[derive(Clone)]
pub struct Keys {
    pub data: [u8; 32],
    pub name: [u8; 32],
    pub tweak: [u8; 16],
}

impl Keys {
    /// scrypt of the (revealed) passwords, as rclone's `Cipher.Key`.
    pub fn derive(password: &str, salt: &str) -> Self {
        let salt = if salt.is_empty() {
            &DEFAULT_SALT[..]
        } else {
            salt.as_bytes()
        };
        let mut out = [0u8; 80];
        if !password.is_empty() {
            let params = scrypt::Params::new(14, 8, 1, scrypt::Params::RECOMMENDED_LEN)
                .expect("valid scrypt parameters");
            scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
                .expect("80 is a valid scrypt output length");
        }
        let mut k = Self {
            data: [0; 32],
            name: [0; 32],
            tweak: [0; 16],
        };
        k.data.copy_from_slice(&out[..32]);
        k.name.copy_from_slice(&out[32..64]);
        k.tweak.copy_from_slice(&out[64..]);
        k
    }
}

/// Encrypts and decrypts object names the way rclone crypt does.
#[derive(Clone)]
pub struct NameCipher {
    mode: NameMode,
    encoding: NameEncoding,
    dir_names: bool,
    aes: Aes256,
    name_key: [u8; 32],
    tweak: [u8; 16],
}

impl NameCipher {
    pub fn new(keys: &Keys, mode: NameMode, encoding: NameEncoding, dir_names: bool) -> Self {
        Self {
            mode,
            encoding,
            dir_names,
            aes: Aes256::new(&keys.name.into()),
            name_key: keys.name,
            tweak: keys.tweak,
        }
    }

    pub fn mode(&self) -> NameMode {
        self.mode
    }

    fn key_sum(&self) -> u32 {
        self.name_key.iter().map(|b| u32::from(*b)).sum()
    }

    fn encrypt_segment(&self, plain: &str) -> Result<String, String> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        match self.mode {
            NameMode::Standard => {
                let pad = 16 - plain.len() % 16;
                let mut padded = plain.as_bytes().to_vec();
                padded.extend(std::iter::repeat_n(pad as u8, pad));
                let blocks = padded.len() / 16;
                if blocks > eme::MAX_BLOCKS {
                    return Err(format!(
                        "a name segment of {} bytes is too long to encrypt (at most 2047)",
                        plain.len()
                    ));
                }
                let c = eme::transform(&self.aes, &self.tweak, &padded, Direction::Encrypt);
                Ok(match self.encoding {
                    NameEncoding::Base32 => base32hex_encode(&c),
                    NameEncoding::Base64 => BASE64.encode(&c),
                })
            }
            NameMode::Obfuscate => Ok(obfuscate(plain, self.key_sum())),
            NameMode::Off => Ok(plain.to_owned()),
        }
    }

    fn decrypt_segment(&self, cipher: &str) -> Result<String, String> {
        if cipher.is_empty() {
            return Ok(String::new());
        }
        match self.mode {
            NameMode::Standard => {
                let raw = match self.encoding {
                    NameEncoding::Base32 => base32hex_decode(cipher)?,
                    NameEncoding::Base64 => BASE64
                        .decode(cipher)
                        .map_err(|_| "bad base64 filename encoding".to_owned())?,
                };
                if raw.is_empty() || raw.len() % 16 != 0 {
                    return Err("not a multiple of blocksize".to_owned());
                }
                if raw.len() > 16 * eme::MAX_BLOCKS {
                    return Err("too long after decode".to_owned());
                }
                let padded = eme::transform(&self.aes, &self.tweak, &raw, Direction::Decrypt);
                let pad = usize::from(padded[padded.len() - 1]);
                if pad == 0
                    || pad > 16
                    || padded[padded.len() - pad..]
                        .iter()
                        .any(|b| usize::from(*b) != pad)
                {
                    return Err("bad padding: wrong password or not an encrypted name".to_owned());
                }
                String::from_utf8(padded[..padded.len() - pad].to_vec())
                    .map_err(|_| "decrypted name is not UTF-8".to_owned())
            }
            NameMode::Obfuscate => deobfuscate(cipher, self.key_sum()),
            NameMode::Off => Ok(cipher.to_owned()),
        }
    }

    /// A file's path (relative to the crypt root) as stored.
    pub fn encrypt_file(&self, path: &str) -> Result<String, String> {
        if self.mode == NameMode::Off {
            return Ok(format!("{path}{OFF_SUFFIX}"));
        }
        self.map_segments(path, true, |s| self.encrypt_segment(s))
    }

    /// A directory's path (relative to the crypt root) as stored.
    pub fn encrypt_dir(&self, path: &str) -> Result<String, String> {
        if self.mode == NameMode::Off || !self.dir_names {
            return Ok(path.to_owned());
        }
        self.map_segments(path, false, |s| self.encrypt_segment(s))
    }

    /// The plain path of a stored file path.
    pub fn decrypt_file(&self, path: &str) -> Result<String, String> {
        if self.mode == NameMode::Off {
            return match path.strip_suffix(OFF_SUFFIX) {
                Some(p) if !p.is_empty() && !p.ends_with('/') => Ok(p.to_owned()),
                _ => Err("not an encrypted file - does not match suffix".to_owned()),
            };
        }
        self.map_segments(path, true, |s| self.decrypt_segment(s))
    }

    /// The plain path of a stored directory path.
    pub fn decrypt_dir(&self, path: &str) -> Result<String, String> {
        if self.mode == NameMode::Off || !self.dir_names {
            return Ok(path.to_owned());
        }
        self.map_segments(path, false, |s| self.decrypt_segment(s))
    }

    /// Applies `f` to the segments that change: all of them with directory name
    /// encryption, else only the last one of a file path.
    fn map_segments(
        &self,
        path: &str,
        is_file: bool,
        f: impl Fn(&str) -> Result<String, String>,
    ) -> Result<String, String> {
        let segments: Vec<&str> = path.split('/').collect();
        let last = segments.len() - 1;
        let mut out = Vec::with_capacity(segments.len());
        for (i, s) in segments.iter().enumerate() {
            if !(self.dir_names || (is_file && i == last)) {
                out.push((*s).to_owned());
                continue;
            }
            // rclone keeps a version suffix (`-v2006-01-02-150405-000`, before the
            // extension) of the last segment outside the transformed part.
            match split_version(s).filter(|_| i == last) {
                Some((unversioned, version)) => out.push(add_version(&f(&unversioned)?, version)),
                None => out.push(f(s)?),
            }
        }
        Ok(out.join("/"))
    }
}

/// Go's `path.Ext`: from the last `.`, or empty.
fn ext(name: &str) -> &str {
    name.rfind('.').map_or("", |i| &name[i..])
}

/// rclone's `version.Remove`: (`name` without its version, the version) when the
/// part before the extension ends in a valid `-vYYYY-MM-DD-hhmmss-mmm`.
fn split_version(name: &str) -> Option<(String, &str)> {
    const LEN: usize = "-v2006-01-02-150405-000".len();
    let ext = ext(name);
    let base = &name[..name.len() - ext.len()];
    let start = base.len().checked_sub(LEN)?;
    let v = base.get(start..)?.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &v[r];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
    };
    let shape = v[0] == b'-' && v[1] == b'v' && [6, 9, 12, 19].iter().all(|&i| v[i] == b'-');
    if !shape {
        return None;
    }
    let (year, month, day) = (digits(2..6)?, digits(7..9)?, digits(10..12)?);
    let (h, m, sec) = (digits(13..15)?, digits(15..17)?, digits(17..19)?);
    digits(20..23)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some((format!("{}{ext}", &base[..start]), &base[start..]))
}

/// rclone's `version.Add`: `version` inserted before the extension of `name`.
fn add_version(name: &str, version: &str) -> String {
    let ext = ext(name);
    format!("{}{version}{ext}", &name[..name.len() - ext.len()])
}

const BASE32HEX: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

fn base32hex_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in data {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32HEX[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32HEX[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// rclone's decoder: case-insensitive, no `=` allowed, length as padding would allow.
fn base32hex_decode(s: &str) -> Result<Vec<u8>, String> {
    let bad = || "bad base32 filename encoding".to_owned();
    if !matches!(s.len() % 8, 0 | 2 | 4 | 5 | 7) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c.to_ascii_lowercase() {
            d @ b'0'..=b'9' => d - b'0',
            l @ b'a'..=b'v' => l - b'a' + 10,
            _ => return Err(bad()),
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    Ok(out)
}

fn obfuscate(plain: &str, key_sum: u32) -> String {
    let sum: u32 = plain.chars().map(u32::from).sum::<u32>() % 256;
    let mut out = format!("{sum}.");
    let dir = sum + key_sum;
    for c in plain.chars() {
        let r = u32::from(c);
        match c {
            QUOTE => {
                out.push(QUOTE);
                out.push(QUOTE);
            }
            '0'..='9' => {
                let d = dir % 9 + 1;
                out.push(
                    char::from_u32(u32::from('0') + (r - u32::from('0') + d) % 10).expect("digit"),
                );
            }
            'A'..='Z' | 'a'..='z' => {
                out.push(letter(c, (dir % 25 + 1) as i64));
            }
            '\u{A0}'..='\u{FF}' => {
                let d = dir % 95 + 1;
                out.push(char::from_u32(0xA0 + (r - 0xA0 + d) % 96).expect("latin-1"));
            }
            _ if r >= 0x100 => {
                let d = dir % 127 + 1;
                let base = r - r % 256;
                match char::from_u32(base + (r - base + d) % 256) {
                    Some(n) => out.push(n),
                    None => {
                        out.push(QUOTE);
                        out.push(c);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Rotates an ASCII letter within A–Z a–z (52 positions) by `d` (may be negative).
fn letter(c: char, d: i64) -> char {
    let mut pos = i64::from(u32::from(c)) - i64::from(u32::from('A'));
    if pos >= 26 {
        pos -= 6;
    }
    pos = (pos + d).rem_euclid(52);
    if pos >= 26 {
        pos += 6;
    }
    char::from_u32((i64::from(u32::from('A')) + pos) as u32).expect("ASCII letter")
}

fn deobfuscate(cipher: &str, key_sum: u32) -> Result<String, String> {
    let not = || "not an encrypted file name (obfuscated names start with `<number>.`)".to_owned();
    let (num, rest) = cipher.split_once('.').ok_or_else(not)?;
    if num == "!" {
        return Ok(rest.to_owned());
    }
    // Go's strconv.Atoi: optional sign, decimal digits.
    let sum: i64 = num.parse().map_err(|_| not())?;
    let dir = sum + i64::from(key_sum);
    let mut out = String::with_capacity(rest.len());
    let mut quoted = false;
    for c in rest.chars() {
        let r = i64::from(u32::from(c));
        if quoted {
            out.push(c);
            quoted = false;
            continue;
        }
        match c {
            QUOTE => quoted = true,
            '0'..='9' => {
                let d = dir.rem_euclid(9) + 1;
                let mut n = r - d;
                if n < i64::from(u32::from('0')) {
                    n += 10;
                }
                out.push(char::from_u32(n as u32).ok_or_else(not)?);
            }
            'A'..='Z' | 'a'..='z' => out.push(letter(c, -(dir.rem_euclid(25) + 1))),
            '\u{A0}'..='\u{FF}' => {
                let d = dir.rem_euclid(95) + 1;
                let mut n = r - d;
                if n < 0xA0 {
                    n += 96;
                }
                out.push(char::from_u32(n as u32).ok_or_else(not)?);
            }
            _ if r >= 0x100 => {
                let d = dir.rem_euclid(127) + 1;
                let base = r - r % 256;
                let mut n = r - d;
                if n < base {
                    n += 256;
                }
                out.push(
                    u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(not)?,
                );
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
