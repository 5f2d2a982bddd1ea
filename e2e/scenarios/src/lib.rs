//! Support library of Scribe's end-to-end scenarios (`tests/e2e.rs`): everything a scenario
//! needs to drive a whole replication against a running cluster and assert on real values.
//!
//! - [`cluster`]: the cluster under test from the environment (`e2e/.cluster/env`), and the
//!   local cluster's script for controller restarts and S3 freezes;
//! - [`scenario`]: one scenario's namespaces, waits with diagnostics, closing checks;
//! - [`objects`] and [`crs`]: Secrets, PVCs, VolumeSnapshots, Scribe CRs and their status;
//! - [`volumes`] and [`tree`]: writing a directory tree into a PVC and comparing a restored one;
//! - [`record`], [`writes`], [`metrics`], [`logs`], [`diag`]: watching what happens — objects
//!   created, status writes, memory and request counts, the controller's log;
//! - [`status`], [`rng`]: status parsing helpers and a seeded generator for random timing.
//!
//! The scenarios run with `make e2e` (which brings the local cluster up and sources its env
//! file) or `cargo test -p scribe-e2e --test e2e -- <filter> --nocapture` in a shell that did.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod crs;
pub mod diag;
pub mod logs;
pub mod metrics;
pub mod objects;
pub mod record;
pub mod rng;
pub mod scenario;
pub mod status;
pub mod tree;
pub mod volumes;
pub mod writes;

pub use cluster::Cluster;
pub use logs::assert_no_forbidden;
pub use scenario::Scenario;
pub use tree::Tree;
pub use volumes::{LocalVolumes, VolumeAccess, volumes};
