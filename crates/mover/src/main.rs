//! `scribe-mover`: parse the command line once, open the remote, run one sync,
//! print `SCRIBE_SUMMARY {json}` on stdout, write the same JSON to the termination
//! log, and exit 0 / 1 / 75 / 78 (see `cli`).
//!
//! SIGTERM (what a Job's Pod gets on deletion or deadline) or SIGINT cancels the
//! run (`SyncOptions::cancel`): uploads in flight, multipart ones included, are
//! aborted, nothing is committed, and the mover exits 75 with an `Interrupted`
//! summary within [`GRACE`] (a run that finished first reports as it ended).
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use scribe_contract::{Exit, env, paths};
use scribe_mover::cli::{Args, Config, LogFormat, RunError};
use scribe_mover::config::Env;
use scribe_mover::{Direction, Summary, SummaryExt, SyncError, destination, source, store};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, warn};

/// How long a cancelled run gets to abort its uploads before the mover exits anyway.
const GRACE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let direction = std::env::var(env::DIRECTION)
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(Direction::Source);
            let msg = e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .to_string();
            finish(&Summary::failed(direction, 0.0, msg));
            return exit(Exit::Config);
        }
    };
    init_tracing(args.log_format);
    let started = Instant::now();
    let direction_hint = args.direction.unwrap_or(Direction::Source);
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => return fail(direction_hint, started, RunError::from(e)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return fail_internal(config.direction, started, format!("starting runtime: {e}"));
        }
    };
    let direction = config.direction;
    let cancel = config.sync.cancel.clone();
    let token = cancel.clone();
    // Run in a task so a panic becomes exit 1 with a summary instead of an abort.
    let outcome = runtime.block_on(async move {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                return Ok(Err(RunError::from(SyncError::Internal(format!(
                    "installing signal handlers: {e}"
                )))));
            }
        };
        let mut task = tokio::spawn(run(config));
        tokio::select! {
            r = &mut task => return r,
            _ = term.recv() => warn!("SIGTERM: aborting uploads and stopping"),
            _ = int.recv() => warn!("SIGINT: aborting uploads and stopping"),
        }
        token.cancel();
        match tokio::time::timeout(GRACE, &mut task).await {
            Ok(r) => r,
            Err(_) => {
                task.abort();
                Ok(Err(RunError::from(SyncError::Interrupted)))
            }
        }
    });
    // Blocking work still running (hashing a large file) must not hold up the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(Ok(summary)) => {
            finish(&summary);
            exit(Exit::Ok)
        }
        Ok(Err(_)) if cancel.is_cancelled() => {
            error!("sync interrupted; the last committed manifest is intact");
            finish(&Summary::interrupted(
                direction,
                started.elapsed().as_secs_f64(),
                SyncError::Interrupted.to_string(),
            ));
            exit(Exit::Transient)
        }
        Ok(Err(e)) => fail(direction, started, e),
        Err(join) => fail_internal(direction, started, format!("mover panicked: {join}")),
    }
}

async fn run(config: Config) -> Result<Summary, RunError> {
    let env = Env::from_process();
    let remote = store::open(&config.open, &env).await?;
    let summary = match config.direction {
        Direction::Source => source::sync(&remote, &config.mount_path, &config.sync).await?,
        Direction::Destination => {
            destination::sync(&remote, &config.mount_path, &config.sync).await?
        }
    };
    Ok(summary)
}

fn fail(direction: Direction, started: Instant, e: RunError) -> ExitCode {
    let code = e.exit_code();
    error!(error = %e, exit_code = code.code(), "sync failed");
    finish(&Summary::failed(
        direction,
        started.elapsed().as_secs_f64(),
        e.to_string(),
    ));
    exit(code)
}

fn fail_internal(direction: Direction, started: Instant, msg: String) -> ExitCode {
    error!(error = %msg, "sync failed");
    finish(&Summary::failed(
        direction,
        started.elapsed().as_secs_f64(),
        msg,
    ));
    exit(Exit::Internal)
}

fn exit(code: Exit) -> ExitCode {
    ExitCode::from(code.code())
}

/// Prints the summary line and writes the termination log.
fn finish(summary: &Summary) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", summary.line());
    let _ = out.flush();
    if let Some(path) = termination_log() {
        // Kubernetes keeps at most 4 KiB of the termination message.
        if let Err(e) = std::fs::write(&path, summary.to_json()) {
            eprintln!(
                "warning: cannot write termination log {}: {e}",
                path.display()
            );
        }
    }
}

/// TERMINATION_LOG if set (empty disables), else /dev/termination-log when it is writable.
fn termination_log() -> Option<PathBuf> {
    match std::env::var_os(env::TERMINATION_LOG) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let p = PathBuf::from(paths::TERMINATION_LOG);
            std::fs::OpenOptions::new()
                .append(true)
                .open(&p)
                .ok()
                .map(|_| p)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::SCRIBE_LOG_LEVEL)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
