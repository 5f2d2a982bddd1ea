//! The whole runtime in-process (`run_until`, leader election off) against a scripted API
//! server that answers every list with an empty list and keeps every watch open: the
//! Controllers list what they should (owned objects by the created-by label), `/readyz`
//! turns ready once the API serves both kinds, and a stop request ends `run_until` with Ok.

use std::sync::Arc;
use std::time::Duration;

use crate::support::mock_api;
use scribe_controller::context::{ControllerConfig, RealPlanner};
use scribe_controller::controller::run_until;
use scribe_controller::plan::Settings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status_of(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn controllers_list_their_resources_become_ready_and_stop_on_request() {
    let (client, mut api) = mock_api();
    // A free port on loopback (bound and released: the server binds it again at once).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ControllerConfig {
        settings: Settings {
            mover_image: "mover:test".into(),
            mover_image_pull_policy: scribe_controller::plan::PullPolicy::IfNotPresent,
        },
        metrics_bind_address: addr,
        leader_elect: false,
        leader_election_namespace: "default".into(),
        leader_election_id: "scribe-leader".into(),
        identity: "test".into(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(run_until(client, config, Arc::new(RealPlanner), stop_rx));

    let server = tokio::spawn(async move {
        let mut lists = Vec::new();
        let mut open_watches = Vec::new();
        loop {
            let Some(seen) = api.next_opt().await else {
                break;
            };
            if seen.query("watch") == Some("true") {
                open_watches.push(seen);
                continue;
            }
            lists.push((
                seen.path.clone(),
                seen.query("labelSelector").map(String::from),
            ));
            seen.ok(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}));
        }
        drop(open_watches);
        lists
    });

    // Wait (bounded) for readiness: the caches sync after the initial lists.
    let mut ready = false;
    for _ in 0..600 {
        if status_of(addr, "/readyz").await == Some(200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never became ready");
    assert_eq!(status_of(addr, "/healthz").await, Some(200));

    stop_tx.send(true).unwrap();
    run.await.unwrap().expect("run_until ends cleanly on stop");
    let lists = server.await.unwrap();

    let listed = |path: &str| {
        lists
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        !listed("/apis/scribe.backube/v1alpha1/replicationsources").is_empty(),
        "{lists:?}"
    );
    assert!(
        !listed("/apis/scribe.backube/v1alpha1/replicationdestinations").is_empty(),
        "{lists:?}"
    );
    let created_by = Some("app.kubernetes.io/created-by=scribe".to_string());
    for owned in [
        "/apis/batch/v1/jobs",
        "/api/v1/persistentvolumeclaims",
        "/apis/snapshot.storage.k8s.io/v1/volumesnapshots",
    ] {
        let sel = listed(owned);
        assert_eq!(
            sel.len(),
            2,
            "one watch per controller on {owned}: {lists:?}"
        );
        assert!(
            sel.iter().all(|s| *s == created_by),
            "{owned} listed with {sel:?}"
        );
    }
    assert_eq!(listed("/api/v1/secrets").len(), 2, "{lists:?}");
}
