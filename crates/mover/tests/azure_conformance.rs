//! The engine's conformance suite against Azurite (the Azure Storage emulator),
//! opened through `store::open` from a `type = azureblob` rclone.conf section
//! exactly as the binary does. Each case gets its own Azurite (started on the
//! first `remote()` call, killed when the case's factory is dropped) and a fresh
//! container per remote, created by the open, under a prefix.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::azurite::Azurite;
use scribe_mover::config::Env;
use scribe_mover::store::remote::{Remote, UploadOptions};
use scribe_mover::store::{OpenArgs, open};
use tokio::sync::OnceCell;

#[derive(Default)]
pub struct Azure {
    azurite: OnceCell<Azurite>,
    dir: OnceCell<tempfile::TempDir>,
    containers: AtomicUsize,
}

impl crate::conformance::Factory for Azure {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let azurite = self.azurite.get_or_init(Azurite::start).await;
        let dir = self
            .dir
            .get_or_init(|| async { tempfile::tempdir().unwrap() })
            .await;
        let conf = dir.path().join("rclone.conf");
        std::fs::write(&conf, azurite.rclone_section("az", "")).unwrap();
        let n = self.containers.fetch_add(1, Ordering::SeqCst);
        let args = OpenArgs {
            config_path: Some(conf),
            section: "az".into(),
            remote_path: format!("conformance-{n}/replica/db"),
            custom_ca: None,
            create_bucket: true,
        };
        let mut remote = open(&args, &Env::default())
            .await
            .unwrap_or_else(|e| panic!("opening container conformance-{n} on azurite: {e}"));
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
    crate::conformance_suite!(super::Azure::default());
}
