use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn shipped(class: &str) -> RuntimeClassConfig {
    let file = config_file_for_class(class).unwrap();
    RuntimeClassConfig::load(&configs_dir().join(file)).unwrap()
}

#[test]
fn every_shipped_config_parses_and_matches_its_class() {
    for (class, file) in KNOWN_CLASSES {
        let cfg = RuntimeClassConfig::load(&configs_dir().join(file)).unwrap();
        assert_eq!(cfg.runtime.class, class);
    }
    assert_eq!(shipped("kata-qemu-coco-dev").hypervisor.qemu.tee, Tee::None);
    assert_eq!(shipped("kata-qemu-tdx").hypervisor.qemu.tee, Tee::Tdx);
    let snp = shipped("kata-qemu-snp");
    assert_eq!(snp.hypervisor.qemu.snp.as_ref().unwrap().policy, 0x30000);
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    let text = std::fs::read_to_string(configs_dir().join("configuration-qemu-coco-dev.toml"))
        .unwrap()
        .replace("[agent]", "[agent]\nsocket_path = \"/tmp/x\"");
    let err = RuntimeClassConfig::from_toml_str(&text, "t.toml").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
    assert!(
        msg.contains("socket_path") && msg.contains("t.toml"),
        "{msg}"
    );
}

#[test]
fn malformed_toml_names_the_file() {
    let err = RuntimeClassConfig::from_toml_str("[runtime\nclass=", "bad.toml").unwrap_err();
    assert!(err.to_string().contains("bad.toml"));
}

#[test]
fn unknown_class_is_refused() {
    let err = config_file_for_class("kata-qemu-nope").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownClass(c) if c == "kata-qemu-nope"));
    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.runtime.class = "runc".into();
    assert!(matches!(cfg.validate(), Err(ConfigError::UnknownClass(_))));
}

#[test]
fn cross_field_rules() {
    let mut cfg = shipped("kata-qemu-snp");
    cfg.hypervisor.qemu.machine_type = MachineType::Microvm;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("machine_type")
    );

    let mut cfg = shipped("kata-qemu-snp");
    cfg.hypervisor.qemu.snp.as_mut().unwrap().policy |= 1 << 19;
    assert!(cfg.validate().unwrap_err().to_string().contains("debug"));

    let mut cfg = shipped("kata-qemu-tdx");
    cfg.hypervisor.qemu.firmware = None;
    assert!(cfg.validate().unwrap_err().to_string().contains("firmware"));

    let mut cfg = shipped("kata-qemu-tdx");
    cfg.hypervisor.qemu.tee = Tee::None;
    assert!(cfg.validate().is_err());

    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.hypervisor.qemu.kernel = "vmlinux".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("absolute"));

    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.hypervisor.qemu.default_vcpus = 0;
    assert!(cfg.validate().is_err());

    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.hypervisor.qemu.kernel_params = "quiet init=/bin/sh".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("init="));
}

#[test]
fn enable_annotations_cannot_name_a_path_key() {
    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.runtime.enable_annotations.push("path".into());
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("\"path\" cannot be enabled"), "{err}");
}

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn enabled_annotations_override() {
    let mut cfg = shipped("kata-qemu-coco-dev");
    let out = cfg
        .apply_annotations(&ann(&[
            ("io.katacontainers.config.hypervisor.default_vcpus", "2"),
            ("io.katacontainers.config.hypervisor.default_memory", "1024"),
            (
                "io.katacontainers.config.hypervisor.cc_init_data",
                "H4sIAAAA",
            ),
            ("io.kubernetes.cri.container-type", "sandbox"),
        ]))
        .unwrap();
    assert_eq!(cfg.hypervisor.qemu.default_vcpus, 2);
    assert_eq!(cfg.hypervisor.qemu.default_memory, 1024);
    assert_eq!(out.cc_init_data.as_deref(), Some("H4sIAAAA"));
}

#[test]
fn forbidden_annotations_are_refused() {
    for key in [
        "io.katacontainers.config.hypervisor.path",
        "io.katacontainers.config.hypervisor.kernel",
        "io.katacontainers.config.hypervisor.firmware",
        "io.katacontainers.config.hypervisor.jailer_path",
        // a real overridable key that this class did not enable
        "io.katacontainers.config.hypervisor.kernel_params",
    ] {
        let mut cfg = shipped("kata-qemu-coco-dev");
        let before = cfg.clone();
        let err = cfg
            .apply_annotations(&ann(&[(key, "/tmp/evil")]))
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::AnnotationNotAllowed { key: k } if k == key),
            "{err}"
        );
        assert_eq!(cfg, before, "a refused annotation must not change anything");
    }
}

#[test]
fn annotation_values_are_range_checked() {
    let mut cfg = shipped("kata-qemu-coco-dev");
    let err = cfg
        .apply_annotations(&ann(&[(
            "io.katacontainers.config.hypervisor.default_vcpus",
            "999",
        )]))
        .unwrap_err();
    assert!(matches!(err, ConfigError::AnnotationValue { .. }), "{err}");
    let err = cfg
        .apply_annotations(&ann(&[(
            "io.katacontainers.config.hypervisor.default_memory",
            "lots",
        )]))
        .unwrap_err();
    assert!(err.to_string().contains("not a number"));
}

#[test]
fn kernel_params_annotation_cannot_redirect_the_agent() {
    let mut cfg = shipped("kata-qemu-coco-dev");
    cfg.runtime.enable_annotations.push("kernel_params".into());
    let err = cfg
        .apply_annotations(&ann(&[(
            "io.katacontainers.config.hypervisor.kernel_params",
            "agent.server_addr=unix:///tmp/x",
        )]))
        .unwrap_err();
    assert!(err.to_string().contains("agent.server_addr"), "{err}");
    cfg.apply_annotations(&ann(&[(
        "io.katacontainers.config.hypervisor.kernel_params",
        "loglevel=7",
    )]))
    .unwrap();
    assert!(cfg.hypervisor.qemu.kernel_params.ends_with("loglevel=7"));
}

#[test]
fn find_config_in_directories() {
    let dir = tempfile::tempdir().unwrap();
    let found =
        find_class_config("kata-qemu-tdx", &[dir.path().to_path_buf(), configs_dir()]).unwrap();
    assert_eq!(found, configs_dir().join("configuration-qemu-tdx.toml"));
    let err = find_class_config("kata-qemu-tdx", &[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.to_string().contains("configuration-qemu-tdx.toml"));
}

fn with_network(section: &str) -> Result<RuntimeClassConfig, ConfigError> {
    let text = std::fs::read_to_string(configs_dir().join("configuration-qemu-coco-dev.toml"))
        .unwrap()
        + "\n"
        + section;
    RuntimeClassConfig::from_toml_str(&text, "net.toml")
}

#[test]
fn network_section_parses_forwards_to_loopback() {
    assert_eq!(shipped("kata-qemu-coco-dev").network, None);
    let cfg = with_network(
        "[network]\nforwards = [\n  { guest = \"10.0.2.100:5000\", host = \"127.0.0.1:5055\" },\n  { guest = \"10.0.2.101:8080\", host = \"127.0.0.1:8080\" },\n]\n",
    )
    .unwrap();
    let net = cfg.network.unwrap();
    assert_eq!(net.relay_busybox, PathBuf::from("/bin/busybox"));
    assert_eq!(net.forwards.len(), 2);
    assert_eq!(net.forwards[0].guest, "10.0.2.100:5000".parse().unwrap());
    assert_eq!(net.forwards[0].host.port(), 5055);
    assert_eq!(net.forwards[1].guest.port(), 8080);
}

#[test]
fn network_section_is_strict() {
    // (section, expected substring of the error)
    let cases = [
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:5000\", host = \"192.168.1.1:5055\" }]",
            "not on host loopback",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:5000\", host = \"127.0.0.2:5055\" }]",
            "not on host loopback",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:5000\", host = \"0.0.0.0:5055\" }]",
            "not on host loopback",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:5000\", host = \"127.0.0.1:0\" }]",
            "port 0",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.3.100:5000\", host = \"127.0.0.1:5055\" }]",
            "inside 10.0.2.0/24",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.2:5000\", host = \"127.0.0.1:5055\" }]",
            "gateway",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.15:5000\", host = \"127.0.0.1:5055\" }]",
            "gateway",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:1\", host = \"127.0.0.1:2\" }, { guest = \"10.0.2.100:1\", host = \"127.0.0.1:3\" }]",
            "forwarded twice",
        ),
        ("[network]\nforwards = []", "at least one forward"),
        (
            "[network]\nrelay_busybox = \"busybox\"\nforwards = [{ guest = \"10.0.2.100:1\", host = \"127.0.0.1:2\" }]",
            "absolute",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:1\", host = \"127.0.0.1:2\", proto = \"udp\" }]",
            "proto",
        ),
        (
            "[network]\nmode = \"bridge\"\nforwards = [{ guest = \"10.0.2.100:1\", host = \"127.0.0.1:2\" }]",
            "mode",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100\", host = \"127.0.0.1:2\" }]",
            "socket address",
        ),
        (
            "[network]\nforwards = [{ guest = \"10.0.2.100:1\", host = \"localhost:2\" }]",
            "socket address",
        ),
    ];
    for (section, want) in cases {
        let err = with_network(section).unwrap_err().to_string();
        assert!(err.contains(want), "{section}: {err}");
    }
}
