//! `type = crypt`: rclone's encrypting wrapper around another remote, in rclone's
//! own format, so rclone reads what we write and we restore what rclone wrote.
//! Opening: read the options (passwords obscured as rclone stores them), derive
//! the keys, open the wrapped remote (`remote = name:bucket/path`, or a local
//! path), wrap its store in a [`CryptStore`], then check the password against
//! what is already stored. Keys (`names`), contents (`data`), the store adapter
//! (`store`, `upload`) and obscured values (`obscure`) live in their own files.

use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::warn;

use crate::config::{self, ConfigError, Env, RemoteConfig};
use crate::store::remote::{ErrorCategory, IncompleteUploads, Remote};
use crate::store::{BackendError, OpenArgs};

mod data;
mod eme;
mod names;
pub mod obscure;
mod store;
mod upload;

pub use data::{decrypted_size, encrypt_all, encrypted_size, parse_header};
pub use names::{Keys, NameCipher, NameEncoding, NameMode};
pub use store::CryptStore;

/// Options rclone 1.60's crypt backend knows that are accepted here.
const KNOWN_KEYS: &[&str] = &[
    "remote",
    "password",
    "password2",
    "filename_encryption",
    "directory_name_encryption",
    "filename_encoding",
    "no_data_encryption",
    "server_side_across_configs",
    "show_mapping",
    "description",
];

/// How many stored objects the password check looks at when there is no manifest.
const PROBE_OBJECTS: usize = 20;

/// Why a crypt remote could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(
        "section {section:?}: cannot decrypt {what} with this password: wrong password/password2, or {root} is not a crypt remote"
    )]
    WrongPassword {
        section: String,
        what: String,
        root: String,
    },
    #[error("section {section:?}: checking the password against {root}: {source}")]
    Probe {
        section: String,
        root: String,
        source: object_store::Error,
    },
}

impl CryptError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::WrongPassword { .. } => ErrorCategory::Config,
            Self::Probe { source, .. } => match source {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => ErrorCategory::Config,
                _ => ErrorCategory::Transient,
            },
        }
    }
}

/// The crypt settings of one section.
#[derive(Clone)]
pub struct CryptSettings {
    /// Section name and path of the wrapped remote (`None` section: a local path).
    pub remote: (Option<String>, String),
    pub keys: Keys,
    pub mode: NameMode,
    pub encoding: NameEncoding,
    pub dir_names: bool,
}

fn revealed(remote: &RemoteConfig, key: &str) -> Result<String, ConfigError> {
    match remote.get_str(key) {
        None => Ok(String::new()),
        Some(v) => obscure::reveal(&v).map_err(|m| remote.invalid(key, m)),
    }
}

/// Reads and checks the options of a crypt section (pure but for scrypt).
pub fn settings(remote: &RemoteConfig) -> Result<CryptSettings, ConfigError> {
    let unknown = remote.unknown_keys(KNOWN_KEYS);
    if !unknown.is_empty() {
        warn!(section = %remote.name, keys = ?unknown, "ignoring unknown crypt options");
    }
    let target = remote.get_str("remote").ok_or_else(|| {
        remote.invalid(
            "remote",
            "missing: say which remote to encrypt, e.g. `remote = s3remote:bucket/path`",
        )
    })?;
    let wrapped = parse_wrapped(&target).map_err(|m| remote.invalid("remote", m))?;
    let mode = match remote
        .get_str("filename_encryption")
        .map(|v| v.to_lowercase())
        .as_deref()
    {
        None | Some("standard") => NameMode::Standard,
        Some("obfuscate") => NameMode::Obfuscate,
        Some("off") => NameMode::Off,
        Some(other) => {
            return Err(remote.invalid(
                "filename_encryption",
                format!("{other:?} is not one of standard, obfuscate, off"),
            ));
        }
    };
    let encoding = match remote
        .get_str("filename_encoding")
        .map(|v| v.to_lowercase())
        .as_deref()
    {
        None | Some("base32") => NameEncoding::Base32,
        Some("base64") => NameEncoding::Base64,
        Some("base32768") => {
            return Err(remote.invalid(
                "filename_encoding",
                "base32768 is not supported (base32 and base64 are)",
            ));
        }
        Some(other) => {
            return Err(remote.invalid(
                "filename_encoding",
                format!("{other:?} is not one of base32, base64, base32768"),
            ));
        }
    };
    if remote.get_bool("no_data_encryption", false)? {
        return Err(remote.invalid(
            "no_data_encryption",
            "true is not supported: contents are always encrypted",
        ));
    }
    let dir_names = remote.get_bool("directory_name_encryption", true)?;
    let password = revealed(remote, "password")?;
    if password.is_empty() {
        return Err(remote.invalid(
            "password",
            "missing: a crypt remote needs a password (obscured with `rclone obscure`)",
        ));
    }
    let salt = revealed(remote, "password2")?;
    Ok(CryptSettings {
        remote: wrapped,
        keys: Keys::derive(&password, &salt),
        mode,
        encoding,
        dir_names,
    })
}

/// `name:path` → (Some(name), path); a path without a remote name → (None, path).
fn parse_wrapped(target: &str) -> Result<(Option<String>, String), String> {
    if target.starts_with(':') {
        return Err(format!(
            "{target:?}: on-the-fly backends (`:type:`) are not supported; name a section"
        ));
    }
    match target.split_once(':') {
        Some((name, path)) if !name.contains('/') => {
            if name.contains(',') {
                return Err(format!(
                    "{target:?}: connection-string parameters are not supported"
                ));
            }
            Ok((Some(name.to_owned()), path.to_owned()))
        }
        _ => Ok((None, target.to_owned())),
    }
}

/// Opens the crypt section `remote` (already resolved) for `args`.
pub async fn open(
    remote: &RemoteConfig,
    args: &OpenArgs,
    env: &Env,
) -> Result<Remote, BackendError> {
    let s = settings(remote).map_err(BackendError::Config)?;
    let inner = match &s.remote {
        (None, path) => super::local::open_dir(&remote.name, path)?,
        (Some(name), path) => {
            let file = config::load(args.config_path.as_deref(), env)?;
            let wrapped = RemoteConfig::resolve(&file, name, env).map_err(|e| match e {
                ConfigError::SectionNotFound { .. } => remote.invalid("remote", e.to_string()),
                other => other,
            })?;
            if wrapped.kind == "crypt" {
                return Err(remote
                    .invalid(
                        "remote",
                        format!(
                            "points at crypt section {name:?}: crypt over crypt is not supported"
                        ),
                    )
                    .into());
            }
            let inner_args = OpenArgs {
                section: name.clone(),
                remote_path: path.clone(),
                ..args.clone()
            };
            Box::pin(super::open(&inner_args, env)).await?
        }
    };
    let prefix_text = args.remote_path.trim_matches('/');
    let prefix = ObjectPath::parse(prefix_text).map_err(|e| BackendError::RemotePath {
        section: remote.name.clone(),
        path: args.remote_path.clone(),
        message: e.to_string(),
    })?;
    let names = NameCipher::new(&s.keys, s.mode, s.encoding, s.dir_names);
    let store = CryptStore::new(
        Arc::clone(&inner.store),
        &inner.prefix,
        names.clone(),
        s.keys.data,
    );
    let root = inner.description.clone();
    check_password(&store, &inner, &prefix, &remote.name, &root).await?;
    let incomplete = inner.incomplete.clone().map(|i| {
        Arc::new(CryptIncomplete {
            inner: i,
            inner_prefix: inner.prefix.as_ref().to_owned(),
            names,
        }) as Arc<dyn IncompleteUploads>
    });
    let mut upload = inner.upload.clone();
    // Stored ETags are of the ciphertext: verification relies on sizes and SHA-256.
    upload.etag_is_not_md5 = true;
    // A single-request upload is sealed into a copy of the file (see `transfer`).
    upload.sealed_copy = true;
    Ok(Remote {
        store: Arc::new(store),
        prefix,
        upload,
        incomplete,
        description: format!("crypt section {:?} over {}", remote.name, inner.description),
    })
}

/// Refuses a password that does not decrypt what is stored: the manifest's first
/// block when there is one, else the first objects under the crypt root (their
/// names and first blocks). An empty remote passes (nothing to compare with).
async fn check_password(
    store: &CryptStore,
    inner: &Remote,
    prefix: &ObjectPath,
    section: &str,
    root: &str,
) -> Result<(), CryptError> {
    let probe = |source| CryptError::Probe {
        section: section.to_owned(),
        root: root.to_owned(),
        source,
    };
    let wrong = |what: String| CryptError::WrongPassword {
        section: section.to_owned(),
        what,
        root: root.to_owned(),
    };
    let manifest = crate::fs::paths::manifest_key(prefix);
    match store.head(&manifest).await {
        Ok(meta) => {
            if meta.size == 0 {
                return Ok(());
            }
            return match store.get_range(&manifest, 0..1).await {
                Ok(_) => Ok(()),
                Err(e) if store::is_undecryptable(&e) => {
                    Err(wrong(format!("the manifest {manifest}")))
                }
                Err(e) => Err(probe(e)),
            };
        }
        Err(object_store::Error::NotFound { .. }) => {}
        // A stored object too short to be encrypted.
        Err(e) if store::is_undecryptable(&e) => {
            return Err(wrong(format!("the manifest {manifest}")));
        }
        Err(e) => return Err(probe(e)),
    }
    let root_prefix = (!inner.prefix.as_ref().is_empty()).then_some(&inner.prefix);
    let mut listing = inner.store.list(root_prefix).take(PROBE_OBJECTS);
    let mut failed = 0;
    while let Some(m) = listing.next().await {
        match store.decrypts(&m.map_err(probe)?).await.map_err(probe)? {
            Some(true) => return Ok(()),
            Some(false) => failed += 1,
            None => {}
        }
    }
    if failed == 0 {
        return Ok(());
    }
    Err(wrong(format!("any of the {failed} objects probed")))
}

/// Incomplete uploads of the wrapped store under the encrypted prefix; their keys
/// are the stored (encrypted) ones, which are only logged and passed back.
struct CryptIncomplete {
    inner: Arc<dyn IncompleteUploads>,
    inner_prefix: String,
    names: NameCipher,
}

#[async_trait::async_trait]
impl IncompleteUploads for CryptIncomplete {
    async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, object_store::Error> {
        let plain = prefix.trim_end_matches('/');
        let enc = self
            .names
            .encrypt_dir(plain)
            .map_err(|why| object_store::Error::Generic {
                store: "crypt",
                source: why.into(),
            })?;
        let full = [self.inner_prefix.as_str(), enc.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let p = if full.is_empty() {
            full
        } else {
            format!("{full}/")
        };
        self.inner.list(&p).await
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), object_store::Error> {
        self.inner.abort(key, upload_id).await
    }
}
