//! `manifest.json`: what a guest build produced, with the digests measured boot needs.

use crate::error::{GuestBuildError, io_err};
use crate::initramfs::InitrdCompression;
use crate::kernel::sha256_file;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the manifest in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the build recipe; bump it when the same inputs would give different bytes.
pub const FORMAT_VERSION: u32 = 1;

/// One output (or input) file: name relative to the manifest, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name relative to the manifest's directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// The kernel package the assets came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSource {
    /// Debian package name.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// sha256 of the `.deb`.
    pub deb_sha256: String,
    /// Kernel release (`uname -r`).
    pub release: String,
}

/// The initrd and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitrdDigest {
    /// The file as written (possibly compressed).
    #[serde(flatten)]
    pub digest: FileDigest,
    /// How it is compressed.
    pub compression: InitrdCompression,
    /// Size of the raw newc cpio.
    pub cpio_size: u64,
    /// sha256 of the raw newc cpio.
    pub cpio_sha256: String,
}

/// The agent binary placed at `/init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDigest {
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// Everything a guest build produced. Paths are relative to the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestManifest {
    /// [`FORMAT_VERSION`] of the recipe that built it.
    pub format_version: u32,
    /// sha256 over every build input; equal inputs skip the build.
    pub inputs_sha256: String,
    /// Source kernel package.
    pub kernel: KernelSource,
    /// The uncompressed PVH `vmlinux` (microvm `-kernel`).
    pub vmlinux: FileDigest,
    /// The bzImage as shipped (q35 / SNP / TDX `-kernel`).
    pub bzimage: FileDigest,
    /// The initramfs.
    pub initrd: InitrdDigest,
    /// The exact kernel command line the assets are meant to boot with.
    pub cmdline: String,
    /// sha256 of the command line's bytes (no trailing NUL).
    pub cmdline_sha256: String,
    /// Module names in load order (as in `/lib/modules/load-order`).
    pub modules: Vec<String>,
    /// The agent binary used as `/init`.
    pub agent: AgentDigest,
}

impl GuestManifest {
    /// Path of the vmlinux given the manifest's directory.
    pub fn vmlinux_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.vmlinux.file)
    }

    /// Path of the bzImage given the manifest's directory.
    pub fn bzimage_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.bzimage.file)
    }

    /// Path of the initrd given the manifest's directory.
    pub fn initrd_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.initrd.digest.file)
    }

    /// Re-hashes the files next to the manifest and checks they are the recorded bytes.
    pub fn verify(&self, dir: &Path) -> Result<(), GuestBuildError> {
        for digest in [&self.vmlinux, &self.bzimage, &self.initrd.digest] {
            let path = dir.join(&digest.file);
            if !path.is_file() {
                return Err(GuestBuildError::Manifest {
                    path,
                    reason: "listed in manifest.json but missing".into(),
                });
            }
            let (sha256, size) = sha256_file(&path)?;
            if size != digest.size || sha256 != digest.sha256 {
                return Err(GuestBuildError::Manifest {
                    path,
                    reason: format!(
                        "is {size} bytes with sha256 {sha256}; manifest.json records {} bytes with sha256 {}",
                        digest.size, digest.sha256
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Reads `dir/manifest.json` (does not re-hash the files; see [`GuestManifest::verify`]).
pub fn load_manifest(dir: &Path) -> Result<GuestManifest, GuestBuildError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let manifest: GuestManifest =
        serde_json::from_str(&text).map_err(|e| GuestBuildError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(GuestBuildError::Manifest {
            path,
            reason: format!(
                "format_version {} is not the supported {FORMAT_VERSION}",
                manifest.format_version
            ),
        });
    }
    for digest in [
        &manifest.vmlinux,
        &manifest.bzimage,
        &manifest.initrd.digest,
    ] {
        if digest.file.is_empty() || digest.file.contains('/') || digest.file.starts_with('.') {
            return Err(GuestBuildError::Manifest {
                path,
                reason: format!(
                    "file name {:?} must be a plain name in the same directory",
                    digest.file
                ),
            });
        }
    }
    Ok(manifest)
}
