//! Incomplete multipart uploads on S3: ListMultipartUploads (paged by key and
//! upload-id markers) and AbortMultipartUpload through aws-sdk-s3.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput;

use super::s3::BucketClient;
use super::s3_client::{Failure, WholeXml};
use crate::store::remote::IncompleteUploads;

/// Pages read at most (1000 uploads each), so a broken marker cannot loop forever.
const MAX_PAGES: usize = 1000;

pub(super) struct Incomplete {
    client: Arc<BucketClient>,
}

impl Incomplete {
    pub(super) fn new(client: Arc<BucketClient>) -> Self {
        Self { client }
    }

    fn error(&self, action: &'static str, failure: &Failure) -> object_store::Error {
        generic(self.client.failure(action, failure).to_string())
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

/// (key, upload id) pairs of one page.
type Uploads = Vec<(String, String)>;

/// One ListMultipartUploads page: its uploads and the next page's markers.
fn uploads_of(
    out: &ListMultipartUploadsOutput,
) -> Result<(Uploads, Option<(String, String)>), String> {
    let mut uploads = Vec::new();
    for u in out.uploads() {
        match (u.key(), u.upload_id()) {
            (Some(k), Some(id)) => uploads.push((k.to_owned(), id.to_owned())),
            _ => return Err("an upload without Key or UploadId".into()),
        }
    }
    let next = if out.is_truncated() == Some(true) {
        let key = out.next_key_marker().unwrap_or_default();
        let id = out.next_upload_id_marker().unwrap_or_default();
        if key.is_empty() && id.is_empty() {
            return Err("truncated upload listing without markers".into());
        }
        Some((key.to_owned(), id.to_owned()))
    } else {
        None
    };
    Ok((uploads, next))
}

#[async_trait]
impl IncompleteUploads for Incomplete {
    async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, object_store::Error> {
        let mut all = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let (key_marker, id_marker) = markers.clone().unzip();
            let out = self
                .client
                .client
                .list_multipart_uploads()
                .bucket(&self.client.settings.bucket)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .customize()
                .interceptor(WholeXml("ListMultipartUploadsResult"))
                .send()
                .await
                .map_err(|e| self.error("listing multipart uploads", &Failure::of(&e)))?;
            let (page, next) = uploads_of(&out).map_err(generic)?;
            all.extend(page.into_iter().filter(|(k, _)| k.starts_with(prefix)));
            match next {
                Some(m) => markers = Some(m),
                None => return Ok(all),
            }
        }
        Err(generic("multipart upload listing never ended".into()))
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), object_store::Error> {
        match self
            .client
            .client
            .abort_multipart_upload()
            .bucket(&self.client.settings.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = Failure::of(&e);
                // Already gone (aborted or completed meanwhile): nothing left to drop.
                if failure.status() == Some(404) {
                    return Ok(());
                }
                Err(self.error("aborting multipart upload", &failure))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::MultipartUpload;

    fn upload(key: &str, id: &str) -> MultipartUpload {
        MultipartUpload::builder().key(key).upload_id(id).build()
    }

    #[test]
    fn pages_of_uploads_carry_their_markers() {
        let out = ListMultipartUploadsOutput::builder()
            .is_truncated(true)
            .next_key_marker("p/b")
            .next_upload_id_marker("id2")
            .uploads(upload("p/a&x", "id1"))
            .uploads(upload("p/b", "id2"))
            .build();
        let (uploads, next) = uploads_of(&out).unwrap();
        assert_eq!(
            uploads,
            vec![("p/a&x".into(), "id1".into()), ("p/b".into(), "id2".into())]
        );
        assert_eq!(next, Some(("p/b".into(), "id2".into())));
        let last = ListMultipartUploadsOutput::builder()
            .is_truncated(false)
            .build();
        assert_eq!(uploads_of(&last).unwrap(), (vec![], None));
        let broken = ListMultipartUploadsOutput::builder()
            .uploads(MultipartUpload::builder().key("k").build())
            .build();
        assert!(uploads_of(&broken).is_err());
        let no_markers = ListMultipartUploadsOutput::builder()
            .is_truncated(true)
            .build();
        assert!(uploads_of(&no_markers).is_err());
    }
}
