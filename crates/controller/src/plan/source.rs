//! The ReplicationSource state machine.
//!
//! Iteration: trigger due → PiT copy (`Snapshot`: VolumeSnapshot then a PVC restored from it;
//! `Clone`: a PVC cloned from the source, as large as its bound volume; both take the source's
//! volumeMode; `None`/`Direct`: the source PVC itself, the mover on the node of a pod using it,
//! see `placement`) → mover Job (suspended while paused) →
//! on success record the sync and delete the Job and PiT objects; on failure classify (78:
//! wait for a config change; else back off, keeping the PiT objects for the retry).
//! `status.lastSyncStartTime` marks an open iteration; objects found without one are either
//! adopted (created after the last sync: a lost status write) or cleaned up.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scribe_api::SourceCopyMethod;
use scribe_api::constants::REASON_ERROR;

use super::common::{Ctx, StatusParts};
use super::conditions::truncate;
use super::mover::config_fingerprint;
use super::phase::{Decision, Facts, Leftovers, Phase, decide};
use super::placement;
use super::schedule::ScheduleError;
use super::snapshots::kept;
use super::trigger::TriggerState;
use super::validate::{
    RcloneSecret, ValidationError, check_custom_ca, check_mover_refs, check_rclone_secret,
};
use super::{MetricIntent, ObjectKind, ObservedSource, Settings, SourcePlan};
use crate::builders::job::{Direction, MoverJobParams, Placement};
use crate::builders::names::{Owner, source_job_name, source_pit_name};
use crate::builders::pvc::{DataSource, PvcParams, bound_capacity, build_pvc, requested_storage};
use crate::snapshot::VolumeSnapshot;

/// What the Synchronizing condition says while the objects of a finished iteration go: the
/// same in the pass that finishes it and in the passes that wait for the deletions, so the
/// status written once is not rewritten.
const CLEANING_UP: &str =
    "deleting the mover Job and point-in-time copy of the last synchronization";

/// Plans one reconcile pass of a ReplicationSource. Pure: same input, same plan.
pub fn plan_source(obs: &ObservedSource, settings: &Settings, now: Timestamp) -> SourcePlan {
    let status = obs.cr.status.clone().unwrap_or_default();
    let mut ctx = context(obs, truncate(now));
    run(&mut ctx, obs, settings);
    let out_of_sync = ctx
        .metrics
        .iter()
        .any(|m| matches!(m, MetricIntent::MissedInterval))
        || (ctx.st.last_sync_start_time.is_some() && is_overdue(obs, &ctx));
    ctx.metrics.push(MetricIntent::OutOfSync(out_of_sync));
    let (common, actions, events, metrics, requeue_after) = ctx.finish();
    SourcePlan {
        actions,
        status: status.with_common(common),
        events,
        metrics,
        requeue_after,
    }
}

/// The phase a pass of a ReplicationSource is in at `now` (see `phase`). Pure.
pub fn source_phase(obs: &ObservedSource, now: Timestamp) -> Decision {
    let ctx = context(obs, truncate(now));
    Pass::new(&ctx, obs).decide(&ctx)
}

/// The pass being planned, from the observed status.
fn context(obs: &ObservedSource, now: Timestamp) -> Ctx {
    let cr = &obs.cr;
    let status = cr.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(status.common(), cr.metadata.generation, now);
    ctx.owner_uid = cr.metadata.uid.clone();
    ctx.created = cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ctx
}

/// An open iteration is overdue when a whole interval passed since the last sync.
fn is_overdue(obs: &ObservedSource, ctx: &Ctx) -> bool {
    let last = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    ctx.trigger_state(obs.cr.spec.trigger.as_ref(), last)
        .is_ok_and(|t| t.missed_interval)
}

/// What a pass derives from the observation before it acts.
struct Pass<'o> {
    obs: &'o ObservedSource,
    trigger: Result<TriggerState, ScheduleError>,
    validation: Result<RcloneSecret, ValidationError>,
    fingerprint: String,
    paused: bool,
    /// The iteration's objects observed: Job, point-in-time PVC, VolumeSnapshot.
    existing: Vec<(ObjectKind, &'o ObjectMeta)>,
    /// Point-in-time copies of a previous copyMethod.
    stale: Vec<(ObjectKind, &'o ObjectMeta)>,
}

impl<'o> Pass<'o> {
    fn new(ctx: &Ctx, obs: &'o ObservedSource) -> Self {
        let spec = &obs.cr.spec;
        let last_sync = ctx.st.last_sync_time.as_ref().map(|t| t.0);
        let existing = [
            obs.job.as_ref().map(|j| (ObjectKind::Job, &j.metadata)),
            obs.pit_pvc
                .as_ref()
                .map(|p| (ObjectKind::PersistentVolumeClaim, &p.metadata)),
            obs.snapshot
                .as_ref()
                .map(|s| (ObjectKind::VolumeSnapshot, &s.metadata)),
        ]
        .into_iter()
        .flatten()
        .collect();
        Self {
            obs,
            trigger: ctx.trigger_state(spec.trigger.as_ref(), last_sync),
            validation: validate(obs),
            fingerprint: config_fingerprint(spec, obs.secret.as_ref()),
            paused: spec.paused.unwrap_or(false),
            existing,
            stale: stale_pit(obs),
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
            found: &self.existing,
            job: self.obs.job.as_ref(),
            stale_copies: !self.stale.is_empty(),
        })
    }
}

/// Decides the phase, records the checks, then runs the phase's handler.
fn run(ctx: &mut Ctx, obs: &ObservedSource, settings: &Settings) {
    let pass = Pass::new(ctx, obs);
    let decision = pass.decide(ctx);
    ctx.record_checks(&pass.trigger, &pass.validation);
    if let Some(snapshot) = obs.snapshot.as_ref().filter(|s| kept(&s.metadata)) {
        // Labelled do-not-delete: never ours to delete, nor the garbage collector's.
        ctx.release(&snapshot.metadata);
    }
    ctx.enter(decision.iteration, &pass.trigger);
    match decision.phase {
        Phase::Idle => ctx.idle(&pass.trigger),
        Phase::Blocked(blocker) => ctx.blocked(blocker, &pass.fingerprint),
        Phase::CleaningUp(Leftovers::LastIteration) => ctx.clean_up(&pass.existing, CLEANING_UP),
        // Point-in-time copies of the copyMethod in place before a switch go before the new
        // method makes its own (a PVC of the old kind holds the name the new one needs; and a
        // pass that deletes creates nothing).
        Phase::CleaningUp(Leftovers::PreviousCopyMethod) => ctx.clean_up(&pass.stale, SWITCHED),
        Phase::PreparingCopy => prepare_copy(ctx, &pass, settings),
        Phase::MoverRunning => mover_running(ctx, &pass),
        Phase::MoverFailed { message } => mover_failed(ctx, &pass, &message),
        Phase::Finishing { completed } => ctx.finish_iteration(
            completed.min(ctx.now),
            obs.mover.as_ref(),
            obs.cr.spec.trigger.as_ref(),
            &pass.existing,
            CLEANING_UP,
        ),
    }
}

/// [`Phase::MoverRunning`]: follows the Job, noting a point-in-time PVC still pending.
fn mover_running(ctx: &mut Ctx, pass: &Pass<'_>) {
    let Some(job) = &pass.obs.job else {
        return;
    };
    let detail = pass
        .obs
        .pit_pvc
        .as_ref()
        .filter(|p| pvc_phase(p) == Some("Pending"))
        .map(|p| {
            format!(
                "; waiting for PVC {} to be bound",
                p.metadata.name.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    ctx.follow_job(job, pass.obs.mover_waiting.as_ref(), &detail, pass.paused);
}

/// [`Phase::MoverFailed`]: records the failure; the Job goes, the point-in-time copy stays.
fn mover_failed(ctx: &mut Ctx, pass: &Pass<'_>, message: &str) {
    if let Some(job) = &pass.obs.job {
        ctx.job_failed(
            &job.metadata,
            pass.obs.mover.as_ref(),
            message,
            &pass.fingerprint,
        );
    }
}

/// The volume the mover reads: which PVC, its access modes, and where the mover must run.
struct DataVolume {
    pvc: String,
    modes: Vec<String>,
    placement: Option<Placement>,
}

/// [`Phase::PreparingCopy`]: the point-in-time copy (when the copyMethod makes one), then
/// the mover Job reading it.
fn prepare_copy(ctx: &mut Ctx, pass: &Pass<'_>, settings: &Settings) {
    ctx.forget_stale_config_error(&pass.fingerprint);
    let obs = pass.obs;
    let (Ok(rclone), Some(source_pvc)) = (&pass.validation, obs.source_pvc.as_ref()) else {
        return;
    };
    let Some(data) = data_volume(ctx, obs, source_pvc) else {
        return;
    };
    if let Some(lost) = obs
        .pit_pvc
        .as_ref()
        .filter(|p| pvc_phase(p) == Some("Lost"))
    {
        let msg = format!(
            "PVC {} lost its volume",
            lost.metadata.name.clone().unwrap_or_default()
        );
        ctx.syncing(false, REASON_ERROR, &msg);
        ctx.fail(msg);
        return;
    }
    let cr = &obs.cr;
    let rc = &cr.spec.rclone;
    let name = cr.metadata.name.clone().unwrap_or_default();
    ctx.start_job(&MoverJobParams {
        name: &source_job_name(&name),
        owner: &Owner::of_source(cr),
        direction: Direction::Source,
        settings,
        secret_name: &rc.rclone_config,
        secret_has_config: rclone.has_config,
        secret_env_keys: rclone.env_keys.clone(),
        section: &rc.rclone_config_section,
        remote_path: &rc.rclone_dest_path,
        data_pvc: &data.pvc,
        read_only: placement::read_only(&data.modes),
        placement: data.placement.as_ref(),
        mover: &rc.mover,
    });
}

/// The volume the mover reads for the copyMethod, creating the point-in-time copy when it
/// was not observed; `None` while it is not there yet (or cannot be made).
fn data_volume(
    ctx: &mut Ctx,
    obs: &ObservedSource,
    source_pvc: &PersistentVolumeClaim,
) -> Option<DataVolume> {
    let spec = &obs.cr.spec;
    let rc = &spec.rclone;
    let pit_name = source_pit_name(obs.cr.metadata.name.as_deref().unwrap_or_default());
    let source_spec = source_pvc.spec.clone().unwrap_or_default();
    let origin = match rc.copy_method {
        SourceCopyMethod::None | SourceCopyMethod::Direct => {
            return Some(DataVolume {
                pvc: spec.source_pvc.clone(),
                modes: source_spec.access_modes.unwrap_or_default(),
                placement: placement::placement(source_pvc, &obs.source_pvc_pods),
            });
        }
        SourceCopyMethod::Clone => DataSource::Pvc(spec.source_pvc.clone()),
        SourceCopyMethod::Snapshot => {
            ctx.ready_snapshot(
                obs.snapshot.as_ref(),
                &pit_name,
                &Owner::of_source(&obs.cr),
                &spec.source_pvc,
                rc.volume_snapshot_class_name.as_deref(),
            )?;
            DataSource::Snapshot(pit_name.clone())
        }
    };
    let modes = if rc.access_modes.is_empty() {
        source_spec.access_modes.clone().unwrap_or_default()
    } else {
        rc.access_modes.clone()
    };
    let modes = match &obs.pit_pvc {
        Some(pit) => pit
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or(modes),
        None => {
            create_pit(ctx, obs, source_pvc, &pit_name, origin, modes.clone())?;
            modes
        }
    };
    Some(DataVolume {
        pvc: pit_name,
        modes,
        placement: None,
    })
}

/// Creates the point-in-time PVC `name` restored from `origin`, as large as what it copies
/// (`None`, with Reconciled False, when no size is known).
fn create_pit(
    ctx: &mut Ctx,
    obs: &ObservedSource,
    source_pvc: &PersistentVolumeClaim,
    name: &str,
    origin: DataSource,
    access_modes: Vec<String>,
) -> Option<()> {
    let spec = &obs.cr.spec;
    let rc = &spec.rclone;
    let capacity = match &origin {
        // A clone is at least as large as the volume it copies: its actual size first.
        DataSource::Pvc(_) => rc
            .capacity
            .clone()
            .or_else(|| bound_capacity(source_pvc))
            .or_else(|| requested_storage(source_pvc)),
        DataSource::Snapshot(_) => rc
            .capacity
            .clone()
            .or_else(|| restore_size(obs.snapshot.as_ref()))
            .or_else(|| requested_storage(source_pvc)),
    };
    let Some(capacity) = capacity else {
        ctx.fail(match origin {
            DataSource::Pvc(_) => format!(
                "spec.rclone.capacity must be set: source PVC {} has no storage request",
                spec.source_pvc
            ),
            DataSource::Snapshot(_) => format!(
                "spec.rclone.capacity must be set: neither VolumeSnapshot {name} nor PVC {} report a size",
                spec.source_pvc
            ),
        });
        return None;
    };
    let source_spec = source_pvc.spec.clone().unwrap_or_default();
    let pvc = build_pvc(&PvcParams {
        name,
        owner: &Owner::of_source(&obs.cr),
        access_modes,
        capacity,
        storage_class_name: rc
            .storage_class_name
            .clone()
            .or(source_spec.storage_class_name),
        volume_mode: source_spec.volume_mode,
        data_source: Some(origin),
    });
    ctx.create_pvc(pvc, name);
    Some(())
}

/// The size a VolumeSnapshot reports for a volume restored from it.
fn restore_size(snapshot: Option<&VolumeSnapshot>) -> Option<Quantity> {
    snapshot?.status.as_ref()?.restore_size.clone()
}

fn validate(obs: &ObservedSource) -> Result<RcloneSecret, ValidationError> {
    let spec = &obs.cr.spec;
    let rc = &spec.rclone;
    let secret = check_rclone_secret(
        obs.secret.as_ref(),
        &rc.rclone_config,
        &rc.rclone_config_section,
    )?;
    if obs.source_pvc.is_none() {
        return Err(ValidationError::PvcMissing {
            field: "spec.sourcePVC",
            name: spec.source_pvc.clone(),
        });
    }
    check_custom_ca(rc.mover.custom_ca.as_ref())?;
    check_mover_refs(&rc.mover, &obs.mover_refs)?;
    Ok(secret)
}

/// What the Synchronizing condition says while the copies of a previous copyMethod go.
const SWITCHED: &str = "deleting the point-in-time copy made for the previous copyMethod";

/// The observed point-in-time objects the current copyMethod would not have made: a
/// VolumeSnapshot unless it is `Snapshot`; the PVC with `None`/`Direct`, or when it was
/// restored from a snapshot (`Clone`) or cloned from a PVC (`Snapshot`).
fn stale_pit(obs: &ObservedSource) -> Vec<(ObjectKind, &ObjectMeta)> {
    let method = &obs.cr.spec.rclone.copy_method;
    let mut out = Vec::new();
    if let Some(s) = obs.snapshot.as_ref()
        && *method != SourceCopyMethod::Snapshot
    {
        out.push((ObjectKind::VolumeSnapshot, &s.metadata));
    }
    if let Some(p) = obs.pit_pvc.as_ref() {
        let from = p.spec.as_ref().and_then(|s| {
            s.data_source
                .as_ref()
                .map(|d| d.kind.as_str())
                .or(s.data_source_ref.as_ref().map(|d| d.kind.as_str()))
        });
        let stale = match method {
            SourceCopyMethod::None | SourceCopyMethod::Direct => true,
            SourceCopyMethod::Clone => from == Some("VolumeSnapshot"),
            SourceCopyMethod::Snapshot => from == Some("PersistentVolumeClaim"),
        };
        if stale {
            out.push((ObjectKind::PersistentVolumeClaim, &p.metadata));
        }
    }
    out
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref().and_then(|s| s.phase.as_deref())
}
