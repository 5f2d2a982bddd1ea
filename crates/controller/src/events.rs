//! Events (client required): publishes the plan's [`EventIntent`]s about a custom resource as
//! `events.k8s.io/v1` Events through kube's [`Recorder`] (which folds repeats into a series).
//! Events are informational: failing to publish one is logged and does not fail the pass.
//! Every note is cut here to [`MAX_NOTE`] bytes, whatever the plan put in it.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::plan::EventIntent;
use crate::plan::mover::bounded_head;

/// Most bytes of an Event's note: events.k8s.io rejects notes over 1 KiB, and a rejected
/// Event is lost entirely.
pub const MAX_NOTE: usize = 1000;

/// The kube Event for an intent.
pub fn to_event(intent: &EventIntent) -> Event {
    Event {
        type_: if intent.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: intent.reason.as_str().to_string(),
        note: Some(bounded_head(&intent.note, MAX_NOTE)).filter(|n| !n.is_empty()),
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
    use crate::plan::EventReason;

    #[test]
    fn warning_intents_become_warning_events_with_their_reason_action_and_note() {
        let e = to_event(&EventIntent {
            warning: true,
            reason: EventReason::ConfigError,
            action: "Validate".into(),
            note: "Secret s not found".into(),
        });
        assert_eq!(e.type_, EventType::Warning);
        assert_eq!(e.reason, "ConfigError");
        assert_eq!(e.action, "Validate");
        assert_eq!(e.note.as_deref(), Some("Secret s not found"));
    }

    #[test]
    fn long_notes_are_cut_at_a_char_boundary_under_the_api_limit() {
        // Two-byte characters so a cut in the middle of one would be invalid UTF-8.
        let note = "é".repeat(2000);
        let e = to_event(&EventIntent {
            warning: true,
            reason: EventReason::SyncFailed,
            action: "Synchronize".into(),
            note: note.clone(),
        });
        let cut = e.note.expect("note");
        assert!(
            cut.len() <= MAX_NOTE && cut.len() > MAX_NOTE - 8,
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        assert!(note.starts_with(cut.trim_end_matches('…')));
        let short = to_event(&EventIntent {
            warning: false,
            reason: EventReason::Created,
            action: "Create".into(),
            note: "created Job j".into(),
        });
        assert_eq!(short.note.as_deref(), Some("created Job j"));
    }

    #[test]
    fn empty_note_is_omitted() {
        let e = to_event(&EventIntent {
            warning: false,
            reason: EventReason::Created,
            action: "Create".into(),
            note: String::new(),
        });
        assert_eq!(e.type_, EventType::Normal);
        assert_eq!(e.note, None);
    }
}
