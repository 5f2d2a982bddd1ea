//! VolumeSnapshots in an iteration (the source's point-in-time copy, the destination's
//! images): taking one and waiting until it is ready, replacing one the snapshotter reports an
//! error for, and releasing one labelled do-not-delete (`Ctx::release`: at every pass that
//! sees it, and instead of every delete — `Ctx::delete` defers to it).
//!
//! A snapshot in error is left to the snapshotter's own retries for [`SNAPSHOT_ERROR_RETRY`]
//! after it was created, then deleted so a later pass takes it again — at once when
//! `volumeSnapshotClassName` changed since it was taken (its spec is immutable, so fixing the
//! class needs a new object). No manual delete is needed to recover.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::{LABEL_DO_NOT_DELETE, LABEL_DO_NOT_DELETE_VOLSYNC};

use super::common::{CLEANUP_POLL, Ctx, owned_by};
use super::conditions::{add, until};
use super::{Action, EventReason, ObjectKind};
use crate::builders::names::Owner;
use crate::builders::volume_snapshot::build_volume_snapshot;
use crate::snapshot::VolumeSnapshot;

/// How long a VolumeSnapshot reporting an error is left to the snapshotter before Scribe
/// deletes it and takes a new one.
pub const SNAPSHOT_ERROR_RETRY: Duration = Duration::from_secs(300);

/// Whether an object carries a do-not-delete label (Scribe's or VolSync's), whatever its value.
pub fn kept(meta: &ObjectMeta) -> bool {
    meta.labels.as_ref().is_some_and(|l| {
        l.contains_key(LABEL_DO_NOT_DELETE) || l.contains_key(LABEL_DO_NOT_DELETE_VOLSYNC)
    })
}

/// Whether a VolumeSnapshot is ready to use.
pub fn snapshot_ready(s: &VolumeSnapshot) -> bool {
    s.status.as_ref().and_then(|st| st.ready_to_use) == Some(true)
}

/// The error a VolumeSnapshot reports, if any (an error without a message counts).
pub fn snapshot_error(s: &VolumeSnapshot) -> Option<String> {
    s.status
        .as_ref()
        .and_then(|st| st.error.as_ref())
        .map(|e| e.message.clone().unwrap_or_else(|| "unknown error".into()))
}

/// When a snapshot in error is deleted to be taken again: [`SNAPSHOT_ERROR_RETRY`] after its
/// creation (at once when its creation time is unknown).
pub fn snapshot_retry_at(s: &VolumeSnapshot) -> Option<Timestamp> {
    s.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| add(t.0, SNAPSHOT_ERROR_RETRY))
}

impl Ctx {
    /// Stops owning a VolumeSnapshot labelled do-not-delete (once per pass, only while this
    /// CR owns it): without the owner reference the garbage collector keeps it when the CR
    /// is deleted, and Scribe never deletes an object it does not own.
    pub fn release(&mut self, meta: &ObjectMeta) {
        let name = meta.name.clone().unwrap_or_default();
        let Some(uid) = self.owner_uid.clone() else {
            return;
        };
        let already = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReleaseVolumeSnapshot { name: n, .. } if *n == name));
        if already || meta.deletion_timestamp.is_some() || !owned_by(meta, Some(&uid)) {
            return;
        }
        let owner_references = meta
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        self.actions.push(Action::ReleaseVolumeSnapshot {
            name: name.clone(),
            resource_version: meta.resource_version.clone(),
            owner_references,
        });
        self.event(
            false,
            EventReason::Released,
            "Release",
            format!("released VolumeSnapshot {name} (labelled do-not-delete): neither Scribe nor the garbage collector deletes it"),
        );
    }

    /// The ready VolumeSnapshot `name` of PVC `pvc`, or None while the pass waits for it
    /// (creating it first when it was not observed; replacing it when it is in error).
    pub fn ready_snapshot<'s>(
        &mut self,
        observed: Option<&'s VolumeSnapshot>,
        name: &str,
        owner: &Owner,
        pvc: &str,
        class: Option<&str>,
    ) -> Option<&'s VolumeSnapshot> {
        let Some(snapshot) = observed else {
            let snap = build_volume_snapshot(name, owner, pvc, class);
            self.create(
                Action::ApplyVolumeSnapshot(Box::new(snap)),
                "VolumeSnapshot",
                name,
            );
            self.progress(format!("waiting for VolumeSnapshot {name} to be ready"));
            return None;
        };
        if kept(&snapshot.metadata) {
            // The user's from now on: used while it serves this iteration, never deleted.
            self.release(&snapshot.metadata);
        }
        if snapshot.metadata.deletion_timestamp.is_some() {
            self.progress(format!(
                "waiting for the deleted VolumeSnapshot {name} to go away before taking it again"
            ));
            self.requeue(CLEANUP_POLL);
            return None;
        }
        if snapshot_ready(snapshot) {
            return Some(snapshot);
        }
        match snapshot_error(snapshot) {
            Some(error) => self.snapshot_failed(snapshot, name, &error, class),
            None => self.progress(format!("waiting for VolumeSnapshot {name} to be ready")),
        }
        None
    }

    /// A snapshot the snapshotter reports an error for: deleted (to be taken again by a later
    /// pass) once its class changed or [`SNAPSHOT_ERROR_RETRY`] passed, waited for otherwise.
    fn snapshot_failed(
        &mut self,
        snapshot: &VolumeSnapshot,
        name: &str,
        error: &str,
        class: Option<&str>,
    ) {
        let class_changed = snapshot.spec.volume_snapshot_class_name.as_deref() != class;
        let retry_at = snapshot_retry_at(snapshot);
        let give_up = class_changed || retry_at.is_none_or(|at| at <= self.now);
        if kept(&snapshot.metadata) || !give_up {
            let when = match retry_at {
                Some(at) if !kept(&snapshot.metadata) => format!("; taking it again at {at}"),
                _ => String::new(),
            };
            self.progress(format!(
                "waiting for VolumeSnapshot {name} to be ready: snapshot error: {error}{when}"
            ));
            if let Some(at) = retry_at.filter(|_| !kept(&snapshot.metadata)) {
                self.requeue(until(self.now, at));
            }
            return;
        }
        let why = if class_changed {
            "spec.rclone.volumeSnapshotClassName changed"
        } else {
            "the snapshotter did not recover"
        };
        self.event(
            true,
            EventReason::SnapshotFailed,
            "Synchronize",
            format!("VolumeSnapshot {name} failed ({error}); {why}: deleting it to take it again"),
        );
        self.delete(ObjectKind::VolumeSnapshot, &snapshot.metadata);
        self.progress(format!(
            "VolumeSnapshot {name} failed: snapshot error: {error}; {why}: deleting it to take it again"
        ));
        self.requeue(CLEANUP_POLL);
    }
}
