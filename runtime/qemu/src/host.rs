//! Host capability probing for `cocoon check` and for resolving `accel = "auto"`.
//!
//! Whether `/dev/kvm` opens says little: on a PVM host (`kvm_pvm`) the KVM API exists but a
//! standard kernel hangs under it, and nested hosts may lack VMX/SVM. KVM counts as usable
//! for standard guests only when the KVM API answers *and* the vendor module is `kvm_intel`
//! or `kvm_amd` with the CPU's VMX/SVM flag present.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// What the host offers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostReport {
    /// `KVM_GET_API_VERSION`, if `/dev/kvm` opened.
    pub kvm_api_version: Option<i32>,
    /// Error opening `/dev/kvm`, if any.
    pub kvm_error: Option<String>,
    /// Which vendor module provides KVM (`kvm_intel`, `kvm_amd`, `kvm_pvm`, ...).
    pub kvm_vendor_module: Option<String>,
    /// CPU advertises VMX or SVM.
    pub cpu_virt_flag: bool,
    /// KVM can boot a standard (non-paravirtualised) kernel.
    pub kvm_usable: bool,
    /// Why KVM is or is not usable.
    pub kvm_reason: String,
    /// `KVM_CAP_VM_TYPES` bitmap when the kernel reports it (bit 4 = SEV-SNP, bit 5 = TDX).
    pub kvm_vm_types: Option<u64>,
    /// Host kernel reports TDX enabled in `kvm_intel`.
    pub tdx_module_enabled: bool,
    /// Host kernel reports SEV-SNP enabled in `kvm_amd`.
    pub snp_module_enabled: bool,
    /// `/dev/sev` present.
    pub dev_sev: bool,
    /// `/dev/vhost-vsock` present.
    pub vhost_vsock: bool,
    /// QEMU version string, if QEMU ran.
    pub qemu_version: Option<String>,
    /// QEMU knows the `tdx-guest` object.
    pub qemu_tdx_guest: bool,
    /// QEMU knows the `sev-snp-guest` object.
    pub qemu_snp_guest: bool,
    /// QEMU knows `vhost-user-vsock-device` (hybrid vsock fallback).
    pub qemu_vhost_user_vsock: bool,
}

/// KVM_CAP_VM_TYPES (Linux 6.10+).
const KVM_CAP_VM_TYPES: u32 = 235;

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn module_flag_enabled(p: &str) -> bool {
    matches!(read_trim(p).as_deref(), Some("Y" | "y" | "1"))
}

/// Reads the CPU flags of the first processor.
fn cpu_has_virt_flag() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

fn kvm_vendor_module() -> Option<String> {
    ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
        .map(String::from)
}

/// Probes KVM with `kvm-ioctls`: API version and VM types.
fn probe_kvm() -> (Option<i32>, Option<String>, Option<u64>) {
    match kvm_ioctls::Kvm::new() {
        Ok(kvm) => {
            let api = kvm.get_api_version();
            let types = kvm.check_extension_raw(u64::from(KVM_CAP_VM_TYPES));
            let types = (types > 0).then_some(types as u64);
            (Some(api), None, types)
        }
        Err(e) => (None, Some(e.to_string()), None),
    }
}

/// Decides whether KVM can run a standard guest, with a reason.
pub fn kvm_verdict(api: Option<i32>, vendor: Option<&str>, cpu_virt_flag: bool) -> (bool, String) {
    match (api, vendor) {
        (None, _) => (false, "/dev/kvm is not usable".into()),
        (Some(_), Some("kvm_pvm")) => (
            false,
            "KVM is provided by kvm_pvm (pagetable-based virtual machine): standard guest kernels hang; using TCG".into(),
        ),
        (Some(_), Some(m @ ("kvm_intel" | "kvm_amd"))) if cpu_virt_flag => {
            (true, format!("KVM via {m}"))
        }
        (Some(_), Some(m)) => (
            false,
            format!("KVM via {m} but the CPU shows no VMX/SVM flag; using TCG"),
        ),
        (Some(_), None) => (false, "KVM API present but no known vendor module; using TCG".into()),
    }
}

fn qemu_probe(qemu: &Path) -> (Option<String>, String, String) {
    let version = Command::new(qemu)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(String::from));
    let objects = Command::new(qemu)
        .args(["-object", "help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let devices = Command::new(qemu)
        .args(["-device", "help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (version, objects, devices)
}

fn lists(help: &str, name: &str) -> bool {
    help.lines().any(|l| {
        let l = l.trim();
        l == name || l.starts_with(&format!("name \"{name}\""))
    })
}

/// Whether KVM can run a standard guest, without running QEMU (for `accel = "auto"`).
pub fn kvm_usable() -> bool {
    let (api, _, _) = probe_kvm();
    kvm_verdict(api, kvm_vendor_module().as_deref(), cpu_has_virt_flag()).0
}

/// Probes the host. Runs QEMU (`--version`, `-object help`, `-device help`); no VM is started.
pub fn probe_host(qemu: &Path) -> HostReport {
    let (api, kvm_error, vm_types) = probe_kvm();
    let vendor = kvm_vendor_module();
    let cpu_virt_flag = cpu_has_virt_flag();
    let (kvm_usable, kvm_reason) = kvm_verdict(api, vendor.as_deref(), cpu_virt_flag);
    let (qemu_version, objects, devices) = qemu_probe(qemu);
    HostReport {
        kvm_api_version: api,
        kvm_error,
        kvm_vendor_module: vendor,
        cpu_virt_flag,
        kvm_usable,
        kvm_reason,
        kvm_vm_types: vm_types,
        tdx_module_enabled: module_flag_enabled("/sys/module/kvm_intel/parameters/tdx"),
        snp_module_enabled: module_flag_enabled("/sys/module/kvm_amd/parameters/sev_snp"),
        dev_sev: Path::new("/dev/sev").exists(),
        vhost_vsock: Path::new("/dev/vhost-vsock").exists(),
        qemu_version,
        qemu_tdx_guest: lists(&objects, "tdx-guest"),
        qemu_snp_guest: lists(&objects, "sev-snp-guest"),
        qemu_vhost_user_vsock: lists(&devices, "vhost-user-vsock-device"),
    }
}

/// One requirement of a runtime class and whether the host meets it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Requirement {
    /// What is needed.
    pub what: String,
    /// Met or not.
    pub ok: bool,
    /// Detail shown to the user.
    pub detail: String,
}

/// Verdict for one runtime class.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClassVerdict {
    /// Runtime class name.
    pub class: String,
    /// All requirements met.
    pub can_run: bool,
    /// Each requirement.
    pub requirements: Vec<Requirement>,
}

fn req(what: &str, ok: bool, detail: impl Into<String>) -> Requirement {
    Requirement {
        what: what.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// Judges whether `cfg`'s class can run on a host described by `host`.
pub fn judge_class(cfg: &runtime_config::RuntimeClassConfig, host: &HostReport) -> ClassVerdict {
    use runtime_config::{Accel, AgentChannel, Tee};
    let q = &cfg.hypervisor.qemu;
    let mut r = Vec::new();
    r.push(req(
        "QEMU",
        host.qemu_version.is_some(),
        host.qemu_version
            .clone()
            .unwrap_or_else(|| format!("{} did not run", q.path.display())),
    ));
    let file = |what: &str, p: &PathBuf| req(what, p.is_file(), format!("{}", p.display()));
    r.push(file("guest kernel", &q.kernel));
    r.push(file("guest initrd", &q.initrd));
    if let Some(fw) = &q.firmware {
        r.push(file("firmware", fw));
    }
    match q.accel {
        Accel::Kvm => r.push(req("KVM", host.kvm_usable, host.kvm_reason.clone())),
        Accel::Auto | Accel::Tcg => r.push(req(
            "accelerator",
            true,
            if host.kvm_usable && q.accel == Accel::Auto {
                host.kvm_reason.clone()
            } else {
                format!("TCG (software emulation). {}", host.kvm_reason)
            },
        )),
    }
    match q.tee {
        Tee::None => {}
        Tee::Tdx => {
            let hw =
                host.tdx_module_enabled || host.kvm_vm_types.is_some_and(|t| t & (1 << 5) != 0);
            r.push(req(
                "TDX in the host kernel",
                hw,
                "kvm_intel tdx=Y or KVM_X86_TDX_VM in KVM_CAP_VM_TYPES",
            ));
            r.push(req(
                "QEMU tdx-guest object",
                host.qemu_tdx_guest,
                "needs QEMU 10.1 or newer",
            ));
        }
        Tee::Snp => {
            let hw =
                host.snp_module_enabled || host.kvm_vm_types.is_some_and(|t| t & (1 << 4) != 0);
            r.push(req(
                "SEV-SNP in the host kernel",
                hw,
                "kvm_amd sev_snp=Y or KVM_X86_SNP_VM in KVM_CAP_VM_TYPES",
            ));
            r.push(req("/dev/sev", host.dev_sev, "AMD secure processor driver"));
            r.push(req(
                "QEMU sev-snp-guest object",
                host.qemu_snp_guest,
                "needs QEMU 9.1 or newer",
            ));
        }
    }
    let channel_ok = match cfg.agent.channel {
        AgentChannel::VhostVsock => host.vhost_vsock,
        AgentChannel::HybridVsock => {
            host.qemu_vhost_user_vsock && cfg.agent.vhost_user_vsock_backend.is_file()
        }
        AgentChannel::Auto => {
            host.vhost_vsock
                || (q.tee == Tee::None
                    && host.qemu_vhost_user_vsock
                    && cfg.agent.vhost_user_vsock_backend.is_file())
        }
    };
    let channel_detail = if host.vhost_vsock {
        "/dev/vhost-vsock".to_string()
    } else {
        format!(
            "no /dev/vhost-vsock; hybrid vsock via {}",
            cfg.agent.vhost_user_vsock_backend.display()
        )
    };
    r.push(req("agent channel", channel_ok, channel_detail));
    ClassVerdict {
        class: cfg.runtime.class.clone(),
        can_run: r.iter().all(|x| x.ok),
        requirements: r,
    }
}
