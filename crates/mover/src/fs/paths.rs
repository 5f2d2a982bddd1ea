//! Relative paths and object keys: the only place that turns a path inside the
//! synced tree into an object key (and back), and the safety rules every path
//! read from the remote must pass before it touches the local filesystem.

use object_store::path::Path as Key;

use crate::error::SyncError;

/// Directory (under the remote prefix) that holds Scribe's own objects; never a data path.
pub const SCRIBE_DIR: &str = ".scribe";
/// Key of the manifest, relative to the remote prefix.
pub const MANIFEST_NAME: &str = "manifest.jsonl";

/// Why a relative path is unsafe to use as a local path, or `None` when it is fine.
/// Rejected: empty, absolute, `.`/`..`/empty components, NUL and other control
/// characters (they cannot be object keys either), Scribe's own directory.
pub fn unsafe_reason(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    if path.starts_with('/') {
        return Some("absolute path");
    }
    if path.chars().any(|c| c.is_control()) {
        return Some("control character in path");
    }
    for part in path.split('/') {
        match part {
            "" => return Some("empty path component"),
            "." | ".." => return Some("`.` or `..` path component"),
            _ => {}
        }
    }
    if path == SCRIBE_DIR || path.starts_with(".scribe/") {
        return Some("reserved for Scribe's manifest");
    }
    let top = path.split('/').next().unwrap_or_default();
    if top == crate::fs::scan::STAGING_DIR {
        return Some("reserved for Scribe's staging directory");
    }
    None
}

/// Checks a path that came from outside (manifest, listing) before it is used locally.
pub fn check_relative(origin: &str, path: &str) -> Result<(), SyncError> {
    match unsafe_reason(path) {
        None => Ok(()),
        Some(reason) => Err(SyncError::UnsafePath {
            origin: origin.to_string(),
            path: path.to_string(),
            reason,
        }),
    }
}

/// The object key of a relative path: `<prefix>/<path>` with the path's characters
/// kept as they are (no percent-encoding), so rclone and other tools see the same
/// names as the filesystem.
pub fn key_for(prefix: &Key, rel: &str) -> Result<Key, SyncError> {
    let full = if prefix.as_ref().is_empty() {
        rel.to_string()
    } else {
        format!("{}/{rel}", prefix.as_ref())
    };
    Key::parse(&full).map_err(|e| SyncError::UnsafePath {
        origin: "object key".to_string(),
        path: rel.to_string(),
        reason: match e {
            object_store::path::Error::EmptySegment { .. } => "empty path component",
            _ => "not representable as an object key",
        },
    })
}

/// The relative path of a listed key under `prefix`, or `None` if it is not under it.
pub fn rel_for<'a>(prefix: &Key, key: &'a Key) -> Option<&'a str> {
    let p = prefix.as_ref();
    let k = key.as_ref();
    if p.is_empty() {
        return Some(k);
    }
    k.strip_prefix(p)?.strip_prefix('/')
}

/// Whether a relative path lives in Scribe's own directory (so is not data).
pub fn is_scribe_internal(rel: &str) -> bool {
    rel == SCRIBE_DIR || rel.starts_with(".scribe/")
}

/// The key of the manifest for a prefix.
pub fn manifest_key(prefix: &Key) -> Key {
    prefix.clone().join(SCRIBE_DIR).join(MANIFEST_NAME)
}

/// Folder (under `.scribe/`) holding, by SHA-256, the committed version of each
/// object a source run overwrites before its commit (see `source::preserve`).
pub const COMMITTED_DIR: &str = "committed";

/// The key of the committed version of content `sha256` for a prefix.
pub fn committed_key(prefix: &Key, sha256: &str) -> Key {
    prefix
        .clone()
        .join(SCRIBE_DIR)
        .join(COMMITTED_DIR)
        .join(sha256)
}

/// The SHA-256 a relative path under the prefix names when it is a committed
/// version (`.scribe/committed/<64 lowercase hex digits>`).
pub fn committed_name(rel: &str) -> Option<&str> {
    let name = rel
        .strip_prefix(SCRIBE_DIR)?
        .strip_prefix('/')?
        .strip_prefix(COMMITTED_DIR)?
        .strip_prefix('/')?;
    (name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(name)
}

/// Byte-wise order of relative paths: the order of every sorted list the diff merges.
pub fn path_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_rejected_with_a_reason() {
        for (p, want) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("a/../b", "`.` or `..` path component"),
            ("..", "`.` or `..` path component"),
            ("./a", "`.` or `..` path component"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("a\0b", "control character in path"),
            ("a\nb", "control character in path"),
            (".scribe/manifest.jsonl", "reserved for Scribe's manifest"),
        ] {
            assert_eq!(unsafe_reason(p), Some(want), "{p:?}");
        }
    }

    #[test]
    fn ordinary_paths_are_safe() {
        for p in [
            "a",
            "a/b c/ü.txt",
            "..hidden",
            "a/...",
            "%41#[x]",
            ".scribex",
        ] {
            assert_eq!(unsafe_reason(p), None, "{p:?}");
        }
    }

    #[test]
    fn keys_keep_special_characters_and_round_trip() {
        let prefix = Key::from("db/x");
        let key = key_for(&prefix, "a b/%41#[1].txt").unwrap();
        assert_eq!(key.as_ref(), "db/x/a b/%41#[1].txt");
        assert_eq!(rel_for(&prefix, &key), Some("a b/%41#[1].txt"));
        let root = key_for(&Key::default(), "f").unwrap();
        assert_eq!(root.as_ref(), "f");
        assert_eq!(rel_for(&Key::default(), &root), Some("f"));
        assert_eq!(rel_for(&Key::from("db"), &Key::from("dbx/f")), None);
    }

    #[test]
    fn manifest_key_is_under_the_scribe_directory() {
        assert_eq!(
            manifest_key(&Key::from("p")).as_ref(),
            "p/.scribe/manifest.jsonl"
        );
        assert_eq!(
            manifest_key(&Key::default()).as_ref(),
            ".scribe/manifest.jsonl"
        );
    }
}
