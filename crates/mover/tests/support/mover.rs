//! Running the real `scribe-mover` binary in a clean environment and reading what
//! it reports (exit code, the one `SCRIBE_SUMMARY` line, the termination log), plus
//! the views tests compare: regular files with content hash and mtime, and a
//! bucket's objects listed straight from the S3 server.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures::TryStreamExt;
use object_store::ObjectStore;
use scribe_mover::config::Env;
use scribe_mover::store::{OpenArgs, open};
use sha2::{Digest, Sha256};

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scribe-mover"))
}

/// Where and how to run one sync.
#[derive(Debug, Clone)]
pub struct Job {
    pub config: PathBuf,
    pub section: String,
    pub remote_path: String,
    pub mount: PathBuf,
    /// Extra flags after the direction.
    pub args: Vec<String>,
    /// Extra environment (the rest is cleared).
    pub env: Vec<(String, String)>,
    /// A program (and its arguments) that runs the binary, e.g. `setpriv …`.
    pub wrapper: Vec<String>,
}

impl Job {
    pub fn new(config: &Path, section: &str, remote_path: &str, mount: &Path) -> Job {
        Job {
            config: config.to_owned(),
            section: section.to_owned(),
            remote_path: remote_path.to_owned(),
            mount: mount.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: &str) -> Job {
        self.args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Job {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Run the binary through `program args…` (which must exec it).
    pub fn wrapped(mut self, program_and_args: &[&str]) -> Job {
        self.wrapper = program_and_args.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The command for `direction`, with only `PATH` and `TERMINATION_LOG` inherited
    /// or set (so no `RCLONE_*`, `AWS_*` or `SCRIBE_*` of the test environment leaks in).
    pub fn command(&self, direction: &str, termination_log: &Path) -> tokio::process::Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args).arg(binary());
                cmd
            }
            None => tokio::process::Command::new(binary()),
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERMINATION_LOG", termination_log)
            .arg(direction)
            .arg("--config")
            .arg(&self.config)
            .arg("--section")
            .arg(&self.section)
            .arg("--remote-path")
            .arg(&self.remote_path)
            .arg("--mount-path")
            .arg(&self.mount)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    pub async fn source(&self) -> Run {
        self.run("source").await
    }

    pub async fn destination(&self) -> Run {
        self.run("destination").await
    }

    pub async fn run(&self, direction: &str) -> Run {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("termination-log");
        let out = self
            .command(direction, &log)
            .output()
            .await
            .expect("running scribe-mover");
        Run::from_output(out, &log)
    }
}

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The JSON of the `SCRIBE_SUMMARY` line.
    pub summary: serde_json::Value,
    /// What the binary wrote to TERMINATION_LOG.
    pub termination_log: String,
}

impl Run {
    /// Parses the output, asserting the contract: stdout is exactly one
    /// `SCRIBE_SUMMARY {json}` line and the termination log holds the same JSON.
    pub fn from_output(out: std::process::Output, log: &Path) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must be the summary line only:\n{stdout}\nstderr:\n{stderr}"
        );
        let json = lines[0]
            .strip_prefix("SCRIBE_SUMMARY ")
            .unwrap_or_else(|| panic!("no SCRIBE_SUMMARY prefix in {stdout:?}; stderr:\n{stderr}"));
        let summary: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {json}"));
        let termination_log = std::fs::read_to_string(log).unwrap_or_default();
        assert_eq!(
            termination_log.trim(),
            json,
            "termination log must hold the summary JSON"
        );
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            summary,
            termination_log,
        }
    }

    /// Asserts exit 0 and a Successful summary, showing the output otherwise.
    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.code == 0 && self.summary["result"] == "Successful",
            "expected success, got exit {}: {}\nstderr:\n{}",
            self.code,
            self.summary,
            self.tail()
        );
        self
    }

    /// The summary's `error` field ("" when absent).
    pub fn error(&self) -> &str {
        self.summary["error"].as_str().unwrap_or_default()
    }

    /// Asserts a failed run: this exit code, a Failed summary whose error is one
    /// line containing every one of `needles`.
    pub fn assert_failed(&self, code: i32, needles: &[&str]) -> &Run {
        let error = self.error();
        assert!(
            self.code == code && self.summary["result"] == "Failed",
            "expected exit {code}, got {}: {}\nstderr:\n{}",
            self.code,
            self.summary,
            self.tail()
        );
        assert!(
            !error.is_empty() && !error.contains('\n'),
            "one-line error: {error:?}"
        );
        for needle in needles {
            assert!(error.contains(needle), "error lacks {needle:?}: {error}");
        }
        self
    }

    /// Asserts `secret` appears nowhere in what the run printed or wrote.
    pub fn assert_no_secret(&self, secret: &str) {
        for (what, text) in [
            ("stdout", &self.stdout),
            ("stderr", &self.stderr),
            ("termination log", &self.termination_log),
        ] {
            assert!(!text.contains(secret), "secret leaked on {what}: {text}");
        }
    }

    pub fn count(&self, field: &str) -> u64 {
        self.summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {}", self.summary))
    }

    /// The last lines of stderr, for assertion messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A regular file as rclone can reproduce it: content and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    pub size: u64,
    pub sha256: String,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// Every regular file under `root` (symlinks, directories and the destination's
/// staging directory left out), by relative path.
pub fn files(root: &Path) -> BTreeMap<String, FileView> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == ".scribe-staging"))
    {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let meta = entry.metadata().unwrap();
        let rel = entry.path().strip_prefix(root).unwrap();
        out.insert(
            rel.to_str().unwrap().to_owned(),
            FileView {
                size: meta.len(),
                sha256: hex::encode(Sha256::digest(std::fs::read(entry.path()).unwrap())),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            },
        );
    }
    out
}

/// Asserts the same files with the same content, and mtimes equal within
/// `tolerance_ns` (rclone carries mtimes as a float string: ~0.2 µs precision).
pub fn assert_same_files(
    expected: &BTreeMap<String, FileView>,
    actual: &BTreeMap<String, FileView>,
    tolerance_ns: i128,
) {
    let mut diffs = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => diffs.push(format!("{path}: missing")),
            Some(got) if got.sha256 != want.sha256 || got.size != want.size => {
                diffs.push(format!("{path}: content differs ({want:?} vs {got:?})"))
            }
            Some(got) if (got.mtime_ns - want.mtime_ns).abs() > tolerance_ns => diffs.push(
                format!("{path}: mtime {} vs {}", want.mtime_ns, got.mtime_ns),
            ),
            Some(_) => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("{path}: unexpected"));
    }
    assert!(diffs.is_empty(), "file trees differ:\n{}", diffs.join("\n"));
}

/// One object in a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectView {
    pub size: u64,
    pub e_tag: Option<String>,
}

/// Every object of `bucket`, listed straight from the server through section
/// `section` of `config` (opening it makes the bucket if it is missing).
pub async fn list_bucket(
    config: &Path,
    section: &str,
    bucket: &str,
) -> BTreeMap<String, ObjectView> {
    let args = OpenArgs {
        config_path: Some(config.to_owned()),
        section: section.to_owned(),
        remote_path: bucket.to_owned(),
        custom_ca: None,
        create_bucket: true,
    };
    let remote = open(&args, &Env::default())
        .await
        .unwrap_or_else(|e| panic!("opening bucket {bucket} to list it: {e}"));
    remote
        .store
        .list(None)
        .map_ok(|m| {
            (
                m.location.to_string(),
                ObjectView {
                    size: m.size,
                    e_tag: m.e_tag,
                },
            )
        })
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing bucket {bucket}: {e}"))
}
