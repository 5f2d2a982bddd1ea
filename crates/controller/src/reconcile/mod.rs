//! The reconcile pipeline shared by both kinds:
//! observe (client, read-only) → plan (pure, [`crate::context::Planner`]) → create and patch
//! (the plan's `Apply*`, `ScaleJob` and `ReleaseVolumeSnapshot` actions) → status (only when
//! changed) → delete (the plan's `Delete` actions) →
//! events and metrics (after the status, so a pass that failed to record its transition
//! repeats it instead of counting it twice).
//!
//! Deletes come after the status write because they destroy the evidence a later pass needs:
//! if the status write of a finished iteration failed (or the next pass reads a stale CR from
//! the cache) while the Job was already gone, an open iteration without a Job would start a
//! second Job, `latestImage` could name a deleted snapshot, and a failure could skip its
//! backoff. With this order a lost status write leaves the objects in place and the next pass
//! repeats the same decision.
//!
//! A pass never waits for a Job or a snapshot: it returns and the watches on owned objects,
//! or the plan's `requeue_after`, bring the next one. Errors are typed; [`error_policy`]
//! logs them with structured fields and requeues with exponential backoff. A write the API
//! server refuses (quota, webhook, RBAC, invalid) also lands in the CR: Reconciled=False,
//! reason ApplyFailed, with the API's message, and a Warning Event ([`failure`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use scribe_api::{
    ReplicationDestination, ReplicationDestinationStatus, ReplicationSource,
    ReplicationSourceStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, error, warn};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::apply::{ApplyError, apply_actions};
use crate::context::Context;
use crate::events;
use crate::metrics::{MetricKey, Role};
use crate::observe::{self, ObserveError, observe_destination, observe_source};
use crate::plan::{Action as PlanAction, Plan};
use crate::status::{StatusError, write_status};

pub mod failure;

/// Why a reconcile pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Status(#[from] StatusError),
}

impl ReconcileError {
    fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            ReconcileError::Observe(e) => Some(e.source_error()),
            ReconcileError::Apply(e) => e.kube_error(),
            ReconcileError::Status(StatusError::Patch { source, .. }) => Some(source.as_ref()),
            ReconcileError::Status(StatusError::Encode { .. }) => None,
        }
    }

    /// A small, fixed vocabulary for logs: never the error text.
    pub fn category(&self) -> &'static str {
        match self.kube_error() {
            Some(kube::Error::Api(s)) => match s.code {
                409 => "conflict",
                429 => "throttled",
                403 => "forbidden",
                404 => "not-found",
                400 | 422 => "invalid",
                c if c >= 500 => "server",
                _ => "api",
            },
            Some(_) => "transport",
            None => "encode",
        }
    }

    /// Whether trying again soon can help (conflicts, throttling, server and transport errors).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.category(),
            "conflict" | "throttled" | "server" | "transport" | "not-found"
        )
    }
}

/// One of the two custom resource kinds, as the pipeline needs it.
pub trait ReplicationKind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + PartialEq + Clone + Default + Send + Sync + std::fmt::Debug;
    const ROLE: Role;
    fn current_status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
    /// Observe, then plan with `ctx.planner` at `ctx.now()`.
    fn observe_and_plan(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Plan<Self::Status>, ObserveError>> + Send;
}

impl ReplicationKind for ReplicationSource {
    type Status = ReplicationSourceStatus;
    fn conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    const ROLE: Role = Role::Source;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn observe_and_plan(&self, ctx: &Context) -> Result<Plan<Self::Status>, ObserveError> {
        let obs = observe_source(&ctx.client, self).await?;
        Ok(ctx.planner.plan_source(&obs, &ctx.settings, ctx.now()))
    }
}

impl ReplicationKind for ReplicationDestination {
    type Status = ReplicationDestinationStatus;
    fn conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    const ROLE: Role = Role::Destination;
    fn current_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    async fn observe_and_plan(&self, ctx: &Context) -> Result<Plan<Self::Status>, ObserveError> {
        let obs = observe_destination(&ctx.client, self).await?;
        Ok(ctx.planner.plan_destination(&obs, &ctx.settings, ctx.now()))
    }
}

fn key_of<K: ReplicationKind>(cr: &K) -> MetricKey {
    MetricKey::new(cr.namespace().unwrap_or_default(), cr.name_any(), K::ROLE)
}

/// One reconcile pass for either kind (the function given to the kube-runtime Controller).
/// Runs inside a `reconcile` span carrying the object's kind, namespace and name, so every
/// log line of the pass says which object it is about. The span is at ERROR level so that it
/// is enabled whatever the log level is: any line logged inside carries it.
#[tracing::instrument(
    name = "reconcile",
    level = "error",
    skip_all,
    fields(
        kind = %K::kind(&()),
        namespace = %cr.namespace().unwrap_or_default(),
        name = %cr.name_any(),
    )
)]
pub async fn reconcile<K: ReplicationKind>(
    cr: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = key_of(cr.as_ref());
    if cr.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what we created.
        ctx.metrics.forget(&key);
        return Ok(Action::await_change());
    }
    let result = pass(cr.as_ref(), &ctx, &key).await;
    ctx.metrics.reconciled(&key, result.is_ok());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

async fn pass<K: ReplicationKind>(
    cr: &K,
    ctx: &Context,
    key: &MetricKey,
) -> Result<Action, ReconcileError> {
    let plan = cr.observe_and_plan(ctx).await?;
    if starts_job(&plan.actions) && !cache_is_current(cr, ctx, key).await? {
        debug!(
            namespace = %key.namespace,
            name = %key.name,
            role = key.role.as_str(),
            "cached resource is behind the API server; planning again before starting a Job"
        );
        return Ok(Action::requeue(STALE_CACHE_REQUEUE));
    }
    let (creates, deletes) = split_deletes(&plan.actions);
    if let Err(e) = apply_actions(&ctx.client, &key.namespace, &creates).await {
        failure::report_refusal(cr, ctx, cr.current_status(), &e).await;
        return Err(e.into());
    }
    let wrote = write_status(&ctx.client, cr, cr.current_status(), &plan.status).await?;
    if let Err(e) = apply_actions(&ctx.client, &key.namespace, &deletes).await {
        // The plan's status is written: its events and metrics stand, the refusal is added.
        events::publish(&ctx.recorder, &cr.object_ref(&()), &plan.events).await;
        for m in &plan.metrics {
            ctx.metrics.record(key, m);
        }
        failure::report_refusal(cr, ctx, Some(&plan.status), &e).await;
        return Err(e.into());
    }
    events::publish(&ctx.recorder, &cr.object_ref(&()), &plan.events).await;
    for m in &plan.metrics {
        ctx.metrics.record(key, m);
    }
    debug!(
        namespace = %key.namespace,
        name = %key.name,
        role = key.role.as_str(),
        actions = plan.actions.len(),
        status_written = wrote,
        requeue_after_secs = plan.requeue_after.map(|d| d.as_secs()),
        "reconciled"
    );
    Ok(requeue(plan.requeue_after))
}

/// How soon a pass skipped for a stale cache is tried again.
pub const STALE_CACHE_REQUEUE: Duration = Duration::from_secs(1);

/// Whether the plan starts a mover Job.
pub fn starts_job(actions: &[PlanAction]) -> bool {
    actions.iter().any(|a| matches!(a, PlanAction::ApplyJob(_)))
}

/// Whether the CR the pass planned with (from the watch cache) is the API server's current
/// one. A pass about to start a mover Job checks it: a cache that has not yet seen this
/// controller's last status write (an iteration just finished, or a failure that set a
/// backoff) would start a second Job or skip the backoff, since the finished Job is deleted
/// right after that write.
async fn cache_is_current<K: ReplicationKind>(
    cr: &K,
    ctx: &Context,
    key: &MetricKey,
) -> Result<bool, ReconcileError> {
    let kind = match K::ROLE {
        Role::Source => "ReplicationSource",
        Role::Destination => "ReplicationDestination",
    };
    let fresh: Option<K> = observe::get(&ctx.client, &key.namespace, &key.name, kind).await?;
    Ok(fresh.is_some_and(|f| f.meta().resource_version == cr.meta().resource_version))
}

/// The plan's actions split into the creations (`Apply*`, in plan order) carried out before
/// the status write and the deletions (in plan order) carried out after it. The plan never
/// deletes and creates the same object in one pass (a pass that deletes stops there), so
/// reordering across the two groups changes nothing but when the deletions happen.
pub fn split_deletes(actions: &[PlanAction]) -> (Vec<PlanAction>, Vec<PlanAction>) {
    actions
        .iter()
        .cloned()
        .partition(|a| !matches!(a, PlanAction::Delete { .. }))
}

/// The controller action for a plan's requeue time.
pub fn requeue(after: Option<Duration>) -> Action {
    match after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    }
}

/// How long to wait after a pass failed with a permanent error (bad RBAC, invalid object):
/// long enough not to spam, short enough to notice a fix.
pub const PERMANENT_ERROR_REQUEUE: Duration = Duration::from_secs(300);

/// What the Controller does after a failed pass: log with structured fields, requeue with
/// backoff (retryable) or after [`PERMANENT_ERROR_REQUEUE`].
pub fn error_policy<K: ReplicationKind>(
    cr: Arc<K>,
    err: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = key_of(cr.as_ref());
    let delay = if err.is_retryable() {
        ctx.failed(&key)
    } else {
        PERMANENT_ERROR_REQUEUE
    };
    if err.is_retryable() {
        warn!(namespace = %key.namespace, name = %key.name, role = key.role.as_str(), category = err.category(), retry_in_secs = delay.as_secs(), error = %err, "reconcile failed; retrying");
    } else {
        error!(namespace = %key.namespace, name = %key.name, role = key.role.as_str(), category = err.category(), retry_in_secs = delay.as_secs(), error = %err, "reconcile failed");
    }
    Action::requeue(delay)
}
