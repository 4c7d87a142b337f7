//! The baked-rootfs [`ImageService`]: until the in-guest image pull lands, an image reference
//! resolves only to a rootfs tree baked into the (measured) initrd under
//! `/opt/cocoon/rootfs/<name>`.
//!
//! Rule: `cocoon-baked:<name>` names `<name>` directly; any other reference names the last
//! path component of its repository, without tag or digest
//! (`docker.io/library/busybox:1.36` and `busybox@sha256:...` both name `busybox`). The name
//! must be a directory in the baked store, otherwise the request is refused saying that image
//! pull is not available yet. The tree is the read-only lower layer of an overlay whose
//! writable upper layer lives in `/run/kata-containers/<cid>/overlay` (tmpfs).

use std::path::{Path, PathBuf};

use agent_core::{ImageError, ImageService};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Default baked rootfs store in the guest.
pub const DEFAULT_BAKED_ROOTFS: &str = "/opt/cocoon/rootfs";

/// Resolves image references to baked rootfs trees.
#[derive(Debug, Clone)]
pub struct BakedImages {
    store: PathBuf,
}

/// The baked rootfs name an image reference asks for (see the module rule).
pub fn baked_name(image_ref: &str) -> Option<&str> {
    let name = match image_ref.strip_prefix("cocoon-baked:") {
        Some(n) => n,
        None => {
            let no_digest = image_ref.split('@').next().unwrap_or_default();
            let last = no_digest.rsplit('/').next().unwrap_or_default();
            last.split(':').next().unwrap_or_default()
        }
    };
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    ok.then_some(name)
}

fn failed(what: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Failed(format!("prepare rootfs: {what}: {e}"))
}

impl BakedImages {
    /// Rootfs trees are looked up in `store`.
    pub fn new(store: impl Into<PathBuf>) -> Self {
        BakedImages {
            store: store.into(),
        }
    }

    fn scratch(dest_rootfs: &Path) -> Result<PathBuf, ImageError> {
        dest_rootfs
            .parent()
            .map(|p| p.join("overlay"))
            .ok_or_else(|| ImageError::Failed("rootfs path has no parent".into()))
    }
}

#[async_trait::async_trait]
impl ImageService for BakedImages {
    async fn pull(&self, image_ref: &str, _cid: &str, dest: &Path) -> Result<(), ImageError> {
        let lower = baked_name(image_ref)
            .map(|n| self.store.join(n))
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                ImageError::NotAvailable(format!(
                    "image pull is not available yet: {image_ref:?} does not name a rootfs baked into the guest"
                ))
            })?;
        let scratch = Self::scratch(dest)?;
        let (upper, work) = (scratch.join("upper"), scratch.join("work"));
        for d in [&upper, &work, &dest.to_path_buf()] {
            std::fs::create_dir_all(d).map_err(|e| failed("create directory", e))?;
        }
        let paths = [&lower, &upper, &work].map(|p| p.display().to_string());
        if paths.iter().any(|p| p.contains([',', ':', '\\'])) {
            return Err(ImageError::Failed(
                "prepare rootfs: path unusable in overlay options".into(),
            ));
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            paths[0], paths[1], paths[2]
        );
        mount(
            Some("overlay"),
            dest,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| failed("mount overlay", e))
    }

    async fn release(&self, _cid: &str, dest: &Path) -> Result<(), ImageError> {
        match umount2(dest, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(failed("unmount rootfs", e)),
        }
        // Only after the overlay is gone: remove the container's scratch directory.
        if let Some(container_dir) = dest.parent() {
            match std::fs::remove_dir_all(container_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed("remove container directory", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_to_baked_name() {
        for (r, want) in [
            ("cocoon-baked:busybox", Some("busybox")),
            ("docker.io/library/busybox:1.36", Some("busybox")),
            ("busybox", Some("busybox")),
            ("quay.io/x/busybox@sha256:abcd", Some("busybox")),
            ("localhost:5000/busybox:latest", Some("busybox")),
            ("cocoon-baked:../etc", None),
            ("cocoon-baked:", None),
            ("registry/App", None),
        ] {
            assert_eq!(baked_name(r), want, "{r}");
        }
    }

    #[tokio::test]
    async fn unknown_images_are_refused_saying_pull_is_not_available() {
        let store = tempfile::tempdir().unwrap();
        std::fs::create_dir(store.path().join("busybox")).unwrap();
        let imgs = BakedImages::new(store.path());
        let dest = store.path().join("c1/rootfs");
        let err = imgs
            .pull("quay.io/app/server:1.0", "c1", &dest)
            .await
            .unwrap_err();
        assert!(matches!(err, ImageError::NotAvailable(_)));
        assert!(err.to_string().contains("not available yet"), "{err}");
        assert!(!dest.exists());
    }
}
