//! Checks made before any Job starts: the rclone Secret exists, holds `rclone.conf` (or
//! defines the remote through `RCLONE_CONFIG_<SECTION>_TYPE`), and the section exists —
//! so a typo surfaces as a clear condition instead of a failing pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use scribe_api::{CustomCaSpec, MoverOptions};

use super::MoverRefs;
use crate::builders::job::DEFAULT_CA_KEY;
use scribe_api::constants::{RCLONE_CONFIG_KEY, RCLONE_ENV_PREFIX};

/// Why the mover could not be configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("Secret {secret} (spec.rclone.rcloneConfig) not found")]
    SecretMissing { secret: String },
    #[error(
        "Secret {secret} (spec.rclone.rcloneConfig) has no key {RCLONE_CONFIG_KEY} and no RCLONE_CONFIG_{env_section}_TYPE key defining remote {section}"
    )]
    ConfigKeyMissing {
        secret: String,
        section: String,
        env_section: String,
    },
    #[error("Secret {secret}: key {RCLONE_CONFIG_KEY} is not UTF-8 text")]
    ConfigNotText { secret: String },
    #[error(
        "Secret {secret}: {RCLONE_CONFIG_KEY} has no section [{section}] (spec.rclone.rcloneConfigSection); sections found: {found}"
    )]
    SectionMissing {
        secret: String,
        section: String,
        found: String,
    },
    #[error("spec.rclone.rcloneConfigSection must not be empty")]
    EmptySection,
    #[error("{field}: PersistentVolumeClaim {name} not found")]
    PvcMissing { field: &'static str, name: String },
    #[error(
        "{field} must be set to provision the destination volume (or set spec.rclone.destinationPVC)"
    )]
    ProvisioningFieldMissing { field: &'static str },
    #[error("spec.rclone.customCA needs exactly one of secretName or configMapName")]
    CustomCa,
    #[error("ServiceAccount {name} (spec.rclone.moverServiceAccount) not found")]
    ServiceAccountMissing { name: String },
    #[error("{kind} {name} (spec.rclone.customCA) not found")]
    CustomCaMissing { kind: &'static str, name: String },
    #[error("{kind} {name} (spec.rclone.customCA) has no key {key}")]
    CustomCaKeyMissing {
        kind: &'static str,
        name: String,
        key: String,
    },
}

/// Secret keys with this prefix are the mover's own settings (e.g. `SCRIBE_TRANSFERS`,
/// `SCRIBE_ALLOW_EMPTY_SOURCE`), passed as env like `RCLONE_*` keys.
pub const SCRIBE_ENV_PREFIX: &str = "SCRIBE_";

/// What the Job builder needs to know about the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcloneSecret {
    /// Whether `rclone.conf` is present (and so mounted).
    pub has_config: bool,
    /// Keys passed to the mover as environment variables.
    pub env_keys: Vec<String>,
}

/// The Secret's keys and values (`data`, plus `stringData` as a client may send it).
pub fn secret_entries(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Section names of an rclone.conf, following rclone's parser: trimmed lines, `#`/`;`
/// comments, `[name]` headers.
pub fn config_sections(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(|s| s.trim().to_string())
        .collect()
}

/// How rclone names a remote in environment variables: upper case, `-` as `_`.
pub fn env_section(section: &str) -> String {
    section.to_ascii_uppercase().replace('-', "_")
}

/// Validates the rclone Secret for `section`.
pub fn check_rclone_secret(
    secret: Option<&Secret>,
    secret_name: &str,
    section: &str,
) -> Result<RcloneSecret, ValidationError> {
    if section.trim().is_empty() {
        return Err(ValidationError::EmptySection);
    }
    let secret = secret.ok_or_else(|| ValidationError::SecretMissing {
        secret: secret_name.to_string(),
    })?;
    let entries = secret_entries(secret);
    let type_keys = [
        format!("RCLONE_CONFIG_{}_TYPE", env_section(section)),
        format!("RCLONE_CONFIG_{}_TYPE", section.to_ascii_uppercase()),
    ];
    let env_defined = type_keys.iter().any(|k| entries.contains_key(k));
    let env_keys = entries
        .keys()
        .filter(|k| {
            (k.starts_with(RCLONE_ENV_PREFIX) || k.starts_with(SCRIBE_ENV_PREFIX)) && is_env_name(k)
        })
        // These are the Job's own settings; a Secret key must not silently override them.
        .filter(|k| {
            !matches!(
                k.as_str(),
                "RCLONE_CONFIG" | "RCLONE_CONFIG_SECTION" | "RCLONE_DEST_PATH"
            )
        })
        .cloned()
        .collect();
    match entries.get(RCLONE_CONFIG_KEY) {
        None if env_defined => Ok(RcloneSecret {
            has_config: false,
            env_keys,
        }),
        None => Err(ValidationError::ConfigKeyMissing {
            secret: secret_name.to_string(),
            section: section.to_string(),
            env_section: env_section(section),
        }),
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| ValidationError::ConfigNotText {
                secret: secret_name.to_string(),
            })?;
            // An encrypted rclone.conf cannot be inspected here; the mover will judge it.
            let encrypted = text.trim_start().starts_with("RCLONE_ENCRYPT_");
            let sections = config_sections(text);
            if encrypted || env_defined || sections.iter().any(|s| s == section) {
                Ok(RcloneSecret {
                    has_config: true,
                    env_keys,
                })
            } else {
                Err(ValidationError::SectionMissing {
                    secret: secret_name.to_string(),
                    section: section.to_string(),
                    found: if sections.is_empty() {
                        "none".to_string()
                    } else {
                        sections.join(", ")
                    },
                })
            }
        }
    }
}

/// A custom CA must name exactly one of a Secret or a ConfigMap.
pub fn check_custom_ca(ca: Option<&CustomCaSpec>) -> Result<(), ValidationError> {
    match ca {
        Some(ca) if ca.secret_name.is_some() == ca.config_map_name.is_some() => {
            Err(ValidationError::CustomCa)
        }
        _ => Ok(()),
    }
}

/// The objects the mover pod references exist: the ServiceAccount (else the Job controller
/// cannot create the pod) and the custom CA Secret/ConfigMap with its key (else the pod
/// never starts). Call after [`check_custom_ca`].
pub fn check_mover_refs(mover: &MoverOptions, refs: &MoverRefs) -> Result<(), ValidationError> {
    if refs.service_account_missing
        && let Some(name) = mover.mover_service_account.as_ref()
    {
        return Err(ValidationError::ServiceAccountMissing { name: name.clone() });
    }
    let Some(ca) = mover.custom_ca.as_ref() else {
        return Ok(());
    };
    let (kind, name) = match (&ca.secret_name, &ca.config_map_name) {
        (Some(s), _) => ("Secret", s.clone()),
        (None, Some(c)) => ("ConfigMap", c.clone()),
        (None, None) => return Ok(()),
    };
    if refs.custom_ca_missing {
        return Err(ValidationError::CustomCaMissing { kind, name });
    }
    let key = ca.key.clone().unwrap_or_else(|| DEFAULT_CA_KEY.to_string());
    match refs.custom_ca_keys.as_ref() {
        Some(keys) if !keys.contains(&key) => {
            Err(ValidationError::CustomCaKeyMissing { kind, name, key })
        }
        _ => Ok(()),
    }
}

fn is_env_name(k: &str) -> bool {
    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn sections_follow_rclone_rules() {
        let conf = "# comment\n; [commented]\n  [aws-s3-bucket]  \ntype = s3\n[ other ]\n";
        assert_eq!(config_sections(conf), vec!["aws-s3-bucket", "other"]);
    }

    #[test]
    fn existing_section_is_accepted_and_rclone_and_scribe_keys_become_env() {
        let s = secret(&[
            ("rclone.conf", "[aws-s3-bucket]\ntype = s3\n"),
            ("RCLONE_S3_ACCESS_KEY_ID", "x"),
            ("RCLONE_CONFIG", "/elsewhere"),
            ("SCRIBE_ALLOW_EMPTY_SOURCE", "true"),
            ("SCRIBE_TRANSFERS", "4"),
            ("SCRIBE_not-an-env-name", "z"),
            ("other", "y"),
        ]);
        let ok = check_rclone_secret(Some(&s), "rclone-secret", "aws-s3-bucket").expect("valid");
        assert!(ok.has_config);
        assert_eq!(
            ok.env_keys,
            vec![
                "RCLONE_S3_ACCESS_KEY_ID",
                "SCRIBE_ALLOW_EMPTY_SOURCE",
                "SCRIBE_TRANSFERS"
            ]
        );
    }

    #[test]
    fn missing_secret_key_and_section_are_named() {
        let err = check_rclone_secret(None, "rclone-secret", "s").expect_err("missing");
        assert!(err.to_string().contains("Secret rclone-secret"), "{err}");
        let err = check_rclone_secret(Some(&secret(&[("x", "y")])), "rclone-secret", "s")
            .expect_err("no key");
        assert!(err.to_string().contains("no key rclone.conf"), "{err}");
        let err = check_rclone_secret(Some(&secret(&[("rclone.conf", "[a]\n[b]\n")])), "rs", "aws")
            .expect_err("section");
        assert_eq!(
            err.to_string(),
            "Secret rs: rclone.conf has no section [aws] (spec.rclone.rcloneConfigSection); sections found: a, b"
        );
    }

    #[test]
    fn remote_defined_by_env_keys_needs_no_rclone_conf() {
        let s = secret(&[("RCLONE_CONFIG_AWS_S3_BUCKET_TYPE", "s3")]);
        let ok = check_rclone_secret(Some(&s), "rs", "aws-s3-bucket").expect("env remote");
        assert!(!ok.has_config);
        assert_eq!(ok.env_keys, vec!["RCLONE_CONFIG_AWS_S3_BUCKET_TYPE"]);
    }

    #[test]
    fn string_data_is_read_too() {
        let s = Secret {
            string_data: Some([("rclone.conf".to_string(), "[x]\n".to_string())].into()),
            ..Secret::default()
        };
        assert!(check_rclone_secret(Some(&s), "rs", "x").is_ok());
    }
}
