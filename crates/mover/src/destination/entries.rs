//! Destination, the manifest out of memory: [`Entries`] is the manifest as read
//! and checked, one JSON line per entry in path order, in an unlinked scratch file
//! that every stage of a pass reads again from the start ([`Entries::iter`],
//! positional reads, so readers never share an offset). What a pass decides per
//! entry is a bit in a [`Bits`] indexed like the entries, so a pass over a million
//! files holds a few bits per file instead of the parsed manifest.
//!
//! Reading from the store checks what a streaming reader can (`LineChecker`: the
//! header, safe and strictly increasing paths, digests, the body against its ETag;
//! `TreeCheck`: no entry below a non-directory entry) and, at the end, that every
//! hardlink names an earlier file entry; nothing is planned before the whole
//! manifest is read and checked.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::error::SyncError;
use crate::fs::paths::{check_relative, manifest_key, path_cmp};
use crate::manifest::stream::{BodyDigest, LineChecker, Lines, scratch_file};
use crate::manifest::{Entry, EntryKind, RootMeta, TreeCheck};
use crate::store::remote::Remote;

/// What the scratch file is called in errors.
const WHAT: &str = "manifest scratch file";

/// A checked manifest in a scratch file; see the module doc. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Entries {
    file: Arc<File>,
    len: usize,
    /// Metadata of the synced directory itself, when the manifest has it.
    pub root: Option<RootMeta>,
    /// Entries with a data object (files and hardlinks), and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
}

/// Builds an [`Entries`] file.
struct Builder {
    out: BufWriter<File>,
    len: usize,
    objects: u64,
    object_bytes: u64,
}

impl Builder {
    fn new() -> Result<Self, SyncError> {
        Ok(Self {
            out: BufWriter::new(scratch_file()?),
            len: 0,
            objects: 0,
            object_bytes: 0,
        })
    }

    fn push(&mut self, e: &Entry) -> Result<(), SyncError> {
        let fail = |err: std::io::Error| SyncError::io("writing", WHAT, err);
        serde_json::to_writer(&mut self.out, e).map_err(|err| fail(err.into()))?;
        self.out.write_all(b"\n").map_err(fail)?;
        self.len += 1;
        if e.kind.has_object() {
            self.objects += 1;
            self.object_bytes += e.size;
        }
        Ok(())
    }

    fn finish(self, root: Option<RootMeta>) -> Result<Entries, SyncError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| SyncError::io("writing", WHAT, e.into_error()))?;
        Ok(Entries {
            file: Arc::new(file),
            len: self.len,
            root,
            objects: self.objects,
            object_bytes: self.object_bytes,
        })
    }
}

/// A hardlink whose target is checked once the whole manifest was read.
struct PendingLink {
    target: String,
    path: String,
    line: usize,
}

impl Entries {
    /// Entries already in path order and checked (a listing made into a manifest).
    pub fn from_entries(
        entries: impl IntoIterator<Item = Entry>,
        root: Option<RootMeta>,
    ) -> Result<Self, SyncError> {
        let mut b = Builder::new()?;
        for e in entries {
            b.push(&e)?;
        }
        b.finish(root)
    }

    /// Reads and checks the manifest of `remote` as it arrives; `None` when there is
    /// none (a first sync, or a bucket written by plain rclone).
    pub async fn read(remote: &Remote) -> Result<Option<Self>, SyncError> {
        let key = manifest_key(&remote.prefix);
        let got = match remote.store.get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(SyncError::store("reading manifest", &key, e)),
        };
        let etag = got.meta.e_tag.clone();
        let mut body = got.into_stream();
        let mut checker = LineChecker::new(key.as_ref());
        let mut tree = TreeCheck::default();
        let mut digest = BodyDigest::default();
        let mut out = Builder::new()?;
        let mut links: Vec<PendingLink> = Vec::new();
        let mut lines = 0usize;
        let mut split = Lines::default();
        let mut take = |raw: &[u8], checker: &mut LineChecker| -> Result<(), SyncError> {
            lines += 1;
            let Some(e) = checker.line(raw)? else {
                return Ok(());
            };
            let bad = |reason: String| SyncError::ManifestInvalid {
                key: key.to_string(),
                line: lines,
                reason,
            };
            tree.check(&e).map_err(bad)?;
            if e.kind == EntryKind::Hardlink {
                let t = e.target.clone().unwrap_or_default();
                check_relative(&format!("manifest {key} line {lines} hardlink target"), &t)?;
                if path_cmp(&t, &e.path) != std::cmp::Ordering::Less {
                    return Err(bad(format!(
                        "hardlink {:?} targets {t:?}, which is not an earlier file entry",
                        e.path
                    )));
                }
                links.push(PendingLink {
                    target: t,
                    path: e.path.clone(),
                    line: lines,
                });
            }
            out.push(&e)
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| SyncError::store("reading manifest", &key, e))?;
            digest.update(&chunk);
            split.feed(&chunk);
            while let Some(line) = split.next_line() {
                take(line, &mut checker)?;
            }
        }
        // Before the last (possibly cut) line and the count check: a short body is a
        // transfer fault to retry, not an invalid manifest.
        if !remote.upload.etag_is_not_md5 {
            digest.check(key.as_ref(), etag.as_deref())?;
        }
        if !split.rest().is_empty() {
            take(split.rest(), &mut checker)?;
        }
        let root = checker.root().cloned();
        checker.finish()?;
        let entries = out.finish(root)?;
        entries.check_links(key.as_ref(), links)?;
        Ok(Some(entries))
    }

    /// Every hardlink must name a file entry (earlier: checked as it was read).
    fn check_links(&self, key: &str, links: Vec<PendingLink>) -> Result<(), SyncError> {
        if links.is_empty() {
            return Ok(());
        }
        let mut found: HashMap<&str, bool> =
            links.iter().map(|l| (l.target.as_str(), false)).collect();
        for r in self.iter()? {
            let (_, e) = r?;
            if e.kind == EntryKind::File
                && let Some(f) = found.get_mut(e.path.as_str())
            {
                *f = true;
            }
        }
        match links.iter().find(|l| !found[l.target.as_str()]) {
            None => Ok(()),
            Some(l) => Err(SyncError::ManifestInvalid {
                key: key.to_string(),
                line: l.line,
                reason: format!(
                    "hardlink {:?} targets {:?}, which is not an earlier file entry",
                    l.path, l.target
                ),
            }),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries from the first, with their index (blocking reads of the scratch
    /// file, served by the page cache).
    pub fn iter(&self) -> Result<Iter, SyncError> {
        Ok(Iter {
            lines: BufReader::with_capacity(
                64 * 1024,
                At {
                    file: Arc::clone(&self.file),
                    pos: 0,
                },
            ),
            index: 0,
            line: Vec::new(),
        })
    }

    /// The entries whose bit is set in `bits`.
    pub fn selected<'a>(
        &self,
        bits: &'a Bits,
    ) -> Result<impl Iterator<Item = Result<(usize, Entry), SyncError>> + 'a, SyncError> {
        Ok(self
            .iter()?
            .filter(move |r| r.as_ref().map_or(true, |(i, _)| bits.get(*i))))
    }
}

/// Reads a shared file from its own position.
struct At {
    file: Arc<File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The entries of an [`Entries`] file with their index.
pub struct Iter {
    lines: BufReader<At>,
    index: usize,
    line: Vec<u8>,
}

impl Iterator for Iter {
    type Item = Result<(usize, Entry), SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.line.clear();
        match self.lines.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => {
                let i = self.index;
                self.index += 1;
                Some(
                    serde_json::from_slice(&self.line)
                        .map(|e| (i, e))
                        .map_err(|e| SyncError::Internal(format!("{WHAT} line {i}: {e}"))),
                )
            }
            Err(e) => Some(Err(SyncError::io("reading", WHAT, e))),
        }
    }
}

/// One bit per manifest entry (by index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// All clear, for `n` entries.
    pub fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)],
        }
    }

    pub fn set(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// How many bits are set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The set indexes, in order (for tests and messages; the pass reads the
    /// entries and asks [`Bits::get`]).
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
        let mut e = Entry::new(path, kind);
        e.size = size;
        e.sha256 = Some("a".repeat(64));
        e
    }

    #[test]
    fn entries_read_back_in_order_any_number_of_times_and_count_objects() {
        let list = vec![
            entry("a", EntryKind::Dir, 0),
            entry("a/f", EntryKind::File, 3),
            entry("a/g", EntryKind::Hardlink, 3),
            entry("b", EntryKind::Symlink, 0),
        ];
        let es = Entries::from_entries(list.clone(), None).unwrap();
        assert_eq!((es.len(), es.objects, es.object_bytes), (4, 2, 6));
        let mut first = es.iter().unwrap();
        let (_, one) = first.next().unwrap().unwrap();
        // A second reader has its own position.
        let all: Vec<(usize, Entry)> = es.iter().unwrap().map(Result::unwrap).collect();
        assert_eq!(all, list.iter().cloned().enumerate().collect::<Vec<_>>());
        assert_eq!(one, list[0]);
        assert_eq!(first.next().unwrap().unwrap(), (1, list[1].clone()));
        let mut bits = Bits::new(4);
        bits.set(1);
        bits.set(3);
        let picked: Vec<usize> = es.selected(&bits).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(picked, [1, 3]);
    }

    fn memory_remote() -> Remote {
        Remote {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: object_store::path::Path::from("pre"),
            upload: crate::store::remote::UploadOptions::default(),
            incomplete: None,
            description: "test".into(),
        }
    }

    async fn read(list: Vec<Entry>) -> Result<Option<Entries>, SyncError> {
        let remote = memory_remote();
        let m = crate::manifest::Manifest {
            created_at: "2026-12-02T00:00:00Z".into(),
            root: None,
            entries: list,
        };
        crate::manifest::write(&remote, &m).await.unwrap();
        Entries::read(&remote).await
    }

    fn link(path: &str, kind: EntryKind, target: &str) -> Entry {
        let mut e = entry(path, kind, 0);
        e.sha256 = None;
        e.target = Some(target.into());
        e
    }

    fn reason(r: Result<Option<Entries>, SyncError>) -> (usize, String) {
        match r {
            Err(SyncError::ManifestInvalid { line, reason, .. }) => (line, reason),
            Err(e) => panic!("not an invalid manifest: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[tokio::test]
    async fn read_checks_the_tree_as_it_streams_and_hardlinks_at_the_end() {
        assert!(
            Entries::read(&memory_remote()).await.unwrap().is_none(),
            "no manifest"
        );
        let ok = vec![
            entry("a", EntryKind::File, 1),
            entry("a-b", EntryKind::Dir, 0),
            entry("a-b/c", EntryKind::Hardlink, 1),
            entry("d", EntryKind::Dir, 0),
            entry("d/e", EntryKind::File, 2),
        ];
        let mut ok = ok;
        ok[2].target = Some("a".into());
        let es = read(ok.clone()).await.unwrap().unwrap();
        let back: Vec<Entry> = es.iter().unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(back, ok);
        assert_eq!((es.objects, es.object_bytes), (3, 4));

        // Byte order puts "s-x" between the symlink "s" and "s/inside".
        let below_link = vec![
            link("s", EntryKind::Symlink, "/outside"),
            entry("s-x", EntryKind::File, 1),
            entry("s/inside", EntryKind::File, 1),
        ];
        let (line, why) = reason(read(below_link).await);
        assert_eq!(line, 4, "header, s, s-x, then the offending line");
        assert!(
            why.contains("\"s/inside\" is inside \"s\", which is a symlink"),
            "{why}"
        );

        let to_missing = vec![
            entry("a", EntryKind::File, 1),
            link("b", EntryKind::Hardlink, "a0"),
        ];
        let (line, why) = reason(read(to_missing).await);
        assert_eq!(line, 3);
        assert!(
            why.contains("targets \"a0\", which is not an earlier file entry"),
            "{why}"
        );

        let to_dir = vec![
            entry("a", EntryKind::Dir, 0),
            link("b", EntryKind::Hardlink, "a"),
        ];
        assert!(
            reason(read(to_dir).await)
                .1
                .contains("not an earlier file entry")
        );

        let to_later = vec![
            link("a", EntryKind::Hardlink, "b"),
            entry("b", EntryKind::File, 1),
        ];
        assert!(
            reason(read(to_later).await)
                .1
                .contains("not an earlier file entry")
        );
    }

    #[test]
    fn bits_set_count_and_list() {
        let mut b = Bits::new(10);
        for i in [0, 63, 64, 200, 63] {
            b.set(i);
        }
        assert!(b.get(200) && b.get(63) && !b.get(9) && !b.get(5000));
        assert_eq!(b.count(), 4);
        assert_eq!(b.ones().collect::<Vec<_>>(), [0, 63, 64, 200]);
    }
}
