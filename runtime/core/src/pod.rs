//! Which pod a container belongs to, and what its rootfs is (guest pull only).
//!
//! containerd's CRI plugin marks containers with `io.kubernetes.cri.container-type`
//! (`sandbox` | `container`) and `io.kubernetes.cri.sandbox-id`; CRI-O uses
//! `io.kubernetes.cri-o.ContainerType` (`sandbox` | `container`) and
//! `io.kubernetes.cri-o.SandboxID`. A container without either (`ctr run`) is a pod of its
//! own: it boots the VM and runs its own image.
//!
//! The host's rootfs snapshot is never given to the guest. The image reference travels in an
//! `image_guest_pull` storage (Kata's convention) and the agent pulls or resolves it.

use std::collections::BTreeMap;

use agent_protocol::types::Storage;

use crate::CoreError;

/// containerd CRI: container type annotation.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// containerd CRI: sandbox id annotation.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// containerd CRI: image name annotation (set on workload containers).
pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// CRI-O: container type annotation.
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
/// CRI-O: sandbox id annotation.
pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
/// CRI-O: image name annotation.
pub const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
/// Cocoon: image reference set by a user of `ctr run --annotation io.cocoon.image=REF`.
pub const COCOON_IMAGE: &str = "io.cocoon.image";

/// Storage driver of a guest-pulled image.
pub const IMAGE_GUEST_PULL: &str = "image_guest_pull";
/// Image source the agent resolves to its built-in pause bundle.
pub const PAUSE_IMAGE: &str = "pause";

/// The role of a container in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerRole {
    /// The CRI sandbox (pause) container: boots the VM; its process is the pause image.
    Sandbox,
    /// A workload container joining an existing sandbox VM.
    Workload,
    /// A container without pod annotations: boots its own VM and runs its own image.
    Standalone,
}

impl ContainerRole {
    /// True for the roles whose creation boots the VM.
    pub fn boots_vm(self) -> bool {
        matches!(self, ContainerRole::Sandbox | ContainerRole::Standalone)
    }
}

/// Where a container goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The pod (VM) the container runs in; for a sandbox/standalone container its own id.
    pub sandbox_id: String,
    /// Its role.
    pub role: ContainerRole,
}

fn first<'a>(annotations: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| annotations.get(*k))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Decides the pod and role of `container_id` from its OCI annotations.
pub fn classify(
    container_id: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<Placement, CoreError> {
    let kind = first(annotations, &[CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE]);
    let sandbox = first(annotations, &[CRI_SANDBOX_ID, CRIO_SANDBOX_ID]);
    match kind {
        None => Ok(Placement {
            sandbox_id: container_id.to_string(),
            role: ContainerRole::Standalone,
        }),
        Some("sandbox") => {
            if let Some(s) = sandbox
                && s != container_id
            {
                return Err(CoreError::Annotation {
                    key: CRI_SANDBOX_ID,
                    reason: format!(
                        "a sandbox container's sandbox id must be its own id {container_id:?}, got {s:?}"
                    ),
                });
            }
            Ok(Placement {
                sandbox_id: container_id.to_string(),
                role: ContainerRole::Sandbox,
            })
        }
        Some("container") => match sandbox {
            Some(s) if s != container_id => Ok(Placement {
                sandbox_id: s.to_string(),
                role: ContainerRole::Workload,
            }),
            Some(_) => Err(CoreError::Annotation {
                key: CRI_SANDBOX_ID,
                reason: "a workload container cannot be its own sandbox".into(),
            }),
            None => Err(CoreError::Annotation {
                key: CRI_SANDBOX_ID,
                reason: "container-type is \"container\" but no sandbox id is given".into(),
            }),
        },
        Some(other) => Err(CoreError::Annotation {
            key: CRI_CONTAINER_TYPE,
            reason: format!("unknown container type {other:?} (expected sandbox or container)"),
        }),
    }
}

/// The image reference of a container: CRI, CRI-O, then Cocoon's own annotation.
pub fn image_reference(annotations: &BTreeMap<String, String>) -> Option<&str> {
    first(
        annotations,
        &[CRI_IMAGE_NAME, CRIO_IMAGE_NAME, COCOON_IMAGE],
    )
}

/// The guest path where the agent mounts `container_id`'s rootfs.
pub fn guest_rootfs(container_id: &str) -> String {
    format!("/run/kata-containers/{container_id}/rootfs")
}

/// Builds the `image_guest_pull` storage of a container. The sandbox container pulls the
/// agent's built-in pause image; other containers need an image reference annotation.
pub fn guest_pull_storage(
    container_id: &str,
    role: ContainerRole,
    annotations: &BTreeMap<String, String>,
) -> Result<Storage, CoreError> {
    let source = match role {
        ContainerRole::Sandbox => PAUSE_IMAGE.to_string(),
        ContainerRole::Workload | ContainerRole::Standalone => image_reference(annotations)
            .ok_or(CoreError::NoImageReference)?
            .to_string(),
    };
    if source.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::Annotation {
            key: CRI_IMAGE_NAME,
            reason: format!("image reference {source:?} contains whitespace"),
        });
    }
    let metadata = serde_json::json!({ "metadata": annotations });
    Ok(Storage {
        driver: IMAGE_GUEST_PULL.to_string(),
        driver_options: vec![format!("{IMAGE_GUEST_PULL}={metadata}")],
        source,
        fstype: "overlay".to_string(),
        options: Vec::new(),
        mount_point: guest_rootfs(container_id),
        fs_group: None,
        shared: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    type Case = (
        &'static str,
        BTreeMap<String, String>,
        Result<(&'static str, ContainerRole), &'static str>,
    );

    #[test]
    fn classification_table() {
        let cases: Vec<Case> = vec![
            ("c1", ann(&[]), Ok(("c1", ContainerRole::Standalone))),
            (
                "p1",
                ann(&[(CRI_CONTAINER_TYPE, "sandbox"), (CRI_SANDBOX_ID, "p1")]),
                Ok(("p1", ContainerRole::Sandbox)),
            ),
            (
                "p1",
                ann(&[(CRI_CONTAINER_TYPE, "sandbox")]),
                Ok(("p1", ContainerRole::Sandbox)),
            ),
            (
                "c2",
                ann(&[(CRI_CONTAINER_TYPE, "container"), (CRI_SANDBOX_ID, "p1")]),
                Ok(("p1", ContainerRole::Workload)),
            ),
            (
                "c3",
                ann(&[(CRIO_CONTAINER_TYPE, "container"), (CRIO_SANDBOX_ID, "p9")]),
                Ok(("p9", ContainerRole::Workload)),
            ),
            (
                "p9",
                ann(&[(CRIO_CONTAINER_TYPE, "sandbox"), (CRIO_SANDBOX_ID, "p9")]),
                Ok(("p9", ContainerRole::Sandbox)),
            ),
            (
                "c4",
                ann(&[(CRI_CONTAINER_TYPE, "container")]),
                Err("no sandbox id"),
            ),
            (
                "c5",
                ann(&[(CRI_CONTAINER_TYPE, "container"), (CRI_SANDBOX_ID, "c5")]),
                Err("own sandbox"),
            ),
            (
                "p2",
                ann(&[(CRI_CONTAINER_TYPE, "sandbox"), (CRI_SANDBOX_ID, "other")]),
                Err("must be its own id"),
            ),
            (
                "c6",
                ann(&[(CRI_CONTAINER_TYPE, "podsandbox")]),
                Err("unknown container type"),
            ),
        ];
        for (id, a, want) in cases {
            let got = classify(id, &a);
            match (got, want) {
                (Ok(p), Ok((sid, role))) => {
                    assert_eq!(p.sandbox_id, sid, "{id}");
                    assert_eq!(p.role, role, "{id}");
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{id}: {e}"),
                (got, want) => panic!("{id}: got {got:?}, want {want:?}"),
            }
        }
        assert!(ContainerRole::Sandbox.boots_vm());
        assert!(ContainerRole::Standalone.boots_vm());
        assert!(!ContainerRole::Workload.boots_vm());
    }

    #[test]
    fn image_reference_precedence() {
        let a = ann(&[
            (COCOON_IMAGE, "c"),
            (CRIO_IMAGE_NAME, "b"),
            (CRI_IMAGE_NAME, "a"),
        ]);
        assert_eq!(image_reference(&a), Some("a"));
        assert_eq!(
            image_reference(&ann(&[(COCOON_IMAGE, "c"), (CRIO_IMAGE_NAME, "b")])),
            Some("b")
        );
        assert_eq!(image_reference(&ann(&[(COCOON_IMAGE, "c")])), Some("c"));
        assert_eq!(image_reference(&ann(&[(COCOON_IMAGE, "")])), None);
    }

    #[test]
    fn guest_pull_storage_is_kata_shaped() {
        let a = ann(&[(CRI_IMAGE_NAME, "docker.io/library/busybox:1.36")]);
        let s = guest_pull_storage("c1", ContainerRole::Workload, &a).unwrap();
        assert_eq!(s.driver, "image_guest_pull");
        assert_eq!(s.source, "docker.io/library/busybox:1.36");
        assert_eq!(s.fstype, "overlay");
        assert_eq!(s.mount_point, "/run/kata-containers/c1/rootfs");
        assert_eq!(s.driver_options.len(), 1);
        let json = s.driver_options[0]
            .strip_prefix("image_guest_pull=")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            v["metadata"][CRI_IMAGE_NAME],
            "docker.io/library/busybox:1.36"
        );

        let pause = guest_pull_storage("p1", ContainerRole::Sandbox, &ann(&[])).unwrap();
        assert_eq!(pause.source, "pause");
        assert_eq!(pause.mount_point, "/run/kata-containers/p1/rootfs");

        let err = guest_pull_storage("c1", ContainerRole::Standalone, &ann(&[])).unwrap_err();
        assert!(err.to_string().contains("io.cocoon.image"), "{err}");
        let err = guest_pull_storage(
            "c1",
            ContainerRole::Standalone,
            &ann(&[(COCOON_IMAGE, "a b")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("whitespace"), "{err}");
    }
}
