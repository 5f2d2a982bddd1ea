//! Running Debian's rclone (1.60) for interoperability tests. `AWS_CA_BUNDLE`
//! is removed from its environment: rclone 1.60 fails while it is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::conformance::tree::{bytes, set_mtime, write};

/// rclone carries an mtime as a decimal float string (S3) or RFC 3339 (Azure,
/// GCS), and 1.60 rounds what it sets locally to a fraction of a microsecond.
pub const RCLONE_MTIME_TOLERANCE_NS: i128 = 1_000;

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

/// [`rclone`] in UTC (dates in listings are comparable), asserting success;
/// returns stderr followed by stdout.
pub fn rclone_ok(config: &Path, args: &[&str]) -> String {
    let out = rclone(config, args, &[("TZ", "UTC")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "rclone {args:?} failed ({}):\n{stderr}",
        out.status
    );
    stderr + &String::from_utf8_lossy(&out.stdout)
}

/// The interop tree: regular files only (rclone copies no symlinks), with
/// nanosecond mtimes, odd names, an empty file and one 12 MiB file (multipart
/// over a 5 MiB part size).
pub fn interop_tree(root: &Path) {
    let files: [(&str, Vec<u8>); 7] = [
        ("top.txt", b"top level".to_vec()),
        ("dir/b.bin", bytes(1, 100_000)),
        ("dir/sub/deeper/c", b"c".to_vec()),
        (
            "unicodé/日本語 ファイル.txt",
            "こんにちは".as_bytes().to_vec(),
        ),
        ("with space/a  b .txt", b"spaces".to_vec()),
        ("empty", Vec::new()),
        ("large/twelve-mib.bin", bytes(7, 12 * 1024 * 1024 + 5)),
    ];
    write_with_mtimes(root, &files);
}

/// Writes each file under `root` with its own nanosecond mtime (1,000 s apart).
pub fn write_with_mtimes(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (i, (rel, content)) in files.iter().enumerate() {
        write(root, rel, content);
        set_mtime(
            root,
            rel,
            1_600_000_000 + i as i64 * 1000,
            123_456_789 + i as u32,
        );
    }
}
