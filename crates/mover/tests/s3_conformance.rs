//! The engine's conformance suite against a real S3 API: moto with SigV4 checks,
//! opened through `backend::open` from an rclone.conf section exactly as the binary
//! does. Each case gets its own moto (started on the first `remote()` call, killed
//! when the case's factory is dropped) and a fresh bucket per remote, under a prefix.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::Moto;
use scribe_mover::config::Env;
use scribe_mover::store::remote::{Remote, UploadOptions};
use scribe_mover::store::{OpenArgs, open};
use tokio::sync::OnceCell;

#[derive(Default)]
pub struct S3 {
    moto: OnceCell<Moto>,
    dir: OnceCell<tempfile::TempDir>,
    buckets: AtomicUsize,
}

impl crate::conformance::Factory for S3 {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let moto = self.moto.get_or_init(Moto::start).await;
        let dir = self
            .dir
            .get_or_init(|| async { tempfile::tempdir().unwrap() })
            .await;
        let conf = dir.path().join("rclone.conf");
        std::fs::write(&conf, moto.rclone_section("moto", "")).unwrap();
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let args = OpenArgs {
            config_path: Some(conf),
            section: "moto".into(),
            remote_path: format!("conformance-{n}/replica/db"),
            custom_ca: None,
            create_bucket: true,
        };
        let mut remote = open(&args, &Env::default())
            .await
            .unwrap_or_else(|e| panic!("opening bucket conformance-{n} on moto: {e}"));
        // The cases choose their own part sizes; the rest comes from the section.
        remote.upload = UploadOptions {
            storage_class: remote.upload.storage_class,
            etag_is_not_md5: remote.upload.etag_is_not_md5,
            ..upload
        };
        remote
    }
}

mod s3 {
    crate::conformance_suite!(super::S3::default());
}
