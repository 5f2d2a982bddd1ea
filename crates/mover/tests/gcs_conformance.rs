//! The engine's conformance suite against fake-gcs-server (the Google Cloud Storage JSON API emulator),
//! opened through `store::open` from a `type = google cloud storage` rclone.conf section
//! exactly as the binary does. Each case gets its own fake-gcs-server (started on the
//! first `remote()` call, killed when the case's factory is dropped) and a fresh
//! bucket per remote, created by the open, under a prefix.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::fakegcs::FakeGcs;
use scribe_mover::config::Env;
use scribe_mover::store::remote::{Remote, UploadOptions};
use scribe_mover::store::{OpenArgs, open};
use tokio::sync::OnceCell;

#[derive(Default)]
pub struct Gcs {
    server: OnceCell<FakeGcs>,
    dir: OnceCell<tempfile::TempDir>,
    buckets: AtomicUsize,
}

impl crate::conformance::Factory for Gcs {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let server = self.server.get_or_init(FakeGcs::start).await;
        let dir = self
            .dir
            .get_or_init(|| async { tempfile::tempdir().unwrap() })
            .await;
        let conf = dir.path().join("rclone.conf");
        std::fs::write(&conf, server.rclone_section("gcs", "")).unwrap();
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let args = OpenArgs {
            config_path: Some(conf),
            section: "gcs".into(),
            remote_path: format!("conformance-{n}/replica/db"),
            custom_ca: None,
            create_bucket: true,
        };
        let mut remote = open(&args, &Env::default())
            .await
            .unwrap_or_else(|e| panic!("opening bucket conformance-{n} on fake-gcs-server: {e}"));
        // The cases choose their own part sizes; the rest comes from the section.
        remote.upload = UploadOptions {
            storage_class: remote.upload.storage_class,
            etag_is_not_md5: remote.upload.etag_is_not_md5,
            mtime_format: remote.upload.mtime_format,
            ..upload
        };
        remote
    }
}

mod gcs {
    crate::conformance_suite!(super::Gcs::default());
}
