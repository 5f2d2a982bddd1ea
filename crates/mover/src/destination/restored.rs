//! What the destination remembers about each file it restored, so the next restore
//! decides by content identity (the manifest's SHA-256), never by size + mtime alone:
//! a [`Record`] in the user extended attribute [`XATTR`] of the file itself —
//! invisible to the application that mounts the volume or its snapshot, and never a
//! file in the user's tree. It says which content the file held (SHA-256, else the
//! MD5 or ETag an rclone-written bucket offers) at which size and mtime. A file whose
//! size or mtime moved since is re-hashed; so is every file on a filesystem without
//! user xattrs (the fallback), or with a record that is missing or unreadable.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs::hash::normalize_etag;
use crate::fs::local::LocalMeta;
use crate::manifest::Entry;

/// Name of the extended attribute holding the record.
pub const XATTR: &str = "user.scribe.sha256";

/// One file's record (stored as compact JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

/// What a record says about a local file and a wanted manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The file holds the entry's content.
    Same,
    /// The file holds other content.
    Different,
    /// The record cannot tell (the file changed since, or no comparable identity).
    Unknown,
}

impl Record {
    /// The record of a file restored from `e` (with `e`'s size and mtime); `None`
    /// when the entry names no content identity at all.
    pub fn for_entry(e: &Entry) -> Option<Self> {
        if e.sha256.is_none() && e.md5.is_none() && e.etag.is_none() {
            return None;
        }
        Some(Self {
            sha256: e.sha256.clone(),
            md5: e.md5.clone(),
            etag: e.etag.as_deref().map(|t| normalize_etag(t).to_string()),
            size: e.size,
            mtime_sec: e.mtime_sec,
            mtime_nsec: e.mtime_nsec,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("record serializes")
    }

    /// `None` for anything that is not a record (written by someone else, or cut).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether this record vouches that the local file `meta` holds `e`'s content:
    /// only while the file keeps the size and mtime it had when recorded, and then
    /// by the strongest identity both sides name (SHA-256, else MD5, else ETag).
    pub fn verdict(&self, meta: &LocalMeta, e: &Entry) -> Verdict {
        if (self.size, self.mtime_sec, self.mtime_nsec)
            != (meta.size, meta.mtime_sec, meta.mtime_nsec)
        {
            return Verdict::Unknown;
        }
        let same = |a: &Option<String>, b: Option<&str>| match (a.as_deref(), b) {
            (Some(a), Some(b)) => Some(a.eq_ignore_ascii_case(b)),
            _ => None,
        };
        let decided = match (&e.sha256, &e.md5) {
            (Some(s), _) => same(&self.sha256, Some(s)),
            (None, Some(m)) => same(&self.md5, Some(m)),
            (None, None) => same(&self.etag, e.etag.as_deref().map(normalize_etag)),
        };
        match decided {
            Some(true) => Verdict::Same,
            Some(false) => Verdict::Different,
            None => Verdict::Unknown,
        }
    }
}

/// Reads the record of the file at `path` (not following a final symlink); `None`
/// when there is none, it is unreadable, or the filesystem has no user xattrs.
pub fn read(path: &Path) -> Option<Record> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(path, XATTR, &mut buf[..]).ok()?;
    Record::decode(&buf[..n])
}

/// Whether an error from setting a record means "cannot keep records here" (no
/// user xattrs on this filesystem, or not permitted on this file): expected, and
/// only costs a re-hash next time.
pub fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::PERM
                | rustix::io::Errno::ACCESS
                | rustix::io::Errno::NOSPC
                | rustix::io::Errno::ROFS
                | rustix::io::Errno::TOOBIG
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::local::FileKind;
    use crate::manifest::EntryKind;

    fn entry(sha: Option<&str>, md5: Option<&str>, etag: Option<&str>) -> Entry {
        let mut e = Entry::new("f", EntryKind::File);
        (e.size, e.mtime_sec, e.mtime_nsec) = (3, 10, 5);
        e.sha256 = sha.map(str::to_string);
        e.md5 = md5.map(str::to_string);
        e.etag = etag.map(str::to_string);
        e
    }

    fn meta(size: u64, mtime: (i64, u32)) -> LocalMeta {
        LocalMeta {
            kind: FileKind::File,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: mtime.0,
            mtime_nsec: mtime.1,
            ctime_sec: 0,
            ctime_nsec: 0,
            ino: 1,
            dev: 1,
            nlink: 1,
        }
    }

    #[test]
    fn a_record_decides_by_content_identity_never_by_size_and_mtime_alone() {
        let old = Record::for_entry(&entry(Some("aa"), Some("m1"), None)).unwrap();
        let here = meta(3, (10, 5));
        assert_eq!(
            old.verdict(&here, &entry(Some("aa"), None, None)),
            Verdict::Same
        );
        assert_eq!(
            old.verdict(&here, &entry(Some("bb"), None, None)),
            Verdict::Different,
            "same size and mtime, other SHA-256: not the wanted content"
        );
        assert_eq!(
            old.verdict(&meta(3, (10, 6)), &entry(Some("aa"), None, None)),
            Verdict::Unknown
        );
        assert_eq!(
            old.verdict(&meta(4, (10, 5)), &entry(Some("aa"), None, None)),
            Verdict::Unknown
        );
        assert_eq!(
            old.verdict(&here, &entry(None, Some("M1"), None)),
            Verdict::Same
        );
        assert_eq!(
            old.verdict(&here, &entry(None, None, Some("\"e\""))),
            Verdict::Unknown
        );
        let by_etag = Record::for_entry(&entry(None, None, Some("\"e\""))).unwrap();
        assert_eq!(
            by_etag.verdict(&here, &entry(None, None, Some("e"))),
            Verdict::Same
        );
        assert_eq!(
            by_etag.verdict(&here, &entry(None, None, Some("f"))),
            Verdict::Different
        );
        assert_eq!(Record::for_entry(&entry(None, None, None)), None);
    }

    #[test]
    fn records_round_trip_and_junk_is_no_record() {
        let r = Record::for_entry(&entry(Some("aa"), Some("m1"), Some("\"e-2\""))).unwrap();
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        assert_eq!(r.etag.as_deref(), Some("e-2"));
        assert_eq!(Record::decode(b"not json"), None);
    }
}
