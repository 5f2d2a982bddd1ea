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

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::REASON_SYNC_IN_PROGRESS;
use scribe_api::{DestinationCopyMethod, ReplicationDestinationStatus};

use super::common::{CLEANUP_POLL, Ctx, StatusParts, owned_by};
use super::conditions::truncate;
use super::mover::config_fingerprint;
use super::phase::{Decision, Facts, Phase, decide};
use super::schedule::ScheduleError;
use super::snapshots::{kept, snapshot_error, snapshot_ready};
use super::trigger::TriggerState;
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
    let status = obs.cr.status.clone().unwrap_or_default();
    let mut ctx = context(obs, truncate(now));
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

/// The phase a pass of a ReplicationDestination is in at `now` (see `phase`). Pure.
pub fn destination_phase(obs: &ObservedDestination, now: Timestamp) -> Decision {
    let ctx = context(obs, truncate(now));
    Pass::new(&ctx, obs).decide(&ctx)
}

/// The pass being planned, from the observed status.
fn context(obs: &ObservedDestination, now: Timestamp) -> Ctx {
    let cr = &obs.cr;
    let status = cr.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(status.common(), cr.metadata.generation, now);
    ctx.owner_uid = cr.metadata.uid.clone();
    ctx.created = cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ctx
}

fn do_not_delete(s: &VolumeSnapshot) -> bool {
    kept(&s.metadata)
}

fn name_of(s: &VolumeSnapshot) -> &str {
    s.metadata.name.as_deref().unwrap_or_default()
}

/// What a pass derives from the observation before it acts.
struct Pass<'o> {
    obs: &'o ObservedDestination,
    trigger: Result<TriggerState, ScheduleError>,
    validation: Result<RcloneSecret, ValidationError>,
    fingerprint: String,
    paused: bool,
    name: String,
    owner: Owner,
    job_name: String,
    /// The destination PVC: the user's `destinationPVC`, else the one Scribe provisions.
    pvc_name: String,
    provisioned: bool,
    /// The images of this CR: only `<prefix><YYYYMMDDHHMMSS>`, so another CR's (e.g.
    /// `db-2`'s for `db`) never match.
    ours: Vec<&'o VolumeSnapshot>,
    /// The image `latestImage` names, if it is a VolumeSnapshot (else empty).
    latest_name: String,
    /// Images are not iteration objects: only the Job marks an iteration in progress.
    found: Vec<(ObjectKind, &'o ObjectMeta)>,
}

impl<'o> Pass<'o> {
    fn new(ctx: &Ctx, obs: &'o ObservedDestination) -> Self {
        let cr = &obs.cr;
        let spec = &cr.spec;
        let name = cr.metadata.name.clone().unwrap_or_default();
        let prefix = destination_snapshot_prefix(&name);
        let ours = obs
            .snapshots
            .iter()
            .filter(|s| {
                name_of(s).strip_prefix(&prefix).is_some_and(|rest| {
                    rest.len() == 14 && rest.bytes().all(|b| b.is_ascii_digit())
                })
            })
            .collect();
        let latest_name = cr
            .status
            .as_ref()
            .and_then(|s| s.latest_image.as_ref())
            .filter(|r| r.kind == "VolumeSnapshot")
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let last_sync = ctx.st.last_sync_time.as_ref().map(|t| t.0);
        Self {
            obs,
            trigger: ctx.trigger_state(spec.trigger.as_ref(), last_sync),
            validation: validate(obs),
            fingerprint: config_fingerprint(spec, obs.secret.as_ref()),
            paused: spec.paused.unwrap_or(false),
            owner: Owner::of_destination(cr),
            job_name: destination_job_name(&name),
            pvc_name: spec
                .rclone
                .destination_pvc
                .clone()
                .unwrap_or_else(|| destination_pvc_name(&name)),
            provisioned: spec.rclone.destination_pvc.is_none(),
            name,
            ours,
            latest_name,
            found: obs
                .job
                .iter()
                .map(|j| (ObjectKind::Job, &j.metadata))
                .collect(),
        }
    }

    fn decide(&self, ctx: &Ctx) -> Decision {
        decide(&Facts {
            now: ctx.now,
            st: &ctx.st,
            owner_uid: ctx.owner_uid.as_deref(),
            trigger: &self.trigger,
            valid: self.validation.is_ok(),
            paused: self.paused,
            fingerprint: &self.fingerprint,
            found: &self.found,
            job: self.obs.job.as_ref(),
            stale_copies: false,
        })
    }

    /// What the Synchronizing condition says while the Job of a finished iteration goes:
    /// the same in the pass that finishes it and in the passes that wait for the deletion,
    /// so the status is written once.
    fn cleaning_up(&self) -> String {
        format!(
            "deleting mover Job {} of the last synchronization",
            self.job_name
        )
    }
}

/// Decides the phase, records the checks, then runs the phase's handler.
fn run(
    ctx: &mut Ctx,
    obs: &ObservedDestination,
    settings: &Settings,
    latest_image: &mut Option<TypedLocalObjectReference>,
) {
    let pass = Pass::new(ctx, obs);
    let decision = pass.decide(ctx);
    ctx.record_checks(&pass.trigger, &pass.validation);
    // Images labelled do-not-delete are the user's: released, so the garbage collector
    // keeps them when this CR goes, and never rotated out.
    for image in pass.ours.iter().filter(|s| do_not_delete(s)) {
        ctx.release(&image.metadata);
    }
    ctx.enter(decision.iteration, &pass.trigger);
    match decision.phase {
        Phase::Idle => ctx.idle(&pass.trigger),
        Phase::Blocked(blocker) => ctx.blocked(blocker, &pass.fingerprint),
        Phase::CleaningUp(_) => ctx.clean_up(&pass.found, pass.cleaning_up()),
        Phase::PreparingCopy => prepare_copy(ctx, &pass, settings),
        Phase::MoverRunning => {
            if let Some(job) = &obs.job {
                ctx.follow_job(job, obs.mover_waiting.as_ref(), "", pass.paused);
            }
        }
        Phase::MoverFailed { message } => {
            if let Some(job) = &obs.job {
                ctx.job_failed(
                    &job.metadata,
                    obs.mover.as_ref(),
                    &message,
                    &pass.fingerprint,
                );
            }
        }
        Phase::Finishing { completed } => finishing(ctx, &pass, completed, latest_image),
    }
}

/// [`Phase::Finishing`]: publishes the iteration's image (copyMethod `Snapshot`: once the
/// VolumeSnapshot is ready; `None`: the PVC), records the sync and deletes the Job.
fn finishing(
    ctx: &mut Ctx,
    pass: &Pass<'_>,
    completed: Timestamp,
    latest_image: &mut Option<TypedLocalObjectReference>,
) {
    let obs = pass.obs;
    let Some(job) = &obs.job else {
        return;
    };
    let image = if obs.cr.spec.rclone.copy_method == DestinationCopyMethod::Snapshot {
        let Some(image) = snapshot_image(ctx, pass, job, completed) else {
            return;
        };
        image
    } else {
        volume_image(ctx, pass)
    };
    *latest_image = Some(image);
    ctx.finish_iteration(
        ctx.now,
        obs.mover.as_ref(),
        obs.cr.spec.trigger.as_ref(),
        &[(ObjectKind::Job, &job.metadata)],
        // As in the passes that wait for the deletion: the status is written once.
        pass.cleaning_up(),
    );
}

/// The VolumeSnapshot image of the iteration whose Job completed at `completed`, once it is
/// ready (taking it first); older images rotate out then, and a temporary PVC goes.
fn snapshot_image(
    ctx: &mut Ctx,
    pass: &Pass<'_>,
    job: &Job,
    completed: Timestamp,
) -> Option<TypedLocalObjectReference> {
    let rc = &pass.obs.cr.spec.rclone;
    let job_created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // The image of this iteration: one taken after the Job started, else a new name.
    let existing = pass.ours.iter().find(|s| {
        name_of(s) != pass.latest_name
            && !do_not_delete(s)
            && match (job_created, s.metadata.creation_timestamp.as_ref()) {
                (Some(j), Some(c)) => c.0 >= j,
                _ => false,
            }
    });
    let wanted = existing.map_or_else(
        || destination_snapshot_name(&pass.name, completed),
        |s| name_of(s).to_string(),
    );
    let observed = pass.ours.iter().find(|s| name_of(s) == wanted).copied();
    ctx.ready_snapshot(
        observed,
        &wanted,
        &pass.owner,
        &pass.pvc_name,
        rc.volume_snapshot_class_name.as_deref(),
    )?;
    // Rotate: everything we own except the new image and protected ones (a released image
    // is no longer ours and is left alone).
    let uid = ctx.owner_uid.clone();
    for old in pass.ours.iter().filter(|s| {
        name_of(s) != wanted && !do_not_delete(s) && owned_by(&s.metadata, uid.as_deref())
    }) {
        ctx.delete(ObjectKind::VolumeSnapshot, &old.metadata);
    }
    if pass.provisioned
        && rc.cleanup_temp_pvc == Some(true)
        && let Some(pvc) = &pass.obs.dest_pvc
    {
        ctx.delete(ObjectKind::PersistentVolumeClaim, &pvc.metadata);
    }
    Some(TypedLocalObjectReference {
        api_group: Some(SNAPSHOT_API_GROUP.to_string()),
        kind: "VolumeSnapshot".to_string(),
        name: wanted,
    })
}

/// The destination PVC as the image (copyMethod `None`); images of an earlier copyMethod
/// `Snapshot` go (the observation lists them while latestImage still names one).
fn volume_image(ctx: &mut Ctx, pass: &Pass<'_>) -> TypedLocalObjectReference {
    let uid = ctx.owner_uid.clone();
    for old in pass
        .ours
        .iter()
        .filter(|s| !do_not_delete(s) && owned_by(&s.metadata, uid.as_deref()))
    {
        ctx.delete(ObjectKind::VolumeSnapshot, &old.metadata);
    }
    TypedLocalObjectReference {
        api_group: None,
        kind: "PersistentVolumeClaim".to_string(),
        name: pass.pvc_name.clone(),
    }
}

/// [`Phase::PreparingCopy`]: the destination PVC (provisioned when Scribe owns it), then
/// the mover Job writing into it.
fn prepare_copy(ctx: &mut Ctx, pass: &Pass<'_>, settings: &Settings) {
    ctx.forget_stale_config_error(&pass.fingerprint);
    let Ok(rclone) = &pass.validation else {
        return;
    };
    if !volume_ready(ctx, pass) {
        return;
    }
    let rc = &pass.obs.cr.spec.rclone;
    ctx.start_job(&MoverJobParams {
        name: &pass.job_name,
        owner: &pass.owner,
        direction: Direction::Destination,
        settings,
        secret_name: &rc.rclone_config,
        secret_has_config: rclone.has_config,
        secret_env_keys: rclone.env_keys.clone(),
        section: &rc.rclone_config_section,
        remote_path: &rc.rclone_dest_path,
        data_pvc: &pass.pvc_name,
        read_only: false,
        placement: None,
        mover: &rc.mover,
    });
}

/// Whether the mover may write into the destination PVC now, creating it when Scribe
/// provisions it and it was not observed; otherwise the conditions say what it waits for.
fn volume_ready(ctx: &mut Ctx, pass: &Pass<'_>) -> bool {
    // Never write into the volume while an image of it is still being cut.
    if let Some(pending) = pass.ours.iter().find(|s| {
        name_of(s) != pass.latest_name
            && !snapshot_ready(s)
            && snapshot_error(s).is_none()
            && s.metadata.deletion_timestamp.is_none()
    }) {
        ctx.progress(format!(
            "waiting for VolumeSnapshot {} of the previous synchronization to be ready before writing",
            name_of(pending)
        ));
        return false;
    }
    let rc = &pass.obs.cr.spec.rclone;
    match &pass.obs.dest_pvc {
        Some(pvc) if pvc.metadata.deletion_timestamp.is_some() => {
            ctx.syncing(
                true,
                REASON_SYNC_IN_PROGRESS,
                format!("waiting for the deleted PVC {} to go away", pass.pvc_name),
            );
            ctx.requeue(CLEANUP_POLL);
            false
        }
        Some(_) => true,
        None if pass.provisioned => {
            // Validation guarantees capacity and accessModes are set.
            let pvc = build_pvc(&PvcParams {
                name: &pass.pvc_name,
                owner: &pass.owner,
                access_modes: rc.access_modes.clone(),
                capacity: rc.capacity.clone().unwrap_or_default(),
                storage_class_name: rc.storage_class_name.clone(),
                volume_mode: None,
                data_source: None,
            });
            ctx.create_pvc(pvc, &pass.pvc_name);
            true
        }
        None => false,
    }
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
