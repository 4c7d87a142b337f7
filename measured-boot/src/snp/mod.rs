//! AMD SEV-SNP launch digest (the MEASUREMENT field of an attestation report).
//!
//! The digest is built exactly as the PSP builds it during SNP_LAUNCH_UPDATE:
//! the firmware pages, then the SEV metadata sections (zero pages, secrets,
//! CPUID, SVSM calling area, the kernel-hashes page), then one VMSA page per
//! vCPU. `sev-snp-measure` (PyPI) is the reference; tests compare against it.

pub mod gctx;
pub mod hashes;
pub mod ovmf;
mod sha384x8;
pub mod vcpu;
pub mod vmsa;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::MeasureError;
use crate::firmware::FirmwareImage;
use gctx::{GuestContext, LD_SIZE, PageType};
use hashes::SevHashes;
use ovmf::{SectionType, SevFirmware};

/// The hypervisor flavour, which changes a few initial register values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum VmmType {
    /// QEMU/KVM (the default, and what Cocoon runs).
    #[default]
    #[serde(rename = "QEMU")]
    Qemu,
    /// AWS EC2.
    #[serde(rename = "ec2")]
    Ec2,
    /// Google Compute Engine.
    #[serde(rename = "gce")]
    Gce,
}

impl FromStr for VmmType {
    type Err = MeasureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "QEMU" | "qemu" => Ok(Self::Qemu),
            "ec2" | "EC2" => Ok(Self::Ec2),
            "gce" | "GCE" => Ok(Self::Gce),
            other => Err(MeasureError::UnknownVmmType(other.to_string())),
        }
    }
}

/// How the guest vCPU model is named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VcpuModel {
    /// A QEMU model name such as `EPYC-Milan` (see [`vcpu::VCPU_TYPES`]).
    Named(String),
    /// A raw CPUID signature.
    Signature(u32),
    /// Family, model and stepping.
    Family {
        /// CPU family (e.g. 25 for Milan/Genoa).
        family: u32,
        /// CPU model.
        model: u32,
        /// CPU stepping.
        stepping: u32,
    },
}

impl VcpuModel {
    /// The CPUID signature this model stands for.
    pub fn signature(&self) -> Result<u32, MeasureError> {
        match self {
            Self::Named(n) => vcpu::vcpu_type_sig(n),
            Self::Signature(s) => Ok(*s),
            Self::Family {
                family,
                model,
                stepping,
            } => Ok(vcpu::cpu_sig(*family, *model, *stepping)),
        }
    }
}

/// The default guest features (SEV_FEATURES): only SNPActive.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// Everything that determines an SNP launch digest, as paths and values: the
/// same values the runtime passes to QEMU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnpInputs {
    /// The OVMF firmware image (`-bios`).
    pub ovmf: PathBuf,
    /// The kernel for measured direct boot (`-kernel`), if any.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initrd (`-initrd`), if any. Needs a kernel.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`-append`), if any. Needs a kernel.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The vCPU model; required for QEMU.
    pub vcpu_type: Option<VcpuModel>,
    /// SEV_FEATURES of the VMSAs.
    #[serde(default = "default_guest_features")]
    pub guest_features: u64,
    /// The hypervisor flavour.
    #[serde(default)]
    pub vmm_type: VmmType,
}

fn default_guest_features() -> u64 {
    DEFAULT_GUEST_FEATURES
}

/// Everything besides the firmware that determines the digest, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpParams {
    /// Hashes of kernel/initrd/cmdline for measured direct boot, if a kernel is used.
    pub hashes: Option<SevHashes>,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// CPUID signature put in RDX of each VMSA (QEMU only).
    pub vcpu_sig: u32,
    /// SEV_FEATURES of the VMSAs.
    pub guest_features: u64,
    /// The hypervisor flavour.
    pub vmm_type: VmmType,
}

/// A 48-byte SNP launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaunchDigest(pub [u8; LD_SIZE]);

impl LaunchDigest {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Standard base64 (with padding).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, MeasureError> {
    std::fs::read(path).map_err(|e| MeasureError::io(what, path, e))
}

impl SnpInputs {
    /// Inputs with the defaults of `sev-snp-measure`: QEMU, guest features 0x1, no kernel.
    pub fn new(ovmf: impl Into<PathBuf>, vcpus: u32, vcpu_type: VcpuModel) -> Self {
        Self {
            ovmf: ovmf.into(),
            kernel: None,
            initrd: None,
            cmdline: None,
            vcpus,
            vcpu_type: Some(vcpu_type),
            guest_features: DEFAULT_GUEST_FEATURES,
            vmm_type: VmmType::Qemu,
        }
    }

    /// Reads the firmware and hashes the kernel/initrd/cmdline.
    pub fn load(&self) -> Result<(SevFirmware, SnpParams), MeasureError> {
        let firmware = SevFirmware::parse(FirmwareImage::map("firmware", &self.ovmf)?)?;
        Ok((firmware, self.params()?))
    }

    /// Hashes the kernel/initrd/cmdline (streaming the files) and resolves the vCPU
    /// signature: everything but the firmware.
    pub fn params(&self) -> Result<SnpParams, MeasureError> {
        if self.kernel.is_none() && (self.initrd.is_some() || self.cmdline.is_some()) {
            return Err(MeasureError::InvalidInput(
                "an initrd or command line needs a kernel (measured direct boot)".to_string(),
            ));
        }
        let vcpu_sig = match (&self.vcpu_type, self.vmm_type) {
            (Some(m), _) => m.signature()?,
            (None, VmmType::Qemu) => {
                return Err(MeasureError::InvalidInput(
                    "a vCPU type, signature or family is required for VMM type QEMU".to_string(),
                ));
            }
            (None, _) => 0,
        };
        let hashes = match &self.kernel {
            None => None,
            Some(k) => {
                // Kernel and initrd are hashed on two threads.
                let (kernel, initrd) = std::thread::scope(|s| {
                    let initrd = s.spawn(|| match &self.initrd {
                        Some(p) => sha256_file("initrd", p).map(|(h, _)| h),
                        None => Ok(Sha256::digest(b"").into()),
                    });
                    let kernel = sha256_file("kernel", k);
                    let initrd = initrd.join().unwrap_or_else(|_| {
                        Err(MeasureError::InvalidInput(
                            "initrd hashing thread panicked".into(),
                        ))
                    });
                    (kernel, initrd)
                });
                let (kernel, kernel_len) = kernel?;
                if kernel_len == 0 {
                    return Err(MeasureError::InvalidInput(format!(
                        "kernel {} is empty",
                        k.display()
                    )));
                }
                let initrd = initrd?;
                Some(SevHashes {
                    kernel,
                    initrd,
                    cmdline: hashes::cmdline_hash(self.cmdline.as_deref()),
                })
            }
        };
        Ok(SnpParams {
            hashes,
            vcpus: self.vcpus,
            vcpu_sig,
            guest_features: self.guest_features,
            vmm_type: self.vmm_type,
        })
    }

    /// Computes the launch digest. The firmware pages and the direct-boot files are
    /// hashed on two threads.
    pub fn digest(&self) -> Result<LaunchDigest, MeasureError> {
        std::thread::scope(|s| {
            // Without a kernel there is nothing to hash beside the firmware.
            let params = self.kernel.is_some().then(|| s.spawn(|| self.params()));
            let fw = FirmwareImage::map("firmware", &self.ovmf).and_then(SevFirmware::parse);
            let ctx = fw.as_ref().ok().map(firmware_context);
            let params = match params {
                Some(p) => p
                    .join()
                    .map_err(|_| MeasureError::InvalidInput("hashing thread panicked".into()))??,
                None => self.params()?,
            };
            let fw = fw?;
            launch_digest_after_firmware(ctx.unwrap_or_default(), &fw, &params)
        })
    }
}

/// SHA-256 of a file, streamed, and its length.
pub(crate) fn sha256_file(
    what: &'static str,
    path: &Path,
) -> Result<([u8; 32], u64), MeasureError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| MeasureError::io(what, path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| MeasureError::io(what, path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finalize().into(), len))
}

/// The launch digest of `firmware` booted with `params`.
pub fn launch_digest(
    firmware: &SevFirmware,
    params: &SnpParams,
) -> Result<LaunchDigest, MeasureError> {
    let mut ctx = GuestContext::new();
    ctx.update_normal_pages(firmware.gpa, &firmware.image);
    launch_digest_after_firmware(ctx, firmware, params)
}

/// Continues from a context that already holds the firmware pages (see
/// [`firmware_context`]); lets callers that try many variants hash the firmware once.
pub fn launch_digest_after_firmware(
    mut ctx: GuestContext,
    firmware: &SevFirmware,
    params: &SnpParams,
) -> Result<LaunchDigest, MeasureError> {
    if params.vcpus == 0 {
        return Err(MeasureError::InvalidInput(
            "vCPU count must be at least 1".into(),
        ));
    }
    let ap_eip = firmware.sev_es_reset_eip.ok_or_else(|| {
        MeasureError::Firmware(
            "no SEV-ES reset block (00f771de-1a7e-4fcb-890e-68c77e2fb44e) in the OVMF footer table"
                .to_string(),
        )
    })?;
    if params.hashes.is_some() && !firmware.has_section(SectionType::SnpKernelHashes) {
        return Err(MeasureError::Firmware(
            "a kernel was given but the firmware's SEV metadata has no SNP_KERNEL_HASHES section \
             (measured direct boot needs an AmdSev build)"
                .to_string(),
        ));
    }
    for s in &firmware.sections {
        match s.kind {
            SectionType::SnpSecMem => {
                let t = if params.vmm_type == VmmType::Gce {
                    PageType::Unmeasured
                } else {
                    PageType::Zero
                };
                ctx.update_empty_pages(t, s.gpa, s.size);
            }
            SectionType::SnpSecrets => ctx.update_secrets_page(s.gpa),
            SectionType::Cpuid => {
                if params.vmm_type != VmmType::Ec2 {
                    ctx.update_cpuid_page(s.gpa);
                }
            }
            SectionType::SvsmCaa => ctx.update_empty_pages(PageType::Zero, s.gpa, s.size),
            SectionType::SnpKernelHashes => match &params.hashes {
                None => ctx.update_empty_pages(PageType::Zero, s.gpa, s.size),
                Some(h) => {
                    let table_gpa = firmware.hashes_table_gpa.ok_or_else(|| {
                        MeasureError::Firmware(
                            "no SEV hashes table entry (7255371f-3a3b-4b04-927b-1da6efa8d454) in the OVMF footer table".into(),
                        )
                    })?;
                    if s.size != ovmf::PAGE {
                        return Err(MeasureError::Firmware(format!(
                            "SNP_KERNEL_HASHES section is {:#x} bytes, expected one page",
                            s.size
                        )));
                    }
                    let offset = (table_gpa & 0xfff) as usize;
                    let page = h.page(offset).ok_or_else(|| {
                        MeasureError::Firmware(format!(
                            "SEV hashes table at {table_gpa:#x} does not fit in its page"
                        ))
                    })?;
                    ctx.update_normal_pages(s.gpa, &page);
                }
            },
        }
    }
    if params.vmm_type == VmmType::Ec2 {
        for s in firmware
            .sections
            .iter()
            .filter(|s| s.kind == SectionType::Cpuid)
        {
            ctx.update_cpuid_page(s.gpa);
        }
    }
    let bsp = vmsa::save_area(
        vmsa::BSP_EIP,
        params.guest_features,
        params.vcpu_sig,
        params.vmm_type,
    );
    ctx.update_vmsa_page(&bsp);
    if params.vcpus > 1 {
        if ap_eip == 0 {
            return Err(MeasureError::Firmware(
                "the SEV-ES reset block gives AP reset EIP 0: the firmware cannot start more than one vCPU"
                    .to_string(),
            ));
        }
        let ap = vmsa::save_area(
            ap_eip,
            params.guest_features,
            params.vcpu_sig,
            params.vmm_type,
        );
        for _ in 1..params.vcpus {
            ctx.update_vmsa_page(&ap);
        }
    }
    Ok(LaunchDigest(ctx.digest()))
}

/// A context holding only the firmware pages: the "OVMF hash" of `sev-snp-measure
/// --mode snp:ovmf-hash`.
pub fn firmware_context(firmware: &SevFirmware) -> GuestContext {
    let mut ctx = GuestContext::new();
    ctx.update_normal_pages(firmware.gpa, &firmware.image);
    ctx
}
