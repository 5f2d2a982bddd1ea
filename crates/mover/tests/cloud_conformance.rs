//! The engine's conformance suite against the cloud emulators — Azurite (Azure
//! Blob) and fake-gcs-server (the Google Cloud Storage JSON API) — each opened
//! through `store::open` from an rclone.conf section (`type = azureblob`,
//! `type = google cloud storage`) exactly as the binary does. Each case gets its
//! own emulator (started on the first `remote()` call, killed when the case's
//! factory is dropped) and a fresh container or bucket per remote, created by the
//! open, under a prefix.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::azurite::Azurite;
use crate::support::fakegcs::FakeGcs;
use scribe_mover::config::Env;
use scribe_mover::store::remote::{Remote, UploadOptions};
use scribe_mover::store::{OpenArgs, open};
use tokio::sync::OnceCell;

/// An emulator the suite runs against.
pub trait Emulator: Send + Sync + Sized {
    /// The emulator's name, in failure messages.
    const NAME: &'static str;
    fn start() -> impl Future<Output = Self> + Send;
    /// An rclone.conf section named `name` for this emulator.
    fn rclone_section(&self, name: &str) -> String;
}

impl Emulator for Azurite {
    const NAME: &'static str = "azurite";
    fn start() -> impl Future<Output = Self> + Send {
        Azurite::start()
    }
    fn rclone_section(&self, name: &str) -> String {
        Azurite::rclone_section(self, name, "")
    }
}

impl Emulator for FakeGcs {
    const NAME: &'static str = "fake-gcs-server";
    fn start() -> impl Future<Output = Self> + Send {
        FakeGcs::start()
    }
    fn rclone_section(&self, name: &str) -> String {
        FakeGcs::rclone_section(self, name, "")
    }
}

/// Fresh remotes on one lazily started emulator `E`.
pub struct Emulated<E> {
    server: OnceCell<E>,
    dir: OnceCell<tempfile::TempDir>,
    buckets: AtomicUsize,
}

impl<E> Default for Emulated<E> {
    fn default() -> Self {
        Self {
            server: OnceCell::new(),
            dir: OnceCell::new(),
            buckets: AtomicUsize::new(0),
        }
    }
}

impl<E: Emulator> crate::conformance::Factory for Emulated<E> {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let server = self.server.get_or_init(E::start).await;
        let dir = self
            .dir
            .get_or_init(|| async { tempfile::tempdir().unwrap() })
            .await;
        let conf = dir.path().join("rclone.conf");
        std::fs::write(&conf, server.rclone_section("cloud")).unwrap();
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let args = OpenArgs {
            config_path: Some(conf),
            section: "cloud".into(),
            remote_path: format!("conformance-{n}/replica/db"),
            custom_ca: None,
            create_bucket: true,
        };
        let mut remote = open(&args, &Env::default())
            .await
            .unwrap_or_else(|e| panic!("opening conformance-{n} on {}: {e}", E::NAME));
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

mod azure {
    crate::conformance_suite!(super::Emulated::<crate::support::azurite::Azurite>::default());
}

mod gcs {
    crate::conformance_suite!(super::Emulated::<crate::support::fakegcs::FakeGcs>::default());
}
