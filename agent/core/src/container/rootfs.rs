//! Where a container's root filesystem comes from, decided from the request alone (pure).
//!
//! Rules:
//! - The OCI `Root.Path` must be empty or exactly `/run/kata-containers/<cid>/rootfs`.
//! - A storage with driver `image_guest_pull` whose `mount_point` is that path names the image
//!   (its `source`); the [`ImageService`](crate::ImageService) provides it.
//! - Host-shared filesystems are never accepted: drivers `virtio-fs`, `virtiofs`, `9p`, and
//!   block devices (`blk`, `virtio-blk`, `virtio-blk-pci`, `virtio-blk-ccw`, `scsi`,
//!   `virtio-scsi`, `nvdimm`, `pmem`) are refused for the rootfs; shared filesystems are
//!   refused everywhere.
//! - Without an `image_guest_pull` storage the rootfs must already be present in the guest.

use std::path::PathBuf;

use agent_protocol::AgentError;
use agent_protocol::types::Storage;

/// Base of per-container state in the guest (Kata's layout).
pub const CONTAINER_BASE: &str = "/run/kata-containers";

/// The driver whose storages carry an image reference.
pub const IMAGE_GUEST_PULL: &str = "image_guest_pull";

const SHARED_FS_DRIVERS: &[&str] = &["virtio-fs", "virtiofs", "9p"];
const BLOCK_DRIVERS: &[&str] = &[
    "blk",
    "virtio-blk",
    "virtio-blk-pci",
    "virtio-blk-ccw",
    "scsi",
    "virtio-scsi",
    "nvdimm",
    "pmem",
];

/// How the rootfs is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// Ask the image service for this reference.
    Image(String),
    /// Already in the guest at the rootfs path.
    Present,
}

/// The rootfs decision for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsPlan {
    /// `/run/kata-containers/<cid>/rootfs`.
    pub path: PathBuf,
    /// Where it comes from.
    pub source: RootfsSource,
}

/// Checks that `id` is usable as a container or exec id (and as one path component).
pub fn validate_id(what: &str, id: &str) -> Result<(), AgentError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::invalid_argument(format!(
            "{what} must be 1-128 characters of [A-Za-z0-9._-]"
        )))
    }
}

/// The only acceptable rootfs path for `cid`.
pub fn rootfs_path(cid: &str) -> PathBuf {
    PathBuf::from(format!("{CONTAINER_BASE}/{cid}/rootfs"))
}

/// Decides where `cid`'s rootfs comes from, refusing host-shared filesystems.
pub fn plan_rootfs(
    cid: &str,
    root_path: Option<&str>,
    storages: &[Storage],
) -> Result<RootfsPlan, AgentError> {
    let path = rootfs_path(cid);
    let expected = path.display().to_string();
    if let Some(p) = root_path.filter(|p| !p.is_empty())
        && p != expected
    {
        return Err(AgentError::invalid_argument(format!(
            "OCI Root.Path must be {expected}; a rootfs elsewhere (e.g. shared from the host) is not accepted"
        )));
    }
    let mut source = RootfsSource::Present;
    for st in storages {
        let driver = st.driver.as_str();
        if SHARED_FS_DRIVERS.contains(&driver) {
            return Err(AgentError::invalid_argument(format!(
                "storage driver {driver:?} shares a host filesystem; it is not accepted in a confidential guest"
            )));
        }
        let is_root = st.mount_point.trim_end_matches('/') == expected;
        if BLOCK_DRIVERS.contains(&driver) {
            let what = if is_root {
                "a host block device cannot be the container rootfs"
            } else {
                "block device volumes are not supported yet"
            };
            return Err(AgentError::invalid_argument(format!(
                "storage driver {driver:?}: {what}"
            )));
        }
        if driver != IMAGE_GUEST_PULL {
            return Err(AgentError::invalid_argument(format!(
                "storage driver {driver:?} is not supported (supported: {IMAGE_GUEST_PULL})"
            )));
        }
        if !is_root {
            return Err(AgentError::invalid_argument(format!(
                "{IMAGE_GUEST_PULL} storage must be mounted at {expected}"
            )));
        }
        if st.source.is_empty() {
            return Err(AgentError::invalid_argument(format!(
                "{IMAGE_GUEST_PULL} storage has no image reference in source"
            )));
        }
        if source != RootfsSource::Present {
            return Err(AgentError::invalid_argument(
                "more than one image_guest_pull storage for the rootfs",
            ));
        }
        source = RootfsSource::Image(st.source.clone());
    }
    Ok(RootfsPlan { path, source })
}

#[cfg(test)]
mod tests {
    use agent_protocol::Code;

    use super::*;

    fn storage(driver: &str, source: &str, mount_point: &str) -> Storage {
        Storage {
            driver: driver.into(),
            source: source.into(),
            mount_point: mount_point.into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_storage_at_the_rootfs_path() {
        let p = plan_rootfs(
            "c1",
            Some("/run/kata-containers/c1/rootfs"),
            &[storage(
                "image_guest_pull",
                "docker.io/library/busybox:1.36",
                "/run/kata-containers/c1/rootfs",
            )],
        )
        .unwrap();
        assert_eq!(
            p.source,
            RootfsSource::Image("docker.io/library/busybox:1.36".into())
        );
        assert_eq!(p.path, PathBuf::from("/run/kata-containers/c1/rootfs"));
        let present = plan_rootfs("c1", None, &[]).unwrap();
        assert_eq!(present.source, RootfsSource::Present);
    }

    #[test]
    fn host_shared_rootfs_is_refused_with_a_clear_error() {
        let root = "/run/kata-containers/c1/rootfs";
        for driver in ["virtio-fs", "9p", "blk", "virtio-blk", "scsi"] {
            let err = plan_rootfs("c1", Some(root), &[storage(driver, "x", root)]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{driver}");
            assert!(err.message().contains(driver), "{}", err.message());
        }
        for path in [
            "/run/kata-containers/shared/containers/c1/rootfs",
            "/run/kata-containers/c2/rootfs",
            "rootfs",
            "/",
        ] {
            let err = plan_rootfs("c1", Some(path), &[]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{path}");
            assert!(err.message().contains("Root.Path"), "{}", err.message());
        }
        let err = plan_rootfs("c1", None, &[storage("local", "x", "/mnt")]).unwrap_err();
        assert!(err.message().contains("not supported"), "{}", err.message());
    }

    #[test]
    fn ids_are_path_safe() {
        for good in ["abc", "0123456789abcdef", "pod_1.ctr-2"] {
            validate_id("container_id", good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(200)] {
            assert!(validate_id("container_id", bad).is_err(), "{bad}");
        }
    }
}
