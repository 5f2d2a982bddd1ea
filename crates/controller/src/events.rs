//! Events (client required): publishes the plan's [`EventIntent`]s about a custom resource as
//! `events.k8s.io/v1` Events through kube's [`Recorder`] (which folds repeats into a series).
//! Events are informational: failing to publish one is logged and does not fail the pass.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::plan::EventIntent;

/// The kube Event for an intent.
pub fn to_event(intent: &EventIntent) -> Event {
    Event {
        type_: if intent.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: intent.reason.clone(),
        note: Some(intent.note.clone()).filter(|n| !n.is_empty()),
        action: intent.action.clone(),
        secondary: None,
    }
}

/// Publishes `intents` about the object `regarding`, in order.
pub async fn publish(recorder: &Recorder, regarding: &ObjectReference, intents: &[EventIntent]) {
    for intent in intents {
        if let Err(e) = recorder.publish(&to_event(intent), regarding).await {
            warn!(
                error = %e,
                reason = %intent.reason,
                namespace = regarding.namespace.as_deref().unwrap_or_default(),
                name = regarding.name.as_deref().unwrap_or_default(),
                "publishing an event failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_intents_become_warning_events_with_their_reason_action_and_note() {
        let e = to_event(&EventIntent {
            warning: true,
            reason: "ConfigError".into(),
            action: "Validate".into(),
            note: "Secret s not found".into(),
        });
        assert_eq!(e.type_, EventType::Warning);
        assert_eq!(e.reason, "ConfigError");
        assert_eq!(e.action, "Validate");
        assert_eq!(e.note.as_deref(), Some("Secret s not found"));
    }

    #[test]
    fn empty_note_is_omitted() {
        let e = to_event(&EventIntent {
            warning: false,
            reason: "Created".into(),
            action: "Create".into(),
            note: String::new(),
        });
        assert_eq!(e.type_, EventType::Normal);
        assert_eq!(e.note, None);
    }
}
