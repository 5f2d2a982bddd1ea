//! Content digests: SHA-256 (Scribe's identity of a file's content) and MD5 (what
//! S3 ETags and rclone's `md5chksum` speak), computed in one read pass; the
//! multipart ETag rule; rclone's `mtime` metadata format.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::error::SyncError;

/// Read buffer for hashing and downloads.
pub const BUF_SIZE: usize = 256 * 1024;

/// The digests of one file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Lower-case hex MD5 of the whole content.
    pub md5: String,
    pub size: u64,
}

/// Both digests fed at once, so every byte is read once.
#[derive(Default, Clone)]
pub struct DualHasher {
    sha: Sha256,
    md5: Md5,
    size: u64,
}

impl DualHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.md5.update(data);
        self.size += data.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha.finalize()),
            md5: hex::encode(self.md5.finalize()),
            size: self.size,
        }
    }
}

/// Hashes a local file without following a symlink at its last component.
/// Blocking: call from `spawn_blocking`.
pub fn hash_file(path: &Path) -> Result<Digests, SyncError> {
    let mut file = crate::fs::local::open_nofollow(path)
        .map_err(|e| SyncError::io("opening for hashing", path, e))?;
    let mut h = DualHasher::default();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| SyncError::io("reading for hashing", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// S3's ETag of a multipart upload: MD5 of the concatenated raw part MD5s, `-N`.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for p in part_md5s {
        h.update(p);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// An ETag without the quotes HTTP puts around it.
pub fn normalize_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The MD5 an ETag states, when it is a plain (single-part, unencrypted) ETag.
pub fn etag_md5(etag: &str) -> Option<String> {
    let e = normalize_etag(etag);
    (e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
}

/// Whether an ETag has the multipart shape `<32 hex>-<parts>`.
pub fn is_multipart_etag(etag: &str) -> bool {
    let e = normalize_etag(etag);
    match e.split_once('-') {
        Some((h, n)) => {
            etag_md5(h).is_some() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// rclone's `md5chksum` metadata value: padded standard base64 of the raw MD5.
pub fn md5chksum(md5_hex: &str) -> Option<String> {
    let raw = hex::decode(md5_hex).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Decodes an `md5chksum` metadata value back to hex.
pub fn md5_from_chksum(value: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    (raw.len() == 16).then(|| hex::encode(raw))
}

/// rclone's `mtime` metadata: decimal Unix seconds with up to 9 fractional digits,
/// trailing zeros (and a bare `.`) removed.
pub fn format_rclone_mtime(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    // Negative times with a fraction: -1.5 s is sec=-2, nsec=5e8.
    let (sign, whole, frac) = if sec < 0 {
        let total = (sec as i128) * 1_000_000_000 + nsec as i128;
        let abs = total.unsigned_abs();
        (
            "-",
            (abs / 1_000_000_000) as u64,
            (abs % 1_000_000_000) as u32,
        )
    } else {
        ("", sec as u64, nsec)
    };
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:09}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// rclone's `mtime` metadata on azureblob and google cloud storage: RFC 3339 in
/// UTC with nanoseconds (`2020-09-13T12:26:40.123456789Z`).
pub fn format_rfc3339_mtime(sec: i64, nsec: u32) -> String {
    chrono::DateTime::from_timestamp(sec, nsec)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| format_rclone_mtime(sec, nsec))
}

/// Parses rclone's `mtime` metadata: decimal seconds (s3) or RFC 3339 (azureblob,
/// google cloud storage); `None` when it is neither.
pub fn parse_rclone_mtime(value: &str) -> Option<(i64, u32)> {
    let v = value.trim();
    if v.contains('T')
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(v)
    {
        return Some((t.timestamp(), t.timestamp_subsec_nanos()));
    }
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut f = frac.chars().take(9).collect::<String>();
    while f.len() < 9 {
        f.push('0');
    }
    let nsec: u32 = f.parse().ok()?;
    if !neg {
        return Some((whole, nsec));
    }
    let total = -((whole as i128) * 1_000_000_000 + nsec as i128);
    Some((
        total.div_euclid(1_000_000_000) as i64,
        total.rem_euclid(1_000_000_000) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rclone_mtime_format_matches_rclone_examples() {
        assert_eq!(
            format_rclone_mtime(1_115_269_505, 987_654_321),
            "1115269505.987654321"
        );
        assert_eq!(
            format_rclone_mtime(1_321_009_871, 500_000_000),
            "1321009871.5"
        );
        assert_eq!(format_rclone_mtime(1_262_304_000, 0), "1262304000");
        assert_eq!(format_rclone_mtime(-2, 500_000_000), "-1.5");
    }

    #[test]
    fn rclone_mtime_parses_back() {
        for (s, n) in [
            (1_115_269_505, 987_654_321),
            (1_321_009_871, 500_000_000),
            (0, 0),
            (-2, 500_000_000),
            (5, 1),
        ] {
            assert_eq!(parse_rclone_mtime(&format_rclone_mtime(s, n)), Some((s, n)));
        }
        // RFC 3339 is how rclone's azureblob and gcs backends write it.
        assert_eq!(
            parse_rclone_mtime("2021-01-01T00:00:00Z"),
            Some((1_609_459_200, 0))
        );
        assert_eq!(parse_rclone_mtime("2021-01-01"), None);
        assert_eq!(parse_rclone_mtime(""), None);
        assert_eq!(parse_rclone_mtime("12.1234567899"), Some((12, 123_456_789)));
    }

    #[test]
    fn digests_of_known_content() {
        let mut h = DualHasher::default();
        h.update(b"hello");
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.md5, "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(d.size, 5);
        assert_eq!(
            md5chksum(&d.md5).as_deref(),
            Some("XUFAKrxLKna5cZ2REBfFkg==")
        );
        assert_eq!(
            md5_from_chksum("XUFAKrxLKna5cZ2REBfFkg==").as_deref(),
            Some(d.md5.as_str())
        );
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        let p1: [u8; 16] = Md5::digest(b"a").into();
        let p2: [u8; 16] = Md5::digest(b"b").into();
        let mut cat = Vec::new();
        cat.extend_from_slice(&p1);
        cat.extend_from_slice(&p2);
        let want = format!("{}-2", hex::encode(Md5::digest(&cat)));
        assert_eq!(multipart_etag(&[p1, p2]), want);
        assert!(is_multipart_etag(&format!("\"{want}\"")));
        assert!(!is_multipart_etag("5d41402abc4b2a76b9719d911017c592"));
    }

    #[test]
    fn etag_shapes() {
        assert_eq!(
            etag_md5("\"5D41402ABC4B2A76B9719D911017C592\"").as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        assert_eq!(etag_md5("17"), None);
        assert_eq!(etag_md5("abc-2"), None);
    }
}
