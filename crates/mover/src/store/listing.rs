//! Listing the remote's data objects (not Scribe's own) in path byte order: whole
//! (the destination, for a bucket written by plain rclone) or as a stream for the
//! source's merge. S3 lists keys in UTF-8 byte order (so does `InMemory`), so a
//! listing is streamed as it arrives — and checked: a store that breaks the order
//! makes the source redo its merge with a sorted listing. `LocalFileSystem`
//! (`type = local`) walks directories in whatever order the OS gives, and crypt
//! stores encrypted names, so their listing is sorted first: in memory for the
//! destination, through scratch files for the source (see `external_sort`).
//!
//! Folder markers — zero-byte keys ending in `/` that the S3 console, some tools and
//! `rclone mkdir` write for a directory — are not data: the S3 listing hands them
//! over as [`FOLDER_MARKER`] entries (their key without the `/`), never as a file.
//! The source leaves them out of its merge, so it neither uploads nor deletes them
//! (like rclone, which does not remove them either); a destination restoring a
//! bucket without a manifest turns each into a directory (see [`list_tree`]).
//!
//! The same listing notes, at no extra request, the committed versions a source
//! run kept under `.scribe/committed/` (see `source::preserve`).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::ObjectMeta;
use tokio::sync::mpsc;

use crate::error::SyncError;
use crate::fs::paths::{committed_name, is_scribe_internal, path_cmp, rel_for};
use crate::source::diff::RemoteObject;
use crate::store::external_sort::{ExternalSort, RUN, Sorted};
use crate::store::remote::Remote;

/// `ObjectMeta::version` of a folder marker as the S3 listing reports it (its
/// location is the marker's key without the trailing `/`).
pub const FOLDER_MARKER: &str = "scribe:folder-marker";

/// One listed entry under the prefix.
enum Listed {
    Object(RemoteObject),
    /// A folder marker: the relative path of its directory.
    Folder(String),
}

/// Why a streamed listing stopped.
#[derive(Debug)]
pub enum ListError {
    /// The store returned a key before the previous one: it does not list in order.
    Unsorted {
        after: String,
        key: String,
    },
    Failed(SyncError),
}

/// Whether to stream the store's listing as it comes: every store but the local
/// filesystem, which is known not to list in order, and crypt, whose stored order is
/// that of the encrypted names.
pub fn lists_in_order(remote: &Remote) -> bool {
    let store = remote.store.to_string();
    !(store.starts_with("LocalFileSystem") || store.starts_with("CryptStore"))
}

/// The prefix to list under (`None` for the whole store).
fn list_prefix(remote: &Remote) -> Option<&object_store::path::Path> {
    (!remote.prefix.as_ref().is_empty()).then_some(&remote.prefix)
}

/// SHA-256 names of the committed versions a listing saw under `.scribe/committed/`.
pub type Held = Arc<Mutex<Vec<String>>>;

fn classify(remote: &Remote, m: ObjectMeta, held: Option<&Held>) -> Option<Listed> {
    let rel = rel_for(&remote.prefix, &m.location)?;
    if let (Some(h), Some(sha)) = (held, committed_name(rel)) {
        h.lock().expect("held lock").push(sha.to_string());
    }
    if is_scribe_internal(rel) {
        return None;
    }
    if m.version.as_deref() == Some(FOLDER_MARKER) {
        return (!rel.is_empty()).then(|| Listed::Folder(rel.to_string()));
    }
    Some(Listed::Object(RemoteObject {
        path: rel.to_string(),
        size: m.size,
        etag: m.e_tag,
    }))
}

/// The data object of a listed entry; folder markers are not data.
fn to_object(remote: &Remote, m: ObjectMeta, held: Option<&Held>) -> Option<RemoteObject> {
    match classify(remote, m, held)? {
        Listed::Object(o) => Some(o),
        Listed::Folder(_) => None,
    }
}

/// Lists the data objects under the prefix, sorted by path (held in memory).
pub async fn list_objects(remote: &Remote) -> Result<Vec<RemoteObject>, SyncError> {
    Ok(list_tree(remote).await?.0)
}

/// Lists the data objects under the prefix and the directories folder markers
/// stand for, each sorted by path (held in memory).
pub async fn list_tree(remote: &Remote) -> Result<(Vec<RemoteObject>, Vec<String>), SyncError> {
    let prefix = list_prefix(remote);
    // Classified as they arrive: only the small listed form is held, not every ObjectMeta.
    let (mut objects, mut folders) = (Vec::new(), Vec::new());
    let mut listing = remote.store.list(prefix);
    while let Some(m) = listing.next().await {
        let m = m.map_err(|e| SyncError::store("listing", &remote.prefix, e))?;
        match classify(remote, m, None) {
            Some(Listed::Object(o)) => objects.push(o),
            Some(Listed::Folder(f)) => folders.push(f),
            None => {}
        }
    }
    objects.shrink_to_fit();
    objects.sort_by(|a, b| path_cmp(&a.path, &b.path));
    folders.sort_by(|a, b| path_cmp(a, b));
    Ok((objects, folders))
}

/// The whole listing in path order, sorted through scratch files (see `external_sort`).
async fn sort_externally(
    remote: &Remote,
    held: Option<&Held>,
    run: usize,
) -> Result<Sorted, SyncError> {
    let prefix = list_prefix(remote);
    let mut sort = ExternalSort::with_run(run);
    let mut listing = remote.store.list(prefix);
    while let Some(m) = listing.next().await {
        let m = m.map_err(|e| SyncError::store("listing", &remote.prefix, e))?;
        if let Some(o) = to_object(remote, m, held) {
            sort.push(o)?;
        }
    }
    sort.finish()
}

/// Starts listing into a channel of `capacity`, in path order: streamed as the store
/// returns it, or (`sort`) collected and sorted first (through scratch files, so
/// memory does not grow with the count). An error is the last item.
/// Committed versions seen go to `held` (complete once the channel is closed).
pub fn spawn_listing(
    remote: &Remote,
    sort: bool,
    capacity: usize,
    held: Option<Held>,
) -> mpsc::Receiver<Result<RemoteObject, ListError>> {
    let (tx, rx) = mpsc::channel(capacity);
    let remote = remote.clone();
    tokio::spawn(async move {
        if sort {
            let sorted = match sort_externally(&remote, held.as_ref(), RUN).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(ListError::Failed(e))).await;
                    return;
                }
            };
            for o in sorted {
                let stop = o.is_err();
                if tx.send(o.map_err(ListError::Failed)).await.is_err() || stop {
                    return;
                }
            }
            return;
        }
        let prefix = list_prefix(&remote);
        let mut listing = remote.store.list(prefix);
        let mut last: Option<String> = None;
        while let Some(m) = listing.next().await {
            let item = match m {
                Err(e) => Err(ListError::Failed(SyncError::store(
                    "listing",
                    &remote.prefix,
                    e,
                ))),
                Ok(m) => match to_object(&remote, m, held.as_ref()) {
                    None => continue,
                    Some(o) => match &last {
                        Some(l) if path_cmp(l, &o.path) != std::cmp::Ordering::Less => {
                            Err(ListError::Unsorted {
                                after: l.clone(),
                                key: o.path,
                            })
                        }
                        _ => {
                            last = Some(o.path.clone());
                            Ok(o)
                        }
                    },
                },
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::store::remote::UploadOptions;

    #[tokio::test]
    async fn streamed_listing_is_in_byte_order_without_scribe_objects() {
        let store = Arc::new(InMemory::new());
        let sha = "0123456789abcdef".repeat(4);
        let committed = format!("p/.scribe/committed/{sha}");
        for k in [
            "p/a/x",
            "p/a.b",
            "p/.scribe/manifest.jsonl",
            committed.as_str(),
            "p/.scribe/committed/not-a-digest",
            "p/a",
            "q/other",
        ] {
            store
                .put(&Path::from(k), PutPayload::from_static(b"1"))
                .await
                .unwrap();
        }
        let remote = Remote {
            store,
            prefix: Path::from("p"),
            upload: UploadOptions::default(),
            incomplete: None,
            description: "test".into(),
        };
        assert!(lists_in_order(&remote));
        let held = Held::default();
        let mut rx = spawn_listing(&remote, false, 2, Some(Arc::clone(&held)));
        let mut got = Vec::new();
        while let Some(o) = rx.recv().await {
            got.push(o.map_err(|e| format!("{e:?}")).unwrap().path);
        }
        assert_eq!(got, ["a", "a.b", "a/x"]);
        assert_eq!(
            *held.lock().unwrap(),
            [sha],
            "committed versions are noted, not data"
        );
        let sorted: Vec<String> = list_objects(&remote)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        assert_eq!(sorted, got);
    }

    /// A `type = local` remote with prefix `p` under `root`.
    fn local_remote(root: &std::path::Path) -> Remote {
        Remote {
            store: Arc::new(crate::store::local::LocalStore::new(root).unwrap()),
            prefix: Path::from("p"),
            upload: UploadOptions::default(),
            incomplete: None,
            description: "test".into(),
        }
    }

    #[tokio::test]
    async fn folder_markers_are_directories_for_the_destination_and_nothing_for_the_source() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["p/empty", "p/full", "p/.scribe"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("p/full/f"), b"1").unwrap();
        std::fs::write(dir.path().join("p/.scribe/manifest.jsonl"), b"").unwrap();
        let remote = local_remote(dir.path());
        let (objects, folders) = list_tree(&remote).await.unwrap();
        let objects: Vec<_> = objects.into_iter().map(|o| o.path).collect();
        assert_eq!(objects, ["full/f"]);
        assert_eq!(folders, ["empty", "full"]);
        let mut rx = spawn_listing(&remote, true, 4, None);
        let mut got = Vec::new();
        while let Some(o) = rx.recv().await {
            got.push(o.map_err(|e| format!("{e:?}")).unwrap().path);
        }
        assert_eq!(got, ["full/f"]);
    }

    #[tokio::test]
    async fn a_local_listing_sorted_through_scratch_files_is_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "b/x", "a.b", "a/x/y", "a/x.z", "c", "a-b", "a/w", "é/1", "b.c/d",
        ];
        for n in names {
            let p = dir.path().join("p").join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, n.as_bytes()).unwrap();
        }
        let remote = local_remote(dir.path());
        let mut want: Vec<&str> = names.to_vec();
        want.sort_by(|a, b| path_cmp(a, b));
        for run in [1, 2, 4, RUN] {
            let got: Vec<_> = sort_externally(&remote, None, run)
                .await
                .unwrap()
                .map(|o| o.unwrap())
                .collect();
            let paths: Vec<&str> = got.iter().map(|o| o.path.as_str()).collect();
            assert_eq!(paths, want, "run of {run}");
            assert!(got.iter().all(|o| o.size == o.path.len() as u64));
        }
    }
}
