//! A container's environment as the kubelet resolves it: `envFrom` (Secrets, ConfigMaps, with
//! prefixes), then `env` entries (`value` with `$(VAR)` expansion, `secretKeyRef`,
//! `configMapKeyRef`, downward-API `fieldRef`), later entries winning. A missing non-optional
//! reference keeps the pod Pending with CreateContainerConfigError until it appears.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::Api;

use super::resolve::{Unready, config_map_bytes, get_opt, secret_bytes};

/// Resolves every env var of a container (value, valueFrom, envFrom), in the kubelet's order:
/// envFrom first, then env, later entries winning.
pub async fn env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, Unready> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: String, v: String, out: &mut Vec<(String, String)>| {
        out.retain(|(n, _)| *n != k);
        out.push((k, v));
    };
    let config_error = |m: String| Unready::wait("CreateContainerConfigError", m);
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            match get_opt(&secrets, &r.name).await? {
                Some(s) => {
                    for (k, v) in secret_bytes(&s) {
                        set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into(),
                            &mut out,
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match get_opt(&cms, &r.name).await? {
                Some(c) => {
                    for (k, v) in config_map_bytes(&c) {
                        set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into(),
                            &mut out,
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.clone().unwrap_or_default()
    {
        if let Some(v) = value {
            let expanded = expand(&v, &out);
            set(name, expanded, &mut out);
            continue;
        }
        let Some(from) = value_from else {
            set(name, String::new(), &mut out);
            continue;
        };
        if let Some(r) = from.secret_key_ref {
            let optional = r.optional == Some(true);
            match get_opt(&secrets, &r.name).await? {
                Some(s) => match secret_bytes(&s).get(&r.key) {
                    Some(v) => set(name, String::from_utf8_lossy(v).into(), &mut out),
                    None if optional => {}
                    None => {
                        return Err(config_error(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )));
                    }
                },
                None if optional => {}
                None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
            }
        } else if let Some(r) = from.config_map_key_ref {
            let optional = r.optional == Some(true);
            match get_opt(&cms, &r.name).await? {
                Some(c) => match config_map_bytes(&c).get(&r.key) {
                    Some(v) => set(name, String::from_utf8_lossy(v).into(), &mut out),
                    None if optional => {}
                    None => {
                        return Err(config_error(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )));
                    }
                },
                None if optional => {}
                None => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(f) = from.field_ref {
            let v = field_value(pod, &f.field_path).ok_or_else(|| {
                Unready::fatal(
                    "CreateContainerConfigError",
                    format!("unsupported fieldRef {:?} in env {name}", f.field_path),
                )
            })?;
            set(name, v, &mut out);
        } else {
            return Err(Unready::fatal(
                "CreateContainerConfigError",
                format!(
                    "env {name}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported"
                ),
            ));
        }
    }
    Ok(out)
}

/// `$(VAR)` expansion against earlier variables, `$$(VAR)` escaping, unknown left as is.
pub fn expand(v: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, val)) => out.push_str(val),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The downward API fields a kubelet resolves for env vars.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label = |map: &Option<BTreeMap<String, String>>, key: &str| {
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        "status.podIPs" | "status.hostIPs" => Some("127.0.0.1".into()),
        p => {
            let key = |prefix: &str| {
                p.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("']"))
                    .map(str::to_string)
            };
            if let Some(k) = key("metadata.labels['") {
                label(&meta.labels, &k)
            } else if let Some(k) = key("metadata.annotations['") {
                label(&meta.annotations, &k)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        let env = vars(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("$(A)-$(B)", &env), "x-y");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(C)", &env), "$(C)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn downward_api_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
            "spec": {"nodeName": "node1", "containers": []}
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(
            field_value(&pod, "metadata.namespace").as_deref(),
            Some("n")
        );
        assert_eq!(field_value(&pod, "spec.nodeName").as_deref(), Some("node1"));
        assert_eq!(
            field_value(&pod, "spec.serviceAccountName").as_deref(),
            Some("default")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']").as_deref(),
            Some("x")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['none']").as_deref(),
            Some("")
        );
        assert_eq!(field_value(&pod, "spec.bogus"), None);
    }
}
