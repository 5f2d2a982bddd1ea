//! moto with the fault proxy in front of it, and the steps the proxy tests share:
//! waiting until the proxy has stalled a running mover, and stopping it with
//! SIGTERM (what a Job's pod gets on deletion or deadline).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mover::Run;
use super::{FaultProxy, Moto};

/// moto, the proxy in front of it, and an rclone.conf with two sections: `direct`
/// to moto and one through the proxy.
pub struct ProxiedMoto {
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl ProxiedMoto {
    /// Starts both; the section through the proxy is named `proxied`; `extra`
    /// lines go into both sections.
    pub async fn start(proxied: &str, extra: &str) -> ProxiedMoto {
        let moto = Moto::start().await;
        let proxy = FaultProxy::start(&moto.endpoint).await;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("rclone.conf");
        std::fs::write(
            &conf,
            moto.rclone_section("direct", extra)
                + &moto.rclone_section_at(proxied, &proxy.endpoint, extra),
        )
        .unwrap();
        ProxiedMoto {
            moto,
            proxy,
            dir,
            conf,
        }
    }
}

/// Waits (two minutes at most) until `proxy` has injected `n` faults into the
/// requests of the running `child`; panics when the mover ends first.
pub async fn wait_for_faults(proxy: &FaultProxy, child: &mut tokio::process::Child, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.faults_injected() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mover ended ({status}) before the proxy stalled it");
        }
        assert!(Instant::now() < deadline, "the stall was never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM to the mover and waits (a minute at most) for it to stop.
pub async fn terminate(child: tokio::process::Child, log: &Path) -> Run {
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the mover stops promptly on SIGTERM")
        .unwrap();
    Run::from_output(out, log)
}
