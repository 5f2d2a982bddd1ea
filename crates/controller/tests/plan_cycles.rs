//! Whole iterations, pass after pass: the plan's actions are applied to a small simulated
//! cluster (snapshots become ready, Jobs finish), the returned status is written back, and
//! time advances by the requested requeue. Checks the invariants a single fixture cannot:
//! never two Jobs at once, one recorded success per Job, cleanup before the next iteration —
//! also when status writes are lost (a failed status write: the runtime deletes nothing then).

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use scribe_api::{ReplicationDestination, ReplicationSource};
use scribe_controller::plan::{
    Action, MetricIntent, MoverReport, ObjectKind, ObservedDestination, ObservedSource, Plan,
    Settings, plan_destination, plan_source,
};
use scribe_controller::snapshot::{VolumeSnapshot, VolumeSnapshotStatus};

/// How long a simulated mover Job runs.
const JOB_RUNTIME: i64 = 40;

#[derive(Default)]
struct World {
    now: i64,
    snapshots: Vec<VolumeSnapshot>,
    pvcs: Vec<PersistentVolumeClaim>,
    job: Option<Job>,
    jobs_created: usize,
    successes: usize,
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("valid time")
}

impl World {
    fn apply(&mut self, actions: &[Action]) {
        let created = Some(Time(ts(self.now)));
        for a in actions {
            match a {
                Action::ApplyVolumeSnapshot(s) => {
                    let mut s = (**s).clone();
                    s.metadata.creation_timestamp = created.clone();
                    self.snapshots
                        .retain(|o| o.metadata.name != s.metadata.name);
                    self.snapshots.push(s);
                }
                Action::ApplyPvc(p) => {
                    let mut p = (**p).clone();
                    p.metadata.creation_timestamp = created.clone();
                    self.pvcs.retain(|o| o.metadata.name != p.metadata.name);
                    self.pvcs.push(p);
                }
                Action::ApplyJob(j) => {
                    assert!(
                        self.job.is_none(),
                        "a second Job was applied while one exists (t={})",
                        self.now
                    );
                    let mut j = (**j).clone();
                    j.metadata.creation_timestamp = created.clone();
                    self.job = Some(j);
                    self.jobs_created += 1;
                }
                Action::ScaleJob { name, parallelism } => {
                    if let Some(j) = self
                        .job
                        .as_mut()
                        .filter(|j| j.metadata.name.as_deref() == Some(name))
                    {
                        j.spec.get_or_insert_with(Default::default).parallelism =
                            Some(*parallelism);
                    }
                }
                Action::ReleaseVolumeSnapshot {
                    name,
                    owner_references,
                    ..
                } => {
                    for s in &mut self.snapshots {
                        if s.metadata.name.as_deref() == Some(name) {
                            s.metadata.owner_references = Some(owner_references.clone());
                        }
                    }
                }
                Action::Delete { kind, name } => match kind {
                    ObjectKind::Job => {
                        self.job = self
                            .job
                            .take()
                            .filter(|j| j.metadata.name.as_deref() != Some(name))
                    }
                    ObjectKind::VolumeSnapshot => self
                        .snapshots
                        .retain(|s| s.metadata.name.as_deref() != Some(name)),
                    ObjectKind::PersistentVolumeClaim => self
                        .pvcs
                        .retain(|p| p.metadata.name.as_deref() != Some(name)),
                },
            }
        }
    }

    /// Carries out a plan as the runtime does: creations, then the status write, then the
    /// deletions and the metrics — both skipped when the status write is lost (the runtime's
    /// pass fails there). Returns whether the status was written.
    fn carry_out<S>(&mut self, plan: &Plan<S>, status_lost: bool) -> bool {
        let (creates, deletes): (Vec<Action>, Vec<Action>) = plan
            .actions
            .iter()
            .cloned()
            .partition(|a| !matches!(a, Action::Delete { .. }));
        self.apply(&creates);
        if status_lost {
            return false;
        }
        self.apply(&deletes);
        self.successes += plan
            .metrics
            .iter()
            .filter(|m| matches!(m, MetricIntent::SyncSucceeded { .. }))
            .count();
        true
    }

    /// Time moves to the plan's requeue (between 1 s and 10 min), then the cluster moves on.
    fn advance(&mut self, requeue_after: Option<Duration>) {
        let step = requeue_after
            .unwrap_or(Duration::from_secs(600))
            .as_secs()
            .clamp(1, 600);
        self.now += i64::try_from(step).expect("small step");
        self.evolve();
    }

    /// The cluster moves on: snapshots become ready, Jobs finish after JOB_RUNTIME seconds.
    fn evolve(&mut self) {
        for s in &mut self.snapshots {
            s.status
                .get_or_insert_with(VolumeSnapshotStatus::default)
                .ready_to_use = Some(true);
        }
        let now = self.now;
        if let Some(job) = &mut self.job {
            let started = job
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0.as_second());
            if job.status.is_none() && now - started >= JOB_RUNTIME {
                job.status = Some(JobStatus {
                    completion_time: Some(Time(ts(started + JOB_RUNTIME))),
                    conditions: Some(vec![JobCondition {
                        type_: "Complete".into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    }]),
                    ..JobStatus::default()
                });
            }
        }
    }

    fn job_done(&self) -> Option<MoverReport> {
        self.job
            .as_ref()
            .and_then(|j| j.status.as_ref())
            .map(|_| MoverReport {
                exit_code: Some(0),
                message: Some(
                    r#"{"result":"Successful","filesTransferred":1,"bytesTransferred":10}"#.into(),
                ),
            })
    }
}

fn settings() -> Settings {
    Settings {
        mover_image: "mover:test".into(),
        mover_image_pull_policy: scribe_controller::plan::PullPolicy::IfNotPresent,
    }
}

fn secret() -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "rclone-secret", "namespace": "ns", "resourceVersion": "1"},
        "stringData": {"rclone.conf": "[s3]\ntype = s3\n"}
    }))
    .expect("secret")
}

fn source_pvc() -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc")
}

fn source_cr(schedule: Option<&str>) -> ReplicationSource {
    let mut spec = serde_json::json!({
        "sourcePVC": "data",
        "rclone": {"rcloneConfigSection": "s3", "rcloneDestPath": "b/p", "rcloneConfig": "rclone-secret", "copyMethod": "Snapshot"}
    });
    if let Some(s) = schedule {
        spec["trigger"] = serde_json::json!({"schedule": s});
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scribe.backube/v1alpha1", "kind": "ReplicationSource",
        "metadata": {"name": "db", "namespace": "ns", "uid": "u1"}, "spec": spec
    }))
    .expect("cr")
}

/// Runs the source for `seconds` of simulated time; `lose_status(pass)` drops that status write.
fn run_source(
    schedule: Option<&str>,
    seconds: i64,
    lose_status: impl Fn(usize) -> bool,
) -> (World, ReplicationSource) {
    let mut world = World {
        now: 1_700_000_000,
        ..World::default()
    };
    let end = world.now + seconds;
    let mut cr = source_cr(schedule);
    let mut pass = 0;
    while world.now < end {
        pass += 1;
        assert!(pass < 10_000, "the plan never settles");
        let pit = |n: &str| n == "scribe-src-db";
        let obs = ObservedSource {
            cr: cr.clone(),
            secret: Some(secret()),
            mover_refs: Default::default(),
            source_pvc: Some(source_pvc()),
            snapshot: world
                .snapshots
                .iter()
                .find(|s| s.metadata.name.as_deref().is_some_and(pit))
                .cloned(),
            pit_pvc: world
                .pvcs
                .iter()
                .find(|p| p.metadata.name.as_deref().is_some_and(pit))
                .cloned(),
            job: world.job.clone(),
            source_pvc_pods: Vec::new(),
            mover: world.job_done(),
            mover_waiting: None,
        };
        let plan = plan_source(&obs, &settings(), ts(world.now));
        if world.carry_out(&plan, lose_status(pass)) {
            cr.status = Some(plan.status);
        }
        world.advance(plan.requeue_after);
    }
    (world, cr)
}

#[test]
fn continuous_source_runs_back_to_back_iterations_without_overlap() {
    let (world, cr) = run_source(None, 3600, |_| false);
    assert!(
        world.successes >= 20,
        "expected many iterations in an hour, got {}",
        world.successes
    );
    // Every Job created either succeeded and was recorded once, or is the one still running.
    assert_eq!(
        world.jobs_created,
        world.successes + usize::from(world.job.is_some())
    );
    assert!(cr.status.and_then(|s| s.last_sync_time).is_some());
}

#[test]
fn scheduled_source_syncs_once_per_firing() {
    // Every 10 minutes for 2 hours (plus the immediate first sync).
    let (world, cr) = run_source(Some("*/10 * * * *"), 7200, |_| false);
    assert!(
        (12..=13).contains(&world.successes),
        "got {} syncs",
        world.successes
    );
    let status = cr.status.expect("status");
    let next = status.next_sync_time.expect("next").0;
    let last = status.last_sync_time.expect("last").0;
    assert!(next > last, "next sync {next} after last {last}");
    assert_eq!(
        next.as_second() % 600,
        0,
        "next sync on a 10-minute boundary"
    );
}

#[test]
fn lost_status_writes_never_duplicate_jobs_or_successes() {
    // Every third status write is lost, as if the controller crashed after applying.
    let (world, _) = run_source(None, 3600, |pass| pass % 3 == 0);
    assert!(
        world.successes > 5,
        "progress despite lost writes: {}",
        world.successes
    );
    // Exact: every Job but the one still running was recorded as one success, none twice,
    // and no iteration ran a second Job because its Job was deleted before its status stuck.
    let running = usize::from(world.job.is_some());
    assert_eq!(
        world.jobs_created,
        world.successes + running,
        "{} Jobs created, {} successes recorded, {running} running",
        world.jobs_created,
        world.successes
    );
}

fn destination_cr() -> ReplicationDestination {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scribe.backube/v1alpha1", "kind": "ReplicationDestination",
        "metadata": {"name": "db", "namespace": "ns", "uid": "u2"},
        "spec": {"trigger": {"schedule": "*/15 * * * *"},
                 "rclone": {"rcloneConfigSection": "s3", "rcloneDestPath": "b/p", "rcloneConfig": "rclone-secret",
                            "copyMethod": "Snapshot", "accessModes": ["ReadWriteOnce"], "capacity": "1Gi"}}
    }))
    .expect("cr")
}

#[test]
fn destination_keeps_one_image_and_publishes_only_ready_snapshots() {
    let mut world = World {
        now: 1_700_000_000,
        ..World::default()
    };
    let end = world.now + 3 * 3600;
    let mut cr = destination_cr();
    let mut pvc_creations = 0;
    while world.now < end {
        let obs = ObservedDestination {
            cr: cr.clone(),
            secret: Some(secret()),
            mover_refs: Default::default(),
            dest_pvc: world
                .pvcs
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some("scribe-dest-db"))
                .cloned(),
            job: world.job.clone(),
            mover: world.job_done(),
            mover_waiting: None,
            snapshots: world.snapshots.clone(),
        };
        let plan = plan_destination(&obs, &settings(), ts(world.now));
        pvc_creations += plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::ApplyPvc(_)))
            .count();
        world.carry_out(&plan, false);
        if let Some(image) = plan.status.latest_image.as_ref() {
            let snap = world
                .snapshots
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(image.name.as_str()));
            let ready = snap
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_to_use);
            assert_eq!(
                ready,
                Some(true),
                "latestImage {} must be a ready snapshot",
                image.name
            );
        }
        cr.status = Some(plan.status);
        world.advance(plan.requeue_after);
    }
    assert!(
        (12..=13).contains(&world.successes),
        "got {} syncs in 3h every 15min",
        world.successes
    );
    assert_eq!(
        pvc_creations, 1,
        "the destination PVC is kept between iterations"
    );
    let image = cr.status.and_then(|s| s.latest_image).expect("latestImage");
    assert!(image.name.starts_with("scribe-dest-db-"), "{}", image.name);
    assert_eq!(
        world.snapshots.len(),
        1,
        "older images rotated out: {:?}",
        world
            .snapshots
            .iter()
            .map(|s| &s.metadata.name)
            .collect::<Vec<_>>()
    );
}
