//! Scribe's end-to-end scenarios: one test binary, one module per area (ripgrep's layout).
//! Each scenario is a `#[tokio::test]` working in its own fresh namespaces, so they run in
//! parallel threads; the ones that restart the controller or freeze S3 run alone (see
//! `Scenario::start_exclusive`).
//!
//! They need a running cluster: `make e2e`, or `hack/cluster.sh up`, `source e2e/.cluster/env`
//! and `cargo test -p scribe-e2e --test e2e -- <filter> --nocapture`. Without one every
//! scenario fails and says what is missing — a scenario is never skipped.

#[path = "e2e/common.rs"]
mod common;

#[path = "e2e/seed.rs"]
mod seed;

#[path = "e2e/copy_methods.rs"]
mod copy_methods;

#[path = "e2e/triggers.rs"]
mod triggers;

#[path = "e2e/fan_out.rs"]
mod fan_out;

#[path = "e2e/failures.rs"]
mod failures;

#[path = "e2e/garbage_collection.rs"]
mod garbage_collection;

#[path = "e2e/pod_security.rs"]
mod pod_security;

#[path = "e2e/write_rate.rs"]
mod write_rate;

#[path = "e2e/robustness.rs"]
mod robustness;

#[path = "e2e/scale.rs"]
mod scale;

#[path = "e2e/outage.rs"]
mod outage;

#[path = "e2e/controller_behaviour.rs"]
mod controller_behaviour;
