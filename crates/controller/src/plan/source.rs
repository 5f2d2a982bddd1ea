//! The ReplicationSource state machine.
//!
//! Iteration: trigger due → PiT copy (`Snapshot`: VolumeSnapshot then a PVC restored from it;
//! `Clone`: a PVC cloned from the source; `None`/`Direct`: the source PVC itself) → mover Job →
//! on success record the sync and delete the Job and PiT objects; on failure classify (78:
//! wait for a config change; else back off, keeping the PiT objects for the retry).
//! `status.lastSyncStartTime` marks an open iteration; objects found without one are either
//! adopted (created after the last sync: a lost status write) or cleaned up.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::{REASON_CLEANING_UP, REASON_ERROR, REASON_SYNC_IN_PROGRESS};
use scribe_api::{ReplicationSourceStatus, SourceCopyMethod};

use super::common::{CLEANUP_POLL, Common, Ctx, POLL, adoptable, wait_for_trigger};
use super::conditions::truncate;
use super::mover::{JobPhase, config_fingerprint, job_phase};
use super::trigger::evaluate;
use super::validate::{RcloneSecret, ValidationError, check_custom_ca, check_rclone_secret};
use super::{Action, MetricIntent, ObjectKind, ObservedSource, Settings, SourcePlan};
use crate::builders::job::{Direction, MoverJobParams, build_mover_job};
use crate::builders::names::{Owner, source_job_name, source_pit_name};
use crate::builders::pvc::{DataSource, PvcParams, build_pvc, requested_storage};
use crate::builders::volume_snapshot::build_volume_snapshot;

/// Plans one reconcile pass of a ReplicationSource. Pure: same input, same plan.
pub fn plan_source(obs: &ObservedSource, settings: &Settings, now: Timestamp) -> SourcePlan {
    let now = truncate(now);
    let cr = &obs.cr;
    let status = cr.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(split(&status), cr.metadata.generation, now);
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
        status: join(common),
        events,
        metrics,
        requeue_after,
    }
}

/// An open iteration is overdue when a whole interval passed since the last sync.
fn is_overdue(obs: &ObservedSource, ctx: &Ctx) -> bool {
    let last = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    evaluate(
        obs.cr.spec.trigger.as_ref(),
        last,
        ctx.st.last_manual_sync.as_ref(),
        ctx.now,
    )
    .is_ok_and(|t| t.missed_interval)
}

fn run(ctx: &mut Ctx, obs: &ObservedSource, settings: &Settings) {
    let cr = &obs.cr;
    let spec = &cr.spec;
    let name = cr.metadata.name.clone().unwrap_or_default();
    let owner = Owner::of_source(cr);
    let pit_name = source_pit_name(&name);
    let job_name = source_job_name(&name);
    let paused = spec.paused.unwrap_or(false);
    let fingerprint = config_fingerprint(spec, obs.secret.as_ref());
    let last_sync = ctx.st.last_sync_time.as_ref().map(|t| t.0);

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

    let existing: Vec<(ObjectKind, &ObjectMeta)> = [
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

    if ctx.st.last_sync_start_time.is_none() {
        let adopted = existing
            .iter()
            .filter(|(_, m)| adoptable(m, last_sync))
            .filter_map(|(_, m)| m.creation_timestamp.as_ref().map(|t| t.0))
            .min();
        if existing.iter().any(|(_, m)| adoptable(m, last_sync)) {
            // A pass created these but its status write was lost: continue that iteration.
            let start = adopted.unwrap_or(ctx.now);
            ctx.st.last_sync_start_time = Some(Time(start));
        } else if !existing.is_empty() {
            for (kind, meta) in &existing {
                ctx.delete(*kind, meta);
            }
            ctx.syncing(
                true,
                REASON_CLEANING_UP,
                "deleting the mover Job and point-in-time copy of the last synchronization",
            );
            ctx.requeue(CLEANUP_POLL);
            return;
        } else {
            let Ok(trigger) = &trigger else {
                ctx.syncing(false, REASON_ERROR, "invalid spec.trigger.schedule");
                return;
            };
            if paused {
                ctx.syncing(
                    false,
                    scribe_api::constants::REASON_PAUSED,
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

    // An iteration is open.
    if let Some(job) = &obs.job {
        match job_phase(job) {
            JobPhase::Running => {
                let mut msg = format!("mover Job {job_name} is running");
                if let Some(pending) = obs
                    .pit_pvc
                    .as_ref()
                    .filter(|p| pvc_phase(p) == Some("Pending"))
                {
                    msg.push_str(&format!(
                        "; waiting for PVC {} to be bound",
                        pending.metadata.name.clone().unwrap_or_default()
                    ));
                }
                ctx.syncing(true, REASON_SYNC_IN_PROGRESS, msg);
                ctx.requeue(POLL);
            }
            JobPhase::Succeeded { at } => {
                let finished = at.map_or(ctx.now, truncate).min(ctx.now);
                ctx.completed(finished, obs.mover.as_ref(), spec.trigger.as_ref());
                for (kind, meta) in &existing {
                    ctx.delete(*kind, meta);
                }
                if let Ok(t) = evaluate(
                    spec.trigger.as_ref(),
                    Some(finished),
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
                    "synchronized; deleting the mover Job and point-in-time copy",
                );
                ctx.requeue(CLEANUP_POLL);
            }
            JobPhase::Failed { message, .. } => {
                ctx.job_failed(&job.metadata, obs.mover.as_ref(), &message, &fingerprint);
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
    let Some(source_pvc) = obs.source_pvc.as_ref() else {
        return;
    };
    let rc = &spec.rclone;
    let source_modes = source_pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    let access_modes = if rc.access_modes.is_empty() {
        source_modes
    } else {
        rc.access_modes.clone()
    };
    let storage_class = rc.storage_class_name.clone().or_else(|| {
        source_pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
    });

    let data_pvc = match rc.copy_method {
        SourceCopyMethod::None | SourceCopyMethod::Direct => spec.source_pvc.clone(),
        SourceCopyMethod::Clone => {
            if obs.pit_pvc.is_none() {
                let Some(capacity) = rc
                    .capacity
                    .clone()
                    .or_else(|| requested_storage(source_pvc))
                else {
                    ctx.fail(format!(
                        "spec.rclone.capacity must be set: source PVC {} has no storage request",
                        spec.source_pvc
                    ));
                    return;
                };
                let pvc = build_pvc(&PvcParams {
                    name: &pit_name,
                    owner: &owner,
                    access_modes,
                    capacity,
                    storage_class_name: storage_class,
                    data_source: Some(DataSource::Pvc(spec.source_pvc.clone())),
                });
                ctx.create(
                    Action::ApplyPvc(Box::new(pvc)),
                    "PersistentVolumeClaim",
                    &pit_name,
                );
            }
            pit_name.clone()
        }
        SourceCopyMethod::Snapshot => {
            let Some(snapshot) = &obs.snapshot else {
                let snap = build_volume_snapshot(
                    &pit_name,
                    &owner,
                    &spec.source_pvc,
                    rc.volume_snapshot_class_name.as_deref(),
                );
                ctx.create(
                    Action::ApplyVolumeSnapshot(Box::new(snap)),
                    "VolumeSnapshot",
                    &pit_name,
                );
                ctx.syncing(
                    true,
                    REASON_SYNC_IN_PROGRESS,
                    format!("waiting for VolumeSnapshot {pit_name} to be ready"),
                );
                ctx.requeue(POLL);
                return;
            };
            let snap_status = snapshot.status.as_ref();
            if snap_status.and_then(|s| s.ready_to_use) != Some(true) {
                let error = snap_status
                    .and_then(|s| s.error.as_ref())
                    .and_then(|e| e.message.clone());
                let msg = match error {
                    Some(e) => format!(
                        "waiting for VolumeSnapshot {pit_name} to be ready: snapshot error: {e}"
                    ),
                    None => format!("waiting for VolumeSnapshot {pit_name} to be ready"),
                };
                ctx.syncing(true, REASON_SYNC_IN_PROGRESS, msg);
                ctx.requeue(POLL);
                return;
            }
            if obs.pit_pvc.is_none() {
                let capacity = rc
                    .capacity
                    .clone()
                    .or_else(|| snap_status.and_then(|s| s.restore_size.clone()))
                    .or_else(|| requested_storage(source_pvc));
                let Some(capacity) = capacity else {
                    ctx.fail(format!("spec.rclone.capacity must be set: neither VolumeSnapshot {pit_name} nor PVC {} report a size", spec.source_pvc));
                    return;
                };
                let pvc = build_pvc(&PvcParams {
                    name: &pit_name,
                    owner: &owner,
                    access_modes,
                    capacity,
                    storage_class_name: storage_class,
                    data_source: Some(DataSource::Snapshot(pit_name.clone())),
                });
                ctx.create(
                    Action::ApplyPvc(Box::new(pvc)),
                    "PersistentVolumeClaim",
                    &pit_name,
                );
            }
            pit_name.clone()
        }
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
    let job = build_mover_job(&MoverJobParams {
        name: &job_name,
        owner: &owner,
        direction: Direction::Source,
        settings,
        secret_name: &rc.rclone_config,
        secret_has_config: rclone.has_config,
        secret_env_keys: rclone.env_keys,
        section: &rc.rclone_config_section,
        remote_path: &rc.rclone_dest_path,
        data_pvc: &data_pvc,
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
    Ok(secret)
}

fn pvc_phase(pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn split(s: &ReplicationSourceStatus) -> Common {
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

fn join(c: Common) -> ReplicationSourceStatus {
    ReplicationSourceStatus {
        conditions: c.conditions,
        next_sync_time: c.next_sync_time,
        last_sync_time: c.last_sync_time,
        last_sync_start_time: c.last_sync_start_time,
        last_sync_duration: c.last_sync_duration,
        last_manual_sync: c.last_manual_sync,
        latest_mover_status: c.latest_mover_status,
        consecutive_failures: c.consecutive_failures,
        next_retry_time: c.next_retry_time,
        config_error_fingerprint: c.config_error_fingerprint,
    }
}
