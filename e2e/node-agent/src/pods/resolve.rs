//! Turns a Pod's volumes into directories on this host, as the kubelet's volume manager does:
//! Secret/ConfigMap keys and whole objects, downward-API fields, projected ServiceAccount
//! tokens, and PVC → PV → CSI volume handle → host directory. (Env vars: [`super::env`].)
//!
//! A reference that may still appear (a Secret not created yet, a PVC not bound yet) is
//! [`Unready`]: the pod stays Pending with the kubelet's waiting reason and the agent retries.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use kube::Api;
use kube::api::PostParams;

use crate::config::AgentConfig;

/// Why a pod cannot start yet (or at all), in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unready {
    /// Container waiting reason: ContainerCreating, CreateContainerConfigError, ErrImagePull…
    pub reason: &'static str,
    pub message: String,
    /// False when retrying cannot help (an unsupported volume type): the pod fails.
    pub retry: bool,
}

impl Unready {
    pub(super) fn wait(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            message,
            retry: true,
        }
    }
    pub(super) fn fatal(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            message,
            retry: false,
        }
    }
}

/// A volume ready to mount: a host path and whether the pod asked for it read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

pub(super) fn secret_bytes(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

pub(super) fn config_map_bytes(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in c.binary_data.clone().unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

pub(super) async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Unready>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| Unready::wait("ContainerCreating", format!("reading {name}: {e}")))
}

fn write_file(path: &Path, data: &[u8], mode: u32, gid: Option<u32>) -> Result<(), Unready> {
    let io = |e: std::io::Error| {
        Unready::wait(
            "ContainerCreating",
            format!("writing {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, data).map_err(io)?;
    if let Some(g) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(g)))
            .map_err(|e| io(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}

/// Writes `data` (a Secret's or ConfigMap's keys) into `dir` as the kubelet would: `items`
/// select and rename keys (a missing key is an error unless optional), `mode` per item or the
/// volume's default, the group is the pod's fsGroup.
fn project(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    gid: Option<u32>,
    what: &str,
) -> Result<(), Unready> {
    match items {
        Some(items) => {
            for it in items {
                let v = data.get(&it.key).ok_or_else(|| {
                    Unready::wait("ContainerCreating", format!("{what}: no key {:?}", it.key))
                })?;
                if it.path.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(Unready::fatal(
                        "CreateContainerConfigError",
                        format!("{what}: bad path {:?}", it.path),
                    ));
                }
                write_file(
                    &dir.join(&it.path),
                    v,
                    it.mode.unwrap_or(default_mode) as u32,
                    gid,
                )?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(&dir.join(k), v, default_mode as u32, gid)?;
            }
        }
    }
    Ok(())
}

async fn sa_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String, Unready> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let body = serde_json::to_vec(&req).expect("TokenRequest serializes");
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &body)
        .await
        .map_err(|e| {
            Unready::wait(
                "ContainerCreating",
                format!("requesting a token for ServiceAccount {ns}/{sa}: {e}"),
            )
        })?;
    Ok(resp.status.map(|s| s.token).unwrap_or_default())
}

/// The host directory of a bound PVC, if it is one of ours.
pub async fn pvc_dir(
    client: &kube::Client,
    cfg: &AgentConfig,
    ns: &str,
    claim: &str,
) -> Result<PathBuf, Unready> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = get_opt(&pvcs, claim).await?.ok_or_else(|| {
        Unready::wait(
            "ContainerCreating",
            format!("persistentvolumeclaim \"{claim}\" not found"),
        )
    })?;
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|_| pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .ok_or_else(|| {
            Unready::wait(
                "ContainerCreating",
                format!("persistentvolumeclaim \"{claim}\" is not bound"),
            )
        })?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = get_opt(&pvs, &pv_name).await?.ok_or_else(|| {
        Unready::wait(
            "ContainerCreating",
            format!("persistentvolume \"{pv_name}\" not found"),
        )
    })?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(csi) = spec.csi {
        if csi.driver != cfg.driver_name {
            return Err(Unready::fatal(
                "ContainerCreating",
                format!(
                    "volume {pv_name}: CSI driver {} is not served by this node",
                    csi.driver
                ),
            ));
        }
        let dir = cfg.volume_dir(&csi.volume_handle);
        if !dir.is_dir() {
            return Err(Unready::wait(
                "ContainerCreating",
                format!("volume {pv_name}: {} does not exist yet", dir.display()),
            ));
        }
        return Ok(dir);
    }
    if let Some(hp) = spec.host_path {
        return Ok(PathBuf::from(hp.path));
    }
    Err(Unready::fatal(
        "ContainerCreating",
        format!(
            "volume {pv_name}: only CSI ({}) and hostPath volumes are supported",
            cfg.driver_name
        ),
    ))
}

/// Applies fsGroup to a writable volume as the kubelet does for CSI drivers with
/// `fsGroupPolicy: File` (`SetVolumeOwnership`): every entry's group becomes fsGroup, files
/// gain 0660 and directories 02770 (mode bits are only added), symlinks are left alone.
/// `OnRootMismatch` skips the walk when the root already has the group.
pub fn apply_fs_group(dir: &Path, gid: u32, on_root_mismatch: bool) -> Result<(), Unready> {
    use std::os::unix::fs::MetadataExt;
    let io = |p: &Path, e: std::io::Error| {
        Unready::wait(
            "ContainerCreating",
            format!("applying fsGroup to {}: {e}", p.display()),
        )
    };
    let root = std::fs::symlink_metadata(dir).map_err(|e| io(dir, e))?;
    if on_root_mismatch && root.gid() == gid && root.mode() & 0o2000 != 0 {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        nix::unistd::chown(&p, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| io(&p, e.into()))?;
        let add = if meta.is_dir() { 0o2770 } else { 0o660 };
        let mode = (meta.mode() & 0o7777) | add;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(&p, e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(|e| io(&p, e))? {
                stack.push(entry.map_err(|e| io(&p, e))?.path());
            }
        }
    }
    Ok(())
}

/// The two kinds whose keys a volume projects into files.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Secret,
    ConfigMap,
}

/// What projecting Secrets and ConfigMaps into one volume's directory needs.
struct Objects<'a> {
    client: &'a kube::Client,
    ns: &'a str,
    dir: &'a Path,
    fs_group: Option<u32>,
    volume: &'a str,
}

impl Objects<'_> {
    /// Writes the keys of a Secret or ConfigMap into the volume directory (kubelet rules, see
    /// [`project`]); a missing object is skipped when `optional`, else the pod waits for it.
    async fn project(
        &self,
        kind: Kind,
        name: &str,
        items: Option<&[KeyToPath]>,
        mode: i32,
        optional: Option<bool>,
    ) -> Result<(), Unready> {
        let (noun, data) = match kind {
            Kind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
                (
                    "secret",
                    get_opt(&api, name).await?.map(|s| secret_bytes(&s)),
                )
            }
            Kind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
                (
                    "configmap",
                    get_opt(&api, name).await?.map(|c| config_map_bytes(&c)),
                )
            }
        };
        match data {
            Some(data) => project(
                self.dir,
                &data,
                items,
                mode,
                self.fs_group,
                &format!("{noun} {name}"),
            ),
            None if optional == Some(true) => Ok(()),
            None => Err(Unready::wait(
                "ContainerCreating",
                format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {noun} \"{name}\" not found",
                    self.volume
                ),
            )),
        }
    }
}

/// Resolves one pod volume into a host path, writing Secret/ConfigMap/token files under
/// `pod_dir/volumes/<name>`.
pub async fn volume(
    client: &kube::Client,
    cfg: &AgentConfig,
    pod: &Pod,
    pod_dir: &Path,
    v: &Volume,
) -> Result<HostVolume, Unready> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let fs_group = psc.fs_group.map(|g| g as u32);
    let dir = pod_dir
        .join("volumes")
        .join(crate::config::safe_component(&v.name));
    let fresh = |d: &Path| -> Result<(), Unready> {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| {
            Unready::wait(
                "ContainerCreating",
                format!("creating {}: {e}", d.display()),
            )
        })
    };
    if v.empty_dir.is_some() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Unready::wait("ContainerCreating", e.to_string()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Unready::wait("ContainerCreating", e.to_string()))?;
        return Ok(HostVolume {
            path: dir,
            read_only: false,
        });
    }
    let objects = Objects {
        client,
        ns: &ns,
        dir: &dir,
        fs_group,
        volume: &v.name,
    };
    if let Some(s) = &v.secret {
        fresh(&dir)?;
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644);
        objects
            .project(Kind::Secret, &name, s.items.as_deref(), mode, s.optional)
            .await?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(c) = &v.config_map {
        fresh(&dir)?;
        let mode = c.default_mode.unwrap_or(0o644);
        objects
            .project(
                Kind::ConfigMap,
                &c.name,
                c.items.as_deref(),
                mode,
                c.optional,
            )
            .await?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(p) = &v.projected {
        fresh(&dir)?;
        let mode = p.default_mode.unwrap_or(0o644);
        for src in p.sources.clone().unwrap_or_default() {
            if let Some(s) = src.secret {
                objects
                    .project(Kind::Secret, &s.name, s.items.as_deref(), mode, s.optional)
                    .await?;
            }
            if let Some(c) = src.config_map {
                objects
                    .project(
                        Kind::ConfigMap,
                        &c.name,
                        c.items.as_deref(),
                        mode,
                        c.optional,
                    )
                    .await?;
            }
            if let Some(t) = src.service_account_token {
                let token = sa_token(client, pod, t.audience, t.expiration_seconds).await?;
                write_file(&dir.join(&t.path), token.as_bytes(), mode as u32, fs_group)?;
            }
            if let Some(d) = src.downward_api {
                for item in d.items.unwrap_or_default() {
                    if let Some(f) = item.field_ref {
                        let val = super::env::field_value(pod, &f.field_path).unwrap_or_default();
                        write_file(
                            &dir.join(&item.path),
                            val.as_bytes(),
                            item.mode.unwrap_or(mode) as u32,
                            fs_group,
                        )?;
                    }
                }
            }
        }
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(c) = &v.persistent_volume_claim {
        let path = pvc_dir(client, cfg, &ns, &c.claim_name).await?;
        let read_only = c.read_only == Some(true);
        return Ok(HostVolume { path, read_only });
    }
    if let Some(h) = &v.host_path {
        return Ok(HostVolume {
            path: PathBuf::from(&h.path),
            read_only: false,
        });
    }
    Err(Unready::fatal(
        "CreateContainerConfigError",
        format!(
            "volume {:?}: this node supports emptyDir, secret, configMap, projected, persistentVolumeClaim and hostPath volumes",
            v.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_group_adds_group_rw_and_setgid_like_the_kubelet() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ro.txt");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::set_permissions(dir.path().join("d"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        apply_fs_group(dir.path(), 4242, false).unwrap();
        let m = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!(m(&f).mode() & 0o7777, 0o664);
        assert_eq!(m(&dir.path().join("d")).mode() & 0o7777, 0o2775);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(m(&f).gid(), 4242);
        }
        // The link target outside the volume is untouched.
        assert_ne!(m(Path::new("/etc/hostname")).gid(), 4242);
    }

    #[test]
    fn projection_honours_items_modes_and_rejects_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([
            ("rclone.conf".to_string(), b"[s]\n".to_vec()),
            ("other".to_string(), b"o".to_vec()),
        ]);
        let items = vec![KeyToPath {
            key: "rclone.conf".into(),
            path: "rclone.conf".into(),
            mode: None,
        }];
        project(dir.path(), &data, Some(&items), 0o440, None, "secret s").unwrap();
        let meta = std::fs::metadata(dir.path().join("rclone.conf")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        assert!(!dir.path().join("other").exists());
        let bad = vec![KeyToPath {
            key: "other".into(),
            path: "../x".into(),
            mode: None,
        }];
        assert!(
            !project(dir.path(), &data, Some(&bad), 0o440, None, "s")
                .unwrap_err()
                .retry
        );
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "nope".into(),
            mode: None,
        }];
        assert!(
            project(dir.path(), &data, Some(&missing), 0o440, None, "s")
                .unwrap_err()
                .message
                .contains("nope")
        );
    }
}
