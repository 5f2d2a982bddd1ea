//! The mover's command line (every flag also read from an environment variable, as
//! the controller's Job sets them), parsed once into a validated [`Config`], and
//! the exit code of a failure. The variable names, directions and exit codes are the mover
//! contract's (`scribe_contract`). Boolean variables accept 1/0, yes/no, true/false,
//! on/off, y/n, t/f in any case; anything else is a configuration error.

use std::path::PathBuf;

use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser, ValueEnum};
use scribe_contract::{Exit, env, paths};

use crate::error::SyncError;
use crate::options::SyncOptions;
use crate::store::remote::ErrorCategory;
use crate::store::{BackendError, OpenArgs};
use crate::summary::Direction;

/// The positional direction: `source` or `destination` (the contract's spelling).
fn direction_parser() -> impl TypedValueParser<Value = Direction> {
    PossibleValuesParser::new(Direction::ALL.map(Direction::as_str))
        .map(|s| s.parse::<Direction>().expect("a possible value"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Raw command line, as clap reads it.
#[derive(Debug, Parser)]
#[command(
    name = "scribe-mover",
    version,
    about = "Sync a directory to (source) or from (destination) S3-compatible storage configured by rclone.conf, \
             verifying every byte by SHA-256"
)]
pub struct Args {
    /// source: upload MOUNT_PATH to the remote; destination: restore the remote into MOUNT_PATH.
    #[arg(env = env::DIRECTION, value_parser = direction_parser())]
    pub direction: Option<Direction>,
    /// rclone.conf path (optional: a remote may be defined by `RCLONE_CONFIG_<SECTION>_*` variables alone).
    #[arg(long, env = env::RCLONE_CONFIG)]
    pub config: Option<PathBuf>,
    /// Section (remote name) of rclone.conf to use.
    #[arg(long, env = env::RCLONE_CONFIG_SECTION)]
    pub section: Option<String>,
    /// bucket/prefix in the remote (for type = local: a directory).
    #[arg(long = "remote-path", env = env::RCLONE_DEST_PATH)]
    pub remote_path: Option<String>,
    /// Local directory to sync.
    #[arg(long = "mount-path", env = env::MOUNT_PATH, default_value = paths::DATA)]
    pub mount_path: PathBuf,
    /// PEM bundle added to the trusted roots.
    #[arg(long = "custom-ca", env = env::CUSTOM_CA)]
    pub custom_ca: Option<PathBuf>,
    /// Files transferred at once.
    #[arg(long, env = env::SCRIBE_TRANSFERS, default_value_t = 16)]
    pub transfers: usize,
    /// Re-hash every local file instead of trusting size, mtime, ctime and inode.
    #[arg(long, env = env::SCRIBE_CHECKSUM, action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub checksum: bool,
    /// Report what would change; change nothing.
    #[arg(long = "dry-run", env = env::SCRIBE_DRY_RUN, action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,
    /// Allow an empty source to empty a non-empty remote.
    #[arg(
        long = "allow-empty-source",
        env = env::SCRIBE_ALLOW_EMPTY_SOURCE,
        action = ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub allow_empty_source: bool,
    /// Log format on stderr.
    #[arg(
        long = "log-format",
        env = env::SCRIBE_LOG_FORMAT,
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub direction: Direction,
    pub open: OpenArgs,
    pub mount_path: PathBuf,
    pub sync: SyncOptions,
    pub log_format: LogFormat,
}

/// A flag that parsed but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("missing direction: pass `source` or `destination` (or set DIRECTION)")]
    MissingDirection,
    #[error("missing {flag} (or set {env})")]
    Missing {
        flag: &'static str,
        env: &'static str,
    },
    #[error("--transfers (SCRIBE_TRANSFERS) must be between 1 and 1024, got {0}")]
    Transfers(usize),
}

impl TryFrom<Args> for Config {
    type Error = CliError;

    fn try_from(a: Args) -> Result<Self, CliError> {
        let direction = a.direction.ok_or(CliError::MissingDirection)?;
        let nonempty = |v: Option<String>, flag, env| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or(CliError::Missing { flag, env })
        };
        let section = nonempty(a.section, "--section", env::RCLONE_CONFIG_SECTION)?;
        let remote_path = nonempty(a.remote_path, "--remote-path", env::RCLONE_DEST_PATH)?;
        if !(1..=1024).contains(&a.transfers) {
            return Err(CliError::Transfers(a.transfers));
        }
        Ok(Config {
            direction,
            open: OpenArgs {
                config_path: a.config.filter(|p| !p.as_os_str().is_empty()),
                section: section.trim().to_string(),
                remote_path: remote_path.trim().to_string(),
                custom_ca: a.custom_ca.filter(|p| !p.as_os_str().is_empty()),
                // Only the source may create a bucket; see `OpenArgs::create_bucket`.
                create_bucket: direction == Direction::Source,
            },
            mount_path: a.mount_path,
            sync: SyncOptions {
                transfers: a.transfers,
                checksum: a.checksum,
                dry_run: a.dry_run,
                allow_empty_source: a.allow_empty_source,
                ..SyncOptions::default()
            },
            log_format: a.log_format,
        })
    }
}

/// Why a run failed, from any layer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cli(#[from] CliError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl RunError {
    pub fn exit_code(&self) -> Exit {
        let category = match self {
            Self::Cli(_) => ErrorCategory::Config,
            Self::Backend(e) => e.category(),
            Self::Sync(e) if e.is_internal() => return Exit::Internal,
            Self::Sync(e) => e.category(),
        };
        match category {
            ErrorCategory::Config => Exit::Config,
            ErrorCategory::Transient => Exit::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["scribe-mover"];
        v.extend_from_slice(args);
        Config::try_from(Args::try_parse_from(v).expect("clap parses"))
    }

    #[test]
    fn full_command_line_becomes_a_config() {
        let c = parse(&[
            "destination",
            "--section",
            "s3",
            "--remote-path",
            "b/p",
            "--mount-path",
            "/m",
            "--transfers",
            "4",
            "--checksum",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(c.direction, Direction::Destination);
        assert_eq!(c.open.section, "s3");
        assert_eq!(c.open.remote_path, "b/p");
        assert_eq!(c.mount_path, PathBuf::from("/m"));
        assert_eq!(c.sync.transfers, 4);
        assert!(c.sync.checksum && c.sync.dry_run && !c.sync.allow_empty_source);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn missing_or_bad_values_name_the_flag() {
        assert_eq!(
            parse(&["--section", "s", "--remote-path", "b"]).unwrap_err(),
            CliError::MissingDirection
        );
        assert_eq!(
            parse(&["source", "--remote-path", "b"]).unwrap_err(),
            CliError::Missing {
                flag: "--section",
                env: "RCLONE_CONFIG_SECTION"
            }
        );
        assert_eq!(
            parse(&["source", "--section", "s", "--remote-path", " "]).unwrap_err(),
            CliError::Missing {
                flag: "--remote-path",
                env: "RCLONE_DEST_PATH"
            }
        );
        assert_eq!(
            parse(&[
                "source",
                "--section",
                "s",
                "--remote-path",
                "b",
                "--transfers",
                "0"
            ])
            .unwrap_err(),
            CliError::Transfers(0)
        );
    }

    #[test]
    fn cli_errors_exit_with_the_config_code() {
        assert_eq!(
            RunError::from(CliError::MissingDirection).exit_code(),
            Exit::Config
        );
        assert_eq!(
            RunError::from(SyncError::Internal("x".into())).exit_code(),
            Exit::Internal
        );
        assert_eq!(
            RunError::from(SyncError::SourceChanged { path: "f".into() }).exit_code(),
            Exit::Transient
        );
    }
}
