//! Names, labels and owner references of everything the controller creates.
//!
//! Kubernetes limits Job names and label values to 63 characters; Scribe's names embed the
//! CR's name, so long ones are shortened deterministically: a readable prefix, `-`, and 8 hex
//! characters of the SHA-256 of the full name — the same input always gives the same name, and
//! two long names sharing a prefix still differ.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use scribe_api::constants::{
    CREATED_BY_VALUE, LABEL_CREATED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME,
};
use scribe_api::{ReplicationDestination, ReplicationSource};
use sha2::{Digest, Sha256};

/// Longest name (and label value) Scribe produces.
pub const MAX_NAME_LEN: usize = 63;

/// `name` if it fits in `max` characters, else a readable prefix + `-` + 8 hex of its hash.
pub fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = hex_prefix(name, 8);
    let keep = max.saturating_sub(hash.len() + 1);
    let mut prefix: String = name.chars().take(keep).collect();
    // Names and label values must end alphanumeric before the separator.
    while prefix.ends_with(['-', '.', '_']) {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

/// First `n` hex characters of the SHA-256 of `s`.
pub fn hex_prefix(s: &str, n: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    out.truncate(n);
    out
}

/// PiT VolumeSnapshot and PVC of a source: `scribe-src-<name>`.
pub fn source_pit_name(cr: &str) -> String {
    shorten(&format!("scribe-src-{cr}"), MAX_NAME_LEN)
}

/// Mover Job of a source: `scribe-rclone-src-<name>`.
pub fn source_job_name(cr: &str) -> String {
    shorten(&format!("scribe-rclone-src-{cr}"), MAX_NAME_LEN)
}

/// Provisioned destination PVC: `scribe-dest-<name>`.
pub fn destination_pvc_name(cr: &str) -> String {
    shorten(&format!("scribe-dest-{cr}"), MAX_NAME_LEN)
}

/// Mover Job of a destination: `scribe-rclone-dst-<name>`.
pub fn destination_job_name(cr: &str) -> String {
    shorten(&format!("scribe-rclone-dst-{cr}"), MAX_NAME_LEN)
}

/// Prefix shared by every destination image snapshot (`scribe-dest-<name>-`).
pub fn destination_snapshot_prefix(cr: &str) -> String {
    // Room for `-YYYYMMDDHHMMSS` (15 characters) after the base.
    format!(
        "{}-",
        shorten(&format!("scribe-dest-{cr}"), MAX_NAME_LEN - 15)
    )
}

/// Destination image snapshot: `scribe-dest-<name>-<YYYYMMDDHHMMSS>` (UTC).
pub fn destination_snapshot_name(cr: &str, at: k8s_openapi::jiff::Timestamp) -> String {
    let stamp = k8s_openapi::jiff::fmt::strtime::format("%Y%m%d%H%M%S", at)
        .unwrap_or_else(|_| at.as_second().to_string());
    format!("{}{stamp}", destination_snapshot_prefix(cr))
}

/// The custom resource that owns what the builders make.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub owner_ref: OwnerReference,
}

impl Owner {
    pub fn of_source(cr: &ReplicationSource) -> Self {
        Self::new("ReplicationSource", cr.meta(), cr.controller_owner_ref(&()))
    }

    pub fn of_destination(cr: &ReplicationDestination) -> Self {
        Self::new(
            "ReplicationDestination",
            cr.meta(),
            cr.controller_owner_ref(&()),
        )
    }

    fn new(kind: &'static str, meta: &ObjectMeta, owner_ref: Option<OwnerReference>) -> Self {
        let name = meta.name.clone().unwrap_or_default();
        // `controller_owner_ref` is None only without a name; keep building so the
        // apply fails loudly at the API server rather than here.
        let owner_ref = owner_ref.unwrap_or_else(|| OwnerReference {
            api_version: format!(
                "{}/{}",
                scribe_api::constants::GROUP,
                scribe_api::constants::VERSION
            ),
            kind: kind.to_string(),
            name: name.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        Self {
            kind,
            name,
            namespace: meta.namespace.clone().unwrap_or_default(),
            owner_ref,
        }
    }

    /// Labels every created object carries; also the selector for listing them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CREATED_BY.to_string(), CREATED_BY_VALUE.to_string()),
            (
                LABEL_OWNER_NAME.to_string(),
                shorten(&self.name, MAX_NAME_LEN),
            ),
            (LABEL_OWNER_KIND.to_string(), self.kind.to_string()),
        ])
    }

    /// Label selector matching everything this owner created (for list/watch in observe).
    pub fn selector(&self) -> String {
        self.labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Metadata for a new object owned by this CR.
    pub fn object_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_verbatim() {
        assert_eq!(
            source_job_name("database-source"),
            "scribe-rclone-src-database-source"
        );
        assert_eq!(
            source_pit_name("database-source"),
            "scribe-src-database-source"
        );
        assert_eq!(
            destination_pvc_name("database-destination"),
            "scribe-dest-database-destination"
        );
    }

    #[test]
    fn long_names_are_shortened_to_63_with_a_hash_suffix() {
        let cr = "a".repeat(60);
        let job = source_job_name(&cr);
        assert_eq!(job.len(), 63);
        assert!(job.starts_with("scribe-rclone-src-aaaa"), "{job}");
        let (_, hash) = job.rsplit_once('-').expect("has a hash suffix");
        assert_eq!(hash.len(), 8);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(job, source_job_name(&cr), "deterministic");
    }

    #[test]
    fn long_names_with_a_common_prefix_stay_distinct() {
        let a = source_job_name(&format!("{}-one", "x".repeat(60)));
        let b = source_job_name(&format!("{}-two", "x".repeat(60)));
        assert_ne!(a, b);
    }

    #[test]
    fn shortened_prefix_never_ends_in_a_separator() {
        // Put a dash exactly where the cut falls.
        let name = format!("{}-{}", "b".repeat(53), "c".repeat(20));
        let short = shorten(&name, 63);
        assert!(short.len() <= 63);
        assert!(!short.contains("--"), "{short}");
    }

    #[test]
    fn destination_snapshot_name_keeps_the_readable_timestamp() {
        let at: k8s_openapi::jiff::Timestamp = "2021-01-19T22:16:01Z".parse().expect("ts");
        assert_eq!(
            destination_snapshot_name("database-destination", at),
            "scribe-dest-database-destination-20210119221601"
        );
        let long = destination_snapshot_name(&"d".repeat(70), at);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-20210119221601"), "{long}");
    }
}
