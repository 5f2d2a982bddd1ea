//! The conformance suite against the `type = local` backend as the binary opens it
//! (`LocalStore`: object_store's `LocalFileSystem` for reads, the mover's own writes).

use std::sync::{Arc, Mutex};

use object_store::path::Path;
use scribe_mover::store::local::LocalStore;
use scribe_mover::store::remote::{Remote, UploadOptions};

#[derive(Default)]
pub struct Local(Mutex<Vec<tempfile::TempDir>>);

impl crate::conformance::Factory for Local {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        self.0.lock().unwrap().push(dir);
        Remote {
            store: Arc::new(store),
            prefix: Path::default(),
            upload,
            incomplete: None,
            description: "local store".into(),
        }
    }
}

mod local_store {
    crate::conformance_suite!(super::Local::default());
}
