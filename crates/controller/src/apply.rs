//! Apply (client required): carries out a plan's [`Action`]s in order — server-side apply
//! (field manager `scribe-controller`, forced: the controller owns these objects), a JSON
//! merge patch of one field (a Job's parallelism; a released snapshot's owner references —
//! applying a partial object would drop the fields the apply does not name), or delete
//! (404 counts as done; Jobs with propagationPolicy Background so their pods go too).
//! Every action is idempotent, so a pass interrupted half-way is simply repeated.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use scribe_api::constants::FIELD_MANAGER;

use crate::plan::{Action, ObjectKind};
use crate::snapshot::VolumeSnapshot;

/// Errors while writing objects.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("patching {kind} {namespace}/{name}: {source}")]
    Patch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("deleting {kind} {namespace}/{name}: {source}")]
    Delete {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("encoding {kind} {name} for apply: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} to apply in {namespace} has no metadata.name")]
    MissingName {
        kind: &'static str,
        namespace: String,
    },
}

impl ApplyError {
    /// The API error behind this one, if any.
    pub fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            ApplyError::Apply { source, .. }
            | ApplyError::Patch { source, .. }
            | ApplyError::Delete { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Job => "Job",
        ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
        ObjectKind::VolumeSnapshot => "VolumeSnapshot",
    }
}

/// The body of a server-side apply: the object with its type set and without the fields the
/// server owns (status, resourceVersion, uid, managedFields…), so we claim only what we mean.
pub fn apply_body<K>(obj: &K) -> Result<serde_json::Value, serde_json::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut v = serde_json::to_value(obj)?;
    if let Some(map) = v.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into_owned().into());
        map.insert("kind".into(), K::kind(&()).into_owned().into());
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for k in [
                "resourceVersion",
                "uid",
                "managedFields",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
    }
    Ok(v)
}

async fn apply_one<K>(client: &Client, ns: &str, obj: &K) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let kind = kind_static::<K>();
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or_else(|| ApplyError::MissingName {
            kind,
            namespace: ns.into(),
        })?;
    let body = apply_body(obj).map_err(|source| ApplyError::Encode {
        kind,
        name: name.clone(),
        source,
    })?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(|source| ApplyError::Apply {
            kind,
            namespace: ns.into(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    debug!(kind, namespace = ns, name = %name, "applied");
    Ok(())
}

fn kind_static<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Job" => "Job",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "VolumeSnapshot" => "VolumeSnapshot",
        _ => "object",
    }
}

async fn delete_one(
    client: &Client,
    ns: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<(), ApplyError> {
    let mut dp = DeleteParams::default();
    let result = match kind {
        ObjectKind::Job => {
            // Without Background propagation the Job's pods would be orphaned.
            dp.propagation_policy = Some(PropagationPolicy::Background);
            Api::<Job>::namespaced(client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ())
        }
        ObjectKind::PersistentVolumeClaim => {
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ())
        }
        ObjectKind::VolumeSnapshot => Api::<VolumeSnapshot>::namespaced(client.clone(), ns)
            .delete(name, &dp)
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => {
            debug!(kind = kind_name(kind), namespace = ns, name, "deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Delete {
            kind: kind_name(kind),
            namespace: ns.into(),
            name: name.into(),
            source: Box::new(source),
        }),
    }
}

/// The merge patch that sets a Job's `spec.parallelism`.
pub fn scale_patch(parallelism: i32) -> serde_json::Value {
    serde_json::json!({"spec": {"parallelism": parallelism}})
}

/// The merge patch that releases a VolumeSnapshot: its owner references without the CR's
/// (a merge patch replaces the list whole, so the resourceVersion guards against losing a
/// concurrent change; null when none is left).
pub fn release_patch(
    resource_version: Option<&str>,
    owner_references: &[OwnerReference],
) -> serde_json::Value {
    let refs = if owner_references.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(owner_references).unwrap_or(serde_json::Value::Null)
    };
    let mut meta = serde_json::json!({ "ownerReferences": refs });
    if let Some(rv) = resource_version {
        meta["resourceVersion"] = rv.into();
    }
    serde_json::json!({ "metadata": meta })
}

async fn merge_patch<K>(
    client: &Client,
    ns: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let kind = kind_static::<K>();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &params, &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            debug!(kind, namespace = ns, name, "patched");
            Ok(())
        }
        // Gone already: nothing left to scale or release.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Patch {
            kind,
            namespace: ns.into(),
            name: name.into(),
            source: Box::new(source),
        }),
    }
}

/// Carries out `actions` in order in namespace `ns`, stopping at the first failure (later
/// actions may depend on earlier ones, e.g. the PiT PVC on its snapshot).
pub async fn apply_actions(
    client: &Client,
    ns: &str,
    actions: &[Action],
) -> Result<(), ApplyError> {
    for action in actions {
        match action {
            Action::ApplyVolumeSnapshot(o) => apply_one(client, ns, o.as_ref()).await?,
            Action::ApplyPvc(o) => apply_one(client, ns, o.as_ref()).await?,
            Action::ApplyJob(o) => apply_one(client, ns, o.as_ref()).await?,
            Action::ScaleJob { name, parallelism } => {
                merge_patch::<Job>(client, ns, name, &scale_patch(*parallelism)).await?
            }
            Action::ReleaseVolumeSnapshot {
                name,
                resource_version,
                owner_references,
            } => {
                let patch = release_patch(resource_version.as_deref(), owner_references);
                merge_patch::<VolumeSnapshot>(client, ns, name, &patch).await?
            }
            Action::Delete { kind, name } => delete_one(client, ns, *kind, name).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn apply_body_sets_type_and_drops_server_owned_fields() {
        let snap = VolumeSnapshot {
            metadata: ObjectMeta {
                name: Some("scribe-src-a".into()),
                resource_version: Some("12".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Default::default(),
            status: Some(Default::default()),
        };
        let body = apply_body(&snap).unwrap();
        assert_eq!(body["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(body["kind"], "VolumeSnapshot");
        assert_eq!(body["metadata"]["name"], "scribe-src-a");
        assert!(body.get("status").is_none());
        assert!(body["metadata"].get("resourceVersion").is_none());
        assert!(body["metadata"].get("uid").is_none());
    }

    #[test]
    fn release_keeps_other_owners_and_guards_with_the_resource_version() {
        let other = OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Backup".into(),
            name: "b".into(),
            uid: "u-b".into(),
            ..Default::default()
        };
        let p = release_patch(Some("42"), std::slice::from_ref(&other));
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-b");
        assert_eq!(
            p["metadata"]["ownerReferences"].as_array().map(Vec::len),
            Some(1)
        );
        let p = release_patch(None, &[]);
        assert!(p["metadata"]["ownerReferences"].is_null());
        assert!(p["metadata"].get("resourceVersion").is_none());
        assert_eq!(
            scale_patch(0),
            serde_json::json!({"spec": {"parallelism": 0}})
        );
    }

    #[test]
    fn kinds_are_named_for_error_messages() {
        assert_eq!(kind_static::<Job>(), "Job");
        assert_eq!(kind_static::<VolumeSnapshot>(), "VolumeSnapshot");
        assert_eq!(
            kind_name(ObjectKind::PersistentVolumeClaim),
            "PersistentVolumeClaim"
        );
    }
}
