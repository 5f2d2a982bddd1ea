//! Fixtures for scenario tests: custom resources and the cluster objects the API answers with.

use serde_json::{Value, json};

pub const NS: &str = "apps";

pub fn source_json(copy_method: &str) -> Value {
    json!({
        "apiVersion": "scribe.backube/v1alpha1",
        "kind": "ReplicationSource",
        "metadata": {"name": "db", "namespace": NS, "uid": "uid-src", "generation": 1, "resourceVersion": "10"},
        "spec": {
            "sourcePVC": "data",
            "trigger": {"schedule": "0 * * * *"},
            "rclone": {
                "rcloneConfigSection": "s3",
                "rcloneDestPath": "bucket/db",
                "rcloneConfig": "rclone-secret",
                "copyMethod": copy_method
            }
        }
    })
}

pub fn destination_json(copy_method: &str) -> Value {
    json!({
        "apiVersion": "scribe.backube/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {"name": "db", "namespace": NS, "uid": "uid-dst", "generation": 1, "resourceVersion": "20"},
        "spec": {
            "trigger": {"schedule": "30 * * * *"},
            "rclone": {
                "rcloneConfigSection": "s3",
                "rcloneDestPath": "bucket/db",
                "rcloneConfig": "rclone-secret",
                "copyMethod": copy_method,
                "accessModes": ["ReadWriteOnce"],
                "capacity": "1Gi"
            }
        }
    })
}

pub fn secret() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "rclone-secret", "namespace": NS, "resourceVersion": "5"},
        "data": {"rclone.conf": "W3MzXQp0eXBlID0gczMKcHJvdmlkZXIgPSBNaW5pbwplbmRwb2ludCA9IGh0dHA6Ly9taW5pbzo5MDAwCg=="}
    })
}

/// The owner references of an object the controller made, by its name (`scribe-src-*`,
/// `scribe-rclone-src-*`: the source; `scribe-dest-*`, `scribe-rclone-dst-*`: the
/// destination); none for the user's own objects.
pub fn owner_refs(name: &str) -> Value {
    let owner = |kind: &str, uid: &str| {
        json!([{"apiVersion": "scribe.backube/v1alpha1", "kind": kind, "name": "db",
            "uid": uid, "controller": true, "blockOwnerDeletion": true}])
    };
    if name.starts_with("scribe-src-") || name.starts_with("scribe-rclone-src-") {
        owner("ReplicationSource", "uid-src")
    } else if name.starts_with("scribe-dest-") || name.starts_with("scribe-rclone-dst-") {
        owner("ReplicationDestination", "uid-dst")
    } else {
        json!([])
    }
}

pub fn pvc(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "ownerReferences": owner_refs(name)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "csi"},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    })
}

pub fn ready_snapshot(name: &str, pvc: &str, owner_kind: &str, created: &str) -> Value {
    json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created, "ownerReferences": owner_refs(name),
            "labels": {"app.kubernetes.io/created-by": "scribe", "scribe.backube/owner-name": "db", "scribe.backube/owner-kind": owner_kind}},
        "spec": {"source": {"persistentVolumeClaimName": pvc}},
        "status": {"readyToUse": true, "restoreSize": "1Gi", "creationTime": created}
    })
}

/// A Job that finished (`succeeded` or `failed`).
pub fn finished_job(name: &str, succeeded: bool) -> Value {
    let (field, cond) = if succeeded {
        ("succeeded", "Complete")
    } else {
        ("failed", "Failed")
    };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "creationTimestamp": "2024-05-01T10:00:00Z", "ownerReferences": owner_refs(name)},
        "spec": {"template": {"spec": {"containers": [{"name": "mover", "image": "mover:test"}], "restartPolicy": "Never"}}},
        "status": {field: 1, "startTime": "2024-05-01T10:00:00Z", "completionTime": "2024-05-01T10:00:07Z",
            "conditions": [{"type": cond, "status": "True"}]}
    })
}

pub fn running_job(name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "ownerReferences": owner_refs(name)},
        "spec": {"template": {"spec": {"containers": [{"name": "mover", "image": "mover:test"}], "restartPolicy": "Never"}}},
        "status": {"active": 1, "startTime": "2024-05-01T10:00:00Z"}
    })
}

pub const SUMMARY_OK: &str = r#"{"result":"Successful","direction":"source","filesChecked":3,"bytesChecked":300,"filesTransferred":2,"bytesTransferred":200,"filesDeleted":0,"durationSeconds":6.5}"#;

/// A PodList with one pod whose mover container terminated.
pub fn pods_terminated(job: &str, exit_code: i32, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{job}-abcde"), "namespace": NS, "labels": {"job-name": job, "batch.kubernetes.io/controller-uid": format!("uid-{job}"), "controller-uid": format!("uid-{job}")}},
            "status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{
                "name": "mover", "image": "mover:test", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "message": message,
                    "startedAt": "2024-05-01T10:00:00Z", "finishedAt": "2024-05-01T10:00:07Z"}}
            }]}
        }]
    })
}

pub fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

pub fn status_success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// Request paths of the objects of the `apps/db` fixtures.
pub mod paths {
    pub const SECRET: &str = "/api/v1/namespaces/apps/secrets/rclone-secret";
    pub const SRC_PVC: &str = "/api/v1/namespaces/apps/persistentvolumeclaims/data";
    pub const PIT_SNAP: &str =
        "/apis/snapshot.storage.k8s.io/v1/namespaces/apps/volumesnapshots/scribe-src-db";
    pub const PIT_PVC: &str = "/api/v1/namespaces/apps/persistentvolumeclaims/scribe-src-db";
    pub const SRC_JOB: &str = "/apis/batch/v1/namespaces/apps/jobs/scribe-rclone-src-db";
    pub const SRC_CR: &str = "/apis/scribe.backube/v1alpha1/namespaces/apps/replicationsources/db";
    pub const SRC_STATUS: &str =
        "/apis/scribe.backube/v1alpha1/namespaces/apps/replicationsources/db/status";
    pub const DST_PVC: &str = "/api/v1/namespaces/apps/persistentvolumeclaims/scribe-dest-db";
    pub const DST_JOB: &str = "/apis/batch/v1/namespaces/apps/jobs/scribe-rclone-dst-db";
    pub const DST_STATUS: &str =
        "/apis/scribe.backube/v1alpha1/namespaces/apps/replicationdestinations/db/status";
    pub const SNAPS: &str = "/apis/snapshot.storage.k8s.io/v1/namespaces/apps/volumesnapshots";
    pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";
    pub const PODS: &str = "/api/v1/namespaces/apps/pods";
}
