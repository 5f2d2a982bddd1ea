//! The mover Job: one pod running `scribe-mover` with the rclone Secret, the data volume
//! and the mover contract's environment (see notes/CONTRACTS.md, "Mover CLI").
//!
//! Hardened by default (non-root 65532, read-only root FS, no capabilities, RuntimeDefault
//! seccomp). A `moverSecurityContext` with `runAsUser: 0` gets back only the capabilities
//! its direction needs (see [`root_capabilities`]), still without privilege escalation. The Secret is mounted 0440 and the pod gets fsGroup 65532, so the non-root mover
//! can read it — VolSync's 0600 mount made that impossible (VolSync #720).

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    KeyToPath, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scribe_api::MoverOptions;
use scribe_api::constants::RCLONE_CONFIG_KEY;

use super::names::Owner;
use crate::plan::Settings;
use crate::plan::mover::EXIT_CONFIG;

/// Where the rclone Secret is mounted.
pub const CONFIG_DIR: &str = "/rclone-config";
/// Where the data volume is mounted.
pub const MOUNT_PATH: &str = "/data";
/// Where the custom CA bundle is mounted.
pub const CUSTOM_CA_DIR: &str = "/custom-ca";
/// Default uid/gid/fsGroup of the mover (distroless "nonroot").
pub const DEFAULT_MOVER_ID: i64 = 65532;
/// Name of the mover container (the pod failure policy names it).
pub const CONTAINER_NAME: &str = "mover";
/// Kubernetes retries the pod this many times before the Job fails (transient failures only:
/// see [`pod_failure_policy`]).
pub const BACKOFF_LIMIT: i32 = 2;
/// Mode of the mounted Secret: owner and group read (the group is the pod's fsGroup).
pub const SECRET_MODE: i32 = 0o440;
/// Key used when `customCA.key` is not given.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

/// Which way the mover copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Source,
    Destination,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// Everything that shapes a mover Job.
#[derive(Clone, Debug)]
pub struct MoverJobParams<'a> {
    pub name: &'a str,
    pub owner: &'a Owner,
    pub direction: Direction,
    pub settings: &'a Settings,
    /// `spec.rclone.rcloneConfig`.
    pub secret_name: &'a str,
    /// Whether the Secret has `rclone.conf` (a remote may be defined by `RCLONE_*` keys alone).
    pub secret_has_config: bool,
    /// Keys of the Secret starting `RCLONE_` or `SCRIBE_`, passed to the mover as env vars.
    pub secret_env_keys: Vec<String>,
    pub section: &'a str,
    pub remote_path: &'a str,
    /// The PVC mounted at `/data`.
    pub data_pvc: &'a str,
    pub mover: &'a MoverOptions,
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// The pod security context used when the CR sets none.
pub fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_MOVER_ID),
        run_as_group: Some(DEFAULT_MOVER_ID),
        fs_group: Some(DEFAULT_MOVER_ID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Capabilities a mover running as uid 0 gets back after dropping all: reading other users'
/// files (source) or giving restored files their owner, mode and times (destination). A
/// non-root mover gets none — it could not use them anyway.
pub fn root_capabilities(direction: Direction) -> Vec<String> {
    let caps: &[&str] = match direction {
        Direction::Source => &["DAC_READ_SEARCH"],
        Direction::Destination => &["CHOWN", "FOWNER", "DAC_OVERRIDE"],
    };
    caps.iter().map(|c| c.to_string()).collect()
}

fn container_security_context(direction: Direction, runs_as_root: bool) -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: runs_as_root.then(|| root_capabilities(direction)),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Fails the Job at once when the mover exits 78 (configuration error): retrying the same
/// configuration cannot succeed, so only other exit codes use the backoff limit.
pub fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".to_string(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(CONTAINER_NAME.to_string()),
                operator: "In".to_string(),
                values: vec![EXIT_CONFIG],
            }),
            on_pod_conditions: None,
        }],
    }
}

/// The complete Job, ready for server-side apply.
pub fn build_mover_job(p: &MoverJobParams<'_>) -> Job {
    let read_only = p.direction == Direction::Source;
    let mut env_vars = vec![
        env("DIRECTION", p.direction.as_str()),
        env("RCLONE_CONFIG_SECTION", p.section),
        env("RCLONE_DEST_PATH", p.remote_path),
        env("MOUNT_PATH", MOUNT_PATH),
        env("TERMINATION_LOG", "/dev/termination-log"),
    ];
    let mut volumes = vec![
        Volume {
            name: "data".to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: p.data_pvc.to_string(),
                read_only: Some(read_only),
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "data".to_string(),
            mount_path: MOUNT_PATH.to_string(),
            read_only: Some(read_only),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".to_string(),
            mount_path: "/tmp".to_string(),
            ..VolumeMount::default()
        },
    ];
    if p.secret_has_config {
        env_vars.push(env(
            "RCLONE_CONFIG",
            &format!("{CONFIG_DIR}/{RCLONE_CONFIG_KEY}"),
        ));
        volumes.push(Volume {
            name: "rclone-config".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(p.secret_name.to_string()),
                items: Some(vec![KeyToPath {
                    key: RCLONE_CONFIG_KEY.to_string(),
                    path: RCLONE_CONFIG_KEY.to_string(),
                    mode: None,
                }]),
                default_mode: Some(SECRET_MODE),
                optional: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "rclone-config".to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(ca) = &p.mover.custom_ca {
        let key = ca.key.clone().unwrap_or_else(|| DEFAULT_CA_KEY.to_string());
        let items = Some(vec![KeyToPath {
            key: key.clone(),
            path: key.clone(),
            mode: None,
        }]);
        let volume = if let Some(secret) = &ca.secret_name {
            Some(Volume {
                name: "custom-ca".to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    items,
                    default_mode: Some(SECRET_MODE),
                    optional: None,
                }),
                ..Volume::default()
            })
        } else {
            ca.config_map_name.as_ref().map(|cm| Volume {
                name: "custom-ca".to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.clone(),
                    items,
                    default_mode: Some(SECRET_MODE),
                    optional: None,
                }),
                ..Volume::default()
            })
        };
        if let Some(volume) = volume {
            volumes.push(volume);
            mounts.push(VolumeMount {
                name: "custom-ca".to_string(),
                mount_path: CUSTOM_CA_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            env_vars.push(env("CUSTOM_CA", &format!("{CUSTOM_CA_DIR}/{key}")));
        }
    }
    for key in &p.secret_env_keys {
        env_vars.push(EnvVar {
            name: key.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: p.secret_name.to_string(),
                    key: key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }

    let mut pod_labels = p.mover.mover_pod_labels.clone().unwrap_or_default();
    // Ours win: the owner labels are how the controller finds the pod again.
    pod_labels.extend(p.owner.labels());

    let pod_security_context = p
        .mover
        .mover_security_context
        .clone()
        .unwrap_or_else(default_pod_security_context);
    // Only an explicit uid 0 counts: without runAsUser the image's user (non-root) applies.
    let runs_as_root = pod_security_context.run_as_user == Some(0);
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(p.settings.mover_image.clone()),
        image_pull_policy: Some(p.settings.mover_image_pull_policy.clone()),
        env: Some(env_vars),
        volume_mounts: Some(mounts),
        resources: p.mover.mover_resources.clone(),
        security_context: Some(container_security_context(p.direction, runs_as_root)),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };
    Job {
        metadata: p.owner.object_meta(p.name),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_string()),
                    service_account_name: p.mover.mover_service_account.clone(),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
