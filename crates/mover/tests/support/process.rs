//! Starting the emulators the tests run (moto, Azurite, fake-gcs-server): spawn
//! on a free port, wait until it serves, and try a fresh port when another
//! process took the port between `free_port()` and the server's bind.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Calls `start` (which picks its own free port) up to three times; panics with
/// every failure when none succeeds.
pub async fn on_fresh_ports<T, F, Fut>(name: &str, start: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut failures = Vec::new();
    for _ in 0..3 {
        match start().await {
            Ok(server) => return server,
            Err(e) => failures.push(e),
        }
    }
    panic!("{name} did not start: {}", failures.join("; "));
}

/// Spawns `command` with no stdio; panics naming the binary and the setup script.
pub fn spawn_quiet(mut command: Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e}; run hack/setup-test-deps.sh",
                command.get_program().to_string_lossy()
            )
        })
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Polls `ready` every 50 ms until it is true; fails when `child` exits first or
/// `timeout` passes.
pub async fn wait_until<Fut>(
    name: &str,
    child: &mut Child,
    port: u16,
    timeout: Duration,
    ready: impl Fn() -> Fut,
) -> Result<(), String>
where
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if ready().await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{name} exited with {status} before serving on port {port}"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} did not serve on port {port} within {} s",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
