//! Destination, local reuse: content the pass must produce that some local file
//! already holds (a rename or copy on the source side) is copied from that file
//! into staging instead of downloaded. The pure half ([`index_plan`]) decides,
//! for the local files whose size some wanted file has, which digests are already
//! known (the manifest vouches for an unchanged path, or the pass just hashed it)
//! and which must be hashed; only wanted digests are indexed, so memory follows the
//! number of files to transfer, not the tree. The blocking half ([`copy_verified`])
//! streams one local file into staging, hashing as it goes: a file edited since it
//! was indexed is reported as a mismatch and the caller downloads instead.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use crate::destination::SparseWriter;
use crate::destination::restore::{Plan, join};
use crate::error::SyncError;
use crate::fs::hash::{BUF_SIZE, DualHasher};
use crate::fs::local::{FileKind, create_new_nofollow, open_nofollow, remove_any};
use crate::fs::scan::ScanEntry;
use crate::manifest::{Entry, EntryKind};

/// A SHA-256 as its 32 bytes: the index of wanted content holds a few dozen bytes
/// per download, no string.
pub type Digest = [u8; 32];

/// The [`Digest`] of a hex SHA-256 (`None` when it is not one).
pub fn digest(hex: &str) -> Option<Digest> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(hex, &mut d).ok().map(|()| d)
}

/// What the pass wants: SHA-256 → size, of every file it would download (given
/// the download entries).
pub fn wanted(
    downloads: impl IntoIterator<Item = Result<(usize, Entry), SyncError>>,
) -> Result<HashMap<Digest, u64>, SyncError> {
    let mut out = HashMap::new();
    for r in downloads {
        let (_, e) = r?;
        if let Some(d) = e.sha256.as_deref().and_then(digest) {
            out.insert(d, e.size);
        }
    }
    Ok(out)
}

/// Local paths already known to hold wanted content: SHA-256 → a local path.
pub type Known = HashMap<Digest, String>;

/// Pure: sorts the local regular files of a wanted size (merge-joined with the
/// manifest) into known and unknown content. A path the manifest has, with the size
/// and mtime the plan trusted (not to download, not to re-hash), holds the
/// manifest's digest; a path the plan re-hashed holds the digest in `checked`
/// (manifest index → SHA-256, needed only for wanted digests; a re-hashed path
/// missing from it holds nothing wanted); any other file goes to `to_hash`, to be
/// hashed and indexed if its digest is wanted.
pub fn index_plan<M, L>(
    manifest: M,
    local: L,
    plan: &Plan,
    checked: &HashMap<usize, Digest>,
    wanted: &HashMap<Digest, u64>,
    mut to_hash: impl FnMut(String) -> Result<(), SyncError>,
) -> Result<Known, SyncError>
where
    M: IntoIterator<Item = Result<(usize, Entry), SyncError>>,
    L: IntoIterator<Item = Result<ScanEntry, SyncError>>,
{
    let sizes: HashSet<u64> = wanted.values().copied().collect();
    let mut known = Known::new();
    join(manifest, local, |m, l| {
        let Some(l) = l.filter(|l| l.meta.kind == FileKind::File && sizes.contains(&l.meta.size))
        else {
            return Ok(());
        };
        let found = match m.filter(|(_, e)| e.kind == EntryKind::File) {
            // Hashed already this pass: `checked` has it if it is wanted at all.
            Some((i, _)) if plan.hash_checks.get(i) => checked.get(&i).copied(),
            Some((i, e)) if !plan.downloads.get(i) => e.sha256.as_deref().and_then(digest),
            _ => return to_hash(l.path),
        };
        if let Some(d) = found.filter(|d| wanted.contains_key(d)) {
            known.entry(d).or_insert(l.path);
        }
        Ok(())
    })?;
    Ok(known)
}

/// Outcome of [`copy_verified`].
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// `temp` holds exactly the wanted content.
    Verified,
    /// The local file no longer holds it (or vanished); `temp` was removed.
    Stale,
}

/// Streams `src` into a new `temp` (holes kept), hashing every byte; the copy counts
/// only when size and SHA-256 are what `e` promises. Failing to read `src` (it was
/// removed or replaced meanwhile) is [`Copied::Stale`]; failing to write `temp` is
/// an error. Blocking.
pub fn copy_verified(src: &Path, temp: &Path, e: &Entry) -> Result<Copied, SyncError> {
    let Some(want) = e.sha256.as_deref() else {
        return Ok(Copied::Stale);
    };
    let Ok(mut file) = open_nofollow(src) else {
        return Ok(Copied::Stale);
    };
    if !file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() == e.size)
    {
        return Ok(Copied::Stale);
    }
    let mut writer = SparseWriter::new(
        create_new_nofollow(temp).map_err(|err| SyncError::io("creating", temp, err))?,
    );
    let mut hasher = DualHasher::default();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut read_ok = true;
    let mut copied = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                read_ok = false;
                break;
            }
        };
        // A file growing while it is copied must not be read without bound.
        copied += n as u64;
        if copied > e.size {
            read_ok = false;
            break;
        }
        hasher.update(&buf[..n]);
        writer
            .write(&buf[..n])
            .map_err(|err| SyncError::io("writing", temp, err))?;
    }
    let d = hasher.finish();
    if !read_ok || d.size != e.size || d.sha256 != want {
        drop(writer);
        remove_any(temp).map_err(|err| SyncError::io("removing", temp, err))?;
        return Ok(Copied::Stale);
    }
    writer
        .finish()
        .map_err(|err| SyncError::io("writing", temp, err))?;
    Ok(Copied::Verified)
}

#[cfg(test)]
mod tests;
