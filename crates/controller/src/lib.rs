//! Scribe controller: reconciles ReplicationSource / ReplicationDestination into
//! point-in-time copies, PVCs, mover Jobs and VolumeSnapshots.
//! Reconcile = observe → plan (pure, `plan/`) → apply → status.
#![forbid(unsafe_code)]

pub mod apply;
pub mod builders;
pub mod context;
pub mod controller;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod snapshot;
pub mod status;

pub use context::ControllerConfig;
pub use controller::{ControllerStopped, run};
