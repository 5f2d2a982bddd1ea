//! Leader election rounds against a scripted API server: the Lease requests made when the
//! Lease is missing, held by another replica, expired, or raced for. Expiry is measured on the
//! elector's (injected) monotonic clock, from when it first saw the Lease's current version.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{ApiServer, mock_api};
use http::Method;
use k8s_openapi::jiff::Timestamp;
use scribe_controller::leader::{LeaderElector, LeaseTiming, ManualClock};
use serde_json::json;
use tokio::task::JoinHandle;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/scribe-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/scribe-system/leases/scribe-leader";

fn now() -> Timestamp {
    "2024-05-01T10:00:00Z".parse().unwrap()
}

fn lease(holder: &str, renewed: &str, transitions: i32) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "scribe-leader", "namespace": "scribe-system", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                 "acquireTime": renewed, "leaseTransitions": transitions}
    })
}

fn elector(client: kube::Client, clock: Arc<ManualClock>) -> LeaderElector {
    LeaderElector::new(
        client,
        "scribe-system",
        "scribe-leader",
        "pod-a",
        LeaseTiming::default(),
    )
    .with_clock(clock)
}

/// What one round returns: Ok (leader) or Err(when to try again), or the error's text.
type Round = JoinHandle<Result<Result<(), Duration>, String>>;

/// One election round of "pod-a" at `now()` running against a new scripted server.
fn one_round() -> (Round, ApiServer) {
    let (client, api) = mock_api();
    let e = elector(client, Arc::new(ManualClock::default()));
    let round = tokio::spawn(async move { e.try_once(now()).await.map_err(|e| e.to_string()) });
    (round, api)
}

/// Two rounds of "pod-a": the first sees a foreign Lease and must wait a whole lease duration
/// on our clock; the clock then moves on by that much and the second round runs.
fn round_after_waiting_out_the_lease() -> (Round, ApiServer) {
    let (client, api) = mock_api();
    let clock = Arc::new(ManualClock::default());
    let e = elector(client, clock.clone());
    let round = tokio::spawn(async move {
        let first = e.try_once(now()).await.map_err(|e| e.to_string())?;
        assert_eq!(first, Err(Duration::from_secs(15)));
        clock.advance(Duration::from_secs(15));
        e.try_once(now()).await.map_err(|e| e.to_string())
    });
    (round, api)
}

#[tokio::test]
async fn missing_lease_is_created_with_our_identity() {
    let (round, mut api) = one_round();
    api.expect(Method::GET, LEASE).await.not_found();
    let create = api.expect(Method::POST, LEASES).await;
    assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(create.body["metadata"]["name"], "scribe-leader");
    create.created();
    assert_eq!(round.await.unwrap().unwrap(), Ok(()));
    api.done().await;
}

#[tokio::test]
async fn valid_foreign_lease_is_left_alone_until_it_expires() {
    // Its renewTime is a minute behind our wall clock: that says nothing about expiry, which
    // is a whole lease duration on our clock from now, when we first see it.
    let (round, mut api) = one_round();
    api.expect(Method::GET, LEASE)
        .await
        .ok(lease("pod-b", "2024-05-01T09:59:00.000000Z", 2));
    assert_eq!(round.await.unwrap().unwrap(), Err(Duration::from_secs(15)));
    api.done().await;
}

#[tokio::test]
async fn a_foreign_lease_renewed_in_between_is_not_taken_over() {
    let (round, mut api) = round_after_waiting_out_the_lease();
    api.expect(Method::GET, LEASE)
        .await
        .ok(lease("pod-b", "2024-05-01T09:59:00.000000Z", 2));
    let mut renewed = lease("pod-b", "2024-05-01T09:59:02.000000Z", 2);
    renewed["metadata"]["resourceVersion"] = json!("42");
    api.expect(Method::GET, LEASE).await.ok(renewed);
    assert_eq!(round.await.unwrap().unwrap(), Err(Duration::from_secs(15)));
    api.done().await;
}

#[tokio::test]
async fn expired_foreign_lease_is_taken_over_with_optimistic_concurrency() {
    let (round, mut api) = round_after_waiting_out_the_lease();
    // Unchanged for a whole lease duration on our clock, though its renewTime is in our future.
    for _ in 0..2 {
        api.expect(Method::GET, LEASE)
            .await
            .ok(lease("pod-b", "2024-05-01T10:05:00.000000Z", 2));
    }
    let put = api.expect(Method::PUT, LEASE).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], "41");
    assert_eq!(put.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(put.body["spec"]["leaseTransitions"], 3);
    put.echo();
    assert_eq!(round.await.unwrap().unwrap(), Ok(()));
    api.done().await;
}

#[tokio::test]
async fn losing_the_race_for_the_lease_means_standing_by() {
    let (round, mut api) = round_after_waiting_out_the_lease();
    for _ in 0..2 {
        api.expect(Method::GET, LEASE)
            .await
            .ok(lease("pod-b", "2024-05-01T09:59:00.000000Z", 2));
    }
    api.expect(Method::PUT, LEASE).await.fail(409, "Conflict");
    assert_eq!(
        round.await.unwrap().unwrap(),
        Err(LeaseTiming::default().retry_every)
    );
    api.done().await;
}

#[tokio::test]
async fn own_lease_is_renewed_and_server_errors_are_reported() {
    let (client, mut api) = mock_api();
    let e = elector(client, Arc::new(ManualClock::default()));
    let round = tokio::spawn(async move {
        let first = e.try_once(now()).await.map_err(|e| e.to_string());
        let second = e.try_once(now()).await.map_err(|e| e.to_string());
        (first, second)
    });
    api.expect(Method::GET, LEASE)
        .await
        .ok(lease("pod-a", "2024-05-01T09:59:55.000000Z", 0));
    let put = api.expect(Method::PUT, LEASE).await;
    assert_eq!(put.body["spec"]["renewTime"], "2024-05-01T10:00:00.000000Z");
    put.echo();
    api.expect(Method::GET, LEASE)
        .await
        .fail(500, "InternalError");
    let (first, second) = round.await.unwrap();
    assert_eq!(first.unwrap(), Ok(()));
    let err = second.unwrap_err();
    assert!(
        err.contains("reading Lease scribe-system/scribe-leader"),
        "{err}"
    );
    api.done().await;
}
