//! Observe (client required, read-only): everything the plan needs to know about one custom
//! resource — its Secret, the mover's ServiceAccount and custom CA object (only those the spec
//! names, see [`observe_mover_refs`]), volumes, point-in-time copies (during an open
//! iteration whatever the copyMethod, so a switch leaks nothing), mover Job and the Job's finished pod
//! (exit code and termination message, see [`mover_report`]) or, while it runs, why its pod
//! has not started (see [`mover_waiting`]), the pods using a source volume the mover will
//! mount directly (copyMethod None), and a destination's snapshots.
//! A missing object (404) is an observation (`None`), not an error.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use scribe_api::{
    DestinationCopyMethod, MoverOptions, ReplicationDestination, ReplicationSource,
    SourceCopyMethod,
};

use crate::builders::names::{self, Owner};
use crate::plan::placement;
use crate::plan::validate::secret_entries;
use crate::plan::{MoverRefs, MoverReport, MoverWaiting, ObservedDestination, ObservedSource};
use crate::snapshot::VolumeSnapshot;

/// Errors while reading the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("reading {kind} {namespace}/{name}: {source}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("listing {kind} in {namespace} with selector {selector}: {source}")]
    List {
        kind: &'static str,
        namespace: String,
        selector: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl ObserveError {
    pub fn source_error(&self) -> &kube::Error {
        match self {
            ObserveError::Get { source, .. } | ObserveError::List { source, .. } => source.as_ref(),
        }
    }
}

/// GET one object; a 404 is `None`.
pub async fn get<K>(
    client: &Client,
    ns: &str,
    name: &str,
    kind: &'static str,
) -> Result<Option<K>, ObserveError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|source| ObserveError::Get {
            kind,
            namespace: ns.into(),
            name: name.into(),
            source: Box::new(source),
        })
}

/// The label selectors that find a Job's pods, in the order tried: by the Job's uid (so a
/// terminated pod of an earlier Job with the same name is never read) with the label of
/// Kubernetes 1.27+, then the legacy one older clusters set; by name only if the Job has no
/// uid (never for an object read from the API server).
pub fn pod_selectors(job: &Job) -> Vec<String> {
    match job.metadata.uid.as_deref() {
        Some(uid) => vec![
            format!("batch.kubernetes.io/controller-uid={uid}"),
            format!("controller-uid={uid}"),
        ],
        None => vec![format!("job-name={}", job.name_any())],
    }
}

/// Reads the mover's outcome when its Job has finished, or why it has not started while the
/// Job runs (a pod stuck pulling its image, missing a Secret key or unschedulable otherwise
/// looks like a Job that is running).
async fn observe_mover(
    client: &Client,
    ns: &str,
    job: Option<&Job>,
) -> Result<(Option<MoverReport>, Option<MoverWaiting>), ObserveError> {
    let Some(job) = job else {
        return Ok((None, None));
    };
    let finished = job_finished(job);
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    for selector in pod_selectors(job) {
        let pods = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ObserveError::List {
                kind: "Pod",
                namespace: ns.into(),
                selector,
                source: Box::new(source),
            })?;
        if !pods.items.is_empty() {
            return Ok(if finished {
                (mover_report(&pods.items), None)
            } else {
                (None, mover_waiting(&pods.items))
            });
        }
    }
    Ok((None, None))
}

/// Looks up the ServiceAccount and custom CA object the mover pod would reference (only
/// those the spec names; not watched: a plan blocked on them polls).
pub async fn observe_mover_refs(
    client: &Client,
    ns: &str,
    mover: &MoverOptions,
) -> Result<MoverRefs, ObserveError> {
    let mut refs = MoverRefs::default();
    if let Some(sa) = mover.mover_service_account.as_deref() {
        refs.service_account_missing = get::<ServiceAccount>(client, ns, sa, "ServiceAccount")
            .await?
            .is_none();
    }
    let Some(ca) = mover.custom_ca.as_ref() else {
        return Ok(refs);
    };
    let keys = match (ca.secret_name.as_deref(), ca.config_map_name.as_deref()) {
        (Some(name), _) => get::<Secret>(client, ns, name, "Secret")
            .await?
            .map(|s| secret_entries(&s).into_keys().collect()),
        (None, Some(name)) => get::<ConfigMap>(client, ns, name, "ConfigMap")
            .await?
            .map(|c| {
                let text = c.data.unwrap_or_default().into_keys();
                let binary = c.binary_data.unwrap_or_default().into_keys();
                text.chain(binary).collect()
            }),
        (None, None) => return Ok(refs),
    };
    refs.custom_ca_missing = keys.is_none();
    refs.custom_ca_keys = keys;
    Ok(refs)
}

/// Observes a ReplicationSource.
pub async fn observe_source(
    client: &Client,
    cr: &ReplicationSource,
) -> Result<ObservedSource, ObserveError> {
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    let rclone = &cr.spec.rclone;
    let secret = get::<Secret>(client, &ns, &rclone.rclone_config, "Secret").await?;
    let mover_refs = observe_mover_refs(client, &ns, &rclone.mover).await?;
    let source_pvc =
        get::<PersistentVolumeClaim>(client, &ns, &cr.spec.source_pvc, "PersistentVolumeClaim")
            .await?;
    // During an open iteration the PiT objects are read whatever the copyMethod, so those of
    // the method in place before a switch are seen (and deleted), not leaked.
    let open = cr
        .status
        .as_ref()
        .is_some_and(|s| s.last_sync_start_time.is_some());
    let snapshot = if open || rclone.copy_method == SourceCopyMethod::Snapshot {
        get::<VolumeSnapshot>(
            client,
            &ns,
            &names::source_pit_name(&name),
            "VolumeSnapshot",
        )
        .await?
    } else {
        None
    };
    let pit_pvc = if open
        || matches!(
            rclone.copy_method,
            SourceCopyMethod::Snapshot | SourceCopyMethod::Clone
        ) {
        get::<PersistentVolumeClaim>(
            client,
            &ns,
            &names::source_pit_name(&name),
            "PersistentVolumeClaim",
        )
        .await?
    } else {
        None
    };
    let job = get::<Job>(client, &ns, &names::source_job_name(&name), "Job").await?;
    let (mover, mover_waiting) = observe_mover(client, &ns, job.as_ref()).await?;
    let direct = matches!(
        rclone.copy_method,
        SourceCopyMethod::None | SourceCopyMethod::Direct
    );
    let source_pvc_pods = match source_pvc.as_ref() {
        // Only needed to place a new mover Job, and only for a volume one node can attach.
        Some(pvc) if direct && job.is_none() && !attaches_anywhere(pvc) => {
            pods_mounting(client, &ns, &cr.spec.source_pvc).await?
        }
        _ => Vec::new(),
    };
    Ok(ObservedSource {
        cr: cr.clone(),
        secret,
        mover_refs,
        source_pvc,
        snapshot,
        pit_pvc,
        job,
        mover,
        mover_waiting,
        source_pvc_pods,
    })
}

/// Whether a volume can be mounted on any node (ReadWriteMany or ReadOnlyMany).
fn attaches_anywhere(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .is_some_and(|m| {
            m.iter()
                .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany")
        })
}

/// The pods of namespace `ns` that mount PVC `claim` (pods cannot be selected by volume:
/// all are listed, as VolSync does).
async fn pods_mounting(client: &Client, ns: &str, claim: &str) -> Result<Vec<Pod>, ObserveError> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|source| ObserveError::List {
            kind: "Pod",
            namespace: ns.into(),
            selector: String::new(),
            source: Box::new(source),
        })?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| placement::mounts(p, claim))
        .collect())
}

/// Observes a ReplicationDestination.
pub async fn observe_destination(
    client: &Client,
    cr: &ReplicationDestination,
) -> Result<ObservedDestination, ObserveError> {
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    let rclone = &cr.spec.rclone;
    let secret = get::<Secret>(client, &ns, &rclone.rclone_config, "Secret").await?;
    let mover_refs = observe_mover_refs(client, &ns, &rclone.mover).await?;
    let pvc_name = rclone
        .destination_pvc
        .clone()
        .unwrap_or_else(|| names::destination_pvc_name(&name));
    let dest_pvc =
        get::<PersistentVolumeClaim>(client, &ns, &pvc_name, "PersistentVolumeClaim").await?;
    let job = get::<Job>(client, &ns, &names::destination_job_name(&name), "Job").await?;
    let (mover, mover_waiting) = observe_mover(client, &ns, job.as_ref()).await?;
    // Snapshots matter with copyMethod Snapshot, or while the published image still is one
    // (after a switch to None, so the plan can clean up).
    let image_is_snapshot = cr
        .status
        .as_ref()
        .and_then(|s| s.latest_image.as_ref())
        .is_some_and(|i| i.kind == "VolumeSnapshot");
    let snapshots = if rclone.copy_method == DestinationCopyMethod::Snapshot || image_is_snapshot {
        // Owner name and kind: a source of the same name labels its PiT snapshot too.
        let selector = Owner::of_destination(cr).selector();
        let list = Api::<VolumeSnapshot>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await;
        match list {
            Ok(list) => list.items,
            // The snapshot CRD is not installed: there can be no snapshots.
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(source) => {
                return Err(ObserveError::List {
                    kind: "VolumeSnapshot",
                    namespace: ns.clone(),
                    selector,
                    source: Box::new(source),
                });
            }
        }
    } else {
        Vec::new()
    };
    Ok(ObservedDestination {
        cr: cr.clone(),
        secret,
        mover_refs,
        dest_pvc,
        job,
        mover,
        mover_waiting,
        snapshots,
    })
}

/// Whether a Job has finished (either way): its pods' termination messages are then final.
pub fn job_finished(job: &Job) -> bool {
    let Some(status) = job.status.as_ref() else {
        return false;
    };
    let by_condition = status
        .conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    by_condition || status.succeeded.unwrap_or(0) > 0 || status.failed.unwrap_or(0) > 0
}

/// The outcome of the most recently finished mover container among a Job's pods.
pub fn mover_report(pods: &[Pod]) -> Option<MoverReport> {
    pods.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref())
        .max_by_key(|t| t.finished_at.as_ref().map(|f| f.0))
        .map(|t| MoverReport {
            exit_code: Some(t.exit_code),
            message: t.message.clone().filter(|m| !m.trim().is_empty()),
        })
}

/// Waiting reasons every container passes through on a normal start: not a problem.
const NORMAL_WAITING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why the newest of a running Job's pods has not started its containers: the first abnormal
/// waiting state of an init or main container, else `PodScheduled=False`. `None` when the
/// newest pod runs (or is starting normally): earlier pods of a retried Job are history.
pub fn mover_waiting(pods: &[Pod]) -> Option<MoverWaiting> {
    let newest = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let status = newest.status.as_ref()?;
    let waiting = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .filter_map(|cs| cs.state.as_ref()?.waiting.as_ref())
        .find_map(|w| {
            let reason = w.reason.as_deref().filter(|r| !r.is_empty())?;
            (!NORMAL_WAITING.contains(&reason)).then(|| MoverWaiting {
                reason: reason.to_string(),
                message: w.message.clone().unwrap_or_default(),
            })
        });
    waiting.or_else(|| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| MoverWaiting {
                reason: c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                message: c.message.clone().unwrap_or_default(),
            })
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn pod(exit: i32, finished: i64, message: Option<&str>) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "mover".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: exit,
                            finished_at: Some(Time(Timestamp::from_second(finished).unwrap())),
                            message: message.map(String::from),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn report_comes_from_the_latest_finished_pod() {
        let pods = [
            pod(75, 100, Some("first")),
            pod(0, 200, Some("{\"result\":\"Successful\"}")),
            Pod::default(),
        ];
        let r = mover_report(&pods).unwrap();
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.message.as_deref(), Some("{\"result\":\"Successful\"}"));
    }

    #[test]
    fn blank_termination_message_is_absent_and_running_pods_give_no_report() {
        assert_eq!(
            mover_report(&[pod(78, 1, Some("  "))]).unwrap().message,
            None
        );
        assert_eq!(mover_report(&[Pod::default()]), None);
    }

    #[test]
    fn pods_are_selected_by_the_job_uid_with_the_legacy_label_as_fallback() {
        let mut job = Job::default();
        job.metadata.name = Some("scribe-rclone-src-db".into());
        job.metadata.uid = Some("u-42".into());
        assert_eq!(
            pod_selectors(&job),
            vec![
                "batch.kubernetes.io/controller-uid=u-42".to_string(),
                "controller-uid=u-42".to_string()
            ]
        );
        job.metadata.uid = None;
        assert_eq!(pod_selectors(&job), vec!["job-name=scribe-rclone-src-db"]);
    }

    #[test]
    fn job_is_finished_by_condition_or_counts() {
        let mut job = Job::default();
        assert!(!job_finished(&job));
        job.status = Some(JobStatus {
            active: Some(1),
            ..Default::default()
        });
        assert!(!job_finished(&job));
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(job_finished(&job));
        job.status = Some(JobStatus {
            succeeded: Some(1),
            ..Default::default()
        });
        assert!(job_finished(&job));
    }

    fn pod_json(created: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("mover-{created}"), "creationTimestamp": created},
            "status": status,
        }))
        .expect("pod")
    }

    fn waiting_pod(created: &str, reason: &str, message: &str) -> Pod {
        pod_json(
            created,
            serde_json::json!({"phase": "Pending", "containerStatuses": [{
                "name": "mover", "image": "mover:test", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}},
            }]}),
        )
    }

    #[test]
    fn waiting_reason_and_message_come_from_a_stuck_container() {
        let w = mover_waiting(&[waiting_pod(
            "2021-01-18T21:51:00Z",
            "ImagePullBackOff",
            "Back-off pulling image \"mover:test\"",
        )])
        .expect("stuck pod is reported");
        assert_eq!(w.reason, "ImagePullBackOff");
        assert_eq!(w.message, "Back-off pulling image \"mover:test\"");
        let w = mover_waiting(&[waiting_pod(
            "2021-01-18T21:51:00Z",
            "CreateContainerConfigError",
            "couldn't find key RCLONE_CONFIG in Secret default/rclone-secret",
        )])
        .expect("config error is reported");
        assert_eq!(w.reason, "CreateContainerConfigError");
    }

    #[test]
    fn a_normally_starting_or_running_pod_reports_nothing() {
        let creating = waiting_pod("2021-01-18T21:51:00Z", "ContainerCreating", "");
        assert_eq!(mover_waiting(&[creating]), None);
        let running = pod_json(
            "2021-01-18T21:51:00Z",
            serde_json::json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}]}),
        );
        assert_eq!(mover_waiting(&[running]), None);
        assert_eq!(mover_waiting(&[]), None);
    }

    #[test]
    fn an_unschedulable_pod_reports_its_scheduling_condition() {
        let pending = pod_json(
            "2021-01-18T21:51:00Z",
            serde_json::json!({"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
            }]}),
        );
        let w = mover_waiting(&[pending]).expect("unschedulable is reported");
        assert_eq!(w.reason, "Unschedulable");
        assert_eq!(w.message, "0/3 nodes are available: 3 Insufficient memory.");
    }

    #[test]
    fn only_the_newest_pod_of_a_retried_job_counts() {
        let old = waiting_pod("2021-01-18T21:51:00Z", "ErrImagePull", "pull failed");
        let new = pod_json(
            "2021-01-18T21:52:00Z",
            serde_json::json!({"phase": "Running"}),
        );
        assert_eq!(mover_waiting(&[old.clone(), new]), None);
        let newer = waiting_pod("2021-01-18T21:53:00Z", "ImagePullBackOff", "back-off");
        assert_eq!(
            mover_waiting(&[old, newer]).map(|w| w.reason),
            Some("ImagePullBackOff".to_string())
        );
    }
}
