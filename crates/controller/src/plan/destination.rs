//! The ReplicationDestination state machine.
//!
//! Iteration: trigger due → destination PVC (the user's `destinationPVC`, or `scribe-dest-<name>`
//! provisioned once and kept so only changes transfer) → mover Job → on success, copyMethod
//! `Snapshot`: VolumeSnapshot `scribe-dest-<name>-<YYYYMMDDHHMMSS>` (from the Job's completion
//! time, so every pass names it the same), published as `latestImage` only once readyToUse,
//! then older images rotate out; `None`: latestImage is the PVC. Images labelled do-not-delete
//! (`scribe.backube/` or `volsync.backube/`) are released, never deleted. An image the
//! snapshotter fails to take is replaced (see `snapshots`).
//! The succeeded Job is kept until the image is published: it is the durable marker of "data
//! synced, image pending", and no new Job can start while it exists (no torn snapshot).

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::REASON_SYNC_IN_PROGRESS;
use scribe_api::{DestinationCopyMethod, ReplicationDestinationStatus};

use super::common::{CLEANUP_POLL, Ctx, StatusParts, owned_by};
use super::conditions::truncate;
use super::mover::config_fingerprint;
use super::snapshots::{kept, snapshot_error, snapshot_ready};
use super::validate::{
    RcloneSecret, ValidationError, check_custom_ca, check_mover_refs, check_rclone_secret,
};
use super::{DestinationPlan, MetricIntent, ObjectKind, ObservedDestination, Settings};
use crate::builders::job::{Direction, MoverJobParams};
use crate::builders::names::{
    Owner, destination_job_name, destination_pvc_name, destination_snapshot_name,
    destination_snapshot_prefix,
};
use crate::builders::pvc::{PvcParams, build_pvc};
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
    let mut ctx = Ctx::new(status.common(), obs.cr.metadata.generation, now);
    ctx.owner_uid = obs.cr.metadata.uid.clone();
    ctx.created = obs.cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut latest_image = status.latest_image.clone();
    run(&mut ctx, obs, settings, &mut latest_image);
    let last = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    let completed = ctx
        .metrics
        .iter()
        .any(|m| matches!(m, MetricIntent::SyncSucceeded { .. }));
    let overdue = ctx
        .trigger_state(obs.cr.spec.trigger.as_ref(), last)
        .is_ok_and(|t| t.missed_interval);
    ctx.metrics
        .push(MetricIntent::OutOfSync(!completed && overdue));
    let (common, actions, events, metrics, requeue_after) = ctx.finish();
    DestinationPlan {
        actions,
        status: ReplicationDestinationStatus {
            latest_image,
            ..status.with_common(common)
        },
        events,
        metrics,
        requeue_after,
    }
}

fn do_not_delete(s: &VolumeSnapshot) -> bool {
    kept(&s.metadata)
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

    let trigger = ctx.trigger_state(spec.trigger.as_ref(), last_sync);
    let validation = validate(obs);
    ctx.record_checks(&trigger, &validation);
    // Images labelled do-not-delete are the user's: released, so the garbage collector
    // keeps them when this CR goes, and never rotated out.
    for image in ours.iter().filter(|s| do_not_delete(s)) {
        ctx.release(&image.metadata);
    }

    // Images are not iteration objects: only the Job marks an iteration in progress.
    let found: Vec<(ObjectKind, &ObjectMeta)> = obs
        .job
        .iter()
        .map(|j| (ObjectKind::Job, &j.metadata))
        .collect();
    if !ctx.open_iteration(
        &found,
        format!("deleting mover Job {job_name} of the last synchronization"),
        &trigger,
        paused,
        validation.is_ok(),
    ) {
        return;
    }

    if let Some(job) = &obs.job {
        if let Some(finished) = ctx.job_succeeded(
            job,
            obs.mover.as_ref(),
            obs.mover_waiting.as_ref(),
            &fingerprint,
            "",
            paused,
        ) {
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
                let wanted = existing.map_or_else(
                    || destination_snapshot_name(&name, finished),
                    |s| name_of(s).to_string(),
                );
                let observed = ours.iter().find(|s| name_of(s) == wanted).copied();
                if ctx
                    .ready_snapshot(
                        observed,
                        &wanted,
                        &owner,
                        &pvc_name,
                        rc.volume_snapshot_class_name.as_deref(),
                    )
                    .is_none()
                {
                    return;
                }
                // Rotate: everything we own except the new image and protected ones (a
                // released image is no longer ours and is left alone).
                let uid = ctx.owner_uid.clone();
                for old in ours.iter().filter(|s| {
                    name_of(s) != wanted
                        && !do_not_delete(s)
                        && owned_by(&s.metadata, uid.as_deref())
                }) {
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
                // Images of an earlier copyMethod Snapshot go once the volume is the image
                // (the observation lists them while latestImage still names one).
                let uid = ctx.owner_uid.clone();
                for old in ours
                    .iter()
                    .filter(|s| !do_not_delete(s) && owned_by(&s.metadata, uid.as_deref()))
                {
                    ctx.delete(ObjectKind::VolumeSnapshot, &old.metadata);
                }
                TypedLocalObjectReference {
                    api_group: None,
                    kind: "PersistentVolumeClaim".to_string(),
                    name: pvc_name.clone(),
                }
            };
            *latest_image = Some(image);
            ctx.finish_iteration(
                ctx.now,
                obs.mover.as_ref(),
                spec.trigger.as_ref(),
                &[(ObjectKind::Job, &job.metadata)],
                // As in the passes that wait for the deletion: the status is written once.
                format!("deleting mover Job {job_name} of the last synchronization"),
            );
        }
        return;
    }

    let Some(rclone) = ctx.job_gate(validation, paused, &fingerprint) else {
        return;
    };
    // Never write into the volume while an image of it is still being cut.
    if let Some(pending) = ours.iter().find(|s| {
        name_of(s) != latest_name
            && !snapshot_ready(s)
            && snapshot_error(s).is_none()
            && s.metadata.deletion_timestamp.is_none()
    }) {
        ctx.progress(format!(
            "waiting for VolumeSnapshot {} of the previous synchronization to be ready before writing",
            name_of(pending)
        ));
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
                volume_mode: None,
                data_source: None,
            });
            ctx.create_pvc(pvc, &pvc_name);
        }
        None => return,
    }
    ctx.start_job(&MoverJobParams {
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
        read_only: false,
        placement: None,
        mover: &rc.mover,
    });
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
    check_mover_refs(&rc.mover, &obs.mover_refs)?;
    Ok(secret)
}
