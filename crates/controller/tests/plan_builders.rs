//! Builder tests of the mover Job: its environment, volumes and security, owner references
//! and labels. The other objects' builders are tested in `plan_objects`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use scribe_api::{CustomCaSpec, MoverOptions};
use scribe_controller::builders::job::{Direction, MoverJobParams, Placement, build_mover_job};
use scribe_controller::builders::names::Owner;
use scribe_controller::plan::Settings;

/// The owner every built object in these tests has (uid `uid-1`).
pub fn owner() -> Owner {
    Owner {
        kind: "ReplicationSource",
        name: "db".into(),
        namespace: "ns".into(),
        owner_ref: OwnerReference {
            api_version: "scribe.backube/v1alpha1".into(),
            kind: "ReplicationSource".into(),
            name: "db".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

fn settings() -> Settings {
    Settings {
        mover_image: "example.com/scribe-mover:1.0".into(),
        mover_image_pull_policy: scribe_controller::plan::PullPolicy::Always,
    }
}

fn job(direction: Direction, mover: &MoverOptions, has_config: bool, env_keys: &[&str]) -> Job {
    shaped_job(direction, mover, has_config, env_keys, false, None)
}

fn shaped_job(
    direction: Direction,
    mover: &MoverOptions,
    has_config: bool,
    env_keys: &[&str],
    read_only: bool,
    placement: Option<&Placement>,
) -> Job {
    let owner = owner();
    let settings = settings();
    build_mover_job(&MoverJobParams {
        name: "scribe-rclone-src-db",
        owner: &owner,
        direction,
        settings: &settings,
        secret_name: "rclone-secret",
        secret_has_config: has_config,
        secret_env_keys: env_keys.iter().map(|s| s.to_string()).collect(),
        section: "aws-s3-bucket",
        remote_path: "bucket/prefix",
        data_pvc: "scribe-src-db",
        read_only,
        placement,
        mover,
    })
}

fn pod(job: &Job) -> &PodSpec {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn container(job: &Job) -> &Container {
    &pod(job).containers[0]
}

fn env_map(job: &Job) -> BTreeMap<String, String> {
    container(job)
        .env
        .iter()
        .flatten()
        .map(|e| {
            let v = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    let r = from.secret_key_ref.as_ref().expect("secret ref");
                    format!("secret:{}/{}", r.name, r.key)
                }
                _ => String::new(),
            };
            (e.name.clone(), v)
        })
        .collect()
}

#[test]
fn job_env_follows_the_mover_contract() {
    let j = job(
        Direction::Source,
        &MoverOptions::default(),
        true,
        &["RCLONE_S3_ACCESS_KEY_ID"],
    );
    let env = env_map(&j);
    assert_eq!(env["DIRECTION"], "source");
    assert_eq!(env["RCLONE_CONFIG"], "/rclone-config/rclone.conf");
    assert_eq!(env["RCLONE_CONFIG_SECTION"], "aws-s3-bucket");
    assert_eq!(env["RCLONE_DEST_PATH"], "bucket/prefix");
    assert_eq!(env["MOUNT_PATH"], "/data");
    assert_eq!(env["TERMINATION_LOG"], "/dev/termination-log");
    assert_eq!(
        env["RCLONE_S3_ACCESS_KEY_ID"],
        "secret:rclone-secret/RCLONE_S3_ACCESS_KEY_ID"
    );
    assert!(!env.contains_key("CUSTOM_CA"));
    let dst = job(Direction::Destination, &MoverOptions::default(), true, &[]);
    assert_eq!(env_map(&dst)["DIRECTION"], "destination");
}

#[test]
fn job_spec_has_no_retries_beyond_two_and_never_restarts() {
    let j = job(Direction::Source, &MoverOptions::default(), true, &[]);
    let spec = j.spec.as_ref().expect("spec");
    assert_eq!(spec.backoff_limit, Some(2));
    // A configuration error (exit 78 of the mover container) fails the Job without retries.
    let rules = &spec
        .pod_failure_policy
        .as_ref()
        .expect("podFailurePolicy")
        .rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].action, "FailJob");
    let codes = rules[0].on_exit_codes.as_ref().expect("onExitCodes");
    assert_eq!(
        (
            codes.container_name.as_deref(),
            codes.operator.as_str(),
            &codes.values
        ),
        (Some("mover"), "In", &vec![78])
    );
    assert_eq!(container(&j).name, "mover");
    assert_eq!(spec.ttl_seconds_after_finished, None);
    assert_eq!(spec.active_deadline_seconds, None);
    let pod = pod(&j);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = container(&j);
    assert_eq!(c.image.as_deref(), Some("example.com/scribe-mover:1.0"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
}

#[test]
fn secret_is_mounted_read_only_0440_with_only_rclone_conf() {
    let j = job(Direction::Destination, &MoverOptions::default(), true, &[]);
    let vols = pod(&j).volumes.as_ref().expect("volumes");
    let secret = vols
        .iter()
        .find(|v| v.name == "rclone-config")
        .and_then(|v| v.secret.as_ref())
        .expect("secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("rclone-secret"));
    assert_eq!(secret.default_mode, Some(0o440));
    let items = secret.items.as_ref().expect("items");
    assert_eq!(
        (items.len(), items[0].key.as_str(), items[0].path.as_str()),
        (1, "rclone.conf", "rclone.conf")
    );
    let mounts = container(&j).volume_mounts.clone().expect("mounts");
    let m = mounts
        .iter()
        .find(|m| m.name == "rclone-config")
        .expect("mount");
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        ("/rclone-config", Some(true))
    );
}

#[test]
fn data_volume_is_mounted_read_only_only_when_asked() {
    // The plan asks for it only for a ReadOnlyMany-only source volume (see plan::placement).
    for ro in [true, false] {
        let j = shaped_job(
            Direction::Source,
            &MoverOptions::default(),
            true,
            &[],
            ro,
            None,
        );
        let mounts = container(&j).volume_mounts.clone().expect("mounts");
        let data = mounts
            .iter()
            .find(|m| m.name == "data")
            .expect("data mount");
        assert_eq!(
            (data.mount_path.as_str(), data.read_only),
            ("/data", Some(ro))
        );
        let tmp = mounts.iter().find(|m| m.name == "tmp").expect("tmp mount");
        assert_eq!(tmp.mount_path, "/tmp");
        let vols = pod(&j).volumes.clone().expect("volumes");
        assert!(
            vols.iter()
                .any(|v| v.name == "tmp" && v.empty_dir.is_some())
        );
        let claim = vols
            .iter()
            .find_map(|v| v.persistent_volume_claim.clone())
            .expect("pvc volume");
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("scribe-src-db", Some(ro))
        );
    }
}

#[test]
fn a_placed_mover_requires_the_node_by_name_and_tolerates_what_the_app_tolerates() {
    let placement = Placement {
        node_name: "node-7".into(),
        tolerations: vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
    };
    let j = shaped_job(
        Direction::Source,
        &MoverOptions::default(),
        true,
        &[],
        false,
        Some(&placement),
    );
    let v = serde_json::to_value(pod(&j)).expect("json");
    assert_eq!(
        v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0],
        serde_json::json!({"key": "metadata.name", "operator": "In", "values": ["node-7"]})
    );
    assert_eq!(v["tolerations"][0]["key"], "dedicated");
    let free = job(Direction::Source, &MoverOptions::default(), true, &[]);
    assert!(pod(&free).affinity.is_none() && pod(&free).tolerations.is_none());
    assert_eq!(free.spec.as_ref().and_then(|s| s.parallelism), Some(1));
}

#[test]
fn source_pods_have_no_fs_group_so_the_kubelet_leaves_the_volume_alone() {
    // With an fsGroup the kubelet would chgrp/chmod every file of a writable source volume.
    let j = job(Direction::Source, &MoverOptions::default(), true, &[]);
    let psc = pod(&j)
        .security_context
        .clone()
        .expect("pod security context");
    assert_eq!(
        (
            psc.run_as_non_root,
            psc.run_as_user,
            psc.run_as_group,
            psc.fs_group
        ),
        (Some(true), Some(65532), Some(65532), None)
    );
    let secret = pod(&j)
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == "rclone-config")
        .and_then(|v| v.secret.clone())
        .expect("secret volume");
    assert_eq!(
        secret.default_mode,
        Some(0o444),
        "readable without the fsGroup"
    );
}

#[test]
fn default_security_is_non_root_with_fs_group_and_a_locked_down_container() {
    let j = job(Direction::Destination, &MoverOptions::default(), true, &[]);
    let psc = pod(&j)
        .security_context
        .clone()
        .expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        (psc.run_as_user, psc.run_as_group, psc.fs_group),
        (Some(65532), Some(65532), Some(65532))
    );
    let sc = container(&j)
        .security_context
        .clone()
        .expect("container security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".to_string())
    );
}

fn added_capabilities(job: &Job) -> Option<Vec<String>> {
    let sc = container(job)
        .security_context
        .clone()
        .expect("container sc");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    caps.add
}

#[test]
fn a_root_mover_gets_back_only_the_capabilities_its_direction_needs() {
    let root = MoverOptions {
        mover_security_context: Some(PodSecurityContext {
            run_as_user: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let caps = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        added_capabilities(&job(Direction::Source, &root, true, &[])),
        caps(&["DAC_READ_SEARCH"])
    );
    assert_eq!(
        added_capabilities(&job(Direction::Destination, &root, true, &[])),
        caps(&["CHOWN", "FOWNER", "DAC_OVERRIDE"])
    );
    // Non-root (default, an explicit uid, or no runAsUser at all): nothing is added.
    let uid_1000 = MoverOptions {
        mover_security_context: Some(PodSecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let unset = MoverOptions {
        mover_security_context: Some(PodSecurityContext::default()),
        ..Default::default()
    };
    for mover in [MoverOptions::default(), uid_1000, unset] {
        for dir in [Direction::Source, Direction::Destination] {
            assert_eq!(added_capabilities(&job(dir, &mover, true, &[])), None);
        }
    }
}

#[test]
fn mover_options_override_security_context_and_add_account_resources_labels() {
    let mover = MoverOptions {
        mover_security_context: Some(PodSecurityContext {
            run_as_user: Some(1000),
            fs_group: Some(2000),
            ..Default::default()
        }),
        mover_service_account: Some("mover-sa".into()),
        mover_resources: Some(ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("512Mi".into()))].into()),
            ..Default::default()
        }),
        mover_pod_labels: Some([("team".to_string(), "storage".to_string())].into()),
        custom_ca: None,
    };
    let j = job(Direction::Source, &mover, true, &[]);
    let pod = pod(&j);
    let psc = pod.security_context.clone().expect("psc");
    assert_eq!((psc.run_as_user, psc.fs_group), (Some(1000), Some(2000)));
    assert_eq!(pod.service_account_name.as_deref(), Some("mover-sa"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let limits = container(&j)
        .resources
        .clone()
        .and_then(|r| r.limits)
        .expect("limits");
    assert_eq!(limits["memory"], Quantity("512Mi".into()));
    let labels = j
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels["team"], "storage");
    assert_eq!(labels["app.kubernetes.io/created-by"], "scribe");
}

#[test]
fn custom_ca_from_a_secret_or_a_config_map_is_mounted_and_named_in_env() {
    for (secret, cm) in [(Some("ca-secret"), None), (None, Some("ca-map"))] {
        let mover = MoverOptions {
            custom_ca: Some(CustomCaSpec {
                secret_name: secret.map(Into::into),
                config_map_name: cm.map(Into::into),
                key: Some("bundle.pem".into()),
            }),
            ..Default::default()
        };
        let j = job(Direction::Destination, &mover, true, &[]);
        assert_eq!(env_map(&j)["CUSTOM_CA"], "/custom-ca/bundle.pem");
        let vol = pod(&j)
            .volumes
            .clone()
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "custom-ca")
            .expect("ca volume");
        match (secret, cm) {
            (Some(s), _) => assert_eq!(vol.secret.and_then(|v| v.secret_name).as_deref(), Some(s)),
            (_, Some(c)) => assert_eq!(vol.config_map.map(|v| v.name).as_deref(), Some(c)),
            _ => unreachable!(),
        }
        let mounts = container(&j).volume_mounts.clone().expect("mounts");
        assert!(mounts.iter().any(|m| m.name == "custom-ca"
            && m.mount_path == "/custom-ca"
            && m.read_only == Some(true)));
    }
}

#[test]
fn without_rclone_conf_nothing_is_mounted_and_rclone_config_is_unset() {
    let j = job(
        Direction::Source,
        &MoverOptions::default(),
        false,
        &["RCLONE_CONFIG_S3_TYPE"],
    );
    assert!(!env_map(&j).contains_key("RCLONE_CONFIG"));
    assert!(
        !pod(&j)
            .volumes
            .clone()
            .expect("volumes")
            .iter()
            .any(|v| v.name == "rclone-config")
    );
}

#[test]
fn job_is_owned_by_the_cr_and_labelled() {
    let j = job(Direction::Source, &MoverOptions::default(), true, &[]);
    let refs = j.metadata.owner_references.clone().expect("owner refs");
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].controller, refs[0].block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(refs[0].uid, "uid-1");
    let labels = j.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/created-by"], "scribe");
    assert_eq!(labels["scribe.backube/owner-name"], "db");
    assert_eq!(labels["scribe.backube/owner-kind"], "ReplicationSource");
    assert_eq!(j.metadata.namespace.as_deref(), Some("ns"));
}
