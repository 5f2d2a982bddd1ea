//! The conformance suite against object_store's InMemory (under a prefix) and
//! LocalFileSystem (which stores no metadata and has non-MD5 ETags).

use std::sync::{Arc, Mutex};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use scribe_mover::store::remote::{Remote, UploadOptions};

pub struct Memory;

impl crate::conformance::Factory for Memory {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        Remote {
            store: Arc::new(InMemory::new()),
            prefix: Path::from("replica/db"),
            upload,
            incomplete: None,
            description: "in-memory".into(),
        }
    }
}

#[derive(Default)]
pub struct Local(Mutex<Vec<tempfile::TempDir>>);

impl crate::conformance::Factory for Local {
    async fn remote(&self, upload: UploadOptions) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        self.0.lock().unwrap().push(dir);
        Remote {
            store: Arc::new(store),
            prefix: Path::default(),
            upload,
            incomplete: None,
            description: "local".into(),
        }
    }
}

mod in_memory {
    crate::conformance_suite!(super::Memory);
}

mod local_fs {
    crate::conformance_suite!(super::Local::default());
}
