//! The source's first upload, made visible to destinations: before uploading any
//! data into a remote that has no manifest yet, the source writes a small marker
//! object `<prefix>/.scribe/in-progress` (JSON: when and where it started) and
//! deletes it once the manifest is committed. A destination that finds no manifest
//! can then tell three cases apart instead of restoring a half-uploaded bucket:
//! the marker is there (the first upload is running: retry later), nothing is there
//! (nothing replicated yet: retry later), or only data objects are there (a bucket
//! written by plain rclone: restore it from the listing).

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::SyncError;
use crate::fs::paths::{SCRIBE_DIR, is_scribe_internal, manifest_key, rel_for};
use crate::store::remote::Remote;

/// Name of the marker object inside the Scribe directory.
pub const MARKER_NAME: &str = "in-progress";

/// What the marker says about the upload that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// RFC 3339 time the upload started.
    pub started_at: String,
    /// Host (pod) name of the source that wrote it.
    pub host: String,
}

impl Marker {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("marker serializes")
    }

    /// Lenient on purpose: a marker whose body cannot be read still means
    /// "an upload is in progress"; only the details become unknown.
    pub fn parse(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Self {
            started_at: "unknown".into(),
            host: "unknown".into(),
        })
    }
}

/// Key of the marker under `prefix`.
pub fn marker_key(prefix: &Key) -> Key {
    prefix.clone().join(SCRIBE_DIR).join(MARKER_NAME)
}

/// This host's name for the marker: `HOSTNAME` (the pod name in Kubernetes), else
/// the kernel's, else "unknown".
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Source, before any data is uploaded: writes the marker when the remote has no
/// manifest yet. Returns whether it wrote one (so [`finish`] knows to delete it).
pub async fn begin(remote: &Remote, marker: &Marker) -> Result<bool, SyncError> {
    let manifest = manifest_key(&remote.prefix);
    match remote.store.head(&manifest).await {
        Ok(_) => return Ok(false),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(SyncError::store("checking for the manifest", &manifest, e)),
    }
    let key = marker_key(&remote.prefix);
    remote
        .store
        .put(&key, PutPayload::from(marker.to_bytes()))
        .await
        .map_err(|e| SyncError::store("writing the first-upload marker", &key, e))?;
    info!(key = %key, "first upload: marker written until the manifest is committed");
    Ok(true)
}

/// Source, after the manifest is committed: removes the marker. A failure only
/// warns: with a manifest present, destinations ignore the marker.
pub async fn finish(remote: &Remote) {
    let key = marker_key(&remote.prefix);
    match remote.store.delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            warn!(key = %key, error = %e, "could not delete the first-upload marker (harmless now that the manifest exists)");
        }
    }
}

/// Destination, when the remote has no manifest: fails (retry later) while the
/// source's first upload is in progress or when nothing was replicated at all, and
/// otherwise returns the remote, to be restored from its listing (plain rclone).
pub async fn restorable(remote: &Remote) -> Result<&Remote, SyncError> {
    let key = marker_key(&remote.prefix);
    match remote.store.get(&key).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| SyncError::store("reading the first-upload marker", &key, e))?;
            let m = Marker::parse(&bytes);
            return Err(SyncError::FirstUploadInProgress {
                remote: remote.description.clone(),
                started_at: m.started_at,
                host: m.host,
            });
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(SyncError::store("reading the first-upload marker", &key, e)),
    }
    let prefix = (!remote.prefix.as_ref().is_empty()).then_some(&remote.prefix);
    let mut listing = remote.store.list(prefix);
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| SyncError::store("listing", &remote.prefix, e))?;
        if rel_for(&remote.prefix, &meta.location).is_some_and(|rel| !is_scribe_internal(rel)) {
            return Ok(remote);
        }
    }
    Err(SyncError::NothingReplicated {
        remote: remote.description.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_sits_next_to_the_manifest() {
        let m = Marker {
            started_at: "2026-11-26T05:00:00.000Z".into(),
            host: "src-pod-1".into(),
        };
        assert_eq!(
            String::from_utf8(m.to_bytes()).unwrap(),
            r#"{"startedAt":"2026-11-26T05:00:00.000Z","host":"src-pod-1"}"#
        );
        assert_eq!(Marker::parse(&m.to_bytes()), m);
        assert_eq!(
            marker_key(&Key::from("p/q")).as_ref(),
            "p/q/.scribe/in-progress"
        );
        assert_eq!(marker_key(&Key::default()).as_ref(), ".scribe/in-progress");
    }

    #[test]
    fn unreadable_marker_still_means_in_progress() {
        let m = Marker::parse(b"not json");
        assert_eq!(
            (m.started_at.as_str(), m.host.as_str()),
            ("unknown", "unknown")
        );
    }
}
