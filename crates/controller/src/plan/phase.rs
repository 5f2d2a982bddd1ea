//! The named phases of a reconcile pass, decided before anything is done.
//!
//! Both state machines (`source`, `destination`) first reduce their observation to
//! [`Facts`] and call [`decide`], a pure function: it says whether an iteration is open
//! (and how it got open: recorded, adopted after a lost status write, or started now) and
//! which [`Phase`] the pass is in. Each side then `match`es on the phase and runs one small
//! handler per phase. The shared handlers are here (`Ctx::enter`, `Ctx::idle`,
//! `Ctx::blocked`); the side-specific ones (preparing the copy, following the mover,
//! finishing) are in `source` and `destination`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scribe_api::constants::{REASON_ERROR, REASON_PAUSED};

use super::ObjectKind;
use super::common::{Common, Ctx, POLL, adoptable, owned_by};
use super::conditions::{truncate, until};
use super::mover::{JobPhase, job_phase};
use super::schedule::ScheduleError;
use super::trigger::TriggerState;

/// Where a pass stands, decided from the observation and `now` alone.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// No iteration is open and the trigger is not due yet.
    Idle,
    /// Nothing may proceed until something changes; the [`Blocker`] says what.
    Blocked(Blocker),
    /// Objects that must go before anything else happens are deleted.
    CleaningUp(Leftovers),
    /// An iteration is open without a mover Job: the data volume is prepared (point-in-time
    /// copy, destination PVC) and the Job started.
    PreparingCopy,
    /// The iteration's mover Job runs (or is suspended while paused, or its pod is stuck).
    MoverRunning,
    /// The iteration's mover Job failed: the failure is recorded and classified.
    MoverFailed {
        /// The Job's own failure message (its `Failed` condition).
        message: String,
    },
    /// The iteration's mover Job succeeded: the sync is recorded and its objects go.
    Finishing {
        /// When the Job completed (`now` when it does not say), whole seconds.
        completed: Timestamp,
    },
}

/// Why a pass cannot proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// No iteration starts: `spec.trigger.schedule` is invalid.
    InvalidSchedule,
    /// No iteration starts: `spec.paused`.
    Paused,
    /// No iteration starts: the configuration is invalid.
    InvalidConfig,
    /// The open iteration starts no mover Job: the configuration is invalid.
    JobInvalidConfig,
    /// The open iteration starts no mover Job: `spec.paused`.
    JobPaused,
    /// The mover reported a configuration error (exit 78) for this very configuration.
    ConfigError,
    /// The mover failed recently: the next Job starts at `retry`.
    Backoff {
        /// `status.nextRetryTime`.
        retry: Timestamp,
    },
}

/// What a [`Phase::CleaningUp`] pass deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftovers {
    /// The objects of the last completed iteration.
    LastIteration,
    /// Point-in-time copies made for the copyMethod in place before a switch.
    PreviousCopyMethod,
}

/// Whether an iteration is open in this pass, and how it came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Iteration {
    /// None is open, and none starts in this pass.
    Closed,
    /// `status.lastSyncStartTime` records an open one.
    Recorded,
    /// Objects created after the last sync continue an iteration whose status write was
    /// lost: it is recorded as started at `start` (the oldest of them).
    Adopted {
        /// Creation time of the oldest adopted object.
        start: Timestamp,
    },
    /// A new iteration starts now.
    Started,
}

/// What [`decide`] returns: the iteration and the phase within it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub iteration: Iteration,
    pub phase: Phase,
}

/// What the phase decision reads, derived from the observation and `now`.
pub struct Facts<'a> {
    pub now: Timestamp,
    /// The status as observed.
    pub st: &'a Common,
    /// The CR's uid: only objects owned by it are adopted.
    pub owner_uid: Option<&'a str>,
    /// The trigger evaluated against the recorded last sync.
    pub trigger: &'a Result<TriggerState, ScheduleError>,
    /// Whether the configuration validated.
    pub valid: bool,
    /// `spec.paused`.
    pub paused: bool,
    /// Fingerprint of the configuration (spec and rclone Secret).
    pub fingerprint: &'a str,
    /// The iteration objects observed (a Job, point-in-time copies).
    pub found: &'a [(ObjectKind, &'a ObjectMeta)],
    /// The mover Job, if observed.
    pub job: Option<&'a Job>,
    /// Whether objects of a previous copyMethod must go first (source only).
    pub stale_copies: bool,
}

/// Decides the iteration and the phase of a pass. Pure.
pub fn decide(f: &Facts<'_>) -> Decision {
    let iteration = if f.st.last_sync_start_time.is_some() {
        Iteration::Recorded
    } else if let Some(start) = adopted_start(f) {
        Iteration::Adopted { start }
    } else if !f.found.is_empty() {
        return Decision::closed(Phase::CleaningUp(Leftovers::LastIteration));
    } else if let Some(phase) = not_starting(f) {
        return Decision::closed(phase);
    } else {
        Iteration::Started
    };
    Decision {
        iteration,
        phase: open_phase(f),
    }
}

impl Decision {
    fn closed(phase: Phase) -> Self {
        Self {
            iteration: Iteration::Closed,
            phase,
        }
    }
}

/// The start of an iteration whose status write was lost, from the objects it created.
fn adopted_start(f: &Facts<'_>) -> Option<Timestamp> {
    let last_sync = f.st.last_sync_time.as_ref().map(|t| t.0);
    let mut adopted = f
        .found
        .iter()
        // Someone else's object under our name is never taken for our iteration.
        .filter(|(_, m)| adoptable(m, last_sync) && owned_by(m, f.owner_uid))
        .peekable();
    adopted.peek()?;
    let oldest = adopted
        .filter_map(|(_, m)| m.creation_timestamp.as_ref().map(|t| t.0))
        .min();
    Some(oldest.unwrap_or(f.now))
}

/// Why no iteration starts although nothing is left over; `None` when one starts.
fn not_starting(f: &Facts<'_>) -> Option<Phase> {
    let Ok(trigger) = f.trigger else {
        return Some(Phase::Blocked(Blocker::InvalidSchedule));
    };
    if f.paused {
        Some(Phase::Blocked(Blocker::Paused))
    } else if !trigger.due {
        Some(Phase::Idle)
    } else if !f.valid {
        Some(Phase::Blocked(Blocker::InvalidConfig))
    } else {
        None
    }
}

/// The phase of an open iteration: following its Job, or getting to one.
fn open_phase(f: &Facts<'_>) -> Phase {
    if let Some(job) = f.job {
        return match job_phase(job) {
            JobPhase::Running => Phase::MoverRunning,
            JobPhase::Failed { message, .. } => Phase::MoverFailed { message },
            JobPhase::Succeeded { at } => Phase::Finishing {
                completed: at.map_or(f.now, truncate),
            },
        };
    }
    if f.stale_copies {
        return Phase::CleaningUp(Leftovers::PreviousCopyMethod);
    }
    match job_blocker(f) {
        Some(blocker) => Phase::Blocked(blocker),
        None => Phase::PreparingCopy,
    }
}

/// What keeps the open iteration from starting its mover Job, if anything.
fn job_blocker(f: &Facts<'_>) -> Option<Blocker> {
    if !f.valid {
        return Some(Blocker::JobInvalidConfig);
    }
    if f.paused {
        return Some(Blocker::JobPaused);
    }
    if f.st.config_error_fingerprint.as_deref() == Some(f.fingerprint) {
        return Some(Blocker::ConfigError);
    }
    f.st.next_retry_time
        .as_ref()
        .map(|t| t.0)
        .filter(|retry| *retry > f.now)
        .map(|retry| Blocker::Backoff { retry })
}

/// The handlers every side shares.
impl Ctx {
    /// Records how the iteration got open (nothing when it was recorded or stays closed).
    pub fn enter(&mut self, iteration: Iteration, trigger: &Result<TriggerState, ScheduleError>) {
        match (iteration, trigger) {
            (Iteration::Adopted { start }, _) => self.st.last_sync_start_time = Some(Time(start)),
            (Iteration::Started, Ok(trigger)) => self.start_iteration(trigger),
            _ => {}
        }
    }

    /// [`Phase::Idle`]: says what the trigger waits for, and looks again when it fires.
    pub fn idle(&mut self, trigger: &Result<TriggerState, ScheduleError>) {
        let Ok(trigger) = trigger else {
            return;
        };
        self.syncing(false, trigger.waiting_reason, &trigger.waiting_message);
        if let Some(wait) = trigger.wait {
            self.requeue(wait);
        }
    }

    /// [`Phase::Blocked`]: the Synchronizing condition says what holds the pass back.
    /// `fingerprint` is the configuration's, for [`Ctx::forget_stale_config_error`].
    pub fn blocked(&mut self, blocker: Blocker, fingerprint: &str) {
        match blocker {
            Blocker::InvalidSchedule => {
                self.syncing(false, REASON_ERROR, "invalid spec.trigger.schedule");
            }
            Blocker::Paused => self.syncing(
                false,
                REASON_PAUSED,
                "paused (spec.paused): no new synchronization starts",
            ),
            Blocker::InvalidConfig => self.invalid_config("start"),
            Blocker::JobInvalidConfig => self.invalid_config("continue"),
            Blocker::JobPaused => self.syncing(
                false,
                REASON_PAUSED,
                "paused (spec.paused): no new mover Job starts",
            ),
            Blocker::ConfigError => self.report_config_error(),
            Blocker::Backoff { retry } => {
                self.forget_stale_config_error(fingerprint);
                let failures = self.st.consecutive_failures.unwrap_or(0);
                self.syncing(
                    false,
                    REASON_ERROR,
                    format!("the mover failed {failures} time(s) in a row; retrying at {retry}"),
                );
                self.requeue(until(self.now, retry));
            }
        }
    }

    fn invalid_config(&mut self, verb: &str) {
        self.syncing(
            false,
            REASON_ERROR,
            format!("cannot {verb} a synchronization until the configuration is fixed"),
        );
        self.requeue(POLL);
    }

    /// Past every [`Blocker`]: a configuration error recorded for another configuration
    /// (the spec or the Secret changed since) no longer holds.
    pub fn forget_stale_config_error(&mut self, fingerprint: &str) {
        if self
            .st
            .config_error_fingerprint
            .as_deref()
            .is_some_and(|recorded| recorded != fingerprint)
        {
            self.st.config_error_fingerprint = None;
        }
    }
}

#[cfg(test)]
mod tests;
