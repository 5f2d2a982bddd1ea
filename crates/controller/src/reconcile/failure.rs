//! Making a refused write visible where users look: when the API server rejects a create,
//! patch or delete for a reason that retrying will not fix by itself (quota exceeded, an
//! admission webhook's denial, RBAC 403, an invalid object, a kind that is not installed),
//! the CR's `Reconciled` condition turns False with reason `ApplyFailed` and the API's own
//! message, and a Warning Event says the same — not only the controller's log.
//!
//! Only the condition changes: the rest of the status stays as observed, so a half-carried
//! plan (say, an iteration start whose Job was refused) is not recorded; the next pass plans
//! again from the same observation. The next pass that succeeds sets Reconciled True.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use scribe_api::constants::{CONDITION_RECONCILED, REASON_APPLY_FAILED};
use tracing::warn;

use super::ReplicationKind;
use crate::apply::ApplyError;
use crate::context::Context;
use crate::events;
use crate::plan::conditions::{find, set_condition};
use crate::plan::{EventIntent, EventReason};
use crate::status::write_status;

/// What to put in the CR for a refused write; `None` for errors worth only a retry
/// (conflicts, throttling, server and transport errors) or not from the API.
pub fn refusal_message(err: &ApplyError) -> Option<String> {
    let kube::Error::Api(s) = err.kube_error()? else {
        return None;
    };
    if matches!(s.code, 409 | 429) || s.code >= 500 {
        return None;
    }
    let (verb, kind, name) = match err {
        ApplyError::Apply { kind, name, .. } => ("creating", kind, name),
        ApplyError::Patch { kind, name, .. } => ("patching", kind, name),
        ApplyError::Delete { kind, name, .. } => ("deleting", kind, name),
        _ => return None,
    };
    let detail = if s.message.trim().is_empty() {
        format!("HTTP {}", s.code)
    } else {
        s.message.trim().to_string()
    };
    Some(format!(
        "{verb} {kind} {name} was refused by the API server ({}): {detail}",
        s.code
    ))
}

/// `conditions` with Reconciled False / ApplyFailed / `message`; whether that is news (so
/// the Warning Event is published once per distinct refusal, not on every retry).
pub fn refused_conditions(
    mut conditions: Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
) -> (Vec<Condition>, bool) {
    let news = find(&conditions, CONDITION_RECONCILED).is_none_or(|c| {
        c.status != "False" || c.reason != REASON_APPLY_FAILED || c.message != message
    });
    set_condition(
        &mut conditions,
        CONDITION_RECONCILED,
        false,
        REASON_APPLY_FAILED,
        message,
        generation,
        now,
    );
    (conditions, news)
}

/// Records a refused write in the CR's status and as a Warning Event (best effort: a
/// failure here is logged, the original error is what the pass returns).
/// `current` is the status as last written (the observed one, or the plan's once written).
pub async fn report_refusal<K: ReplicationKind>(
    cr: &K,
    ctx: &Context,
    current: Option<&K::Status>,
    err: &ApplyError,
) {
    let Some(message) = refusal_message(err) else {
        return;
    };
    let mut status = current.cloned().unwrap_or_default();
    let (conditions, news) = refused_conditions(
        K::conditions(&status).to_vec(),
        &message,
        cr.meta().generation,
        ctx.now(),
    );
    *K::conditions_mut(&mut status) = conditions;
    if let Err(e) = write_status(&ctx.client, cr, current, &status).await {
        warn!(namespace = cr.namespace().unwrap_or_default(), name = cr.name_any(), error = %e, "recording a refused write in the status failed");
    }
    if news {
        let intent = EventIntent {
            warning: true,
            reason: EventReason::ApplyFailed,
            action: "Apply".to_string(),
            note: message,
        };
        events::publish(&ctx.recorder, &cr.object_ref(&()), &[intent]).await;
    }
}
