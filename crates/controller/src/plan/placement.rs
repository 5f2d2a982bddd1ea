//! Where a source mover runs with copyMethod None/Direct, and how it mounts its volume.
//!
//! The mover then mounts the application's own PVC. A ReadWriteOnce volume is attached to one
//! node at a time, so while a pod uses it the mover must run on that pod's node (with that
//! pod's tolerations, in case the node is tainted), as VolSync does; a volume that allows
//! ReadWriteMany or ReadOnlyMany can be mounted anywhere. The volume is mounted read-only only
//! when it is ReadOnlyMany and nothing else: a read-only mount breaks SELinux relabelling.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use scribe_api::constants::{CREATED_BY_VALUE, LABEL_CREATED_BY};

use crate::builders::job::Placement;

fn access_modes(pvc: &PersistentVolumeClaim) -> &[String] {
    pvc.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

/// Whether a volume with these access modes must be mounted read-only: ReadOnlyMany only.
pub fn read_only(modes: &[String]) -> bool {
    !modes.is_empty() && modes.iter().all(|m| m == "ReadOnlyMany")
}

/// Whether a pod mounts the claim `claim`.
pub fn mounts(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .any(|c| c.claim_name == claim)
}

/// The node a mover of `pvc` must run on: that of a scheduled, not finished pod mounting it
/// (running pods first, then by name, so every pass picks the same), unless the volume
/// allows mounts from many nodes. Mover pods of Scribe itself do not count.
pub fn placement(pvc: &PersistentVolumeClaim, pods: &[Pod]) -> Option<Placement> {
    let modes = access_modes(pvc);
    if modes
        .iter()
        .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany")
    {
        return None;
    }
    let claim = pvc.metadata.name.as_deref()?;
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let ours = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_CREATED_BY))
            .is_some_and(|v| v == CREATED_BY_VALUE)
    };
    let mut users: Vec<(&Pod, &str)> = pods
        .iter()
        .filter(|p| mounts(p, claim) && !ours(p))
        .filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.as_deref()?;
            (!node.is_empty()).then_some((p, node))
        })
        .collect();
    users.sort_by_key(|(p, _)| (phase(p) != "Running", p.metadata.name.clone()));
    let (pod, node) = users.first()?;
    Some(Placement {
        node_name: (*node).to_string(),
        tolerations: pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": modes},
        }))
        .expect("pvc")
    }

    fn pod(name: &str, claim: &str, node: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "app"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
            },
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn an_rwo_volume_in_use_pins_the_mover_to_the_running_pod_node_with_its_tolerations() {
        let pods = [
            pod("a-done", "data", Some("node-0"), "Succeeded"),
            pod("b-other", "logs", Some("node-1"), "Running"),
            pod("c-pending", "data", Some("node-3"), "Pending"),
            pod("d-app", "data", Some("node-2"), "Running"),
        ];
        let p = placement(&pvc(&["ReadWriteOnce"]), &pods).expect("pinned");
        assert_eq!(p.node_name, "node-2");
        assert_eq!(p.tolerations.len(), 1);
        assert_eq!(p.tolerations[0].key.as_deref(), Some("dedicated"));
        // Only a scheduled pod (not yet running) still decides where the volume attaches.
        let p = placement(&pvc(&["ReadWriteOnce"]), &pods[..3]).expect("pinned");
        assert_eq!(p.node_name, "node-3");
    }

    #[test]
    fn shared_volumes_unused_volumes_and_scribe_pods_do_not_pin() {
        let app = [pod("app", "data", Some("node-2"), "Running")];
        assert_eq!(placement(&pvc(&["ReadWriteMany"]), &app), None);
        assert_eq!(
            placement(&pvc(&["ReadWriteOnce", "ReadOnlyMany"]), &app),
            None
        );
        assert_eq!(placement(&pvc(&["ReadWriteOnce"]), &[]), None);
        let unscheduled = [pod("app", "data", None, "Pending")];
        assert_eq!(placement(&pvc(&["ReadWriteOnce"]), &unscheduled), None);
        let mut mover = pod("scribe-rclone-src-db-x", "data", Some("node-2"), "Running");
        mover.metadata.labels = Some([(LABEL_CREATED_BY.into(), CREATED_BY_VALUE.into())].into());
        assert_eq!(placement(&pvc(&["ReadWriteOnce"]), &[mover]), None);
    }

    #[test]
    fn only_a_read_only_many_volume_is_mounted_read_only() {
        let modes = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(read_only(&modes(&["ReadOnlyMany"])));
        assert!(!read_only(&modes(&["ReadOnlyMany", "ReadWriteOnce"])));
        assert!(!read_only(&modes(&["ReadWriteOnce"])));
        assert!(!read_only(&modes(&["ReadWriteMany"])));
        assert!(!read_only(&[]));
    }
}
