//! Pure QEMU command-line builder: a [`VmSpec`] in, an argv out. No I/O.
//!
//! Every runtime class goes through [`build_argv`], and the measured-boot tooling reads the
//! launch inputs (firmware, kernel, initrd, command line, vCPUs) from the same [`VmSpec`], so
//! the VM that boots and the reference values cannot disagree.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use runtime_config::MachineType;

/// Which accelerator the VM runs on (already resolved from `accel = "auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelKind {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// TEE-specific launch parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeeLaunch {
    /// No TEE (coco-dev).
    None,
    /// AMD SEV-SNP.
    Snp {
        /// C-bit position.
        cbitpos: u32,
        /// Reduced physical address bits.
        reduced_phys_bits: u32,
        /// Guest policy.
        policy: u64,
        /// Measure kernel/initrd/cmdline hashes into the launch digest.
        kernel_hashes: bool,
        /// HOST_DATA (initdata digest), 32 bytes.
        host_data: Option<[u8; 32]>,
        /// `-cpu` model.
        cpu_model: String,
    },
    /// Intel TDX.
    Tdx {
        /// MRCONFIGID (initdata digest), 48 bytes.
        mrconfigid: Option<[u8; 48]>,
        /// Host quote generation service socket.
        quote_generation_socket: PathBuf,
    },
}

/// The device through which the runtime reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentDevice {
    /// Kernel vhost-vsock with this guest CID.
    VhostVsock {
        /// Guest context ID (≥ 3, unique on the host).
        guest_cid: u32,
    },
    /// No agent channel: bare boots (benchmark reference).
    None,
    /// vhost-user vsock: QEMU connects to the backend's control socket.
    HybridVsock {
        /// The `--socket` of `vhost-device-vsock`.
        backend_socket: PathBuf,
    },
}

/// One guest TCP port forwarded to a port on host loopback (QEMU `guestfwd` with `cmd:`,
/// which opens a new host connection per guest connection; the `tcp:` form is single-shot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestForward {
    /// Address the guest connects to (inside QEMU's user network, e.g. 10.0.2.100).
    pub guest_addr: Ipv4Addr,
    /// Port the guest connects to.
    pub guest_port: u16,
    /// Port on host 127.0.0.1 it reaches. The host address is always loopback.
    pub host_port: u16,
}

/// Restricted user networking (`restrict=on`: the guest reaches nothing but the forwards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNetwork {
    /// Forwards to host loopback.
    pub forwards: Vec<GuestForward>,
    /// Program used to relay a forwarded connection (`busybox` with its `nc` applet).
    pub relay_busybox: PathBuf,
}

impl UserNetwork {
    /// The restricted network of a runtime class's validated `[network]` section (every
    /// forward reaches host loopback; the section's validation refused anything else).
    pub fn from_config(net: &runtime_config::NetworkSection) -> Self {
        UserNetwork {
            forwards: net
                .forwards
                .iter()
                .map(|f| GuestForward {
                    guest_addr: *f.guest.ip(),
                    guest_port: f.guest.port(),
                    host_port: f.host.port(),
                })
                .collect(),
            relay_busybox: net.relay_busybox.clone(),
        }
    }
}

/// Everything that decides a QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// VM name (shown by QEMU in process lists and QMP).
    pub name: String,
    /// Machine type.
    pub machine: MachineType,
    /// Accelerator.
    pub accel: AccelKind,
    /// TEE parameters.
    pub tee: TeeLaunch,
    /// vCPU count.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Firmware (TDX/SNP).
    pub firmware: Option<PathBuf>,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Full kernel command line.
    pub cmdline: String,
    /// Agent channel device.
    pub agent: AgentDevice,
    /// QMP control socket (QEMU listens).
    pub qmp_socket: PathBuf,
    /// Serial console output file.
    pub console_log: PathBuf,
    /// QEMU pidfile.
    pub pidfile: PathBuf,
    /// Optional restricted network.
    pub network: Option<UserNetwork>,
    /// Optional raw disk image attached read-only as virtio-blk (initdata).
    pub initdata_disk: Option<PathBuf>,
}

/// A [`VmSpec`] that QEMU would refuse or that would break the sandbox's guarantees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgvError {
    /// Inconsistent combination of settings.
    #[error("cannot build the QEMU command line: {0}")]
    Invalid(String),
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Escapes a value for QEMU's `key=value,key=value` option syntax (a comma is doubled).
pub fn qemu_opt_escape(value: &str) -> String {
    value.replace(',', ",,")
}

impl VmSpec {
    fn is_microvm(&self) -> bool {
        self.machine == MachineType::Microvm
    }

    /// Picks the virtio transport suffix: `-device` (mmio) on microvm, `-pci` on q35.
    fn virtio(&self, base: &str) -> String {
        if self.is_microvm() {
            format!("{base}-device")
        } else {
            format!("{base}-pci")
        }
    }

    fn check(&self) -> Result<(), ArgvError> {
        let bad = |m: &str| Err(ArgvError::Invalid(m.to_string()));
        if self.vcpus == 0 || self.memory_mib == 0 {
            return bad("vcpus and memory must be positive");
        }
        let tee = !matches!(self.tee, TeeLaunch::None);
        if tee {
            if self.is_microvm() {
                return bad("a TDX/SNP guest needs the q35 machine");
            }
            if self.accel != AccelKind::Kvm {
                return bad("a TDX/SNP guest needs KVM");
            }
            if self.firmware.is_none() {
                return bad("a TDX/SNP guest needs firmware");
            }
            if matches!(self.agent, AgentDevice::HybridVsock { .. }) {
                return bad(
                    "hybrid vsock shares guest memory with a host process; a TEE guest must use vhost-vsock",
                );
            }
        }
        if let AgentDevice::VhostVsock { guest_cid } = self.agent
            && guest_cid < 3
        {
            return bad("guest CID must be 3 or more");
        }
        if self.cmdline.contains('\n') {
            return bad("the kernel command line must be one line");
        }
        Ok(())
    }
}

/// Builds the QEMU argv (without the program name) for `spec`.
pub fn build_argv(spec: &VmSpec) -> Result<Vec<String>, ArgvError> {
    spec.check()?;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-name", &spec.name]);
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);

    // Memory: vhost-user needs guest RAM in a shareable memfd; TEEs use private RAM.
    let mem = format!("{}M", spec.memory_mib);
    let backend = match (&spec.agent, &spec.tee) {
        (AgentDevice::HybridVsock { .. }, _) => {
            format!("memory-backend-memfd,id=mem0,size={mem},share=on")
        }
        (_, TeeLaunch::Snp { .. }) => {
            format!("memory-backend-memfd,id=mem0,size={mem},share=on,prealloc=off")
        }
        _ => format!("memory-backend-ram,id=mem0,size={mem}"),
    };
    push(&["-m", &mem, "-object", &backend]);

    let accel = match spec.accel {
        AccelKind::Kvm => "kvm",
        AccelKind::Tcg => "tcg",
    };
    let machine = match (&spec.machine, &spec.tee) {
        (MachineType::Microvm, _) => {
            format!("microvm,accel={accel},memory-backend=mem0")
        }
        (MachineType::Q35, TeeLaunch::None) => format!("q35,accel={accel},memory-backend=mem0"),
        (MachineType::Q35, TeeLaunch::Snp { .. }) => {
            format!("q35,accel={accel},memory-backend=mem0,confidential-guest-support=snp0")
        }
        (MachineType::Q35, TeeLaunch::Tdx { .. }) => format!(
            "q35,accel={accel},memory-backend=mem0,kernel-irqchip=split,confidential-guest-support=tdx0"
        ),
    };
    push(&["-machine", &machine]);

    // TCG keeps QEMU's default CPU model: `max` adds features (e.g. 5-level paging) that
    // only slow emulation down.
    let cpu = match (&spec.tee, spec.accel) {
        (TeeLaunch::Snp { cpu_model, .. }, _) => Some(cpu_model.as_str()),
        (_, AccelKind::Kvm) => Some("host"),
        (_, AccelKind::Tcg) => None,
    };
    if let Some(cpu) = cpu {
        push(&["-cpu", cpu]);
    }
    push(&["-smp", &spec.vcpus.to_string()]);

    match &spec.tee {
        TeeLaunch::None => {}
        TeeLaunch::Snp {
            cbitpos,
            reduced_phys_bits,
            policy,
            kernel_hashes,
            host_data,
            ..
        } => {
            let mut obj = format!(
                "sev-snp-guest,id=snp0,cbitpos={cbitpos},reduced-phys-bits={reduced_phys_bits},policy={policy:#x},kernel-hashes={}",
                if *kernel_hashes { "on" } else { "off" }
            );
            if let Some(hd) = host_data {
                obj.push_str(&format!(",host-data={}", B64.encode(hd)));
            }
            push(&["-object", &obj]);
        }
        TeeLaunch::Tdx {
            mrconfigid,
            quote_generation_socket,
        } => {
            // Written key by key: serde_json's map order depends on crate features
            // (preserve_order) elsewhere in the build, and the argv must be stable.
            let q = |v: &str| serde_json::Value::from(v).to_string();
            let mut obj = String::from(r#"{"qom-type":"tdx-guest","id":"tdx0""#);
            if let Some(id) = mrconfigid {
                obj.push_str(&format!(r#","mrconfigid":{}"#, q(&B64.encode(id))));
            }
            obj.push_str(&format!(
                r#","quote-generation-socket":{{"type":"unix","path":{}}}}}"#,
                q(&path(quote_generation_socket))
            ));
            push(&["-object", &obj.to_string()]);
        }
    }

    if let Some(fw) = &spec.firmware {
        push(&["-bios", &path(fw)]);
    }
    push(&[
        "-kernel",
        &path(&spec.kernel),
        "-initrd",
        &path(&spec.initrd),
    ]);
    push(&["-append", &spec.cmdline]);

    // Console, control socket, pidfile.
    push(&["-serial", &format!("file:{}", path(&spec.console_log))]);
    let qmp = format!(
        "socket,id=qmp0,path={},server=on,wait=off",
        qemu_opt_escape(&path(&spec.qmp_socket))
    );
    push(&["-chardev", &qmp, "-mon", "chardev=qmp0,mode=control"]);
    push(&["-pidfile", &path(&spec.pidfile)]);

    let agent_dev = match &spec.agent {
        AgentDevice::VhostVsock { guest_cid } => Some(format!(
            "{},id=vsock0,guest-cid={guest_cid}",
            spec.virtio("vhost-vsock")
        )),
        AgentDevice::HybridVsock { backend_socket } => {
            let chardev = format!(
                "socket,id=vsockchr0,path={}",
                qemu_opt_escape(&path(backend_socket))
            );
            push(&["-chardev", &chardev]);
            Some(format!(
                "{},id=vsock0,chardev=vsockchr0",
                spec.virtio("vhost-user-vsock")
            ))
        }
        AgentDevice::None => None,
    };
    if let Some(dev) = agent_dev {
        push(&["-device", &dev]);
    }

    if let Some(net) = &spec.network {
        let mut netdev = String::from("user,id=net0,restrict=on,ipv6=off");
        for f in &net.forwards {
            let cmd = format!("{} nc 127.0.0.1 {}", path(&net.relay_busybox), f.host_port);
            netdev.push_str(&format!(
                ",guestfwd=tcp:{}:{}-cmd:{}",
                f.guest_addr,
                f.guest_port,
                qemu_opt_escape(&cmd)
            ));
        }
        push(&["-netdev", &netdev]);
        push(&[
            "-device",
            &format!("{},netdev=net0", spec.virtio("virtio-net")),
        ]);
    }

    if let Some(disk) = &spec.initdata_disk {
        let drive = format!(
            "file={},if=none,id=initdata0,format=raw,readonly=on",
            qemu_opt_escape(&path(disk))
        );
        push(&["-drive", &drive]);
        push(&[
            "-device",
            &format!("{},drive=initdata0", spec.virtio("virtio-blk")),
        ]);
    }
    Ok(a)
}
