//! Status (client required): writes the plan's status to the `/status` subresource, only when
//! it differs from what was observed. The write is a JSON merge patch computed from the old
//! and new status (RFC 7386), with explicit nulls for fields the plan cleared — a plain merge
//! patch of the new status would leave cleared fields (e.g. `nextRetryTime`) behind.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use scribe_api::constants::FIELD_MANAGER;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Errors while writing status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("patching status of {kind} {namespace}/{name}: {source}")]
    Patch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("encoding status of {kind} {name}: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The merge patch turning `old` into `new`; `None` when they are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_patch(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Some(Value::Object(patch))
        }
        // Arrays (conditions) and scalars are replaced whole, as merge patch does.
        _ => Some(new.clone()),
    }
}

/// Writes `new` as the status of `cr` when it differs from `current`. Returns whether a
/// request was made.
pub async fn write_status<K, S>(
    client: &Client,
    cr: &K,
    current: Option<&S>,
    new: &S,
) -> Result<bool, StatusError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(new) {
        return Ok(false);
    }
    let kind: &'static str = if K::kind(&()) == "ReplicationSource" {
        "ReplicationSource"
    } else {
        "ReplicationDestination"
    };
    let name = cr.name_any();
    let ns = cr.namespace().unwrap_or_default();
    let encode = |s: &S| {
        serde_json::to_value(s).map_err(|source| StatusError::Encode {
            kind,
            name: name.clone(),
            source,
        })
    };
    let old = match current {
        Some(c) => encode(c)?,
        None => Value::Object(Map::new()),
    };
    let new_v = encode(new)?;
    let Some(patch) = merge_patch(&old, &new_v) else {
        return Ok(false);
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    Api::<K>::namespaced(client.clone(), &ns)
        .patch_status(
            &name,
            &params,
            &Patch::Merge(serde_json::json!({ "status": patch })),
        )
        .await
        .map_err(|source| StatusError::Patch {
            kind,
            namespace: ns.clone(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_values_need_no_patch() {
        assert_eq!(merge_patch(&json!({"a": 1}), &json!({"a": 1})), None);
    }

    #[test]
    fn changed_added_and_cleared_fields_are_patched_with_nulls_for_removals() {
        let old = json!({"lastSyncTime": "t1", "nextRetryTime": "t2", "latestMoverStatus": {"result": "Failed", "logs": "x"}});
        let new = json!({"lastSyncTime": "t3", "latestMoverStatus": {"result": "Successful"}, "lastManualSync": "m"});
        assert_eq!(
            merge_patch(&old, &new),
            Some(
                json!({"lastSyncTime": "t3", "nextRetryTime": null, "latestMoverStatus": {"result": "Successful", "logs": null}, "lastManualSync": "m"})
            )
        );
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let old = json!({"conditions": [{"type": "A"}, {"type": "B"}]});
        let new = json!({"conditions": [{"type": "A"}]});
        assert_eq!(
            merge_patch(&old, &new),
            Some(json!({"conditions": [{"type": "A"}]}))
        );
    }
}
