//! The Node this agent stands for: registered once (Ready, no taints, capacity for the
//! scheduler), then kept alive by renewing its Lease in `kube-node-lease` every 10 s — the
//! heartbeat the node-lifecycle controller reads — and refreshing its Ready condition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::config::AgentConfig;
use crate::error::AgentError;

const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);

fn ready_condition(now: Time) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("scribe-node-agent is posting ready status".into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The Node object as first registered.
pub fn node_object(name: &str) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        (
            "node-role.kubernetes.io/scribe-e2e".to_string(),
            String::new(),
        ),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity("16".into())),
        ("memory".to_string(), Quantity("64Gi".into())),
        ("pods".to_string(), Quantity("250".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![ready_condition(Time(Timestamp::now()))]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: "v1.36.3".into(),
                kube_proxy_version: String::new(),
                container_runtime_version: "scribe-node-agent://0.1.0".into(),
                kernel_version: String::new(),
                os_image: "scribe e2e".into(),
                boot_id: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                swap: None,
            }),
            ..NodeStatus::default()
        }),
    }
}

async fn register(api: &Api<Node>, name: &str) -> Result<Node, AgentError> {
    match api.create(&PostParams::default(), &node_object(name)).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(e)) if e.code == 409 => api
            .get(name)
            .await
            .map_err(AgentError::kube(format!("getting Node {name}"))),
        Err(e) => Err(AgentError::kube(format!("registering Node {name}"))(e)),
    }
}

async fn post_status(api: &Api<Node>, name: &str) -> Result<(), AgentError> {
    let mut node = node_object(name);
    node.metadata = ObjectMeta::default();
    let patch = serde_json::json!({ "status": node.status });
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(AgentError::kube(format!("updating Node {name} status")))?;
    Ok(())
}

async fn renew_lease(api: &Api<Lease>, node: &Node) -> Result<(), AgentError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let now = MicroTime(Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    api.patch(
        &name,
        &PatchParams::apply("scribe-node-agent").force(),
        &Patch::Apply(lease),
    )
    .await
    .map_err(AgentError::kube(format!(
        "renewing Lease kube-node-lease/{name}"
    )))?;
    Ok(())
}

/// Registers the Node and keeps it alive until the process ends.
pub async fn run(client: kube::Client, cfg: Arc<AgentConfig>) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let node = register(&nodes, &cfg.node_name).await?;
    tracing::info!(node = %cfg.node_name, "node registered");
    let mut tick = 0u64;
    loop {
        if let Err(e) = renew_lease(&leases, &node).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
        // The lease is the heartbeat; the status is refreshed every minute as a kubelet does.
        if tick.is_multiple_of(6)
            && let Err(e) = post_status(&nodes, &cfg.node_name).await
        {
            tracing::warn!(error = %e, "node status update failed");
        }
        tick += 1;
        tokio::time::sleep(RENEW_EVERY).await;
    }
}
