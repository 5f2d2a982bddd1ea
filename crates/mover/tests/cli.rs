//! Black-box tests of the `scribe-mover` binary with a `type = local` rclone.conf:
//! exit codes, the summary line on stdout and the termination log.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_scribe-mover");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rclone.conf"),
            "[local]\ntype = local\n\n[weird]\ntype = ftp\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::create_dir(dir.path().join("restore")).unwrap();
        Self { dir }
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    /// Runs the binary with a clean environment plus `envs`.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERMINATION_LOG", self.path("termination-log"))
            .env("RCLONE_CONFIG", self.path("rclone.conf"))
            .args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SCRIBE_SUMMARY "))
        .unwrap_or_else(|| {
            panic!(
                "no summary line in {stdout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

#[test]
fn source_then_destination_round_trip_through_the_binary() {
    let env = Env::new();
    std::fs::write(env.path("data/a"), b"alpha").unwrap();
    std::fs::create_dir(env.path("data/d")).unwrap();
    std::fs::write(env.path("data/d/b"), b"beta").unwrap();
    let remote = env.path("bucket").to_str().unwrap().to_string();
    let data = env.path("data").to_str().unwrap().to_string();
    let out = env.run(
        &[
            "source",
            "--section",
            "local",
            "--remote-path",
            &remote,
            "--mount-path",
            &data,
        ],
        &[],
    );
    assert_eq!(
        code(&out),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["result"], "Successful");
    assert_eq!(s["direction"], "source");
    assert_eq!(s["filesTransferred"], 2);
    assert_eq!(s["bytesTransferred"], 9);
    assert!(s.get("error").is_none());
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("termination-log")).unwrap()).unwrap();
    assert_eq!(log, s, "termination log holds the same JSON");

    // Everything from the environment, as the controller's Job sets it.
    let restore = env.path("restore").to_str().unwrap().to_string();
    let out = env.run(
        &[],
        &[
            ("DIRECTION", "destination"),
            ("RCLONE_CONFIG_SECTION", "local"),
            ("RCLONE_DEST_PATH", &remote),
            ("MOUNT_PATH", &restore),
            ("SCRIBE_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(
        code(&out),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["filesTransferred"], 2);
    assert_eq!(std::fs::read(env.path("restore/d/b")).unwrap(), b"beta");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('{')),
        "json logs: {stderr}"
    );
}

fn assert_config_failure(out: &Output, needle: &str) {
    assert_eq!(
        code(out),
        78,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(out);
    assert_eq!(s["result"], "Failed");
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains(needle),
        "error {err:?} should mention {needle:?}"
    );
}

#[test]
fn missing_section_exits_78() {
    let env = Env::new();
    let out = env.run(
        &[
            "source",
            "--section",
            "nope",
            "--remote-path",
            "/tmp/x",
            "--mount-path",
            env.path("data").to_str().unwrap(),
        ],
        &[],
    );
    assert_config_failure(&out, "nope");
}

#[test]
fn unsupported_type_exits_78() {
    let env = Env::new();
    let out = env.run(
        &[
            "source",
            "--section",
            "weird",
            "--remote-path",
            "b/p",
            "--mount-path",
            env.path("data").to_str().unwrap(),
        ],
        &[],
    );
    assert_config_failure(&out, "ftp");
}

#[test]
fn missing_direction_and_flags_exit_78() {
    let env = Env::new();
    assert_config_failure(
        &env.run(&["--section", "local", "--remote-path", "/x"], &[]),
        "direction",
    );
    assert_config_failure(
        &env.run(&["source", "--remote-path", "/x"], &[]),
        "--section",
    );
    assert_config_failure(&env.run(&["source", "--bogus-flag"], &[]), "--bogus-flag");
    assert_config_failure(&env.run(&["sideways"], &[]), "sideways");
}

#[test]
fn missing_mount_path_and_empty_source_exit_78() {
    let env = Env::new();
    let remote = env.path("bucket").to_str().unwrap().to_string();
    let out = env.run(
        &[
            "source",
            "--section",
            "local",
            "--remote-path",
            &remote,
            "--mount-path",
            env.path("absent").to_str().unwrap(),
        ],
        &[],
    );
    assert_config_failure(&out, "absent");
    std::fs::write(env.path("data/f"), b"x").unwrap();
    let data = env.path("data").to_str().unwrap().to_string();
    assert_eq!(
        code(&env.run(
            &[
                "source",
                "--section",
                "local",
                "--remote-path",
                &remote,
                "--mount-path",
                &data
            ],
            &[]
        )),
        0
    );
    std::fs::remove_file(env.path("data/f")).unwrap();
    let out = env.run(
        &[
            "source",
            "--section",
            "local",
            "--remote-path",
            &remote,
            "--mount-path",
            &data,
        ],
        &[],
    );
    assert_config_failure(&out, "allow-empty-source");
    let out = env.run(
        &[
            "source",
            "--section",
            "local",
            "--remote-path",
            &remote,
            "--mount-path",
            &data,
        ],
        &[("SCRIBE_ALLOW_EMPTY_SOURCE", "true")],
    );
    assert_eq!(code(&out), 0);
    assert_eq!(summary(&out)["filesDeleted"], 1);
}

#[test]
fn help_exits_0_and_names_the_env_vars() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DIRECTION",
        "RCLONE_CONFIG",
        "RCLONE_CONFIG_SECTION",
        "RCLONE_DEST_PATH",
        "MOUNT_PATH",
        "CUSTOM_CA",
        "SCRIBE_TRANSFERS",
        "SCRIBE_CHECKSUM",
        "SCRIBE_DRY_RUN",
        "SCRIBE_ALLOW_EMPTY_SOURCE",
        "SCRIBE_LOG_FORMAT",
    ] {
        assert!(text.contains(var), "--help mentions {var}");
    }
}

#[test]
fn boolean_variables_accept_1_0_yes_no_true_false_in_any_case() {
    let env = Env::new();
    std::fs::write(env.path("data/f"), b"x").unwrap();
    let data = env.path("data").to_str().unwrap().to_string();
    let remote = env.path("bucket").to_str().unwrap().to_string();
    let source = |vars: &[(&str, &str)]| {
        env.run(
            &[
                "source",
                "--section",
                "local",
                "--remote-path",
                &remote,
                "--mount-path",
                &data,
            ],
            vars,
        )
    };
    let manifest = env.path("bucket/.scribe/manifest.jsonl");
    for yes in ["1", "yes", "YES", "True", "true"] {
        let out = source(&[("SCRIBE_DRY_RUN", yes)]);
        assert_eq!(code(&out), 0, "SCRIBE_DRY_RUN={yes}");
        assert!(!manifest.exists(), "SCRIBE_DRY_RUN={yes} is a dry run");
    }
    for no in ["0", "no", "No", "FALSE"] {
        std::fs::remove_dir_all(env.path("bucket")).ok();
        let out = source(&[("SCRIBE_DRY_RUN", no), ("SCRIBE_CHECKSUM", "Yes")]);
        assert_eq!(code(&out), 0, "SCRIBE_DRY_RUN={no}");
        assert!(manifest.exists(), "SCRIBE_DRY_RUN={no} writes");
    }
    std::fs::remove_file(env.path("data/f")).unwrap();
    let out = source(&[("SCRIBE_ALLOW_EMPTY_SOURCE", "0")]);
    assert_config_failure(&out, "allow-empty-source");
    let out = source(&[("SCRIBE_ALLOW_EMPTY_SOURCE", "YES")]);
    assert_eq!(code(&out), 0);
    assert_config_failure(&source(&[("SCRIBE_DRY_RUN", "maybe")]), "maybe");
}

#[test]
fn names_no_manifest_can_carry_fail_the_source_with_78_naming_them() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    std::fs::write(env.path("data/fine"), b"x").unwrap();
    std::fs::write(env.path("data/new\nline"), b"y").unwrap();
    std::fs::write(
        env.path("data")
            .join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")),
        b"z",
    )
    .unwrap();
    let remote = env.path("bucket").to_str().unwrap().to_string();
    let out = env.run(
        &[
            "source",
            "--section",
            "local",
            "--remote-path",
            &remote,
            "--mount-path",
            env.path("data").to_str().unwrap(),
        ],
        &[],
    );
    assert_config_failure(&out, "2 local path(s) cannot be replicated");
    let err = summary(&out)["error"].as_str().unwrap().to_string();
    assert!(err.contains(r#""latin1-\xe9""#), "{err}");
    assert!(err.contains(r#""new\nline""#), "{err}");
    assert!(
        !env.path("bucket/fine").exists(),
        "nothing uploaded when a name cannot be carried"
    );
}
