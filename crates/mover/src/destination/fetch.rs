//! Destination, getting one object's content into staging, verified.
//!
//! An object is streamed into its staging file, every byte hashed and checked
//! against the manifest entry's size and SHA-256 (MD5 for a bucket written by plain
//! rclone); zero blocks are skipped, so sparse files stay sparse. When the object
//! at its own key does not hold what the manifest promises — a source run is
//! overwriting objects before its commit, or was killed before it — the committed
//! version that run kept at `.scribe/committed/<sha256>` (see `source::preserve`)
//! is fetched and checked instead. Only when both fail is it a mismatch, so the
//! last commit is restorable at every moment.
//!
//! Content a pass verified is not thrown away when another file of the same pass
//! mismatches: [`Kept`] carries it, by SHA-256, to the next pass, which re-reads
//! the manifest and takes from it whatever content is still wanted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest as _, Md5};
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;
use sha2::Sha256;
use tracing::info;

use super::Download;
use super::SparseWriter;
use super::entries::{Bits, Entries};
use super::restore::staged_name;
use crate::error::{SyncError, join_error};
use crate::fs::local::{create_new_nofollow, remove_any};
use crate::fs::paths::{committed_key, key_for};
use crate::manifest::Entry;
use crate::progress::Progress;
use crate::store::remote::Remote;

/// Gets `e`'s content into `temp`: from its key, else from the committed version
/// kept for it (see the module doc).
pub(super) async fn download(
    remote: &Remote,
    e: &Entry,
    temp: PathBuf,
    index: usize,
    progress: &Progress,
) -> Result<Download, SyncError> {
    let key = key_for(&remote.prefix, &e.path)?;
    let mut ok = fetch(remote, &key, e, &temp, progress).await?;
    if !ok && let Some(sha) = &e.sha256 {
        let kept = committed_key(&remote.prefix, sha);
        let t = temp.clone();
        tokio::task::spawn_blocking(move || remove_any(&t))
            .await
            .map_err(join_error)?
            .map_err(|err| SyncError::io("removing", &temp, err))?;
        ok = fetch(remote, &kept, e, &temp, progress).await?;
        if ok {
            info!(path = %e.path, "the object does not hold the committed version (a source run in progress?); restored the copy kept under .scribe/committed/");
        }
    }
    progress.file_done();
    if !ok {
        return Ok(Download::Mismatch(e.path.clone()));
    }
    Ok(Download::Verified(index, e.size))
}

/// Bytes of a body gathered before one blocking call writes (and hashes) them: an
/// object up to this size is written by a single call, so a small file costs one
/// trip to the blocking pool, and no digest is computed on the async threads.
const BATCH: usize = 1 << 20;

/// Streams the object at `key` into `temp`; whether it is exactly `e`'s content.
/// A missing object, or one of another size, is not read at all.
async fn fetch(
    remote: &Remote,
    key: &Key,
    e: &Entry,
    temp: &Path,
    progress: &Progress,
) -> Result<bool, SyncError> {
    let got = match remote.store.get(key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(err) => return Err(SyncError::store("downloading", key, err)),
    };
    if got.meta.size != e.size {
        return Ok(false);
    }
    let mut body = got.into_stream();
    let mut sink: Option<Sink> = None;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    loop {
        let chunk = body.next().await;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|err| SyncError::store("downloading", key, err))?;
            progress.add_bytes(chunk.len() as u64);
            batched += chunk.len();
            batch.push(chunk);
            if batched < BATCH {
                continue;
            }
        }
        let (t, want) = (temp.to_path_buf(), Want::of(e));
        let (open, chunks) = (sink.take(), std::mem::take(&mut batch));
        batched = 0;
        let step = tokio::task::spawn_blocking(move || {
            let mut s = match open {
                Some(s) => s,
                None => Sink::create(&t, want)?,
            };
            s.write(&chunks, &t)?;
            if done {
                return s.finish(&t).map(Err);
            }
            Ok(Ok(s))
        })
        .await
        .map_err(join_error)??;
        match step {
            Ok(s) => sink = Some(s),
            Err(verified) => return Ok(verified),
        }
    }
}

/// Which digest proves a download is the wanted content: SHA-256 when the entry
/// has one, else the MD5 a bucket written by plain rclone offers; only that one is
/// computed.
enum Check {
    Sha256(Sha256, String),
    Md5(Md5, String),
    SizeOnly,
}

/// The wanted size and [`Check`] of an entry.
struct Want {
    size: u64,
    check: Check,
}

impl Want {
    fn of(e: &Entry) -> Self {
        let check = match (&e.sha256, &e.md5) {
            (Some(s), _) => Check::Sha256(Sha256::new(), s.clone()),
            (None, Some(m)) => Check::Md5(Md5::new(), m.clone()),
            (None, None) => Check::SizeOnly,
        };
        Self {
            size: e.size,
            check,
        }
    }
}

/// A staging file being written and checked (blocking).
struct Sink {
    writer: SparseWriter,
    want: Want,
    size: u64,
}

impl Sink {
    fn create(temp: &Path, want: Want) -> Result<Self, SyncError> {
        let file = create_new_nofollow(temp).map_err(|err| SyncError::io("creating", temp, err))?;
        Ok(Self {
            writer: SparseWriter::new(file),
            want,
            size: 0,
        })
    }

    fn write(&mut self, chunks: &[Bytes], temp: &Path) -> Result<(), SyncError> {
        for c in chunks {
            match &mut self.want.check {
                Check::Sha256(h, _) => h.update(c),
                Check::Md5(h, _) => h.update(c),
                Check::SizeOnly => {}
            }
            self.size += c.len() as u64;
            self.writer
                .write(c)
                .map_err(|err| SyncError::io("writing", temp, err))?;
        }
        Ok(())
    }

    /// Completes the file; whether it holds exactly the wanted content.
    fn finish(self, temp: &Path) -> Result<bool, SyncError> {
        self.writer
            .finish()
            .map_err(|err| SyncError::io("writing", temp, err))?;
        Ok(self.size == self.want.size
            && match self.want.check {
                Check::Sha256(h, want) => hex::encode(h.finalize()) == want,
                Check::Md5(h, want) => hex::encode(h.finalize()) == want,
                Check::SizeOnly => true,
            })
    }
}

/// Verified content staged by passes that failed on a mismatch, by SHA-256, as
/// `<staging>/k-<sha256>`. Empty exactly when no staging directory is kept.
#[derive(Debug, Default)]
pub(super) struct Kept {
    files: HashMap<String, PathBuf>,
}

/// What a pass takes from [`Kept`] for its downloads.
#[derive(Debug, Default)]
pub(super) struct Claimed {
    /// Downloads whose content is already staged (moved to their staging names).
    pub staged: Bits,
    /// How many, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Further downloads of claimed content: SHA-256 → the staged file to copy.
    pub sources: HashMap<String, PathBuf>,
}

impl Kept {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// After a pass failed on a mismatch: keeps each of its verified staged files
    /// (`staged`) by content and removes every other file from `staging`.
    pub fn keep(
        &mut self,
        staging: &Path,
        staged: &Bits,
        entries: &Entries,
    ) -> Result<(), SyncError> {
        for r in entries.selected(staged)? {
            let (i, e) = r?;
            let Some(sha) = e.sha256 else {
                continue;
            };
            if self.files.contains_key(&sha) {
                continue;
            }
            let (from, to) = (
                staging.join(staged_name(i)),
                staging.join(format!("k-{sha}")),
            );
            std::fs::rename(&from, &to).map_err(|e| SyncError::io("keeping", &from, e))?;
            self.files.insert(sha, to);
        }
        let listing =
            std::fs::read_dir(staging).map_err(|e| SyncError::io("reading", staging, e))?;
        for item in listing {
            let item = item.map_err(|e| SyncError::io("reading", staging, e))?;
            let name = item.file_name();
            let kept = name
                .to_str()
                .and_then(|n| n.strip_prefix("k-"))
                .is_some_and(|sha| self.files.contains_key(sha));
            if !kept {
                let path = item.path();
                remove_any(&path).map_err(|e| SyncError::io("removing", &path, e))?;
            }
        }
        Ok(())
    }

    /// Takes the kept content the pass's `downloads` want: the first download of
    /// each content gets the kept file (renamed to its staging name, `temp(i)`),
    /// the others copy it.
    pub fn claim(
        &mut self,
        downloads: impl IntoIterator<Item = Result<(usize, Entry), SyncError>>,
        temp: impl Fn(usize) -> PathBuf,
    ) -> Result<Claimed, SyncError> {
        let mut out = Claimed::default();
        if self.is_empty() {
            return Ok(out);
        }
        for r in downloads {
            let (i, e) = r?;
            let Some(sha) = e.sha256 else {
                continue;
            };
            if out.sources.contains_key(&sha) {
                continue;
            }
            if let Some(from) = self.files.remove(&sha) {
                let to = temp(i);
                std::fs::rename(&from, &to).map_err(|e| SyncError::io("moving", &from, e))?;
                out.sources.insert(sha, to);
                out.staged.set(i);
                out.files += 1;
                out.bytes += e.size;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryKind;

    fn entry(path: &str, sha: &str) -> Entry {
        let mut e = Entry::new(path, EntryKind::File);
        e.sha256 = Some(sha.to_string());
        e
    }

    #[test]
    fn verified_content_survives_a_failed_pass_and_serves_the_next_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        let first = [entry("a", "A"), entry("b", "B"), entry("c", "C")];
        for i in 0..3 {
            std::fs::write(staging.join(format!("f-{i}")), format!("{i}")).unwrap();
        }
        // Pass one: a and c verified, b mismatched.
        let mut staged = Bits::default();
        staged.set(0);
        staged.set(2);
        let first = Entries::from_entries(first, None).unwrap();
        let mut kept = Kept::default();
        kept.keep(staging, &staged, &first).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(staging)
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["k-A", "k-C"], "the mismatched download is gone");
        // Pass two (a new manifest): C wanted at two paths, A no more, D new.
        let second = [entry("c", "C"), entry("c2", "C"), entry("d", "D")];
        let claimed = kept
            .claim(second.into_iter().enumerate().map(Ok), |i| {
                staging.join(format!("f-{i}"))
            })
            .unwrap();
        assert_eq!(claimed.staged.ones().collect::<Vec<_>>(), [0]);
        assert_eq!(claimed.files, 1);
        assert_eq!(std::fs::read(staging.join("f-0")).unwrap(), b"2");
        assert_eq!(claimed.sources["C"], staging.join("f-0"));
        assert!(!kept.is_empty(), "A stays kept until the run ends");
    }
}
