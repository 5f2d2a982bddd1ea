//! Running Debian's rclone (1.60) for interoperability tests. `AWS_CA_BUNDLE`
//! is removed from its environment: rclone 1.60 fails while it is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The rclone binary from `PATH`; panics telling how to install it.
pub fn rclone_binary() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("rclone"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("rclone not found on PATH: run hack/setup-test-deps.sh"))
}

/// `rclone --config <config> <args…>` with a clean rclone environment plus `env`.
pub fn rclone(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(rclone_binary());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("AWS_CA_BUNDLE");
    for (name, _) in std::env::vars() {
        if name.starts_with("RCLONE_") {
            cmd.env_remove(name);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running rclone")
}

/// `rclone config dump` as JSON: section → key → value.
pub fn config_dump(config: &Path, env: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let out = rclone(config, &["config", "dump"], env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // rclone 1.60 logs load failures and still exits 0 with an empty dump.
    if !out.status.success() || stderr.contains("Failed to load config file") {
        return Err(stderr);
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
