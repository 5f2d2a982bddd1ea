//! Shared test harness for the mover's integration tests: a moto S3 server in
//! SigV4-checking mode, a fault-injecting HTTP proxy, a throwaway TLS CA, and
//! helpers to run real rclone. Include it with `mod support;` from any file under
//! crates/mover/tests/.
// Each test binary uses a different subset of the harness.

pub mod azurite;
pub mod fakegcs;
pub mod moto;
pub mod mover;
pub mod process;
pub mod proxied;
pub mod proxy;
pub mod rclone;
pub mod tls;

#[allow(unused_imports)]
pub use moto::Moto;
#[allow(unused_imports)]
pub use proxy::{FaultKind, FaultProxy};

/// A free TCP port on 127.0.0.1, never the same one twice in this process (the
/// kernel may hand a just-released port to the next caller, and tests run in
/// parallel). The listener is dropped, so another process could still take it:
/// [`Moto::start`] retries on a fresh port when that happens.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A fresh remote in a directory (`type = local` through object_store's
/// `LocalFileSystem`), under the prefix `replica/db`.
pub fn local_remote(dir: &tempfile::TempDir) -> scribe_mover::store::remote::Remote {
    scribe_mover::store::remote::Remote {
        store: std::sync::Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
        ),
        prefix: object_store::path::Path::from("replica/db"),
        upload: scribe_mover::store::remote::UploadOptions::default(),
        incomplete: None,
        description: "local".into(),
    }
}
