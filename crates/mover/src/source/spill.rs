//! Scratch files that keep the source's per-file state out of memory: the work the
//! merge found, the hashed work, the finished entries, the deletes and the
//! committed copies to release are JSON lines in unlinked files in `TMPDIR` (see
//! `scratch_file`), written in path order and read back in batches. [`Sources`]
//! holds the server-side copy sources — the previous manifest's objects, then this
//! run's uploads — behind a fixed-size Bloom filter, so a batch scans the file only
//! when one of its contents may be there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::SyncError;
use crate::fs::paths::path_cmp;
use crate::manifest::stream::scratch_file;
use crate::source::digest::Sha256;

/// Items of type `T` written to a scratch file, one JSON line each.
pub struct Writer<T> {
    out: BufWriter<File>,
    count: usize,
    what: &'static str,
    _t: PhantomData<fn(T)>,
}

impl<T: Serialize> Writer<T> {
    /// A new scratch file; `what` names it in errors.
    pub fn new(what: &'static str) -> Result<Self, SyncError> {
        Ok(Self {
            out: BufWriter::new(scratch_file()?),
            count: 0,
            what,
            _t: PhantomData,
        })
    }

    pub fn push(&mut self, item: &T) -> Result<(), SyncError> {
        let fail = |err| SyncError::io("writing", self.what, err);
        serde_json::to_writer(&mut self.out, item).map_err(|e| fail(e.into()))?;
        self.out.write_all(b"\n").map_err(fail)?;
        self.count += 1;
        Ok(())
    }

    /// Items written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The items written, to read back from the first.
    pub fn into_reader(self) -> Result<Reader<T>, SyncError> {
        let what = self.what;
        let count = self.count;
        let fail = |err| SyncError::io("writing", what, err);
        let mut file = self.out.into_inner().map_err(|e| fail(e.into_error()))?;
        file.rewind().map_err(fail)?;
        Ok(Reader {
            lines: BufReader::new(file),
            count,
            what,
            line: Vec::new(),
            _t: PhantomData,
        })
    }

    /// The file itself (flushed), e.g. for `write_merged`.
    pub fn into_file(self) -> Result<File, SyncError> {
        let what = self.what;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| SyncError::io("writing", what, e.into_error()))?;
        file.rewind()
            .map_err(|e| SyncError::io("writing", what, e))?;
        Ok(file)
    }
}

/// Reads back what a [`Writer`] wrote, in the same order.
pub struct Reader<T> {
    lines: BufReader<File>,
    count: usize,
    what: &'static str,
    line: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Reader<T> {
    /// How many items the file holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next item, if any.
    pub fn next_item(&mut self) -> Result<Option<T>, SyncError> {
        self.line.clear();
        let n = self
            .lines
            .read_until(b'\n', &mut self.line)
            .map_err(|e| SyncError::io("reading", self.what, e))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&self.line)
            .map(Some)
            .map_err(|e| SyncError::Internal(format!("{} line: {e}", self.what)))
    }

    /// Up to `max` next items (none at the end).
    pub fn batch(&mut self, max: usize) -> Result<Vec<T>, SyncError> {
        let mut out = Vec::with_capacity(max.clamp(1, 4096));
        while out.len() < max.max(1) {
            match self.next_item()? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Bits in the Bloom filter of [`Sources`] (8 MiB, allocated zeroed: pages never
/// set are never touched), and bits set per content.
const BLOOM_BITS: usize = 1 << 26;
const BLOOM_HASHES: usize = 5;

/// One server-side copy source: content, object path, and whether the path is
/// also a work item of this run (so it may be overwritten by then).
#[derive(serde::Serialize, serde::Deserialize)]
struct SourceLine {
    s: String,
    p: String,
    #[serde(default)]
    w: bool,
}

/// Where the SHA-256 starts in a line of [`SourceLine`] (`{"s":"`).
const SHA_AT: usize = 6;

/// Objects holding a known content, for server-side copies.
pub struct Sources {
    out: BufWriter<File>,
    bloom: Vec<u64>,
    lines: usize,
}

/// Bit positions of a content in the filter: a SHA-256 is uniform, so its own
/// bytes are the hashes.
fn bloom_bits(sha: &str) -> Option<[usize; BLOOM_HASHES]> {
    let raw = hex::decode(sha.get(..BLOOM_HASHES * 8)?).ok()?;
    let mut out = [0; BLOOM_HASHES];
    for (i, c) in raw.chunks_exact(4).enumerate() {
        let v = u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize;
        out[i] = v % BLOOM_BITS;
    }
    Some(out)
}

impl Sources {
    pub fn new() -> Result<Self, SyncError> {
        Ok(Self {
            out: BufWriter::new(scratch_file()?),
            bloom: vec![0; BLOOM_BITS / 64],
            lines: 0,
        })
    }

    /// Notes that the object at `path` holds `sha` (`work`: the path is a work item).
    pub fn add(&mut self, sha: &str, path: &str, work: bool) -> Result<(), SyncError> {
        let Some(bits) = bloom_bits(sha) else {
            return Ok(());
        };
        for b in bits {
            self.bloom[b / 64] |= 1 << (b % 64);
        }
        let line = SourceLine {
            s: sha.to_string(),
            p: path.to_string(),
            w: work,
        };
        let fail = |err| SyncError::io("writing", "copy sources scratch file", err);
        serde_json::to_writer(&mut self.out, &line).map_err(|e| fail(e.into()))?;
        self.out.write_all(b"\n").map_err(fail)?;
        self.lines += 1;
        Ok(())
    }

    fn may_hold(&self, sha: &str) -> bool {
        bloom_bits(sha).is_some_and(|bits| {
            bits.iter()
                .all(|b| self.bloom[b / 64] & (1 << (b % 64)) != 0)
        })
    }

    /// For a batch of work starting at path `first`: an object holding each wanted
    /// content that is safe to copy from now — not overwritten by this batch
    /// (`overwritten`), and not a work item of an earlier batch (which may have
    /// been overwritten). Scans the file only when the filter says it may help.
    pub fn find(
        &mut self,
        wanted: &HashSet<Sha256>,
        first: &str,
        overwritten: &HashSet<&str>,
    ) -> Result<HashMap<Sha256, String>, SyncError> {
        let maybe: HashSet<&str> = wanted
            .iter()
            .map(Sha256::as_str)
            .filter(|s| self.may_hold(s))
            .collect();
        let mut found = HashMap::new();
        if maybe.is_empty() {
            return Ok(found);
        }
        let fail = |err| SyncError::io("reading", "copy sources scratch file", err);
        self.out.flush().map_err(fail)?;
        let file = self.out.get_mut();
        file.rewind().map_err(fail)?;
        let mut lines = BufReader::new(&*file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).map_err(fail)? == 0 {
                break;
            }
            // Lines start `{"s":"<64 hex digits>"`: most are skipped undecoded.
            let sha = line
                .get(SHA_AT..SHA_AT + 64)
                .and_then(|s| std::str::from_utf8(s).ok());
            if sha.is_some_and(|s| !maybe.contains(s)) {
                continue;
            }
            let l: SourceLine = serde_json::from_slice(&line)
                .map_err(|e| SyncError::Internal(format!("copy sources scratch line: {e}")))?;
            let Some(sha) = Sha256::parse(&l.s) else {
                continue;
            };
            if !maybe.contains(sha.as_str())
                || found.contains_key(&sha)
                || overwritten.contains(l.p.as_str())
                || (l.w && path_cmp(&l.p, first).is_lt())
            {
                continue;
            }
            found.insert(sha, l.p);
        }
        drop(lines);
        file.seek(SeekFrom::End(0)).map_err(fail)?;
        Ok(found)
    }
}

impl<T: DeserializeOwned> Iterator for Reader<T> {
    type Item = Result<T, SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> Sha256 {
        Sha256::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn items_come_back_in_order_in_batches() {
        let mut w = Writer::new("test scratch file").unwrap();
        for i in 0..7 {
            w.push(&format!("item {i}")).unwrap();
        }
        let mut r: Reader<String> = w.into_reader().unwrap();
        assert_eq!(r.len(), 7);
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let b = r.batch(3).unwrap();
            (!b.is_empty()).then_some(b.len())
        })
        .collect();
        assert_eq!(sizes, [3, 3, 1]);
    }

    #[test]
    fn a_source_is_usable_unless_this_or_an_earlier_batch_may_overwrite_it() {
        let mut s = Sources::new().unwrap();
        s.add(sha('a').as_str(), "a/settled", false).unwrap();
        s.add(sha('b').as_str(), "b/work-earlier", true).unwrap();
        s.add(sha('c').as_str(), "m/in-batch", true).unwrap();
        s.add(sha('c').as_str(), "z/work-later", true).unwrap();
        s.add(sha('d').as_str(), "d/uploaded", false).unwrap();
        let wanted: HashSet<Sha256> = ['a', 'b', 'c', 'd', 'e'].map(sha).into();
        let overwritten: HashSet<&str> = ["m/in-batch"].into();
        let found = s.find(&wanted, "m/first", &overwritten).unwrap();
        let mut got: Vec<(&str, &str)> = found
            .iter()
            .map(|(k, v)| (&k.as_str()[..1], v.as_str()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a", "a/settled"),
                ("c", "z/work-later"),
                ("d", "d/uploaded")
            ]
        );
        // Added after a lookup: found by the next one.
        s.add(sha('e').as_str(), "e/uploaded", false).unwrap();
        let found = s.find(&wanted, "zz", &HashSet::new()).unwrap();
        assert_eq!(found.get(&sha('e')).map(String::as_str), Some("e/uploaded"));
        assert!(
            !found.contains_key(&sha('c')),
            "both work paths are in earlier batches now"
        );
    }
}
