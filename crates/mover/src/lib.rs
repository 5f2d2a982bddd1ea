//! Scribe mover: syncs a mounted directory to and from S3-compatible storage (or
//! Azure Blob Storage, Google Cloud Storage, a local directory: see `store`),
//! driven by an rclone.conf section. Pipeline: a streaming merge of the local walk,
//! the previous manifest and the remote listing → hash → transfer → verify → commit
//! (source, see `source` and `plan`); manifest → diff → download → verify → apply
//! (destination).
//!
//! What the remote holds (see `manifest`, `source`, `destination`):
//! - every regular file as an object at `<prefix>/<path>` (rclone's `mtime` metadata;
//!   `md5chksum` for multipart uploads); the second and later links of a hardlinked
//!   inode are objects too (server-side copies, each with its own `mtime`, multipart
//!   above `copy_cutoff`) and are hardlinks in the manifest;
//! - symlinks, empty directories, modes, owners and nanosecond mtimes only in the
//!   manifest `<prefix>/.scribe/manifest.jsonl` (no `.rclonelink` objects);
//! - the manifest is written last, atomically (one put, or a multipart upload for a
//!   large one, streamed as it is produced): it is the commit point;
//! - while a run overwrites objects before its commit, the committed version of each
//!   is kept at `<prefix>/.scribe/committed/<sha256>` (a server-side copy made
//!   before the first write, deleted after the next commit), so the last committed
//!   state is restorable at every moment, even after a killed run (see `preserve`).
//!
//! A live source (copyMethod `None`) may change under a run: a file that will not
//! hold still is kept at its last committed version or left out, and counted; a
//! vanished one is left out (see `changing`, `unsettled`). SIGTERM aborts the
//! run's uploads and commits nothing; a later source run aborts multipart uploads a
//! killed run left behind (see `leftovers`).
//!
//! The destination always restores the last commit exactly: an object that does not
//! hold what the manifest promises is taken from its kept committed version (see
//! `fetch`); only when neither verifies (a newer commit landed) does it re-read the
//! manifest and retry, keeping what it already verified.
//!
//! The destination downloads into `<root>/.scribe-staging` (same filesystem, so the
//! final rename is atomic), commits only a fully verified pass through a handle that
//! never follows a symlink (see `tree`), and decides by SHA-256: a local file is
//! trusted only when its restore record (a user xattr, see `restored`) names the
//! manifest's content at the file's current size and mtime; otherwise it is
//! re-hashed (a touched file is never re-downloaded; `--checksum` re-hashes all).
//! Content some local file already holds (a rename or copy on the source) is copied
//! from it, verified while copying, instead of downloaded (see `reuse`).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod destination;
pub mod error;
pub mod fs;
pub mod manifest;
pub mod options;
pub mod progress;
pub mod source;
pub mod store;
pub mod summary;

pub use error::SyncError;
pub use options::SyncOptions;
pub use summary::{Direction, Summary, SummaryExt};
