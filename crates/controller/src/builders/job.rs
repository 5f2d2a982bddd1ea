//! The mover Job: one pod running `scribe-mover` with the rclone Secret, the data volume
//! and the mover contract's environment, mounts and exit codes (the `scribe_contract` crate,
//! shared with the mover).
//!
//! Hardened by default (non-root 65532, read-only root FS, no capabilities, RuntimeDefault
//! seccomp). A `moverSecurityContext` with `runAsUser: 0` gets back only the capabilities
//! its direction needs (see [`root_capabilities`]), still without privilege escalation.
//! A destination pod gets fsGroup 65532 and its Secret is mounted 0440, so the non-root mover
//! can read it — VolSync's 0600 mount made that impossible (VolSync #720). A source pod gets
//! no fsGroup and a 0444 Secret instead: with fsGroup the kubelet chgrps and chmods (g+rw,
//! setgid) every file of a writable volume before the mover starts, which would rewrite the
//! modes of the user's own volume (copyMethod None) and the modes recorded in the bucket (the
//! end-to-end scenarios caught this on a real control plane).
//! The data volume is mounted read-only only when the plan says so (a ReadOnlyMany-only
//! volume); a [`Placement`] pins the pod to the node already using an RWO volume. The Job
//! runs one pod at a time (`parallelism` 1; the plan scales it to 0 while the CR is paused).

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scribe_api::MoverOptions;
use scribe_api::constants::RCLONE_CONFIG_KEY;
pub use scribe_contract::Direction;
use scribe_contract::{Exit, env as contract_env, paths};

use super::names::Owner;
use crate::plan::Settings;

/// Default uid/gid/fsGroup of the mover (distroless "nonroot").
pub const DEFAULT_MOVER_ID: i64 = 65532;
/// Name of the mover container (the pod failure policy names it).
pub const CONTAINER_NAME: &str = "mover";
/// Kubernetes retries the pod this many times before the Job fails (transient failures only:
/// see [`pod_failure_policy`]).
pub const BACKOFF_LIMIT: i32 = 2;
/// Mode of the mounted Secret when the pod has an fsGroup: owner and group read.
pub const SECRET_MODE: i32 = 0o440;
/// Mode of the mounted Secret when the pod has no fsGroup (the default source pod): the
/// files are root-owned, so the non-root mover reads them as "other". Only this pod's single
/// container sees the volume.
pub const SECRET_MODE_WITHOUT_FS_GROUP: i32 = 0o444;
/// Key used when `customCA.key` is not given.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

/// CPU the mover requests when `moverResources` is unset: enough to be scheduled on a busy
/// node, no CPU limit (throttling would only make a sync slower).
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Memory the mover requests when `moverResources` is unset: its working set on small trees.
pub const DEFAULT_MEMORY_REQUEST: &str = "64Mi";
/// Memory limit when `moverResources` is unset: four times the mover's goal of at most
/// 128 MiB, so a large manifest or a burst of parallel multipart buffers is not OOM-killed
/// (an OOM kill looks like a transient failure and would be retried forever), while a leak
/// cannot take a node's memory. `moverResources` replaces all of this.
pub const DEFAULT_MEMORY_LIMIT: &str = "512Mi";

/// The mover's resources when `moverResources` is unset (a pod without any is BestEffort:
/// first evicted, and unbounded).
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), q(DEFAULT_CPU_REQUEST)),
                ("memory".to_string(), q(DEFAULT_MEMORY_REQUEST)),
            ]
            .into(),
        ),
        limits: Some([("memory".to_string(), q(DEFAULT_MEMORY_LIMIT))].into()),
        ..ResourceRequirements::default()
    }
}

/// Where the mover must run: on the node of a pod that already mounts its (RWO) volume —
/// the volume can be attached to that node only — tolerating what that pod tolerates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    pub node_name: String,
    pub tolerations: Vec<Toleration>,
}

impl Placement {
    /// Required node affinity on the node's name (`metadata.name`, exact, unlike the
    /// `kubernetes.io/hostname` label, which may differ from it).
    pub fn affinity(&self) -> Affinity {
        Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".to_string(),
                            operator: "In".to_string(),
                            values: Some(vec![self.node_name.clone()]),
                        }]),
                        match_expressions: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
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
    /// Mount it read-only: only for a ReadOnlyMany-only volume (a read-only mount cannot be
    /// relabelled for SELinux, so it is used only where a writable one is impossible).
    pub read_only: bool,
    /// Pin the mover to a node (copyMethod None on a volume in use), else let it schedule.
    pub placement: Option<&'a Placement>,
    pub mover: &'a MoverOptions,
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// The pod security context used when the CR sets none: non-root 65532; fsGroup only for a
/// destination (see the module doc for why a source has none).
pub fn default_pod_security_context(direction: Direction) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_MOVER_ID),
        run_as_group: Some(DEFAULT_MOVER_ID),
        fs_group: (direction == Direction::Destination).then_some(DEFAULT_MOVER_ID),
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
                values: vec![Exit::Config.code_i32()],
            }),
            on_pod_conditions: None,
        }],
    }
}

/// The complete Job, ready for server-side apply.
pub fn build_mover_job(p: &MoverJobParams<'_>) -> Job {
    let pod_security_context = p
        .mover
        .mover_security_context
        .clone()
        .unwrap_or_else(|| default_pod_security_context(p.direction));
    let secret_mode = if pod_security_context.fs_group.is_some() {
        SECRET_MODE
    } else {
        SECRET_MODE_WITHOUT_FS_GROUP
    };
    let read_only = p.read_only;
    let mut env_vars = vec![
        env(contract_env::DIRECTION, p.direction.as_str()),
        env(contract_env::RCLONE_CONFIG_SECTION, p.section),
        env(contract_env::RCLONE_DEST_PATH, p.remote_path),
        env(contract_env::MOUNT_PATH, paths::DATA),
        env(contract_env::TERMINATION_LOG, paths::TERMINATION_LOG),
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
            mount_path: paths::DATA.to_string(),
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
            contract_env::RCLONE_CONFIG,
            &format!("{}/{RCLONE_CONFIG_KEY}", paths::RCLONE_CONFIG_DIR),
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
                default_mode: Some(secret_mode),
                optional: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "rclone-config".to_string(),
            mount_path: paths::RCLONE_CONFIG_DIR.to_string(),
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
                    default_mode: Some(secret_mode),
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
                    default_mode: Some(secret_mode),
                    optional: None,
                }),
                ..Volume::default()
            })
        };
        if let Some(volume) = volume {
            volumes.push(volume);
            mounts.push(VolumeMount {
                name: "custom-ca".to_string(),
                mount_path: paths::CUSTOM_CA_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            env_vars.push(env(
                contract_env::CUSTOM_CA,
                &format!("{}/{key}", paths::CUSTOM_CA_DIR),
            ));
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

    // Only an explicit uid 0 counts: without runAsUser the image's user (non-root) applies.
    let runs_as_root = pod_security_context.run_as_user == Some(0);
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(p.settings.mover_image.clone()),
        image_pull_policy: Some(p.settings.mover_image_pull_policy.as_str().to_string()),
        env: Some(env_vars),
        volume_mounts: Some(mounts),
        resources: Some(
            p.mover
                .mover_resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(container_security_context(p.direction, runs_as_root)),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };
    Job {
        metadata: p.owner.object_meta(p.name),
        spec: Some(JobSpec {
            // Set to 0 while the CR is paused (the Job controller then stops the pod).
            parallelism: Some(1),
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
                    affinity: p.placement.map(Placement::affinity),
                    tolerations: p
                        .placement
                        .map(|pl| pl.tolerations.clone())
                        .filter(|t| !t.is_empty()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
