//! `scribe-controller`: parses the CLI (flags with environment fallbacks, see CONTRACTS.md),
//! sets up logging, builds a validated [`ControllerConfig`] and runs the controller.
//! Exit status: 0 after a requested shutdown (SIGTERM), 1 on error (including loss of the
//! leader Lease: the pod restarts and stands by).
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use scribe_controller::ControllerConfig;
use scribe_controller::plan::{PullPolicy, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Scribe controller: replicates PVCs through S3-compatible object storage.
#[derive(Debug, Parser)]
#[command(name = "scribe-controller", version, about)]
struct Cli {
    /// Image of the mover the Jobs run.
    #[arg(long, env = "SCRIBE_MOVER_IMAGE")]
    mover_image: String,
    /// Pull policy of the mover image.
    #[arg(
        long,
        env = "SCRIBE_MOVER_IMAGE_PULL_POLICY",
        value_enum,
        default_value = "IfNotPresent"
    )]
    mover_image_pull_policy: PullPolicy,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SCRIBE_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_bind_address: SocketAddr,
    /// Elect a leader among replicas with a Lease.
    #[arg(long, env = "SCRIBE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "SCRIBE_LEADER_ELECTION_ID",
        default_value = "scribe-controller-leader"
    )]
    leader_election_id: String,
    /// Log level or tracing filter (e.g. `info`, `scribe_controller=debug`).
    #[arg(long, env = "SCRIBE_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, env = "SCRIBE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

impl Cli {
    fn into_config(self, identity: String) -> Result<ControllerConfig> {
        anyhow::ensure!(
            !self.mover_image.trim().is_empty(),
            "--mover-image must not be empty"
        );
        anyhow::ensure!(
            !self.leader_election_id.trim().is_empty(),
            "--leader-election-id must not be empty"
        );
        Ok(ControllerConfig {
            settings: Settings {
                mover_image: self.mover_image,
                mover_image_pull_policy: self.mover_image_pull_policy,
            },
            metrics_bind_address: self.metrics_bind_address,
            leader_elect: self.leader_elect,
            leader_election_namespace: self.leader_election_namespace,
            leader_election_id: self.leader_election_id,
            identity,
        })
    }
}

/// Lease holder identity: POD_NAME, else the host name.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("scribe-controller-{}", std::process::id()))
}

fn init_tracing(level: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid --log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("initializing logging: {e}"))
}

/// Selects rustls' ring provider for the process. Built in one workspace with the mover,
/// rustls has both ring and aws-lc-rs compiled in and refuses to guess (it panics on the first
/// TLS connection), so the choice is made here, once.
fn install_tls_provider() -> Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    install_tls_provider()?;
    init_tracing(&cli.log_level, cli.log_format)?;
    let config = cli.into_config(identity())?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), identity = %config.identity, leader_elect = config.leader_elect, "starting");
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    scribe_controller::run(client, config)
        .await
        .context("controller stopped")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["scribe-controller", "--mover-image", "m:1"]).unwrap();
        assert_eq!(cli.mover_image_pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(cli.metrics_bind_address, "0.0.0.0:8080".parse().unwrap());
        assert!(cli.leader_elect);
        assert_eq!(cli.leader_election_id, "scribe-controller-leader");
        assert_eq!(cli.log_format, LogFormat::Json);
        let cfg = cli.into_config("pod-a".into()).unwrap();
        assert_eq!(
            cfg.settings.mover_image_pull_policy,
            PullPolicy::IfNotPresent
        );
        assert_eq!(cfg.identity, "pod-a");
    }

    #[test]
    fn leader_elect_takes_an_explicit_boolean_and_bad_values_are_rejected() {
        let cli = Cli::try_parse_from([
            "scribe-controller",
            "--mover-image",
            "m",
            "--leader-elect",
            "false",
        ])
        .unwrap();
        assert!(!cli.leader_elect);
        assert!(
            Cli::try_parse_from([
                "scribe-controller",
                "--mover-image",
                "m",
                "--mover-image-pull-policy",
                "Sometimes"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["scribe-controller"]).is_err(),
            "--mover-image is required"
        );
    }

    #[test]
    fn empty_mover_image_is_a_named_error() {
        let cli = Cli::try_parse_from(["scribe-controller", "--mover-image", " "]).unwrap();
        let err = cli.into_config("x".into()).unwrap_err().to_string();
        assert!(err.contains("--mover-image"), "{err}");
    }
}
