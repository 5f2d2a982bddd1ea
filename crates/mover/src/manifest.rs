//! The manifest: Scribe's record of one committed sync, stored as JSON Lines at
//! `<prefix>/.scribe/manifest.jsonl` (a header line, then one entry per line in
//! byte order of path). Written last by the source, atomically (one put, or a
//! multipart upload visible only once complete) — it is the commit point — and
//! streamed both ways by the source (see [`stream`]), and read by the destination
//! into a scratch file as it arrives (`destination::entries`), trusting nothing in
//! it until every line was checked ([`stream::LineChecker`], [`TreeCheck`]).
//! [`Manifest::parse`] checks a whole manifest held in memory the same way.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::fs::paths::{check_relative, path_cmp};
use crate::store::remote::Remote;

pub const FORMAT: &str = "scribe-manifest";
pub const VERSION: u32 = 1;

/// Type of a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A second or later path of a hardlinked inode; `target` is the first path.
    /// Its content is also stored as an object (a server-side copy), so rclone sees a file.
    Hardlink,
}

impl EntryKind {
    /// Whether the entry has a data object at `<prefix>/<path>`.
    pub fn has_object(self) -> bool {
        matches!(self, Self::File | Self::Hardlink)
    }
}

/// One path of the synced tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Permission bits (`st_mode & 0o7777`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    pub mtime_sec: i64,
    #[serde(default)]
    pub mtime_nsec: u32,
    /// Symlink target, or the first path of a hardlink's inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// ETag of the data object as uploaded (files and hardlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Source-side change detection: inode and ctime when hashed, so an unchanged
    /// file is not re-hashed next time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_sec: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_nsec: Option<u32>,
}

impl Entry {
    /// A bare entry (used by tests and by listings of rclone-written buckets).
    pub fn new(path: impl Into<String>, kind: EntryKind) -> Self {
        Self {
            path: path.into(),
            kind,
            size: 0,
            sha256: None,
            md5: None,
            mode: None,
            uid: None,
            gid: None,
            mtime_sec: 0,
            mtime_nsec: 0,
            target: None,
            etag: None,
            ino: None,
            ctime_sec: None,
            ctime_nsec: None,
        }
    }
}

/// Metadata of the synced directory itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    version: u32,
    created_at: String,
    entries: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<RootMeta>,
}

/// A whole manifest: entries sorted by path bytes, unique, every path safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// RFC 3339 time the source committed it.
    pub created_at: String,
    pub root: Option<RootMeta>,
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// JSON Lines bytes: header, then one entry per line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = header_line(&self.created_at, self.entries.len(), self.root.as_ref());
        out.reserve(self.entries.len() * 200);
        for e in &self.entries {
            serde_json::to_writer(&mut out, e).expect("entry serializes");
            out.push(b'\n');
        }
        out
    }

    /// Parses and validates (paths safe, sorted, unique, kinds consistent, nothing
    /// below a non-directory entry). `key` only names the manifest in errors.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, SyncError> {
        let text = std::str::from_utf8(bytes).map_err(|e| SyncError::ManifestInvalid {
            key: key.to_string(),
            line: 0,
            reason: format!("not UTF-8: {e}"),
        })?;
        let mut parser = Parser::new(key);
        for line in text.lines() {
            parser.line(line)?;
        }
        parser.finish()
    }
}

/// [`Manifest::parse`] one line at a time, so a manifest read from the store is
/// parsed as it arrives instead of being held whole next to its entries.
pub struct Parser {
    key: String,
    /// Lines seen, blank ones included (for error messages).
    line: usize,
    header: Option<Header>,
    entries: Vec<Entry>,
    tree: TreeCheck,
}

impl Parser {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            line: 0,
            header: None,
            entries: Vec::new(),
            tree: TreeCheck::default(),
        }
    }

    fn bad(&self, line: usize, reason: String) -> SyncError {
        SyncError::ManifestInvalid {
            key: self.key.clone(),
            line,
            reason,
        }
    }

    /// Parses and checks the next line (without its newline).
    pub fn line(&mut self, line: &str) -> Result<(), SyncError> {
        self.line += 1;
        let n = self.line;
        let key = &self.key;
        if line.trim().is_empty() {
            return Ok(());
        }
        if self.header.is_none() {
            let header: Header =
                serde_json::from_str(line).map_err(|e| self.bad(n, format!("header: {e}")))?;
            if header.format != FORMAT {
                return Err(self.bad(
                    n,
                    format!("format is {:?}, expected {FORMAT:?}", header.format),
                ));
            }
            if header.version != VERSION {
                return Err(self.bad(
                    n,
                    format!(
                        "version {} is not supported (this mover reads {VERSION})",
                        header.version
                    ),
                ));
            }
            self.entries = Vec::with_capacity(header.entries.min(1 << 20));
            self.header = Some(header);
            return Ok(());
        }
        let entries = &self.entries;
        let e: Entry = serde_json::from_str(line).map_err(|err| self.bad(n, err.to_string()))?;
        check_relative(&format!("manifest {key} line {n}"), &e.path)?;
        if let Some(prev) = entries.last()
            && path_cmp(&prev.path, &e.path) != std::cmp::Ordering::Less
        {
            return Err(self.bad(
                n,
                format!(
                    "path {:?} is not after {:?} (unsorted or duplicate)",
                    e.path, prev.path
                ),
            ));
        }
        match e.kind {
            EntryKind::File if e.sha256.is_none() && e.md5.is_none() => {
                return Err(self.bad(n, format!("file {:?} has no sha256", e.path)));
            }
            EntryKind::Symlink if e.target.as_deref().is_none_or(str::is_empty) => {
                return Err(self.bad(n, format!("symlink {:?} has no target", e.path)));
            }
            EntryKind::Hardlink => {
                let t = e.target.as_deref().unwrap_or("");
                check_relative(&format!("manifest {key} line {n} hardlink target"), t)?;
                let ok = entries
                    .binary_search_by(|p| path_cmp(&p.path, t))
                    .is_ok_and(|i| entries[i].kind == EntryKind::File);
                if !ok {
                    return Err(self.bad(
                        n,
                        format!(
                            "hardlink {:?} targets {t:?}, which is not an earlier file entry",
                            e.path
                        ),
                    ));
                }
            }
            _ => {}
        }
        if let Err(reason) = self.tree.check(&e) {
            return Err(self.bad(n, reason));
        }
        if let Some(sha) = &e.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(self.bad(n, format!("sha256 of {:?} is not 64 hex digits", e.path)));
        }
        self.entries.push(e);
        Ok(())
    }

    /// The manifest, once every line was given.
    pub fn finish(self) -> Result<Manifest, SyncError> {
        let Some(header) = &self.header else {
            return Err(self.bad(1, "empty manifest".into()));
        };
        if self.entries.len() != header.entries {
            return Err(self.bad(
                0,
                format!(
                    "header says {} entries, found {}",
                    header.entries,
                    self.entries.len()
                ),
            ));
        }
        let header = self.header.expect("checked above");
        Ok(Manifest {
            created_at: header.created_at,
            root: header.root,
            entries: self.entries,
        })
    }
}

/// Checks, one entry at a time (paths in increasing byte order), that no entry lives
/// under anything but a directory entry: one below a symlink entry would have the
/// restore write wherever the link points. Keeps only the non-directory entries
/// whose path is a byte prefix of the latest one (every path between `x` and
/// `x/…` in byte order starts with `x`), so memory follows the depth, not the count.
#[derive(Debug, Default)]
pub struct TreeCheck {
    blockers: Vec<(String, EntryKind)>,
}

impl TreeCheck {
    /// The reason `e` cannot be restored, if it lies under a non-directory entry.
    pub fn check(&mut self, e: &Entry) -> Result<(), String> {
        while self
            .blockers
            .last()
            .is_some_and(|(b, _)| !e.path.starts_with(b.as_str()))
        {
            self.blockers.pop();
        }
        if let Some((above, kind)) = self
            .blockers
            .iter()
            .rev()
            .find(|(b, _)| e.path.as_bytes().get(b.len()) == Some(&b'/'))
        {
            return Err(format!(
                "{:?} is inside {above:?}, which is a {} entry, not a directory \
                 (refusing to restore through it)",
                e.path,
                format!("{kind:?}").to_lowercase()
            ));
        }
        if e.kind != EntryKind::Dir {
            self.blockers.push((e.path.clone(), e.kind));
        }
        Ok(())
    }
}

/// The header line (with its newline) of a manifest of `entries` entries.
pub fn header_line(created_at: &str, entries: usize, root: Option<&RootMeta>) -> Vec<u8> {
    let header = Header {
        format: FORMAT.to_string(),
        version: VERSION,
        created_at: created_at.to_string(),
        entries,
        root: root.cloned(),
    };
    // Serializing plain structs of strings and integers cannot fail.
    let mut out = serde_json::to_vec(&header).expect("header serializes");
    out.push(b'\n');
    out
}

/// Writes a whole in-memory manifest with one atomic operation (see `stream`).
pub async fn write(remote: &Remote, manifest: &Manifest) -> Result<(), SyncError> {
    let bytes = Bytes::from(manifest.to_bytes());
    let chunks: Vec<Result<Bytes, SyncError>> = bytes
        .chunks(stream::PART)
        .map(|c| Ok(bytes.slice_ref(c)))
        .collect();
    stream::upload_chunks(remote, futures::stream::iter(chunks)).await
}

pub mod stream;

#[cfg(test)]
mod tests;
