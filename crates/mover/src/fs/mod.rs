//! The local filesystem, shared by both directions: lstat-based metadata and opens
//! that never follow a symlink (`local`), the lazy walk in manifest order (`scan`),
//! relative paths ↔ object keys and their safety rules (`paths`), and content
//! digests (`hash`).

pub mod hash;
pub mod local;
pub mod paths;
pub mod scan;
