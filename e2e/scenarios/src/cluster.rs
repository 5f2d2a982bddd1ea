//! The cluster under test, as the environment describes it (`e2e/.cluster/env`, written by
//! `hack/cluster.sh up`, or set by hand for a real cluster such as kind): the admin client
//! (`KUBECONFIG`), the S3 endpoint and keys (`SCRIBE_E2E_S3_*`), and — on the local cluster
//! only — the state and cluster directories and the cluster script, whose subcommands restart
//! the controller or freeze S3 ([`Cluster::s3_stop`]). Operations that need the script fail
//! with a message saying so: a scenario that cannot run is a failure, never a skip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kube::Client;

/// The S3 server every scenario replicates through.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `http(s)://host:port` as the mover pods reach it.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

/// A handle on the cluster under test.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub s3: S3Settings,
    /// `$SCRIBE_E2E_STATE_DIR`: volumes are `volumes/<volumeHandle>` under it (local only).
    pub state_dir: Option<PathBuf>,
    /// `$SCRIBE_E2E_CLUSTER_DIR`: logs of the local cluster's components.
    pub cluster_dir: Option<PathBuf>,
    /// Namespace the controller runs in (its Lease lives there).
    pub controller_namespace: String,
    /// The controller's `/metrics` URL, when reachable from the tests.
    pub metrics_url: Option<String>,
    /// `hack/cluster.sh` (local only).
    pub script: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String> {
    env(name).with_context(|| {
        format!(
            "{name} is not set: run `hack/cluster.sh up` and `source e2e/.cluster/env` (or `make e2e`), \
             or export KUBECONFIG and SCRIBE_E2E_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY for a real cluster"
        )
    })
}

impl Cluster {
    /// Connects with the admin kubeconfig and reads the S3 settings; errors name what is missing.
    pub async fn from_env() -> Result<Self> {
        let s3 = S3Settings {
            endpoint: required("SCRIBE_E2E_S3_ENDPOINT")?,
            access_key: required("SCRIBE_E2E_S3_ACCESS_KEY")?,
            secret_key: required("SCRIBE_E2E_S3_SECRET_KEY")?,
        };
        let client = Client::try_default()
            .await
            .context("connecting to the cluster (KUBECONFIG)")?;
        Ok(Self {
            client,
            s3,
            state_dir: env("SCRIBE_E2E_STATE_DIR").map(PathBuf::from),
            cluster_dir: env("SCRIBE_E2E_CLUSTER_DIR").map(PathBuf::from),
            controller_namespace: env("SCRIBE_E2E_CONTROLLER_NAMESPACE")
                .unwrap_or_else(|| "scribe-system".to_string()),
            metrics_url: env("SCRIBE_E2E_METRICS_URL"),
            script: env("SCRIBE_E2E_CLUSTER_SCRIPT").map(PathBuf::from),
        })
    }

    /// The cluster script, or an error saying this scenario needs the local cluster.
    pub fn script_path(&self, why: &str) -> Result<PathBuf> {
        match &self.script {
            Some(p) if p.is_file() => Ok(p.clone()),
            Some(p) => bail!(
                "{why} needs the local cluster's script, but SCRIBE_E2E_CLUSTER_SCRIPT={} is not a file",
                p.display()
            ),
            None => bail!(
                "{why} needs the local cluster (hack/cluster.sh): SCRIBE_E2E_CLUSTER_SCRIPT is not set. \
                 This scenario cannot run against this cluster and counts as failed."
            ),
        }
    }

    /// Runs `hack/cluster.sh ARGS…` (2 minutes at most) and returns its stdout; a non-zero
    /// exit is an error quoting stderr.
    pub async fn script(&self, args: &[&str]) -> Result<String> {
        let path = self.script_path(&format!("`cluster.sh {}`", args.join(" ")))?;
        let child = tokio::process::Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .with_context(|| {
                format!(
                    "`{} {}` did not finish within 120 s",
                    path.display(),
                    args.join(" ")
                )
            })?
            .with_context(|| format!("running {}", path.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}): {}{}",
                path.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", stdout.trim())
                }
            );
        }
        Ok(stdout)
    }

    /// PIDs of the running controller replicas (`cluster.sh controller-pids`).
    pub async fn controller_pids(&self) -> Result<Vec<u32>> {
        let out = self.script(&["controller-pids"]).await?;
        out.split_whitespace()
            .map(|p| {
                p.parse::<u32>()
                    .with_context(|| format!("controller-pids printed {p:?}, not a PID"))
            })
            .collect()
    }

    /// Freezes the S3 server (`cluster.sh s3-stop`: SIGSTOP, requests hang). The returned
    /// guard resumes it ([`S3Freeze::resume`], or `s3-start` on drop, even when the scenario
    /// fails): every other scenario shares the server.
    pub async fn s3_stop(&self) -> Result<S3Freeze> {
        let script = self.script_path("freezing the S3 server")?;
        let freeze = S3Freeze {
            cluster: self.clone(),
            script,
            resumed: false,
        };
        self.script(&["s3-stop"]).await?;
        Ok(freeze)
    }

    /// An rclone.conf holding one section named `section` for the S3 server: the script's
    /// `rclone-conf SECTION` on the local cluster, else built from `SCRIBE_E2E_S3_*`.
    pub async fn rclone_conf(&self, section: &str) -> Result<String> {
        if self.script.as_ref().is_some_and(|p| p.is_file()) {
            let conf = self.script(&["rclone-conf", section]).await?;
            anyhow::ensure!(
                conf.contains(&format!("[{section}]")),
                "`cluster.sh rclone-conf {section}` printed no [{section}] section: {conf:?}"
            );
            return Ok(conf);
        }
        Ok(rclone_section(section, &self.s3))
    }
}

/// The S3 server frozen by [`Cluster::s3_stop`]; resumed by [`S3Freeze::resume`] or on drop.
pub struct S3Freeze {
    cluster: Cluster,
    script: PathBuf,
    resumed: bool,
}

impl S3Freeze {
    /// Resumes the S3 server (`cluster.sh s3-start`: SIGCONT).
    pub async fn resume(mut self) -> Result<()> {
        self.cluster.script(&["s3-start"]).await?;
        self.resumed = true;
        Ok(())
    }
}

impl Drop for S3Freeze {
    fn drop(&mut self) {
        if self.resumed {
            return;
        }
        // No runtime to await on here (this may run while a panic unwinds): run it blocking.
        let outcome = std::process::Command::new(&self.script)
            .arg("s3-start")
            .stdin(Stdio::null())
            .status();
        match outcome {
            Ok(st) if st.success() => eprintln!("S3 server resumed (s3-start on drop)"),
            Ok(st) => eprintln!(
                "`{} s3-start` on drop failed ({st}): the S3 server may still be frozen",
                self.script.display()
            ),
            Err(e) => eprintln!(
                "`{} s3-start` on drop could not run ({e}): the S3 server may still be frozen",
                self.script.display()
            ),
        }
    }
}

/// An rclone.conf section for an S3-compatible server with path-style addressing.
pub fn rclone_section(section: &str, s3: &S3Settings) -> String {
    format!(
        "[{section}]\ntype = s3\nprovider = Other\nendpoint = {}\naccess_key_id = {}\nsecret_access_key = {}\nregion = us-east-1\nforce_path_style = true\n",
        s3.endpoint, s3.access_key, s3.secret_key
    )
}

/// `conf` with the value of `key` in every section replaced (e.g. a wrong secret key).
pub fn replace_conf_value(conf: &str, key: &str, value: &str) -> String {
    conf.lines()
        .map(|line| match line.split_once('=') {
            Some((k, _)) if k.trim() == key => format!("{key} = {value}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_replaced_by_key_only() {
        let s3 = S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            access_key: "AK".into(),
            secret_key: "SK".into(),
        };
        let conf = rclone_section("aws-s3-bucket", &s3);
        assert!(conf.starts_with("[aws-s3-bucket]\ntype = s3\n"), "{conf}");
        let bad = replace_conf_value(&conf, "secret_access_key", "wrong");
        assert!(bad.contains("secret_access_key = wrong\n"), "{bad}");
        assert!(bad.contains("access_key_id = AK\n"), "{bad}");
        assert!(!bad.contains("SK"), "{bad}");
    }
}
