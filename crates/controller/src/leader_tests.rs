//! Unit tests of the leader election's pure decisions and the elector against a manual clock.

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn lease(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("l".into()),
            resource_version: Some("7".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: renewed.map(|s| MicroTime(at(s))),
            acquire_time: renewed.map(|s| MicroTime(at(s))),
            lease_duration_seconds: duration,
            lease_transitions: Some(3),
            ..Default::default()
        }),
    }
}

const D: Duration = Duration::from_secs(15);

/// `decide` with an injected clock and the observation carried between rounds.
struct Rounds {
    clock: ManualClock,
    observed: Option<Observation>,
}

impl Rounds {
    fn new() -> Self {
        Self {
            clock: ManualClock::default(),
            observed: None,
        }
    }
    fn decide(&mut self, l: Option<&Lease>) -> Decision {
        decide(l, &mut self.observed, self.clock.now(), "me", D)
    }
}

fn with_rv(mut l: Lease, rv: &str) -> Lease {
    l.metadata.resource_version = Some(rv.into());
    l
}

#[test]
fn missing_or_unheld_lease_is_acquired() {
    let mut r = Rounds::new();
    assert_eq!(r.decide(None), Decision::Acquire);
    assert_eq!(
        r.decide(Some(&lease(None, Some(0), Some(15)))),
        Decision::Acquire
    );
    assert_eq!(
        r.decide(Some(&lease(Some(""), Some(0), Some(15)))),
        Decision::Acquire
    );
}

#[test]
fn own_lease_is_renewed_even_if_expired() {
    let mut r = Rounds::new();
    r.clock.advance(Duration::from_secs(100));
    assert_eq!(
        r.decide(Some(&lease(Some("me"), Some(0), Some(15)))),
        Decision::Renew
    );
}

#[test]
fn a_foreign_lease_is_waited_out_on_our_clock_from_when_we_first_saw_it() {
    let mut r = Rounds::new();
    // Its renewTime is far in the (wall-clock) past: irrelevant, we have just seen it.
    let l = lease(Some("other"), Some(-3600), Some(15));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(5));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(Duration::from_secs(10)));
    r.clock.advance(Duration::from_secs(9));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(Duration::from_secs(1)));
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.decide(Some(&l)), Decision::Acquire);
}

#[test]
fn a_renewal_restarts_the_count_whatever_the_renew_time_says() {
    let mut r = Rounds::new();
    let l = lease(Some("other"), Some(0), Some(15));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(14));
    // The holder renewed, with a clock running an hour late: still a renewal.
    let renewed = with_rv(lease(Some("other"), Some(-3600), Some(15)), "8");
    assert_eq!(r.decide(Some(&renewed)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(14));
    // Only the resourceVersion moved: also a sign of life.
    let touched = with_rv(renewed.clone(), "9");
    assert_eq!(r.decide(Some(&touched)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(15));
    assert_eq!(r.decide(Some(&touched)), Decision::Acquire);
}

#[test]
fn a_renew_time_in_our_future_does_not_extend_the_lease() {
    let mut r = Rounds::new();
    // The holder's clock runs a day ahead of ours.
    let l = lease(Some("other"), Some(86_400), Some(15));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
    r.clock.advance(D);
    assert_eq!(r.decide(Some(&l)), Decision::Acquire);
}

#[test]
fn foreign_lease_without_duration_uses_ours() {
    let mut r = Rounds::new();
    let l = lease(Some("other"), Some(0), None);
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(14));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(Duration::from_secs(1)));
}

#[test]
fn a_lease_that_disappears_and_returns_is_counted_afresh() {
    let mut r = Rounds::new();
    let l = lease(Some("other"), Some(0), Some(15));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
    r.clock.advance(Duration::from_secs(10));
    assert_eq!(r.decide(None), Decision::Acquire);
    r.clock.advance(Duration::from_secs(10));
    assert_eq!(r.decide(Some(&l)), Decision::Wait(D));
}

#[test]
fn takeover_bumps_transitions_and_keeps_resource_version() {
    let l = lease(Some("other"), Some(0), Some(15));
    let new = claimed(
        Some(&l),
        "l",
        "ns",
        "me",
        at(20),
        &LeaseTiming::default(),
        Decision::Acquire,
    );
    let spec = new.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(20))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(20))));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(new.metadata.resource_version.as_deref(), Some("7"));
}

#[test]
fn renewal_keeps_acquire_time_and_transitions() {
    let l = lease(Some("me"), Some(0), Some(15));
    let spec = claimed(
        Some(&l),
        "l",
        "ns",
        "me",
        at(5),
        &LeaseTiming::default(),
        Decision::Renew,
    )
    .spec
    .unwrap();
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn leader_steps_down_at_the_renew_deadline_before_the_lease_expires() {
    let t = LeaseTiming::default();
    assert!(t.renew_every < t.renew_deadline && t.renew_deadline < t.lease_duration);
    assert!(!must_step_down(Duration::from_secs(9), &t));
    assert!(must_step_down(Duration::from_secs(10), &t));
    assert!(must_step_down(Duration::from_secs(15), &t));
    // An attempt may use only what is left of the deadline.
    assert_eq!(
        renewal_budget(Duration::from_secs(5), &t),
        Duration::from_secs(5)
    );
    assert_eq!(
        renewal_budget(Duration::from_secs(8), &t),
        Duration::from_secs(2)
    );
    assert_eq!(
        renewal_budget(Duration::from_secs(12), &t),
        Duration::from_millis(100)
    );
}

#[test]
fn first_lease_is_created_with_name_namespace_and_zero_transitions() {
    let new = claimed(
        None,
        "scribe-leader",
        "scribe-system",
        "pod-a",
        at(0),
        &LeaseTiming::default(),
        Decision::Acquire,
    );
    assert_eq!(new.metadata.name.as_deref(), Some("scribe-leader"));
    assert_eq!(new.metadata.namespace.as_deref(), Some("scribe-system"));
    let spec = new.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_transitions, Some(0));
}
