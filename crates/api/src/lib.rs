//! Scribe's API: the `scribe.backube/v1alpha1` custom resources (ReplicationSource,
//! ReplicationDestination), their status, and the constants shared by the controller
//! (labels, condition types and reasons, field manager). CRD YAML is generated from
//! these types by the `crdgen` binary into `charts/scribe/crds/`.
#![forbid(unsafe_code)]

pub mod common;
pub mod constants;
pub mod crd;
pub mod destination;
pub mod source;

pub use common::*;
pub use destination::*;
pub use source::*;
