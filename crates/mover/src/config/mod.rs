//! rclone.conf handling (see reference/rclone.md): an environment snapshot, the
//! file parser (plain and encrypted), and resolution of one remote's options with
//! rclone's precedence (`RCLONE_CONFIG_<REMOTE>_<KEY>` > `RCLONE_<BACKEND>_<KEY>` >
//! file > default). Everything here is pure except [`load`], which reads the file.

use std::collections::BTreeMap;
use std::path::Path;

mod crypt;
mod error;
mod parse;
mod resolve;
mod values;

pub use crypt::encrypt;
pub use error::ConfigError;
pub use parse::{ConfigFile, DEFAULT_SECTION};
pub use resolve::{RemoteConfig, is_secret_key};
pub use values::{parse_bool, parse_size};

/// Parse rclone.conf text, decrypting it first when it is encrypted (password
/// from `RCLONE_CONFIG_PASS` in `env`).
pub fn parse_text(text: &str, origin: &str, env: &Env) -> Result<ConfigFile, ConfigError> {
    match crypt::encrypted_payload(text, origin)? {
        None => ConfigFile::parse(text, origin),
        Some(payload) => {
            let password =
                env.get("RCLONE_CONFIG_PASS")
                    .ok_or_else(|| ConfigError::MissingPassword {
                        origin: origin.to_owned(),
                    })?;
            let plain = crypt::decrypt(&payload, password, origin)?;
            ConfigFile::parse(&plain, origin)
        }
    }
}

/// Read and parse the config file at `path`; with no path, an empty config
/// (remotes must then be defined through `RCLONE_CONFIG_<REMOTE>_TYPE`).
pub fn load(path: Option<&Path>, env: &Env) -> Result<ConfigFile, ConfigError> {
    let Some(path) = path else {
        return Ok(ConfigFile::empty("(no config file)"));
    };
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Parse {
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        origin: origin.clone(),
        message: "not valid UTF-8".to_owned(),
    })?;
    parse_text(&text, &origin, env)
}

/// A snapshot of environment variables, so that parsing and option resolution are
/// functions of their inputs (tests build one with [`Env::from_pairs`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Snapshot of the current process environment (non-UTF-8 entries are skipped:
    /// no rclone or AWS setting can use them).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of exactly these pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`; an empty value counts as set (as in rclone).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// All variables whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl std::fmt::Debug for Env {
    // Environment values routinely hold secrets (AWS_SECRET_ACCESS_KEY, RCLONE_CONFIG_PASS):
    // only the names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests;
