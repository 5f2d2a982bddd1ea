//! Large uploads to Google Cloud Storage: one resumable session per object
//! (started by [`super::gcs_store::GcsJson`] with the object's metadata), fed by
//! the parts the transfer hands over. Parts are sent strictly in the order they
//! were handed over (each, spawned, waits for its turn) in chunks that are multiples of
//! 256 KiB, the remainder carried into the next part and sent whole at completion.
//! Aborting deletes the session. The MD5 of everything handed over is compared
//! with the stored object's at completion; a mismatch fails the upload.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use md5::{Digest as _, Md5};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use reqwest::{StatusCode, Url};
use tokio::sync::watch;

use super::gcs_object::Object;
use super::gcs_settings::CHUNK_GRANULE;
use super::gcs_store::{GcsJson, check_md5, generic, status_error};

/// Bytes sent so far and the tail not yet a whole granule.
#[derive(Default)]
pub(super) struct Session {
    sent: u64,
    /// MD5 of every byte handed over, checked against the stored object's.
    md5: Md5,
    carry: Vec<u8>,
    failed: Option<String>,
}

/// One resumable upload session; parts are sent strictly in the order they were
/// handed over (each waits for its turn), in granule-sized chunks.
pub(super) struct Resumable {
    store: GcsJson,
    path: String,
    session: Url,
    state: Arc<tokio::sync::Mutex<Session>>,
    /// Index of the part whose turn it is.
    turn: Arc<watch::Sender<usize>>,
    parts: usize,
}

impl Resumable {
    /// An upload into the session at `session` for the object at `path`.
    pub(super) fn new(store: GcsJson, path: String, session: Url) -> Self {
        let (turn, _) = watch::channel(0usize);
        Self {
            store,
            path,
            session,
            state: Arc::new(tokio::sync::Mutex::new(Session::default())),
            turn: Arc::new(turn),
            parts: 0,
        }
    }
}

impl std::fmt::Debug for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Resumable {
    /// PUTs `data` at offset `start`; `total` is set on the last chunk. Returns the reply.
    async fn put_chunk(
        store: &GcsJson,
        session: &Url,
        path: &str,
        start: u64,
        data: Bytes,
        total: Option<u64>,
    ) -> Result<Option<Object>, object_store::Error> {
        let range = match (data.is_empty(), total) {
            (true, Some(t)) => format!("bytes */{t}"),
            (false, Some(t)) => format!("bytes {start}-{}/{t}", start + data.len() as u64 - 1),
            (_, None) => format!("bytes {start}-{}/*", start + data.len() as u64 - 1),
        };
        let reply = store
            .send(|c| {
                c.put(session.clone())
                    .header("content-range", &range)
                    .body(data.clone())
            })
            .await?;
        let status = reply.status();
        let body = reply.bytes().await.map_err(|e| generic(e.to_string()))?;
        match status.as_u16() {
            308 if total.is_none() => Ok(None),
            200 | 201 if total.is_some() => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| generic(format!("{path}: bad JSON reply: {e}"))),
            _ => Err(status_error(path, status, &String::from_utf8_lossy(&body))),
        }
    }
}

#[async_trait::async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = self.parts;
        self.parts += 1;
        let (store, session, path) = (self.store.clone(), self.session.clone(), self.path.clone());
        let (state, turn) = (Arc::clone(&self.state), Arc::clone(&self.turn));
        // Spawned, so a part goes out in its turn whichever future the caller
        // awaits first (waiting on a later part must not starve the earlier ones).
        let task = tokio::spawn(async move {
            let mut rx = turn.subscribe();
            rx.wait_for(|t| *t == index)
                .await
                .map_err(|_| generic("upload dropped"))?;
            let mut s = state.lock().await;
            let result = async {
                if let Some(f) = &s.failed {
                    return Err(generic(format!("an earlier part failed: {f}")));
                }
                for chunk in &data {
                    s.md5.update(chunk);
                    s.carry.extend_from_slice(chunk);
                }
                let whole = (s.carry.len() as u64 / CHUNK_GRANULE * CHUNK_GRANULE) as usize;
                if whole > 0 {
                    let rest = s.carry.split_off(whole);
                    let chunk = Bytes::from(std::mem::replace(&mut s.carry, rest));
                    Self::put_chunk(&store, &session, &path, s.sent, chunk, None).await?;
                    s.sent += whole as u64;
                }
                Ok(())
            }
            .await;
            if let Err(e) = &result {
                s.failed.get_or_insert_with(|| e.to_string());
            }
            drop(s);
            turn.send_replace(index + 1);
            result
        });
        Box::pin(async move {
            task.await
                .map_err(|e| generic(format!("upload task failed: {e}")))?
        })
    }

    async fn complete(&mut self) -> Result<PutResult, object_store::Error> {
        let mut rx = self.turn.subscribe();
        let parts = self.parts;
        rx.wait_for(|t| *t == parts)
            .await
            .map_err(|_| generic("upload dropped"))?;
        let mut s = self.state.lock().await;
        if let Some(f) = &s.failed {
            return Err(generic(format!("a part failed: {f}")));
        }
        let tail = Bytes::from(std::mem::take(&mut s.carry));
        let total = s.sent + tail.len() as u64;
        let object = Self::put_chunk(
            &self.store,
            &self.session,
            &self.path,
            s.sent,
            tail,
            Some(total),
        )
        .await?
        .ok_or_else(|| generic("upload finished without an object"))?;
        let sent = BASE64.encode(std::mem::take(&mut s.md5).finalize());
        check_md5(&self.path, object.md5_hash.as_deref(), &sent)?;
        Ok(PutResult {
            e_tag: object.etag,
            version: object.generation,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> Result<(), object_store::Error> {
        let session = self.session.clone();
        let reply = self.store.send(|c| c.delete(session.clone())).await?;
        // 499 is how GCS acknowledges a cancelled session.
        let status = reply.status();
        if status.is_success() || status.as_u16() == 499 || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(status_error(
            &self.path,
            status,
            &reply.text().await.unwrap_or_default(),
        ))
    }
}
