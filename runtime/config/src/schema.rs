//! The TOML schema of one runtime class and its validation rules.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, OverridableKey};

/// A whole runtime-class configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeClassConfig {
    /// `[runtime]`: class-wide settings.
    pub runtime: RuntimeSection,
    /// `[hypervisor.qemu]`: how the VM is built.
    pub hypervisor: HypervisorSection,
    /// `[agent]`: how the runtime reaches the guest agent.
    pub agent: AgentSection,
    /// `[network]`: restricted guest networking to host loopback; none without the section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::NetworkSection>,
}

/// `[runtime]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// RuntimeClass handler name, e.g. `kata-qemu-coco-dev`.
    pub class: String,
    /// Annotation keys (short names, Kata style) pods may override.
    #[serde(default)]
    pub enable_annotations: Vec<String>,
    /// Directory for per-sandbox state (sockets, pidfiles, console log).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

/// `[hypervisor]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorSection {
    /// `[hypervisor.qemu]`.
    pub qemu: QemuConfig,
}

/// Which confidential-computing technology protects the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// No TEE: the `coco-dev` class, for development and tests.
    None,
    /// Intel TDX.
    Tdx,
    /// AMD SEV-SNP.
    Snp,
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    /// KVM when the host can really boot a standard guest with it, TCG otherwise.
    Auto,
    /// Always KVM (fails when unavailable).
    Kvm,
    /// Always TCG (software emulation).
    Tcg,
}

/// QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineType {
    /// `microvm`: virtio-mmio only, fastest boot; no TEE support.
    Microvm,
    /// `q35`: PCI machine, required for TDX and SNP.
    Q35,
}

/// `[hypervisor.qemu]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    /// Path of the QEMU binary.
    pub path: PathBuf,
    /// Guest kernel (uncompressed `vmlinux` for microvm, bzImage for q35).
    pub kernel: PathBuf,
    /// Guest initramfs (holds the agent as `/init`).
    pub initrd: PathBuf,
    /// Firmware image (TDVF for TDX, AMD SEV OVMF for SNP); none for direct kernel boot.
    #[serde(default)]
    pub firmware: Option<PathBuf>,
    /// Machine type.
    pub machine_type: MachineType,
    /// Accelerator choice.
    #[serde(default = "default_accel")]
    pub accel: Accel,
    /// Extra kernel command-line parameters appended after Cocoon's own.
    #[serde(default)]
    pub kernel_params: String,
    /// vCPUs of a sandbox VM.
    #[serde(default = "default_vcpus")]
    pub default_vcpus: u32,
    /// Memory of a sandbox VM, MiB.
    #[serde(default = "default_memory")]
    pub default_memory: u32,
    /// Confidential-computing technology.
    pub tee: Tee,
    /// `[hypervisor.qemu.snp]`, required when `tee = "snp"`.
    #[serde(default)]
    pub snp: Option<SnpConfig>,
    /// `[hypervisor.qemu.tdx]`, required when `tee = "tdx"`.
    #[serde(default)]
    pub tdx: Option<TdxConfig>,
}

/// SEV-SNP launch parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpConfig {
    /// C-bit position (CPUID 0x8000001F EBX[5:0]); 51 on Milan/Genoa.
    #[serde(default = "default_cbitpos")]
    pub cbitpos: u32,
    /// Physical address bits lost to encryption.
    #[serde(default = "default_reduced_phys_bits")]
    pub reduced_phys_bits: u32,
    /// Guest policy (0x30000: SMT allowed, reserved bit 17 set, debug off).
    #[serde(default = "default_snp_policy")]
    pub policy: u64,
    /// Measure kernel, initrd and command line into the launch digest.
    #[serde(default = "default_true")]
    pub kernel_hashes: bool,
    /// QEMU `-cpu` model; also an input of the VMSA measurement.
    #[serde(default = "default_snp_cpu")]
    pub cpu_model: String,
}

/// TDX launch parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxConfig {
    /// Unix socket of the host quote generation service (QGS).
    #[serde(default = "default_qgs_socket")]
    pub quote_generation_socket: PathBuf,
}

/// How the runtime talks to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentChannel {
    /// `vhost-vsock` when `/dev/vhost-vsock` exists, hybrid vsock otherwise.
    Auto,
    /// Kernel vhost-vsock (`vhost-vsock-pci` / `-device`).
    VhostVsock,
    /// vhost-user vsock device served by `vhost-device-vsock` (Unix socket, `CONNECT` protocol).
    HybridVsock,
}

/// `[agent]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Channel choice.
    #[serde(default = "default_channel")]
    pub channel: AgentChannel,
    /// vsock port the agent listens on.
    #[serde(default = "default_agent_port")]
    pub port: u32,
    /// Path of the `vhost-device-vsock` backend binary (hybrid vsock).
    #[serde(default = "default_vsock_backend")]
    pub vhost_user_vsock_backend: PathBuf,
    /// Seconds to wait for the agent to answer Health.Check after QEMU starts.
    #[serde(default = "default_dial_timeout")]
    pub dial_timeout_secs: u32,
    /// Let the agent log at debug level (`agent.log=debug`).
    #[serde(default)]
    pub debug: bool,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/run/cocoon")
}
fn default_accel() -> Accel {
    Accel::Auto
}
fn default_vcpus() -> u32 {
    1
}
fn default_memory() -> u32 {
    512
}
fn default_cbitpos() -> u32 {
    51
}
fn default_reduced_phys_bits() -> u32 {
    1
}
fn default_snp_policy() -> u64 {
    0x30000
}
fn default_true() -> bool {
    true
}
fn default_snp_cpu() -> String {
    "EPYC-v4".to_string()
}
fn default_qgs_socket() -> PathBuf {
    PathBuf::from("/var/run/tdx-qgs/qgs.socket")
}
fn default_channel() -> AgentChannel {
    AgentChannel::Auto
}
fn default_agent_port() -> u32 {
    1024
}
fn default_vsock_backend() -> PathBuf {
    PathBuf::from("/opt/cocoon/bin/vhost-device-vsock")
}
fn default_dial_timeout() -> u32 {
    45
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn require_absolute(field: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{} must be an absolute path", path.display()),
        ))
    }
}

impl RuntimeClassConfig {
    /// Checks ranges and cross-field rules; called by every loader.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config_file_for_class(&self.runtime.class)?;
        require_absolute("runtime.state_dir", &self.runtime.state_dir)?;
        for key in &self.runtime.enable_annotations {
            if OverridableKey::from_short_name(key).is_none() {
                return Err(invalid(
                    "runtime.enable_annotations",
                    format!(
                        "{key:?} cannot be enabled: only {} may be overridden by pods",
                        OverridableKey::ALL
                            .iter()
                            .map(|k| k.short_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        self.hypervisor.qemu.validate()?;
        self.agent.validate()?;
        if let Some(net) = &self.network {
            net.validate()?;
        }
        let expected_tee = match self.runtime.class.as_str() {
            "kata-qemu-tdx" => Tee::Tdx,
            "kata-qemu-snp" => Tee::Snp,
            _ => Tee::None,
        };
        if self.hypervisor.qemu.tee != expected_tee {
            return Err(invalid(
                "hypervisor.qemu.tee",
                format!(
                    "class {} needs tee = {expected_tee:?}, found {:?}",
                    self.runtime.class, self.hypervisor.qemu.tee
                ),
            ));
        }
        Ok(())
    }
}

impl QemuConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        require_absolute("hypervisor.qemu.path", &self.path)?;
        require_absolute("hypervisor.qemu.kernel", &self.kernel)?;
        require_absolute("hypervisor.qemu.initrd", &self.initrd)?;
        if let Some(fw) = &self.firmware {
            require_absolute("hypervisor.qemu.firmware", fw)?;
        }
        validate_vcpus(self.default_vcpus)?;
        validate_memory(self.default_memory)?;
        validate_kernel_params(&self.kernel_params)?;
        match self.tee {
            Tee::None => {
                if self.snp.is_some() || self.tdx.is_some() {
                    return Err(invalid(
                        "hypervisor.qemu",
                        "snp/tdx sections are only valid with tee = \"snp\"/\"tdx\"",
                    ));
                }
            }
            Tee::Snp | Tee::Tdx => {
                if self.machine_type != MachineType::Q35 {
                    return Err(invalid(
                        "hypervisor.qemu.machine_type",
                        "TDX and SNP guests need machine_type = \"q35\"",
                    ));
                }
                if self.firmware.is_none() {
                    return Err(invalid(
                        "hypervisor.qemu.firmware",
                        "TDX and SNP guests boot through firmware (TDVF / AMD SEV OVMF)",
                    ));
                }
                if self.accel == Accel::Tcg {
                    return Err(invalid(
                        "hypervisor.qemu.accel",
                        "TDX and SNP need KVM; TCG cannot run a confidential guest",
                    ));
                }
                let has_section = match self.tee {
                    Tee::Snp => self.snp.is_some() && self.tdx.is_none(),
                    _ => self.tdx.is_some() && self.snp.is_none(),
                };
                if !has_section {
                    return Err(invalid(
                        "hypervisor.qemu",
                        format!(
                            "tee = {:?} needs exactly its own [hypervisor.qemu.{}] section",
                            self.tee,
                            if self.tee == Tee::Snp { "snp" } else { "tdx" }
                        ),
                    ));
                }
            }
        }
        if let Some(snp) = &self.snp {
            if !(32..=63).contains(&snp.cbitpos) {
                return Err(invalid("hypervisor.qemu.snp.cbitpos", "must be 32..=63"));
            }
            if snp.reduced_phys_bits == 0 || snp.reduced_phys_bits > 63 {
                return Err(invalid(
                    "hypervisor.qemu.snp.reduced_phys_bits",
                    "must be 1..=63",
                ));
            }
            if snp.policy & (1 << 17) == 0 {
                return Err(invalid(
                    "hypervisor.qemu.snp.policy",
                    "bit 17 (reserved, must be one) is clear",
                ));
            }
            if snp.policy & (1 << 19) != 0 {
                return Err(invalid(
                    "hypervisor.qemu.snp.policy",
                    "debug (bit 19) must not be allowed in a confidential runtime class",
                ));
            }
            if snp.cpu_model.is_empty() || !snp.cpu_model.chars().all(is_qemu_name_char) {
                return Err(invalid(
                    "hypervisor.qemu.snp.cpu_model",
                    "not a CPU model name",
                ));
            }
        }
        if let Some(tdx) = &self.tdx {
            require_absolute(
                "hypervisor.qemu.tdx.quote_generation_socket",
                &tdx.quote_generation_socket,
            )?;
        }
        Ok(())
    }
}

impl AgentSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.port == 0 || self.port == u32::MAX {
            return Err(invalid("agent.port", "must be a vsock port number"));
        }
        require_absolute(
            "agent.vhost_user_vsock_backend",
            &self.vhost_user_vsock_backend,
        )?;
        if !(1..=600).contains(&self.dial_timeout_secs) {
            return Err(invalid("agent.dial_timeout_secs", "must be 1..=600"));
        }
        Ok(())
    }
}

fn is_qemu_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Range check shared by the config file and the `default_vcpus` annotation.
pub(crate) fn validate_vcpus(n: u32) -> Result<(), ConfigError> {
    if (1..=256).contains(&n) {
        Ok(())
    } else {
        Err(invalid(
            "hypervisor.qemu.default_vcpus",
            format!("{n} is not in 1..=256"),
        ))
    }
}

/// Range check shared by the config file and the `default_memory` annotation.
pub(crate) fn validate_memory(mib: u32) -> Result<(), ConfigError> {
    if (128..=1024 * 1024).contains(&mib) {
        Ok(())
    } else {
        Err(invalid(
            "hypervisor.qemu.default_memory",
            format!("{mib} MiB is not in 128..=1048576"),
        ))
    }
}

/// Kernel parameters must not smuggle control characters or redefine the agent's
/// channel: they end up on the guest command line verbatim.
pub(crate) fn validate_kernel_params(params: &str) -> Result<(), ConfigError> {
    if params.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "hypervisor.qemu.kernel_params",
            "control characters are not allowed",
        ));
    }
    if let Some(bad) = params.split_whitespace().find(|p| {
        p.starts_with("agent.server_addr=") || p.starts_with("init=") || p.starts_with("rdinit=")
    }) {
        return Err(invalid(
            "hypervisor.qemu.kernel_params",
            format!("{bad:?} is set by the runtime and cannot be overridden"),
        ));
    }
    Ok(())
}
