//! Garbage a killed source run leaves behind: incomplete multipart uploads under
//! the prefix (their parts are stored, and billed, until aborted). One source
//! writes a prefix at a time, so every incomplete upload found there when a source
//! run starts is a dead run's, and is aborted before this run uploads anything.
//! Failing to list or abort is logged and never fails the run.

use tracing::{info, warn};

use crate::store::remote::Remote;

/// Aborts every incomplete multipart upload under the remote's prefix; returns how
/// many were aborted.
pub async fn abort_incomplete_uploads(remote: &Remote) -> usize {
    let Some(incomplete) = &remote.incomplete else {
        return 0;
    };
    let prefix = if remote.prefix.as_ref().is_empty() {
        String::new()
    } else {
        format!("{}/", remote.prefix)
    };
    let uploads = match incomplete.list(&prefix).await {
        Ok(u) => u,
        Err(e) => {
            warn!(error = %e, "cannot list incomplete multipart uploads; leaving any there");
            return 0;
        }
    };
    let mut aborted = 0;
    for (key, id) in uploads {
        match incomplete.abort(&key, &id).await {
            Ok(()) => {
                info!(key = %key, upload_id = %id, "aborted an incomplete multipart upload left by an earlier run");
                aborted += 1;
            }
            Err(e) => {
                warn!(key = %key, upload_id = %id, error = %e, "cannot abort an incomplete multipart upload")
            }
        }
    }
    aborted
}
