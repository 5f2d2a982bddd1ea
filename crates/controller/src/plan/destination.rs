//! The ReplicationDestination state machine.
//!
//! Iteration: trigger due → destination PVC (the user's `destinationPVC`, or `scribe-dest-<name>`
//! provisioned once and kept so only changes transfer) → mover Job → on success, copyMethod
//! `Snapshot`: VolumeSnapshot `scribe-dest-<name>-<YYYYMMDDHHMMSS>` (from the Job's completion
//! time, so every pass names it the same), published as `latestImage` only once readyToUse,
//! then older images rotate out (unless labelled do-not-delete); `None`: latestImage is the PVC.
//! The succeeded Job is kept until the image is published: it is the durable marker of "data
//! synced, image pending", and no new Job can start while it exists (no torn snapshot).

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::{
    LABEL_DO_NOT_DELETE, REASON_CLEANING_UP, REASON_ERROR, REASON_PAUSED, REASON_SYNC_IN_PROGRESS,
};
use scribe_api::{DestinationCopyMethod, ReplicationDestinationStatus};

use super::common::{CLEANUP_POLL, Common, Ctx, POLL, adoptable, wait_for_trigger};
use super::conditions::truncate;
use super::mover::{JobPhase, config_fingerprint, job_phase};
use super::trigger::evaluate;
use super::validate::{RcloneSecret, ValidationError, check_custom_ca, check_rclone_secret};
use super::{Action, DestinationPlan, MetricIntent, ObjectKind, ObservedDestination, Settings};
use crate::builders::job::{Direction, MoverJobParams, build_mover_job};
use crate::builders::names::{
    Owner, destination_job_name, destination_pvc_name, destination_snapshot_name,
    destination_snapshot_prefix,
};
use crate::builders::pvc::{PvcParams, build_pvc};
use crate::builders::volume_snapshot::build_volume_snapshot;
use crate::snapshot::VolumeSnapshot;

const SNAPSHOT_API_GROUP: &str = "snapshot.storage.k8s.io";

/// Plans one reconcile pass of a ReplicationDestination. Pure: same input, same plan.
pub fn plan_destination(
    obs: &ObservedDestination,
    settings: &Settings,
    now: Timestamp,
) -> DestinationPlan {
    let now = truncate(now);
    let status = obs.cr.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(split(&status), obs.cr.metadata.generation, now);
    let mut latest_image = status.latest_image.clone();
    run(&mut ctx, obs, settings, &mut latest_image);
    let last = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    let completed = ctx
        .metrics
        .iter()
        .any(|m| matches!(m, MetricIntent::SyncSucceeded { .. }));
    let overdue = evaluate(
        obs.cr.spec.trigger.as_ref(),
        last,
        ctx.st.last_manual_sync.as_ref(),
        now,
    )
    .is_ok_and(|t| t.missed_interval);
    ctx.metrics
        .push(MetricIntent::OutOfSync(!completed && overdue));
    let (common, actions, events, metrics, requeue_after) = ctx.finish();
    DestinationPlan {
        actions,
        status: join(common, latest_image),
        events,
        metrics,
        requeue_after,
    }
}

fn is_ready(s: &VolumeSnapshot) -> bool {
    s.status.as_ref().and_then(|st| st.ready_to_use) == Some(true)
}

fn snapshot_error(s: &VolumeSnapshot) -> Option<String> {
    s.status
        .as_ref()
        .and_then(|st| st.error.as_ref())
        .and_then(|e| e.message.clone())
}

fn do_not_delete(s: &VolumeSnapshot) -> bool {
    s.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_DO_NOT_DELETE))
}

fn name_of(s: &VolumeSnapshot) -> &str {
    s.metadata.name.as_deref().unwrap_or_default()
}

fn run(
    ctx: &mut Ctx,
    obs: &ObservedDestination,
    settings: &Settings,
    latest_image: &mut Option<TypedLocalObjectReference>,
) {
    let cr = &obs.cr;
    let spec = &cr.spec;
    let rc = &spec.rclone;
    let name = cr.metadata.name.clone().unwrap_or_default();
    let owner = Owner::of_destination(cr);
    let job_name = destination_job_name(&name);
    let provisioned = rc.destination_pvc.is_none();
    let pvc_name = rc
        .destination_pvc
        .clone()
        .unwrap_or_else(|| destination_pvc_name(&name));
    let use_snapshots = rc.copy_method == DestinationCopyMethod::Snapshot;
    let paused = spec.paused.unwrap_or(false);
    let fingerprint = config_fingerprint(spec, obs.secret.as_ref());
    let last_sync = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    let prefix = destination_snapshot_prefix(&name);
    // Only `<prefix><YYYYMMDDHHMMSS>`: another CR's images (e.g. `db-2`'s for `db`) never match.
    let ours: Vec<&VolumeSnapshot> = obs
        .snapshots
        .iter()
        .filter(|s| {
            name_of(s)
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest.len() == 14 && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    let latest_name = latest_image
        .as_ref()
        .filter(|r| r.kind == "VolumeSnapshot")
        .map(|r| r.name.clone())
        .unwrap_or_default();

    let trigger = evaluate(
        spec.trigger.as_ref(),
        last_sync,
        ctx.st.last_manual_sync.as_ref(),
        ctx.now,
    );
    let validation = validate(obs);
    if let Err(e) = &trigger {
        ctx.fail(e.to_string());
    }
    if let Err(e) = &validation {
        ctx.fail(e.to_string());
    }
    if let Ok(t) = &trigger {
        ctx.st.next_sync_time = t.next_sync_time.map(Time);
    }

    if ctx.st.last_sync_start_time.is_none() {
        match &obs.job {
            Some(job) if adoptable(&job.metadata, last_sync) => {
                // Created by a pass whose status write was lost: continue that iteration.
                let start = job
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(ctx.now, |t| t.0);
                ctx.st.last_sync_start_time = Some(Time(start));
            }
            Some(job) => {
                ctx.delete(ObjectKind::Job, &job.metadata);
                ctx.syncing(
                    true,
                    REASON_CLEANING_UP,
                    format!("deleting mover Job {job_name} of the last synchronization"),
                );
                ctx.requeue(CLEANUP_POLL);
                return;
            }
            None => {
                let Ok(trigger) = &trigger else {
                    ctx.syncing(false, REASON_ERROR, "invalid spec.trigger.schedule");
                    return;
                };
                if paused {
                    ctx.syncing(
                        false,
                        REASON_PAUSED,
                        "paused (spec.paused): no new synchronization starts",
                    );
                    return;
                }
                if !wait_for_trigger(ctx, trigger) {
                    return;
                }
                if validation.is_err() {
                    ctx.syncing(
                        false,
                        REASON_ERROR,
                        "cannot start a synchronization until the configuration is fixed",
                    );
                    ctx.requeue(POLL);
                    return;
                }
                ctx.start_iteration(trigger);
            }
        }
    }

    if let Some(job) = &obs.job {
        match job_phase(job) {
            JobPhase::Running => {
                ctx.syncing(
                    true,
                    REASON_SYNC_IN_PROGRESS,
                    format!("mover Job {job_name} is running"),
                );
                ctx.requeue(POLL);
            }
            JobPhase::Failed { message, .. } => {
                ctx.job_failed(&job.metadata, obs.mover.as_ref(), &message, &fingerprint)
            }
            JobPhase::Succeeded { at } => {
                let job_created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let image = if use_snapshots {
                    // The image of this iteration: one taken after the Job started, else a new name.
                    let existing = ours.iter().find(|s| {
                        name_of(s) != latest_name
                            && !do_not_delete(s)
                            && match (job_created, s.metadata.creation_timestamp.as_ref()) {
                                (Some(j), Some(c)) => c.0 >= j,
                                _ => false,
                            }
                    });
                    let finished = at.map_or(ctx.now, truncate);
                    let wanted = existing.map_or_else(
                        || destination_snapshot_name(&name, finished),
                        |s| name_of(s).to_string(),
                    );
                    let Some(snapshot) = ours.iter().find(|s| name_of(s) == wanted) else {
                        let snap = build_volume_snapshot(
                            &wanted,
                            &owner,
                            &pvc_name,
                            rc.volume_snapshot_class_name.as_deref(),
                        );
                        ctx.create(
                            Action::ApplyVolumeSnapshot(Box::new(snap)),
                            "VolumeSnapshot",
                            &wanted,
                        );
                        ctx.syncing(
                            true,
                            REASON_SYNC_IN_PROGRESS,
                            format!("waiting for VolumeSnapshot {wanted} to be ready"),
                        );
                        ctx.requeue(POLL);
                        return;
                    };
                    if !is_ready(snapshot) {
                        let msg = match snapshot_error(snapshot) {
                            Some(e) => format!(
                                "waiting for VolumeSnapshot {wanted} to be ready: snapshot error: {e}"
                            ),
                            None => format!("waiting for VolumeSnapshot {wanted} to be ready"),
                        };
                        ctx.syncing(true, REASON_SYNC_IN_PROGRESS, msg);
                        ctx.requeue(POLL);
                        return;
                    }
                    // Rotate: everything we made except the new image and protected ones.
                    for old in ours
                        .iter()
                        .filter(|s| name_of(s) != wanted && !do_not_delete(s))
                    {
                        ctx.delete(ObjectKind::VolumeSnapshot, &old.metadata);
                    }
                    if provisioned
                        && rc.cleanup_temp_pvc == Some(true)
                        && let Some(pvc) = &obs.dest_pvc
                    {
                        ctx.delete(ObjectKind::PersistentVolumeClaim, &pvc.metadata);
                    }
                    TypedLocalObjectReference {
                        api_group: Some(SNAPSHOT_API_GROUP.to_string()),
                        kind: "VolumeSnapshot".to_string(),
                        name: wanted,
                    }
                } else {
                    TypedLocalObjectReference {
                        api_group: None,
                        kind: "PersistentVolumeClaim".to_string(),
                        name: pvc_name.clone(),
                    }
                };
                *latest_image = Some(image);
                ctx.completed(ctx.now, obs.mover.as_ref(), spec.trigger.as_ref());
                ctx.delete(ObjectKind::Job, &job.metadata);
                if let Ok(t) = evaluate(
                    spec.trigger.as_ref(),
                    Some(ctx.now),
                    ctx.st.last_manual_sync.as_ref(),
                    ctx.now,
                ) {
                    ctx.st.next_sync_time = t.next_sync_time.map(Time);
                    if let Some(wait) = t.wait {
                        ctx.requeue(wait);
                    }
                }
                ctx.syncing(
                    true,
                    REASON_CLEANING_UP,
                    format!("synchronized; deleting mover Job {job_name}"),
                );
                ctx.requeue(CLEANUP_POLL);
            }
        }
        return;
    }

    let rclone = match validation {
        Ok(v) => v,
        Err(_) => {
            ctx.syncing(
                false,
                REASON_ERROR,
                "cannot continue the synchronization until the configuration is fixed",
            );
            ctx.requeue(POLL);
            return;
        }
    };
    if !ctx.may_start_job(paused, &fingerprint) {
        return;
    }
    // Never write into the volume while an image of it is still being cut.
    if let Some(pending) = ours.iter().find(|s| {
        name_of(s) != latest_name
            && !is_ready(s)
            && snapshot_error(s).is_none()
            && s.metadata.deletion_timestamp.is_none()
    }) {
        ctx.syncing(
            true,
            REASON_SYNC_IN_PROGRESS,
            format!("waiting for VolumeSnapshot {} of the previous synchronization to be ready before writing", name_of(pending)),
        );
        ctx.requeue(POLL);
        return;
    }
    match &obs.dest_pvc {
        Some(pvc) if pvc.metadata.deletion_timestamp.is_some() => {
            ctx.syncing(
                true,
                REASON_SYNC_IN_PROGRESS,
                format!("waiting for the deleted PVC {pvc_name} to go away"),
            );
            ctx.requeue(CLEANUP_POLL);
            return;
        }
        Some(_) => {}
        None if provisioned => {
            // Validation guarantees capacity and accessModes are set.
            let pvc = build_pvc(&PvcParams {
                name: &pvc_name,
                owner: &owner,
                access_modes: rc.access_modes.clone(),
                capacity: rc.capacity.clone().unwrap_or_default(),
                storage_class_name: rc.storage_class_name.clone(),
                data_source: None,
            });
            ctx.create(
                Action::ApplyPvc(Box::new(pvc)),
                "PersistentVolumeClaim",
                &pvc_name,
            );
        }
        None => return,
    }
    let job = build_mover_job(&MoverJobParams {
        name: &job_name,
        owner: &owner,
        direction: Direction::Destination,
        settings,
        secret_name: &rc.rclone_config,
        secret_has_config: rclone.has_config,
        secret_env_keys: rclone.env_keys,
        section: &rc.rclone_config_section,
        remote_path: &rc.rclone_dest_path,
        data_pvc: &pvc_name,
        mover: &rc.mover,
    });
    ctx.create(Action::ApplyJob(Box::new(job)), "Job", &job_name);
    ctx.syncing(
        true,
        REASON_SYNC_IN_PROGRESS,
        format!("started mover Job {job_name}"),
    );
    ctx.requeue(POLL);
}

fn validate(obs: &ObservedDestination) -> Result<RcloneSecret, ValidationError> {
    let rc = &obs.cr.spec.rclone;
    let secret = check_rclone_secret(
        obs.secret.as_ref(),
        &rc.rclone_config,
        &rc.rclone_config_section,
    )?;
    match &rc.destination_pvc {
        Some(name) if obs.dest_pvc.is_none() => {
            return Err(ValidationError::PvcMissing {
                field: "spec.rclone.destinationPVC",
                name: name.clone(),
            });
        }
        Some(_) => {}
        None => {
            if rc.capacity.is_none() {
                return Err(ValidationError::ProvisioningFieldMissing {
                    field: "spec.rclone.capacity",
                });
            }
            if rc.access_modes.is_empty() {
                return Err(ValidationError::ProvisioningFieldMissing {
                    field: "spec.rclone.accessModes",
                });
            }
        }
    }
    check_custom_ca(rc.mover.custom_ca.as_ref())?;
    Ok(secret)
}

fn split(s: &ReplicationDestinationStatus) -> Common {
    Common {
        conditions: s.conditions.clone(),
        next_sync_time: s.next_sync_time.clone(),
        last_sync_time: s.last_sync_time.clone(),
        last_sync_start_time: s.last_sync_start_time.clone(),
        last_sync_duration: s.last_sync_duration.clone(),
        last_manual_sync: s.last_manual_sync.clone(),
        latest_mover_status: s.latest_mover_status.clone(),
        consecutive_failures: s.consecutive_failures,
        next_retry_time: s.next_retry_time.clone(),
        config_error_fingerprint: s.config_error_fingerprint.clone(),
    }
}

fn join(
    c: Common,
    latest_image: Option<TypedLocalObjectReference>,
) -> ReplicationDestinationStatus {
    ReplicationDestinationStatus {
        conditions: c.conditions,
        next_sync_time: c.next_sync_time,
        last_sync_time: c.last_sync_time,
        last_sync_start_time: c.last_sync_start_time,
        last_sync_duration: c.last_sync_duration,
        last_manual_sync: c.last_manual_sync,
        latest_mover_status: c.latest_mover_status,
        latest_image,
        consecutive_failures: c.consecutive_failures,
        next_retry_time: c.next_retry_time,
        config_error_fingerprint: c.config_error_fingerprint,
    }
}
