//! The agent's validated configuration, shared read-only by every task.

use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// What the agent serves and where it keeps its files.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub state_dir: PathBuf,
    pub driver_name: String,
    /// (image substring, executable) pairs, first match wins.
    pub images: Vec<(String, PathBuf)>,
}

impl AgentConfig {
    pub fn new(
        node_name: String,
        state_dir: PathBuf,
        driver_name: String,
        images: Vec<(String, PathBuf)>,
    ) -> Result<Self, AgentError> {
        let state_dir = std::path::absolute(&state_dir).map_err(|e| AgentError::Io {
            action: "resolving --state-dir",
            path: state_dir.clone(),
            source: e,
        })?;
        for sub in ["volumes", "snapshots", "pods"] {
            let dir = state_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| AgentError::Io {
                action: "creating state directory",
                path: dir.clone(),
                source: e,
            })?;
        }
        Ok(Self {
            node_name,
            state_dir,
            driver_name,
            images,
        })
    }

    /// Directory backing a CSI volume handle.
    pub fn volume_dir(&self, handle: &str) -> PathBuf {
        self.state_dir.join("volumes").join(safe_component(handle))
    }

    /// Directory holding a snapshot's copy of a volume.
    pub fn snapshot_dir(&self, handle: &str) -> PathBuf {
        self.state_dir
            .join("snapshots")
            .join(safe_component(handle))
    }

    /// Runtime directory of one pod (secrets, logs, termination message).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(safe_component(uid))
    }

    /// The executable an image maps to, if any.
    pub fn executable_for(&self, image: &str) -> Option<&Path> {
        self.images
            .iter()
            .find(|(sub, _)| image.contains(sub.as_str()))
            .map(|(_, p)| p.as_path())
    }
}

/// A handle or uid as one path component: anything but `[A-Za-z0-9._-]` becomes `_`, so an
/// API value can never walk out of the state directory.
pub fn safe_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        out = format!("_{out}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_cannot_escape() {
        assert_eq!(safe_component("../etc"), ".._etc");
        assert_eq!(safe_component(".."), "_..");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("pvc-1234_ab.c"), "pvc-1234_ab.c");
    }

    #[test]
    fn first_matching_image_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AgentConfig::new(
            "n".into(),
            dir.path().into(),
            "d".into(),
            vec![
                ("scribe-mover".into(), "/bin/mover".into()),
                ("scribe".into(), "/bin/other".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            cfg.executable_for("ghcr.io/backube/scribe-mover:0.1.0"),
            Some(Path::new("/bin/mover"))
        );
        assert_eq!(cfg.executable_for("busybox"), None);
        assert!(dir.path().join("volumes").is_dir());
    }
}
