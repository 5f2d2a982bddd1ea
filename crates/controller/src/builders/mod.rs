//! Builders: one file per Kubernetes kind the controller creates (pvc.rs, volume_snapshot.rs,
//! job.rs), plus names.rs for names, labels and owner references. Pure functions from the CR
//! and settings to complete objects, ready for server-side apply.

pub mod job;
pub mod names;
pub mod pvc;
pub mod volume_snapshot;
