//! Reproducible guest assets: kernel extraction, module selection and a deterministic initramfs.
//!
//! [`build_guest`] turns a [`GuestBuildSpec`] into `vmlinux`, `bzImage`, an initrd and a
//! `manifest.json` recording their sha256 (and the command line's), which measured boot needs.
//! The pure pieces are public modules: [`cpio`] (newc writer), [`modules`] (dependency
//! resolver), [`lz4_legacy`] and [`bzimage`] (kernel payload decoder).

#![forbid(unsafe_code)]

pub mod bzimage;
pub mod cpio;
pub mod dynlib;
mod error;
pub mod initramfs;
pub mod kernel;
pub mod lz4_legacy;
pub mod manifest;
pub mod modules;

pub use error::GuestBuildError;
pub use initramfs::{ExtraFile, InitrdCompression};
pub use kernel::{KernelPin, default_cache_dir, kernel_release};
pub use manifest::{GuestManifest, load_manifest};

use crate::cpio::CpioArchive;
use crate::error::io_err;
use crate::manifest::{AgentDigest, FileDigest, InitrdDigest, KernelSource, MANIFEST_FILE};
use crate::modules::{ModuleIndex, normalize_name};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Modules every guest loads, with what pulls in the rest of the stack:
/// - `virtio_mmio`, `virtio_pci`: device transports (microvm uses MMIO, q35 PCI); they bring
///   `virtio`, `virtio_ring` and the PCI legacy/modern helpers.
/// - `vmw_vsock_virtio_transport`: the agent's ttRPC channel (brings `vsock` and the common part).
/// - `virtio_console`: virtio-serial ports, the fallback agent channel and console.
/// - `virtio_net`: pod networking (brings `failover`, `net_failover`).
/// - `virtio_blk`: block devices for container storage.
/// - `overlay`: container root filesystems built from image layers.
///
/// Not included: `veth`/`bridge` (containers share the VM's network namespace, as in Kata) and
/// `nf_*` (no in-guest NAT or filtering); ext4, tmpfs and cgroups are built into this kernel.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "vmw_vsock_virtio_transport",
    "virtio_console",
    "virtio_net",
    "virtio_blk",
    "overlay",
];

/// x86 `COMMAND_LINE_SIZE` is 2048 bytes including the terminating NUL.
const MAX_CMDLINE_LEN: usize = 2047;

/// Everything a guest build depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestBuildSpec {
    /// The kernel package (see [`KernelPin::pinned`]).
    pub kernel: KernelPin,
    /// Download/extraction cache (see [`default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// Directory receiving `vmlinux`, `bzImage`, the initrd and `manifest.json`.
    pub out_dir: PathBuf,
    /// Binary installed as `/init` (static, or dynamic: its loader and libraries are added).
    pub agent_binary: PathBuf,
    /// Root modules to include; dependencies are added (see [`DEFAULT_MODULES`]).
    pub modules: Vec<String>,
    /// Extra initramfs contents.
    pub extra_files: Vec<ExtraFile>,
    /// The kernel command line to record in the manifest (exact string).
    pub cmdline: String,
    /// How the initrd is stored.
    pub compression: InitrdCompression,
}

impl GuestBuildSpec {
    /// A spec with the pinned kernel, [`DEFAULT_MODULES`], no extras and no compression.
    pub fn new(
        cache_dir: PathBuf,
        out_dir: PathBuf,
        agent_binary: PathBuf,
        cmdline: String,
    ) -> Result<Self, GuestBuildError> {
        Ok(Self {
            kernel: KernelPin::pinned()?,
            cache_dir,
            out_dir,
            agent_binary,
            modules: DEFAULT_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            extra_files: Vec::new(),
            cmdline,
            compression: InitrdCompression::default(),
        })
    }
}

/// The inputs hashed into [`GuestManifest::inputs_sha256`].
#[derive(Serialize)]
struct InputsFingerprint<'a> {
    format_version: u32,
    kernel: &'a KernelPin,
    modules: Vec<String>,
    cmdline: &'a str,
    compression: InitrdCompression,
    agent_sha256: &'a str,
    extras_cpio_sha256: String,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn check_cmdline(cmdline: &str) -> Result<(), GuestBuildError> {
    if cmdline.len() > MAX_CMDLINE_LEN {
        return Err(GuestBuildError::InvalidCmdline(format!(
            "{} bytes, the x86 limit is {MAX_CMDLINE_LEN}",
            cmdline.len()
        )));
    }
    if let Some(c) = cmdline.chars().find(|c| c.is_control()) {
        return Err(GuestBuildError::InvalidCmdline(format!(
            "contains control character {c:?}"
        )));
    }
    Ok(())
}

/// Builds (or reuses) the guest assets described by `spec` and returns the manifest.
///
/// When `out_dir/manifest.json` was built from the same inputs and its files still hash to
/// the recorded digests, nothing is rebuilt. Otherwise the outputs are written to a
/// temporary directory inside `out_dir` and renamed into place, `manifest.json` last.
pub fn build_guest(spec: &GuestBuildSpec) -> Result<GuestManifest, GuestBuildError> {
    spec.kernel.validate()?;
    check_cmdline(&spec.cmdline)?;
    let agent_missing = |source| GuestBuildError::AgentBinaryMissing {
        path: spec.agent_binary.clone(),
        source,
    };
    let agent_meta = std::fs::metadata(&spec.agent_binary).map_err(agent_missing)?;
    if !agent_meta.is_file() {
        return Err(agent_missing(std::io::Error::other("not a regular file")));
    }
    let agent = std::fs::read(&spec.agent_binary).map_err(agent_missing)?;
    let agent_sha256 = sha256_hex(&agent);

    let mut extras = CpioArchive::new();
    // A dynamic agent brings its loader and libraries (an extra at the same path is refused).
    let agent_name = spec.agent_binary.display().to_string();
    let libraries = dynlib::runtime_files(&agent_name, &agent, &dynlib::default_library_dirs())?;
    initramfs::add_extra_files(&mut extras, &libraries)?;
    initramfs::add_extra_files(&mut extras, &spec.extra_files)?;
    let mut wanted: Vec<String> = spec.modules.iter().map(|m| normalize_name(m)).collect();
    wanted.sort();
    wanted.dedup();
    let fingerprint = InputsFingerprint {
        format_version: manifest::FORMAT_VERSION,
        kernel: &spec.kernel,
        modules: wanted.clone(),
        cmdline: &spec.cmdline,
        compression: spec.compression,
        agent_sha256: &agent_sha256,
        extras_cpio_sha256: sha256_hex(&extras.to_newc_bytes()?),
    };
    let fingerprint_json =
        serde_json::to_vec(&fingerprint).map_err(|e| GuestBuildError::Manifest {
            path: spec.out_dir.clone(),
            reason: format!("serialising build inputs: {e}"),
        })?;
    let inputs_sha256 = sha256_hex(&fingerprint_json);

    if let Ok(existing) = load_manifest(&spec.out_dir)
        && existing.inputs_sha256 == inputs_sha256
    {
        match existing.verify(&spec.out_dir) {
            Ok(()) => {
                tracing::info!(out_dir = %spec.out_dir.display(), "guest assets up to date");
                return Ok(existing);
            }
            Err(e) => tracing::warn!(error = %e, "cached guest assets are damaged; rebuilding"),
        }
    }

    let deb = kernel::fetch_deb(&spec.kernel, &spec.cache_dir)?;
    let extracted = kernel::extract_kernel(&spec.kernel, &deb, &spec.cache_dir)?;
    let index = ModuleIndex::scan(&extracted.modules_dir)?;
    let resolved = index.resolve(&wanted)?;
    let mut modules = Vec::with_capacity(resolved.len());
    for (name, path) in resolved {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        modules.push((name, bytes));
    }

    let bzimage = std::fs::read(&extracted.bzimage).map_err(io_err(&extracted.bzimage))?;
    let vmlinux = bzimage::extract_vmlinux(&bzimage)?;

    let archive = initramfs::assemble(&initramfs::InitramfsContents {
        init: &agent,
        modules: &modules,
        extras: &extras,
    })?;
    let cpio_bytes = archive.to_newc_bytes()?;
    let initrd = spec.compression.apply(&cpio_bytes)?;

    let digest = |file: &str, data: &[u8]| FileDigest {
        file: file.to_owned(),
        size: data.len() as u64,
        sha256: sha256_hex(data),
    };
    let manifest = GuestManifest {
        format_version: manifest::FORMAT_VERSION,
        inputs_sha256,
        kernel: KernelSource {
            package: spec.kernel.package.clone(),
            version: spec.kernel.version.clone(),
            deb_sha256: spec.kernel.sha256.clone(),
            release: kernel_release(&spec.kernel),
        },
        vmlinux: digest("vmlinux", &vmlinux),
        bzimage: digest("bzImage", &bzimage),
        initrd: InitrdDigest {
            digest: digest(spec.compression.file_name(), &initrd),
            compression: spec.compression,
            cpio_size: cpio_bytes.len() as u64,
            cpio_sha256: sha256_hex(&cpio_bytes),
        },
        cmdline: spec.cmdline.clone(),
        cmdline_sha256: sha256_hex(spec.cmdline.as_bytes()),
        modules: modules.iter().map(|(n, _)| n.clone()).collect(),
        agent: AgentDigest {
            size: agent.len() as u64,
            sha256: agent_sha256,
        },
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| GuestBuildError::Manifest {
            path: spec.out_dir.join(MANIFEST_FILE),
            reason: e.to_string(),
        })?;
    let files: [(&str, &[u8]); 4] = [
        ("vmlinux", &vmlinux),
        ("bzImage", &bzimage),
        (spec.compression.file_name(), &initrd),
        (MANIFEST_FILE, &manifest_json),
    ];
    publish(&spec.out_dir, &files)?;
    tracing::info!(
        out_dir = %spec.out_dir.display(),
        vmlinux = manifest.vmlinux.size,
        initrd = manifest.initrd.digest.size,
        modules = manifest.modules.len(),
        "built guest assets"
    );
    Ok(manifest)
}

/// Writes `files` into a temporary directory inside `out_dir`, then renames them into
/// `out_dir` in order. The old manifest is removed first and the new one (last) is the
/// commit point, so a crash never leaves a manifest describing other bytes.
fn publish(out_dir: &Path, files: &[(&str, &[u8])]) -> Result<(), GuestBuildError> {
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".guest-build-")
        .tempdir_in(out_dir)
        .map_err(io_err(out_dir))?;
    for (name, data) in files {
        let path = staging.path().join(name);
        std::fs::write(&path, data).map_err(io_err(&path))?;
    }
    let old_manifest = out_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&old_manifest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&old_manifest)(e)),
        _ => {}
    }
    for (name, _) in files {
        let dest = out_dir.join(name);
        std::fs::rename(staging.path().join(name), &dest).map_err(io_err(&dest))?;
    }
    // An initrd with the other compression's name is stale now.
    for stale in [InitrdCompression::None, InitrdCompression::Gzip] {
        if !files.iter().any(|(n, _)| *n == stale.file_name()) {
            let _ = std::fs::remove_file(out_dir.join(stale.file_name()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn spec(dir: &Path) -> GuestBuildSpec {
        GuestBuildSpec::new(
            dir.join("cache"),
            dir.join("out"),
            dir.join("agent"),
            "console=ttyS0".into(),
        )
        .unwrap()
    }

    #[test]
    fn missing_agent_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_guest(&spec(dir.path())).unwrap_err();
        assert!(
            matches!(err, GuestBuildError::AgentBinaryMissing { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/agent"), "{err}");
        std::fs::create_dir(dir.path().join("agent")).unwrap();
        let err = build_guest(&spec(dir.path())).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn bad_cmdline_is_rejected_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.cmdline = "console=ttyS0\nrm".into();
        assert!(matches!(
            build_guest(&s),
            Err(GuestBuildError::InvalidCmdline(_))
        ));
        s.cmdline = "x".repeat(3000);
        assert!(
            build_guest(&s)
                .unwrap_err()
                .to_string()
                .contains("3000 bytes")
        );
    }
}
