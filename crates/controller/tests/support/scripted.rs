//! A stand-in plan for runtime scenarios: returns what the test scripted and records what
//! observe handed it.

use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use scribe_controller::context::Planner;
use scribe_controller::plan::{
    DestinationPlan, ObservedDestination, ObservedSource, Settings, SourcePlan,
};

/// A plan that returns what the test scripted and records what it was given.
#[derive(Default)]
pub struct Scripted {
    pub source: Mutex<Option<SourcePlan>>,
    pub destination: Mutex<Option<DestinationPlan>>,
    pub seen_source: Mutex<Vec<ObservedSource>>,
    pub seen_destination: Mutex<Vec<ObservedDestination>>,
}

impl Planner for Scripted {
    fn plan_source(&self, obs: &ObservedSource, _: &Settings, _: Timestamp) -> SourcePlan {
        self.seen_source.lock().unwrap().push(obs.clone());
        self.source
            .lock()
            .unwrap()
            .clone()
            .expect("no source plan scripted")
    }
    fn plan_destination(
        &self,
        obs: &ObservedDestination,
        _: &Settings,
        _: Timestamp,
    ) -> DestinationPlan {
        self.seen_destination.lock().unwrap().push(obs.clone());
        self.destination
            .lock()
            .unwrap()
            .clone()
            .expect("no destination plan scripted")
    }
}
