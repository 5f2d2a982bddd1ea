//! The mover's integration tests as ONE binary (ripgrep's layout: one link instead of
//! one per file). Each former test file is a module; `support` (servers, the mover
//! binary, rclone) and `conformance` (the backend-independent suite) are shared.
//! Run one module with `cargo test -p scribe-mover --test tests s3_copy::`.

mod conformance;
mod support;

mod cli;
mod cloud_backends;
mod cloud_conformance;
mod cloud_rclone_interop;
mod conformance_local;
mod conformance_local_store;
mod crypt;
mod edge_layouts;
mod first_upload;
mod last_commit;
mod last_commit_kill;
mod restore_confinement;
mod restore_not_owner;
mod s3_backend;
mod s3_cli_errors;
mod s3_conformance;
mod s3_copy;
mod s3_faults;
mod s3_interop;
mod s3_interrupt;
mod s3_rclone_compat;
mod s3_requests;
mod s3_sdk_replies;
mod source_batches;
