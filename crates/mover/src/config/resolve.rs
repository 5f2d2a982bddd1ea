//! One remote's options with rclone's precedence: first `RCLONE_CONFIG_<REMOTE>_<KEY>`,
//! then `RCLONE_<BACKEND>_<KEY>`, then the config file, then the default. A remote
//! exists when the file has its section or `RCLONE_CONFIG_<REMOTE>_TYPE` is set.

use std::collections::BTreeMap;

use super::parse::ConfigFile;
use super::values::{parse_bool, parse_size};
use super::{ConfigError, Env};

/// Option keys whose values must never be logged or shown.
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "session_token",
    "sse_customer_key",
    "sse_customer_key_base64",
    "password",
    "password2",
    "key",
    "sas_url",
    "client_secret",
    "service_account_credentials",
];

/// The resolved options of one remote.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The section / remote name as given.
    pub name: String,
    /// The `type` (e.g. `s3`, `local`).
    pub kind: String,
    file: ConfigFile,
    /// `RCLONE_CONFIG_<REMOTE>_*` values, keyed by the upper-cased key part.
    env_remote: BTreeMap<String, String>,
    /// `RCLONE_<BACKEND>_*` values, keyed by the upper-cased key part.
    env_backend: BTreeMap<String, String>,
}

/// The environment-variable spelling of a name: upper case, `-` → `_`.
fn env_part(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

fn collect(env: &Env, prefix: &str) -> BTreeMap<String, String> {
    env.with_prefix(prefix)
        .map(|(k, v)| (k[prefix.len()..].to_owned(), v.to_owned()))
        .collect()
}

impl RemoteConfig {
    /// Resolve remote `name` from `file` and `env`.
    pub fn resolve(file: &ConfigFile, name: &str, env: &Env) -> Result<Self, ConfigError> {
        let env_remote = collect(env, &format!("RCLONE_CONFIG_{}_", env_part(name)));
        let kind = match env_remote.get("TYPE") {
            Some(kind) => kind.clone(),
            None if file.has_section(name) => {
                file.get(name, "type")
                    .ok_or_else(|| ConfigError::MissingType {
                        section: name.to_owned(),
                    })?
            }
            None => {
                return Err(ConfigError::SectionNotFound {
                    section: name.to_owned(),
                    origin: file.origin.clone(),
                    available: file.section_names().to_vec(),
                });
            }
        };
        if kind.is_empty() {
            return Err(ConfigError::MissingType {
                section: name.to_owned(),
            });
        }
        // rclone's variables use the backend's prefix: `RCLONE_GCS_*` for
        // `google cloud storage`.
        let backend_prefix = if kind == "google cloud storage" {
            "gcs"
        } else {
            kind.as_str()
        };
        let env_backend = collect(env, &format!("RCLONE_{}_", env_part(backend_prefix)));
        Ok(Self {
            name: name.to_owned(),
            kind,
            file: file.clone(),
            env_remote,
            env_backend,
        })
    }

    /// The value of `key`, or `None` when unset everywhere. An empty environment
    /// value counts as set; an empty file value does not.
    pub fn get(&self, key: &str) -> Option<String> {
        let upper = env_part(key);
        if let Some(v) = self.env_remote.get(&upper) {
            return Some(v.clone());
        }
        if let Some(v) = self.env_backend.get(&upper) {
            return Some(v.clone());
        }
        self.file.get(&self.name, key)
    }

    /// `key` as a string, with empty meaning unset.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get_str(key) {
            None => Ok(default),
            Some(v) => parse_bool(&v).map_err(|message| self.invalid(key, message)),
        }
    }

    pub fn get_size(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.get_str(key) {
            None => Ok(default),
            Some(v) => parse_size(&v).map_err(|message| self.invalid(key, message)),
        }
    }

    pub fn get_usize(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get_str(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| self.invalid(key, format!("{v:?} is not a non-negative integer"))),
        }
    }

    /// An [`ConfigError::InvalidValue`] for `key` in this remote.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            section: self.name.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Keys set for this remote (in its section or `RCLONE_CONFIG_<REMOTE>_*`) that
    /// are not in `known`; rclone ignores them, callers warn about them.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let known_upper: Vec<String> = known.iter().map(|k| env_part(k)).collect();
        let mut unknown: Vec<String> = self
            .file
            .keys(&self.name)
            .filter(|k| *k != "type" && !known.contains(k))
            .map(str::to_owned)
            .collect();
        let prefix = format!("RCLONE_CONFIG_{}_", env_part(&self.name));
        unknown.extend(
            self.env_remote
                .keys()
                .filter(|k| k.as_str() != "TYPE" && !known_upper.contains(k))
                .map(|k| format!("{prefix}{k}")),
        );
        unknown
    }
}

impl std::fmt::Debug for RemoteConfig {
    // Values are left out entirely: several of them are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.file.keys(&self.name).collect();
        f.debug_struct("RemoteConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("file_keys", &keys)
            .field(
                "env_remote_keys",
                &self.env_remote.keys().collect::<Vec<_>>(),
            )
            .field(
                "env_backend_keys",
                &self.env_backend.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Whether `key` holds a credential (used to keep values out of messages).
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}
