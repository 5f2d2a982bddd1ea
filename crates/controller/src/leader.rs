//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one replica reconciles.
//!
//! The decision (acquire, renew or wait) is a pure function of the observed Lease, what we
//! observed of it before, our monotonic clock and our identity ([`decide`]); the new Lease body
//! is built by [`claimed`]. As in client-go, a foreign Lease's expiry is measured on OUR
//! monotonic clock from the moment we last saw it change (holder, renewTime, resourceVersion),
//! never by comparing the holder's `renewTime` with our wall clock: clocks of different nodes
//! disagree, and a skewed one would let two replicas lead at once. The I/O around them
//! ([`LeaderElector`]) reads the Lease, writes it with optimistic concurrency (resourceVersion,
//! so two candidates cannot both win) and reports loss of leadership to the caller, who steps
//! down by exiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::http::{Health, LeaderState};

/// Timing of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How long the leader keeps leading without a successful renewal. Shorter than
    /// `lease_duration`, so it stops reconciling before a standby may take the Lease over.
    pub renew_deadline: Duration,
    /// How often a candidate retries.
    pub retry_every: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid Lease: look again after this long (its expiry at the latest).
    Wait(Duration),
}

/// The local monotonic clock, injectable for tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The last version of a Lease we saw, and when (on our monotonic clock) we first saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    record: Record,
    at: Instant,
}

/// The parts of a Lease whose change shows that its holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    lease_duration_seconds: Option<i32>,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity,
            renew_time: spec.renew_time.map(|t| t.0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            lease_duration_seconds: spec.lease_duration_seconds,
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// Decides what to do given the Lease as read (`None`: it does not exist), updating
/// `observed` (what we saw of it before, and when on our clock `now`).
///
/// A Lease held by someone else expires `leaseDurationSeconds` after the moment we first saw
/// its current version: a holder that renews keeps changing renewTime (and resourceVersion),
/// which restarts our count. The holder's timestamps are never compared with our wall clock.
pub fn decide(
    lease: Option<&Lease>,
    observed: &mut Option<Observation>,
    now: Instant,
    me: &str,
    default_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        *observed = None;
        return Decision::Acquire;
    };
    let record = Record::of(lease);
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observation {
            record: record.clone(),
            at: now,
        });
    }
    match record.holder.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(h) if h == me => Decision::Renew,
        Some(_) => {
            let duration = record
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(default_duration);
            let since = observed
                .as_ref()
                .map(|o| now.saturating_duration_since(o.at))
                .unwrap_or_default();
            if since >= duration {
                Decision::Acquire
            } else {
                Decision::Wait(duration - since)
            }
        }
    }
}

/// Whether the leader must step down: its last successful renewal was `since_renewal` ago
/// and the renew deadline has passed (a standby may acquire once the Lease expires, which
/// happens later: `renew_deadline < lease_duration`).
pub fn must_step_down(since_renewal: Duration, timing: &LeaseTiming) -> bool {
    since_renewal >= timing.renew_deadline
}

/// How long the next renewal attempt may take: what is left until the renew deadline (at
/// least a moment, so an attempt is still made right at the deadline's edge).
pub fn renewal_budget(since_renewal: Duration, timing: &LeaseTiming) -> Duration {
    timing
        .renew_deadline
        .saturating_sub(since_renewal)
        .max(Duration::from_millis(100))
}

/// The Lease as we write it for `decision` (Acquire or Renew), keeping the read object's
/// metadata (resourceVersion) so the write is rejected if someone wrote in between.
pub fn claimed(
    current: Option<&Lease>,
    name: &str,
    namespace: &str,
    me: &str,
    now: Timestamp,
    timing: &LeaseTiming,
    decision: Decision,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        spec: None,
    });
    let old = lease.spec.take().unwrap_or_default();
    let ours = old.holder_identity.as_deref() == Some(me);
    let new_holder = decision == Decision::Acquire && !ours;
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(
            i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX),
        ),
        acquire_time: if new_holder || old.acquire_time.is_none() {
            Some(MicroTime(now))
        } else {
            old.acquire_time.clone()
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: if new_holder && current.is_some() {
            Some(old.lease_transitions.unwrap_or(0) + 1)
        } else {
            old.lease_transitions.or(Some(0))
        },
        ..old
    });
    lease
}

/// Errors of the election. Losing the Lease is an error: the process must step down.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("reading Lease {namespace}/{name}: {source}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing Lease {namespace}/{name}: {source}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("lost leadership of Lease {namespace}/{name}")]
    Lost { namespace: String, name: String },
}

/// Runs the election for one identity.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    timing: LeaseTiming,
    clock: Arc<dyn Clock>,
    observed: Mutex<Option<Observation>>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            timing,
            clock: Arc::new(MonotonicClock),
            observed: Mutex::new(None),
        }
    }

    /// Measures Lease expiry with `clock` instead of the process's monotonic clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// One round: read, decide, write if needed. Returns whether we lead after it, or how
    /// long to wait before the next round. `now` (wall clock) is only written into the Lease;
    /// expiry is judged on the elector's monotonic [`Clock`].
    pub async fn try_once(&self, now: Timestamp) -> Result<Result<(), Duration>, LeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| LeaseError::Read {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                source: Box::new(source),
            })?;
        let decision = {
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            decide(
                current.as_ref(),
                &mut observed,
                self.clock.now(),
                &self.identity,
                self.timing.lease_duration,
            )
        };
        if let Decision::Wait(d) = decision {
            return Ok(Err(d));
        }
        let lease = claimed(
            current.as_ref(),
            &self.name,
            &self.namespace,
            &self.identity,
            now,
            &self.timing,
            decision,
        );
        let written = match current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Ok(())),
            // Another candidate wrote first (create raced or resourceVersion moved on).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(self.timing.retry_every)),
            Err(source) => Err(LeaseError::Write {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// Tries until we lead. Returns false if `shutdown` fired first.
    pub async fn acquire(
        &self,
        health: &Health,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        loop {
            let wait = match self.try_once(Timestamp::now()).await {
                Ok(Ok(())) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    health.set_leader(LeaderState::Leading);
                    return true;
                }
                Ok(Err(wait)) => {
                    health.set_leader(LeaderState::Standby);
                    debug!(lease = %self.name, "another replica leads; standing by");
                    wait.min(self.timing.retry_every)
                        .max(Duration::from_millis(200))
                }
                Err(e) => {
                    health.set_leader(LeaderState::Unhealthy);
                    warn!(error = %e, "leader election round failed");
                    self.timing.retry_every
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return false,
            }
        }
    }

    /// Renews until leadership is lost (returns the error) — it never returns otherwise.
    /// Each attempt is bounded by the time left until the renew deadline, so a hung API call
    /// cannot keep a leader leading past it; failed attempts are retried sooner, and the
    /// leader steps down once no renewal succeeded within the deadline.
    pub async fn hold(&self) -> LeaseError {
        let mut last_renewed = tokio::time::Instant::now();
        let mut wait = self.timing.renew_every;
        loop {
            tokio::time::sleep(wait).await;
            let budget = renewal_budget(last_renewed.elapsed(), &self.timing);
            match tokio::time::timeout(budget, self.try_once(Timestamp::now())).await {
                Ok(Ok(Ok(()))) => {
                    last_renewed = tokio::time::Instant::now();
                    wait = self.timing.renew_every;
                    continue;
                }
                Ok(Ok(Err(_))) => return self.lost(),
                Ok(Err(e)) => warn!(error = %e, "renewing the Lease failed"),
                Err(_) => warn!(
                    timeout_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                    "renewing the Lease timed out"
                ),
            }
            if must_step_down(last_renewed.elapsed(), &self.timing) {
                return self.lost();
            }
            wait = self.timing.retry_every.min(
                self.timing
                    .renew_deadline
                    .saturating_sub(last_renewed.elapsed()),
            );
        }
    }

    fn lost(&self) -> LeaseError {
        LeaseError::Lost {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Gives the Lease up on shutdown so a standby takes over without waiting for expiry.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "releasing the Lease failed; it will expire");
        } else {
            info!(lease = %self.name, "released leadership");
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
