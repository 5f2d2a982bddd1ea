//! The command line that runs one container: bubblewrap builds a private mount namespace with
//! a container-like root (host `/usr` and `/etc` read-only, fresh `/proc`, `/dev`, `/tmp`), binds
//! every volume at its `mountPath` (read-only where the pod says so), and `setpriv` then drops to
//! the pod's user, groups and capabilities before exec'ing the image's entrypoint.
//!
//! Everything here is pure: the pod spec and resolved host paths in, an argv out.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::resolve::HostVolume;

/// What the mapped image declares (the mover image's `USER`, `WORKDIR`, `ENV`, entrypoint).
pub const IMAGE_USER: u32 = 65532;
pub const IMAGE_GROUP: u32 = 65532;
pub const IMAGE_WORKDIR: &str = "/data";
pub const IMAGE_ENTRYPOINT: &str = "/usr/local/bin/scribe-mover";
pub const IMAGE_ENV: &[(&str, &str)] = &[
    ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    ("TMPDIR", "/tmp"),
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
];
/// The container runtime's default capability set for root (containerd/CRI-O).
pub const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Who the process runs as, after merging the pod's and the container's security contexts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Capabilities kept (upper case, without `CAP_`); empty for non-root.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub read_only_root: bool,
}

/// Merges the security contexts as the kubelet does (container wins over pod), and enforces
/// `runAsNonRoot`. An error is the kubelet's CreateContainerConfigError message.
pub fn identity(pod: &Pod, c: &Container) -> Result<Identity, String> {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    let uid = csc
        .run_as_user
        .or(psc.run_as_user)
        .map(|u| u as u32)
        .unwrap_or(IMAGE_USER);
    let gid = csc
        .run_as_group
        .or(psc.run_as_group)
        .map(|g| g as u32)
        .unwrap_or(IMAGE_GROUP);
    let non_root = csc.run_as_non_root.or(psc.run_as_non_root) == Some(true);
    if non_root && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    let mut groups: Vec<u32> = Vec::new();
    if let Some(g) = psc.fs_group {
        groups.push(g as u32);
    }
    for g in psc.supplemental_groups.unwrap_or_default() {
        groups.push(g as u32);
    }
    groups.sort_unstable();
    groups.dedup();
    let caps = if uid == 0 {
        let caps = csc.capabilities.unwrap_or_default();
        let drop: Vec<String> = caps
            .drop
            .unwrap_or_default()
            .iter()
            .map(|s| norm_cap(s))
            .collect();
        let mut kept: Vec<String> = if drop.iter().any(|d| d == "ALL") {
            Vec::new()
        } else {
            DEFAULT_CAPS
                .iter()
                .map(|s| s.to_string())
                .filter(|c| !drop.contains(c))
                .collect()
        };
        for a in caps.add.unwrap_or_default() {
            let a = norm_cap(&a);
            if !kept.contains(&a) {
                kept.push(a);
            }
        }
        kept.sort();
        kept
    } else {
        Vec::new()
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        caps,
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        read_only_root: csc.read_only_root_filesystem == Some(true),
    })
}

fn norm_cap(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

/// One bind mount into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// The binds for a container's `volumeMounts` (sorted so parents mount before children).
/// `subPath` is resolved under the volume and may not climb out of it.
pub fn binds(c: &Container, volumes: &BTreeMap<String, HostVolume>) -> Result<Vec<Bind>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.clone().unwrap_or_default() {
        let v = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volumeMount {:?}: no volume of that name", m.name))?;
        let mut host = v.path.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|p| p == "..") {
                return Err(format!(
                    "volumeMount {:?}: subPath {sub:?} must be relative and stay inside the volume",
                    m.name
                ));
            }
            host = host.join(sub);
        }
        if !m.mount_path.starts_with('/') || m.mount_path.split('/').any(|p| p == "..") {
            return Err(format!(
                "volumeMount {:?}: mountPath {:?} must be absolute",
                m.name, m.mount_path
            ));
        }
        out.push(Bind {
            host,
            target: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || v.read_only,
        });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// Everything needed to build the argv of one container.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub executable: &'a Path,
    pub container: &'a Container,
    pub hostname: &'a str,
    pub env: &'a [(String, String)],
    pub binds: &'a [Bind],
    pub identity: &'a Identity,
    /// Host file bound at the container's terminationMessagePath.
    pub termination_log: &'a Path,
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The complete `bwrap … -- setpriv … -- ENTRYPOINT ARGS` command line.
pub fn argv(l: &Launch<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["bwrap".into()];
    push(
        &mut a,
        &[
            "--die-with-parent",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname",
            l.hostname,
        ],
    );
    push(
        &mut a,
        &["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"],
    );
    for (link, target) in [
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
    ] {
        if Path::new(link).is_symlink() || !Path::new(link).exists() {
            push(&mut a, &["--symlink", target, link]);
        } else {
            push(&mut a, &["--ro-bind", link, link]);
        }
    }
    push(&mut a, &["--proc", "/proc", "--dev", "/dev"]);
    if !l.binds.iter().any(|b| b.target == "/tmp") {
        push(&mut a, &["--tmpfs", "/tmp"]);
    }
    // The host's /usr is read-only; a fresh /usr/local holds the image's entrypoint.
    push(&mut a, &["--tmpfs", "/usr/local"]);
    a.push("--ro-bind".into());
    a.push(l.executable.into());
    a.push(IMAGE_ENTRYPOINT.into());
    for b in l.binds {
        a.push(if b.read_only { "--ro-bind" } else { "--bind" }.into());
        a.push(b.host.clone().into());
        a.push(b.target.clone().into());
    }
    let tm_path = l
        .container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    a.push("--bind".into());
    a.push(l.termination_log.into());
    a.push(tm_path.into());
    if l.identity.read_only_root {
        push(&mut a, &["--remount-ro", "/"]);
    }
    let workdir = l
        .container
        .working_dir
        .clone()
        .unwrap_or_else(|| IMAGE_WORKDIR.into());
    push(&mut a, &["--chdir", &workdir, "--clearenv"]);
    for (k, v) in l.env {
        push(&mut a, &["--setenv", k, v]);
    }
    a.push("--".into());
    a.extend(setpriv(l.identity).into_iter().map(OsString::from));
    a.push("--".into());
    let cmd = l.container.command.clone().unwrap_or_default();
    a.push(IMAGE_ENTRYPOINT.into());
    a.extend(cmd.into_iter().skip(1).map(OsString::from));
    a.extend(
        l.container
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(OsString::from),
    );
    a
}

/// `setpriv` arguments for an identity: ids, supplementary groups, bounding and inheritable
/// capability sets (ambient for root so the kept set survives exec), no_new_privs.
pub fn setpriv(id: &Identity) -> Vec<String> {
    let mut a = vec![
        "/usr/bin/setpriv".to_string(),
        format!("--reuid={}", id.uid),
        format!("--regid={}", id.gid),
    ];
    if id.groups.is_empty() {
        a.push("--clear-groups".into());
    } else {
        a.push(format!(
            "--groups={}",
            id.groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let set = if id.caps.is_empty() {
        "-all".to_string()
    } else {
        let mut s = "-all".to_string();
        for c in &id.caps {
            s.push_str(&format!(",+{}", c.to_ascii_lowercase()));
        }
        s
    };
    a.push(format!("--inh-caps={set}"));
    a.push(format!("--bounding-set={set}"));
    if id.no_new_privs {
        a.push("--no-new-privs".into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn mover_pod(sc: serde_json::Value, csc: serde_json::Value) -> (Pod, Container) {
        let p = pod(serde_json::json!({
            "metadata": {"name": "m"},
            "spec": {"securityContext": sc, "containers": [{"name": "mover", "securityContext": csc,
              "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true},
                               {"name": "cfg", "mountPath": "/rclone-config"}]}]}
        }));
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn default_mover_runs_as_nonroot_with_fs_group_and_no_caps() {
        let (p, c) = mover_pod(
            serde_json::json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}),
            serde_json::json!({"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true}),
        );
        let id = identity(&p, &c).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone()),
            (65532, 65532, vec![65532])
        );
        assert!(id.caps.is_empty() && id.no_new_privs && id.read_only_root);
        let sp = setpriv(&id);
        assert!(sp.contains(&"--inh-caps=-all".to_string()));
        assert!(sp.contains(&"--bounding-set=-all".to_string()));
        assert!(sp.contains(&"--groups=65532".to_string()));
    }

    #[test]
    fn root_mover_keeps_only_added_caps_after_drop_all() {
        let (p, c) = mover_pod(
            serde_json::json!({"runAsUser": 0}),
            serde_json::json!({"capabilities": {"drop": ["ALL"], "add": ["CHOWN", "cap_fowner"]}}),
        );
        let id = identity(&p, &c).unwrap();
        assert_eq!(id.uid, 0);
        assert_eq!(id.caps, vec!["CHOWN".to_string(), "FOWNER".to_string()]);
        assert!(setpriv(&id).contains(&"--bounding-set=-all,+chown,+fowner".to_string()));
    }

    #[test]
    fn root_without_drop_gets_runtime_defaults_and_run_as_non_root_is_enforced() {
        let (p, c) = mover_pod(serde_json::json!({"runAsUser": 0}), serde_json::json!({}));
        assert_eq!(identity(&p, &c).unwrap().caps.len(), DEFAULT_CAPS.len());
        let (p, c) = mover_pod(
            serde_json::json!({"runAsUser": 0, "runAsNonRoot": true}),
            serde_json::json!({}),
        );
        assert!(identity(&p, &c).unwrap_err().contains("runAsNonRoot"));
    }

    #[test]
    fn binds_honour_read_only_and_sub_path_and_refuse_escapes() {
        let (_, mut c) = mover_pod(serde_json::json!({}), serde_json::json!({}));
        let vols = BTreeMap::from([
            (
                "data".to_string(),
                HostVolume {
                    path: "/v/1".into(),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                HostVolume {
                    path: "/p/cfg".into(),
                    read_only: true,
                },
            ),
        ]);
        let b = binds(&c, &vols).unwrap();
        assert_eq!(
            b[0],
            Bind {
                host: "/v/1".into(),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            b[1],
            Bind {
                host: "/p/cfg".into(),
                target: "/rclone-config".into(),
                read_only: true
            }
        );
        c.volume_mounts.as_mut().unwrap()[0].sub_path = Some("../x".into());
        assert!(binds(&c, &vols).unwrap_err().contains("subPath"));
        c.volume_mounts.as_mut().unwrap()[0].name = "nope".into();
        assert!(binds(&c, &vols).unwrap_err().contains("nope"));
    }

    #[test]
    fn argv_binds_entrypoint_volumes_and_termination_log() {
        let (p, c) = mover_pod(
            serde_json::json!({"runAsUser": 65532}),
            serde_json::json!({"readOnlyRootFilesystem": true}),
        );
        let id = identity(&p, &c).unwrap();
        let b = vec![Bind {
            host: "/v/1".into(),
            target: "/data".into(),
            read_only: true,
        }];
        let env = vec![("DIRECTION".to_string(), "source".to_string())];
        let a: Vec<String> = argv(&Launch {
            executable: Path::new("/w/target/debug/scribe-mover"),
            container: &c,
            hostname: "m",
            env: &env,
            binds: &b,
            identity: &id,
            termination_log: Path::new("/s/pods/u/mover.termination-log"),
        })
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
        let joined = a.join(" ");
        assert!(
            joined.contains("--ro-bind /w/target/debug/scribe-mover /usr/local/bin/scribe-mover")
        );
        assert!(joined.contains("--ro-bind /v/1 /data"));
        assert!(joined.contains("--bind /s/pods/u/mover.termination-log /dev/termination-log"));
        assert!(joined.contains("--remount-ro /"));
        assert!(joined.contains("--setenv DIRECTION source"));
        assert!(joined.contains("--chdir /data"));
        assert!(joined.ends_with("-- /usr/local/bin/scribe-mover"));
    }
}
