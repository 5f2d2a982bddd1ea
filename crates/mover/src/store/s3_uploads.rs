//! Incomplete multipart uploads on S3, which object_store can abort
//! (`MultipartStore::abort_multipart`) but not list: ListMultipartUploads is our
//! own signed request (see `s3::BucketClient`), paged by key and upload-id markers.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use reqwest::Method;

use super::s3::BucketClient;
use super::s3_list::field;
use super::sigv4::uri_encode;
use crate::store::remote::IncompleteUploads;

/// Attempts for one page of the listing.
const ATTEMPTS: u32 = 4;
/// Pages read at most (1000 uploads each), so a broken marker cannot loop forever.
const MAX_PAGES: usize = 1000;

pub(super) struct Incomplete {
    store: Arc<AmazonS3>,
    client: Arc<BucketClient>,
}

impl Incomplete {
    pub(super) fn new(store: Arc<AmazonS3>, client: Arc<BucketClient>) -> Self {
        Self { store, client }
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

/// One ListMultipartUploads page: (key, upload id) pairs and the next markers.
/// (key, upload id) pairs; also the shape of the next page's markers.
type Uploads = Vec<(String, String)>;

fn parse_uploads(body: &str) -> Result<(Uploads, Option<(String, String)>), String> {
    if !body.trim_end().ends_with("</ListMultipartUploadsResult>") {
        return Err("multipart upload listing is incomplete (cut short)".into());
    }
    let mut uploads = Vec::new();
    for chunk in body.split("<Upload>").skip(1) {
        let chunk = chunk.split("</Upload>").next().unwrap_or_default();
        match (field(chunk, "Key"), field(chunk, "UploadId")) {
            (Some(k), Some(id)) => uploads.push((k, id)),
            _ => return Err("an upload without Key or UploadId".into()),
        }
    }
    let next = if field(body, "IsTruncated").as_deref() == Some("true") {
        let key = field(body, "NextKeyMarker").unwrap_or_default();
        let id = field(body, "NextUploadIdMarker").unwrap_or_default();
        if key.is_empty() && id.is_empty() {
            return Err("truncated upload listing without markers".into());
        }
        Some((key, id))
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
            let mut query = vec![("uploads".to_owned(), String::new())];
            if !prefix.is_empty() {
                query.push(("prefix".to_owned(), uri_encode(prefix)));
            }
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_owned(), uri_encode(key)));
                query.push(("upload-id-marker".to_owned(), uri_encode(id)));
            }
            query.sort();
            let reply = self
                .client
                .send_with_attempts(
                    "listing multipart uploads",
                    ATTEMPTS,
                    Method::GET,
                    &query,
                    &[],
                    Vec::new(),
                )
                .await
                .map_err(|e| generic(e.to_string()))?;
            if !reply.status.is_success() {
                let e = self.client.failure("listing multipart uploads", &reply);
                return Err(generic(e.to_string()));
            }
            let (page, next) = parse_uploads(&reply.body).map_err(generic)?;
            all.extend(page.into_iter().filter(|(k, _)| k.starts_with(prefix)));
            match next {
                Some(m) => markers = Some(m),
                None => return Ok(all),
            }
        }
        Err(generic("multipart upload listing never ended".into()))
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), object_store::Error> {
        let path = Path::parse(key).map_err(|e| generic(format!("key {key:?}: {e}")))?;
        self.store
            .abort_multipart(&path, &upload_id.to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_uploads_parse_with_markers() {
        let body = "<?xml version=\"1.0\"?><ListMultipartUploadsResult><Bucket>b</Bucket>\
            <IsTruncated>true</IsTruncated><NextKeyMarker>p/b</NextKeyMarker>\
            <NextUploadIdMarker>id2</NextUploadIdMarker>\
            <Upload><Key>p/a&amp;x</Key><UploadId>id1</UploadId></Upload>\
            <Upload><Key>p/b</Key><UploadId>id2</UploadId></Upload></ListMultipartUploadsResult>";
        let (uploads, next) = parse_uploads(body).unwrap();
        assert_eq!(
            uploads,
            vec![("p/a&x".into(), "id1".into()), ("p/b".into(), "id2".into())]
        );
        assert_eq!(next, Some(("p/b".into(), "id2".into())));
        let last = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
            </ListMultipartUploadsResult>";
        assert_eq!(parse_uploads(last).unwrap(), (vec![], None));
        assert!(parse_uploads("<ListMultipartUploadsResult><Upload>").is_err());
    }
}
