//! `scribe-node-agent`: the kubelet and CSI stand-in of the local e2e control plane.
//!
//! Nothing on these machines can run containers under a real kubelet, so this agent registers
//! one Node, renews its Lease, runs the Pods the real scheduler binds to it as local processes
//! (inside a private mount namespace built with bubblewrap), and plays the hostpath CSI driver's
//! provisioner and snapshotter: volumes are directories under `--state-dir`. It is test
//! infrastructure: it only needs to be faithful where the operator can observe it.
#![forbid(unsafe_code)]

mod config;
mod error;
mod node;
mod pods;
mod storage;

use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser;

use config::AgentConfig;

/// Kubelet + hostpath CSI stand-in for the local e2e cluster.
#[derive(Debug, Parser)]
#[command(name = "scribe-node-agent", version, about)]
struct Cli {
    /// Name of the Node to register.
    #[arg(long, default_value = "scribe-e2e-node")]
    node_name: String,
    /// Directory holding volumes (`volumes/<handle>`), snapshots (`snapshots/<handle>`) and
    /// per-pod runtime files (`pods/<uid>`).
    #[arg(long)]
    state_dir: std::path::PathBuf,
    /// CSI driver name served (StorageClass provisioner, VolumeSnapshotClass driver).
    #[arg(long, default_value = "hostpath.csi.k8s.io")]
    driver_name: String,
    /// Image-to-executable mapping, `SUBSTRING=PATH`: a container whose image contains
    /// SUBSTRING runs PATH. Any other image fails the Pod with reason ErrImagePull.
    #[arg(long = "image", value_parser = parse_image)]
    images: Vec<(String, std::path::PathBuf)>,
}

fn parse_image(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--image {s:?}: expected SUBSTRING=PATH"))?;
    if k.is_empty() || v.is_empty() {
        return Err(format!(
            "--image {s:?}: SUBSTRING and PATH must not be empty"
        ));
    }
    Ok((k.to_string(), v.into()))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Both ring and aws-lc-rs are compiled in when built with the mover: choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Arc::new(AgentConfig::new(
        cli.node_name,
        cli.state_dir,
        cli.driver_name,
        cli.images,
    )?);
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    tracing::info!(node = %cfg.node_name, state_dir = %cfg.state_dir.display(), "starting");
    tokio::select! {
        r = node::run(client.clone(), cfg.clone()) => r.context("node registration")?,
        r = pods::run(client.clone(), cfg.clone()) => r.context("pod runner")?,
        r = storage::run(client.clone(), cfg.clone()) => r.context("storage")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
    Ok(())
}
