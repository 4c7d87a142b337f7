//! Golden argv per runtime class. `UPDATE_GOLDEN=1 cargo test -p runtime-qemu` rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use runtime_config::{MachineType, RuntimeClassConfig};
use runtime_qemu::argv::*;
use runtime_qemu::sandbox::kernel_cmdline;

fn class(file: &str) -> RuntimeClassConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/configs")
        .join(file);
    RuntimeClassConfig::load(&p).unwrap()
}

fn spec(cfg: &RuntimeClassConfig, accel: AccelKind, agent: AgentDevice, tee: TeeLaunch) -> VmSpec {
    let q = &cfg.hypervisor.qemu;
    let d = PathBuf::from("/run/cocoon/pod1");
    VmSpec {
        qemu: q.path.clone(),
        name: "cocoon-pod1".into(),
        machine: q.machine_type,
        accel,
        tee,
        vcpus: q.default_vcpus,
        memory_mib: q.default_memory,
        firmware: q.firmware.clone(),
        kernel: q.kernel.clone(),
        initrd: q.initrd.clone(),
        cmdline: kernel_cmdline(cfg, accel, Some(2_000_000)),
        agent,
        qmp_socket: d.join("qmp.sock"),
        console_log: d.join("console.log"),
        pidfile: d.join("qemu.pid"),
        network: None,
        initdata_disk: None,
    }
}

fn check_golden(name: &str, argv: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.args"));
    let text = argv.join("\n") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert_eq!(
        text,
        want,
        "argv for {name} differs from {}",
        path.display()
    );
}

#[test]
fn coco_dev_microvm_hybrid_vsock_with_network() {
    let cfg = class("configuration-qemu-coco-dev.toml");
    let mut s = spec(
        &cfg,
        AccelKind::Tcg,
        AgentDevice::HybridVsock {
            backend_socket: "/run/cocoon/pod1/vhost-user-vsock.sock".into(),
        },
        TeeLaunch::None,
    );
    s.network = Some(UserNetwork {
        forwards: vec![GuestForward {
            guest_addr: Ipv4Addr::new(10, 0, 2, 100),
            guest_port: 5000,
            host_port: 5055,
        }],
        relay_busybox: "/bin/busybox".into(),
    });
    let argv = build_argv(&s).unwrap();
    check_golden("coco-dev-microvm-hybrid", &argv);
    // Properties that must hold whatever the golden file says.
    let netdev = argv.iter().find(|a| a.starts_with("user,")).unwrap();
    assert!(netdev.contains("restrict=on"));
    assert!(netdev.contains("-cmd:/bin/busybox nc 127.0.0.1 5055"));
    assert!(
        argv.iter().any(|a| a.contains("share=on")),
        "vhost-user needs shared memory"
    );
}

#[test]
fn coco_dev_q35_vhost_vsock() {
    let mut cfg = class("configuration-qemu-coco-dev.toml");
    cfg.hypervisor.qemu.machine_type = MachineType::Q35;
    cfg.hypervisor.qemu.kernel = "/opt/cocoon/share/guest/vmlinuz".into();
    let s = spec(
        &cfg,
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 42 },
        TeeLaunch::None,
    );
    let argv = build_argv(&s).unwrap();
    check_golden("coco-dev-q35-vhost-vsock", &argv);
    assert!(argv.contains(&"vhost-vsock-pci,id=vsock0,guest-cid=42".to_string()));
}

#[test]
fn snp_argv_shape() {
    let cfg = class("configuration-qemu-snp.toml");
    let snp = cfg.hypervisor.qemu.snp.clone().unwrap();
    let s = spec(
        &cfg,
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 7 },
        TeeLaunch::Snp {
            cbitpos: snp.cbitpos,
            reduced_phys_bits: snp.reduced_phys_bits,
            policy: snp.policy,
            kernel_hashes: snp.kernel_hashes,
            host_data: Some([0xab; 32]),
            cpu_model: snp.cpu_model,
        },
    );
    let argv = build_argv(&s).unwrap();
    check_golden("snp", &argv);
    let obj = argv
        .iter()
        .find(|a| a.starts_with("sev-snp-guest"))
        .unwrap();
    assert!(obj.contains("kernel-hashes=on") && obj.contains("policy=0x30000"));
    assert!(
        obj.contains("host-data=q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="),
        "{obj}"
    );
    assert!(
        argv.iter()
            .any(|a| a.contains("confidential-guest-support=snp0"))
    );
    assert!(
        argv.windows(2)
            .any(|w| w[0] == "-bios" && w[1].ends_with("AMDSEV.fd"))
    );
}

#[test]
fn tdx_argv_shape() {
    let cfg = class("configuration-qemu-tdx.toml");
    let s = spec(
        &cfg,
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 9 },
        TeeLaunch::Tdx {
            mrconfigid: Some([1; 48]),
            quote_generation_socket: "/var/run/tdx-qgs/qgs.socket".into(),
        },
    );
    let argv = build_argv(&s).unwrap();
    check_golden("tdx", &argv);
    let obj = argv.iter().find(|a| a.contains("tdx-guest")).unwrap();
    let v: serde_json::Value = serde_json::from_str(obj).unwrap();
    assert_eq!(v["qom-type"], "tdx-guest");
    assert_eq!(
        v["mrconfigid"].as_str().unwrap().len(),
        64,
        "48 bytes in base64"
    );
    assert_eq!(v["quote-generation-socket"]["type"], "unix");
    assert!(argv.iter().any(|a| a.contains("kernel-irqchip=split")));
}

#[test]
fn tee_refuses_hybrid_vsock_and_tcg() {
    let cfg = class("configuration-qemu-snp.toml");
    let snp = cfg.hypervisor.qemu.snp.clone().unwrap();
    let tee = TeeLaunch::Snp {
        cbitpos: 51,
        reduced_phys_bits: 1,
        policy: snp.policy,
        kernel_hashes: true,
        host_data: None,
        cpu_model: "EPYC-v4".into(),
    };
    let s = spec(
        &cfg,
        AccelKind::Kvm,
        AgentDevice::HybridVsock {
            backend_socket: "/x".into(),
        },
        tee.clone(),
    );
    assert!(
        build_argv(&s)
            .unwrap_err()
            .to_string()
            .contains("vhost-vsock")
    );
    let s = spec(
        &cfg,
        AccelKind::Tcg,
        AgentDevice::VhostVsock { guest_cid: 3 },
        tee,
    );
    assert!(build_argv(&s).unwrap_err().to_string().contains("KVM"));
}

#[test]
fn commas_in_paths_are_escaped() {
    let cfg = class("configuration-qemu-coco-dev.toml");
    let mut s = spec(
        &cfg,
        AccelKind::Tcg,
        AgentDevice::HybridVsock {
            backend_socket: "/tmp/a,b/ctl.sock".into(),
        },
        TeeLaunch::None,
    );
    s.qmp_socket = "/tmp/a,server=off/q.sock".into();
    let argv = build_argv(&s).unwrap();
    assert!(argv.contains(&"socket,id=vsockchr0,path=/tmp/a,,b/ctl.sock".to_string()));
    assert!(
        argv.iter()
            .any(|a| a.contains("path=/tmp/a,,server=off/q.sock,server=on"))
    );
}
