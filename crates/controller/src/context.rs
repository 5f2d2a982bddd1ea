//! What every reconcile pass shares: the client, the settings objects are built with, the plan
//! functions (behind [`Planner`], so tests can drive the runtime with a scripted plan), the
//! event recorder, the metrics registry, the clock, and per-object failure counts for backoff.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::{MetricKey, Metrics};
use crate::plan::{DestinationPlan, ObservedDestination, ObservedSource, Settings, SourcePlan};

/// Everything `run` needs besides the client (validated from the CLI in `main`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    pub settings: Settings,
    pub metrics_bind_address: SocketAddr,
    pub leader_elect: bool,
    pub leader_election_namespace: String,
    pub leader_election_id: String,
    /// Holder identity in the Lease and reporting instance of Events (POD_NAME or hostname).
    pub identity: String,
}

/// The pure plan, as the runtime sees it.
pub trait Planner: Send + Sync + 'static {
    fn plan_source(&self, obs: &ObservedSource, settings: &Settings, now: Timestamp) -> SourcePlan;
    fn plan_destination(
        &self,
        obs: &ObservedDestination,
        settings: &Settings,
        now: Timestamp,
    ) -> DestinationPlan;
}

/// The production plan (`crate::plan`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RealPlanner;

impl Planner for RealPlanner {
    fn plan_source(&self, obs: &ObservedSource, settings: &Settings, now: Timestamp) -> SourcePlan {
        crate::plan::plan_source(obs, settings, now)
    }
    fn plan_destination(
        &self,
        obs: &ObservedDestination,
        settings: &Settings,
        now: Timestamp,
    ) -> DestinationPlan {
        crate::plan::plan_destination(obs, settings, now)
    }
}

/// Source of `now` (tests pin it).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub planner: Arc<dyn Planner>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    failures: Mutex<HashMap<MetricKey, u32>>,
}

/// Name under which Events are reported.
pub const REPORTING_CONTROLLER: &str = "scribe-controller";

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        planner: Arc<dyn Planner>,
        metrics: Arc<Metrics>,
        identity: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: identity,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            planner,
            metrics,
            clock: Arc::new(Timestamp::now),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Records a failed pass and returns how long to wait before the next one.
    pub fn failed(&self, key: &MetricKey) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    /// Clears the failure count after a successful pass.
    pub fn succeeded(&self, key: &MetricKey) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Exponential backoff after `attempt` consecutive failed passes: 5 s, 10 s, 20 s, … capped
/// at 5 minutes, so a flapping API server is not hammered and a fixed one is noticed soon.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_and_caps_at_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
