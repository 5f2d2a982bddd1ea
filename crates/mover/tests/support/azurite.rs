//! Azurite (Microsoft's Azure Storage emulator, npm package `azurite`) serving the
//! blob API on 127.0.0.1, in memory, with the emulator's well-known account and
//! key; plus a container SAS for clients (rclone 1.60) that cannot be pointed at
//! another port through `use_emulator`. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use scribe_mover::store::azure_settings::{EMULATOR_ACCOUNT, EMULATOR_KEY};

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the blob service URL (path style).
    pub service: String,
}

/// Where azurite-blob is: `$SCRIBE_AZURITE_BLOB`, the copy hack/setup-test-deps.sh
/// installs under `.tools/azurite`, or `PATH`.
fn azurite_binary() -> PathBuf {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/azurite/node_modules/.bin/azurite-blob");
    let mut candidates: Vec<PathBuf> = std::env::var_os("SCRIBE_AZURITE_BLOB")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(tools.clone());
    candidates.extend(
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("azurite-blob")),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "azurite-blob not found (looked at $SCRIBE_AZURITE_BLOB, {}, and PATH): run hack/setup-test-deps.sh",
                tools.display()
            )
        })
}

impl Azurite {
    /// Starts Azurite on a free port (retrying on a fresh port if it loses the race).
    pub async fn start() -> Azurite {
        super::process::on_fresh_ports("azurite", Self::try_start).await
    }

    async fn try_start() -> Result<Azurite, String> {
        let port = super::free_port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut command = Command::new(azurite_binary());
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            // In memory; the directory only catches anything written to the cwd.
            .current_dir(dir.path())
            .args([
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",
            ]);
        let mut a = Azurite {
            child: super::process::spawn_quiet(command),
            _dir: dir,
            service: format!("http://127.0.0.1:{port}/{EMULATOR_ACCOUNT}"),
        };
        let ready = || super::process::listening(port);
        super::process::wait_until(
            "azurite",
            &mut a.child,
            port,
            Duration::from_secs(60),
            ready,
        )
        .await?;
        Ok(a)
    }

    /// An rclone.conf section for this emulator with the shared key.
    pub fn rclone_section(&self, name: &str, extra: &str) -> String {
        format!(
            "[{name}]\ntype = azureblob\naccount = {EMULATOR_ACCOUNT}\nkey = {EMULATOR_KEY}\nendpoint = {}\n{extra}",
            self.service
        )
    }

    /// A service SAS URL for `container` with read/add/create/write/delete/list
    /// rights for a day (what rclone's `sas_url` takes).
    pub fn container_sas_url(&self, container: &str) -> String {
        let version = "2021-08-06";
        let start = (chrono::Utc::now() - chrono::Duration::minutes(5))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let expiry = (chrono::Utc::now() + chrono::Duration::days(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let permissions = "racwdl";
        let resource = format!("/blob/{EMULATOR_ACCOUNT}/{container}");
        // sp, st, se, canonical resource, si, sip, spr, sv, sr, snapshot, ses,
        // rscc, rscd, rsce, rscl, rsct.
        let to_sign = format!(
            "{permissions}\n{start}\n{expiry}\n{resource}\n\n\nhttp,https\n{version}\nc\n\n\n\n\n\n\n"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(EMULATOR_KEY)
            .unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut url = reqwest::Url::parse(&format!("{}/{container}", self.service)).unwrap();
        url.query_pairs_mut()
            .append_pair("sv", version)
            .append_pair("st", &start)
            .append_pair("se", &expiry)
            .append_pair("sr", "c")
            .append_pair("sp", permissions)
            .append_pair("spr", "http,https")
            .append_pair("sig", &sig);
        url.to_string()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
