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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scribe_api::SourceCopyMethod;
use scribe_api::constants::REASON_ERROR;

use super::common::{Ctx, StatusParts};
use super::conditions::truncate;
use super::mover::config_fingerprint;
use super::placement;
use super::snapshots::kept;
use super::validate::{
    RcloneSecret, ValidationError, check_custom_ca, check_mover_refs, check_rclone_secret,
};
use super::{MetricIntent, ObjectKind, ObservedSource, Settings, SourcePlan};
use crate::builders::job::{Direction, MoverJobParams};
use crate::builders::names::{Owner, source_job_name, source_pit_name};
use crate::builders::pvc::{DataSource, PvcParams, bound_capacity, build_pvc, requested_storage};

/// What the Synchronizing condition says while the objects of a finished iteration go: the
/// same in the pass that finishes it and in the passes that wait for the deletions, so the
/// status written once is not rewritten.
const CLEANING_UP: &str =
    "deleting the mover Job and point-in-time copy of the last synchronization";

/// Plans one reconcile pass of a ReplicationSource. Pure: same input, same plan.
pub fn plan_source(obs: &ObservedSource, settings: &Settings, now: Timestamp) -> SourcePlan {
    let now = truncate(now);
    let cr = &obs.cr;
    let status = cr.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(status.common(), cr.metadata.generation, now);
    ctx.owner_uid = obs.cr.metadata.uid.clone();
    ctx.created = cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
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

/// An open iteration is overdue when a whole interval passed since the last sync.
fn is_overdue(obs: &ObservedSource, ctx: &Ctx) -> bool {
    let last = ctx.st.last_sync_time.as_ref().map(|t| t.0);
    ctx.trigger_state(obs.cr.spec.trigger.as_ref(), last)
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

    let trigger = ctx.trigger_state(spec.trigger.as_ref(), last_sync);
    let validation = validate(obs);
    ctx.record_checks(&trigger, &validation);
    if let Some(snapshot) = obs.snapshot.as_ref().filter(|s| kept(&s.metadata)) {
        // Labelled do-not-delete: never ours to delete, nor the garbage collector's.
        ctx.release(&snapshot.metadata);
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

    if !ctx.open_iteration(&existing, CLEANING_UP, &trigger, paused, validation.is_ok()) {
        return;
    }
    if let Some(job) = &obs.job {
        let mut detail = String::new();
        if let Some(pending) = obs
            .pit_pvc
            .as_ref()
            .filter(|p| pvc_phase(p) == Some("Pending"))
        {
            detail.push_str(&format!(
                "; waiting for PVC {} to be bound",
                pending.metadata.name.clone().unwrap_or_default()
            ));
        }
        if let Some(at) = ctx.job_succeeded(
            job,
            obs.mover.as_ref(),
            obs.mover_waiting.as_ref(),
            &fingerprint,
            &detail,
            paused,
        ) {
            ctx.finish_iteration(
                at.min(ctx.now),
                obs.mover.as_ref(),
                spec.trigger.as_ref(),
                &existing,
                CLEANING_UP,
            );
        }
        return;
    }

    // Point-in-time copies of the copyMethod in place before a switch go before the new
    // method makes its own (a PVC of the old kind holds the name the new one needs; and a
    // pass that deletes creates nothing).
    let stale = stale_pit(obs);
    if !stale.is_empty() {
        ctx.clean_up(&stale, SWITCHED);
        return;
    }

    let Some(rclone) = ctx.job_gate(validation, paused, &fingerprint) else {
        return;
    };
    let Some(source_pvc) = obs.source_pvc.as_ref() else {
        return;
    };
    let rc = &spec.rclone;
    let source_spec = source_pvc.spec.clone().unwrap_or_default();
    let access_modes = if rc.access_modes.is_empty() {
        source_spec.access_modes.clone().unwrap_or_default()
    } else {
        rc.access_modes.clone()
    };
    let storage_class = rc
        .storage_class_name
        .clone()
        .or(source_spec.storage_class_name.clone());

    // The volume the mover reads, the access modes it has, and where the mover must run.
    let mut placement = None;
    let mut data_modes = access_modes.clone();
    // The point-in-time PVC to create (its size and origin), once the copy method knows them.
    let mut new_pit = None;
    let data_pvc = match rc.copy_method {
        SourceCopyMethod::None | SourceCopyMethod::Direct => {
            data_modes = source_spec.access_modes.clone().unwrap_or_default();
            placement = placement::placement(source_pvc, &obs.source_pvc_pods);
            spec.source_pvc.clone()
        }
        SourceCopyMethod::Clone => {
            if obs.pit_pvc.is_none() {
                // A clone is at least as large as the volume it copies: its actual size first.
                let Some(capacity) = rc
                    .capacity
                    .clone()
                    .or_else(|| bound_capacity(source_pvc))
                    .or_else(|| requested_storage(source_pvc))
                else {
                    ctx.fail(format!(
                        "spec.rclone.capacity must be set: source PVC {} has no storage request",
                        spec.source_pvc
                    ));
                    return;
                };
                new_pit = Some((capacity, DataSource::Pvc(spec.source_pvc.clone())));
            }
            pit_name.clone()
        }
        SourceCopyMethod::Snapshot => {
            let Some(snapshot) = ctx.ready_snapshot(
                obs.snapshot.as_ref(),
                &pit_name,
                &owner,
                &spec.source_pvc,
                rc.volume_snapshot_class_name.as_deref(),
            ) else {
                return;
            };
            if obs.pit_pvc.is_none() {
                let capacity = rc
                    .capacity
                    .clone()
                    .or_else(|| {
                        snapshot
                            .status
                            .as_ref()
                            .and_then(|s| s.restore_size.clone())
                    })
                    .or_else(|| requested_storage(source_pvc));
                let Some(capacity) = capacity else {
                    ctx.fail(format!("spec.rclone.capacity must be set: neither VolumeSnapshot {pit_name} nor PVC {} report a size", spec.source_pvc));
                    return;
                };
                new_pit = Some((capacity, DataSource::Snapshot(pit_name.clone())));
            }
            pit_name.clone()
        }
    };
    if let Some(modes) = obs
        .pit_pvc
        .as_ref()
        .filter(|_| data_pvc == pit_name)
        .and_then(|p| p.spec.as_ref()?.access_modes.clone())
    {
        data_modes = modes;
    }
    if let Some((capacity, data_source)) = new_pit {
        let pvc = build_pvc(&PvcParams {
            name: &pit_name,
            owner: &owner,
            access_modes,
            capacity,
            storage_class_name: storage_class,
            volume_mode: source_spec.volume_mode.clone(),
            data_source: Some(data_source),
        });
        ctx.create_pvc(pvc, &pit_name);
    }
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
    ctx.start_job(&MoverJobParams {
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
        read_only: placement::read_only(&data_modes),
        placement: placement.as_ref(),
        mover: &rc.mover,
    });
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
