//! The controller's integration tests in one binary (one link instead of one per file), as
//! ripgrep lays them out: a module per area, the shared support as modules. Only
//! `scenario_logging.rs` is a binary of its own (it installs a tracing subscriber).
//!
//! - `plan_*`: the pure plan — builders, phases, fixtures (one test per YAML file, generated
//!   by `build.rs`), stability of the written status, and whole iterations pass after pass.
//! - `scenario_*`: reconcile passes and the runtime against a scripted API server.

mod fixture;
mod support;

mod plan_builders;
mod plan_cycles;
mod plan_fixtures;
mod plan_objects;
mod plan_phases;
mod plan_stability;
mod scenario_destination;
mod scenario_leader;
mod scenario_refusals;
mod scenario_run;
mod scenario_runtime;
mod scenario_source;
