use super::*;

fn default_ctr_spec() -> HostSpec {
    let text = include_str!("../../tests/data/ctr-oci-spec-default.json");
    let mut spec = HostSpec::from_json(text).unwrap();
    spec.process.as_mut().unwrap().args = vec!["echo".into(), "hi".into()];
    spec
}

#[test]
fn containerd_default_spec_translates() {
    let host = default_ctr_spec();
    let s = spec_to_agent(&host, "/run/kata-containers/c1/rootfs").unwrap();
    let root = s.root.as_ref().unwrap();
    assert_eq!(root.path, "/run/kata-containers/c1/rootfs");
    let p = s.process.as_ref().unwrap();
    assert_eq!(p.args, ["echo", "hi"]);
    assert!(p.env.is_empty(), "ctr's default spec has no env");
    assert_eq!(p.cwd, "/");
    assert!(
        p.capabilities
            .as_ref()
            .unwrap()
            .bounding
            .contains(&"CAP_KILL".to_string())
    );
    assert_eq!(p.rlimits[0].kind, "RLIMIT_NOFILE");
    let dests: Vec<&str> = s.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/run"
        ]
    );
    let l = s.linux.as_ref().unwrap();
    let ns: Vec<&str> = l.namespaces.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    assert!(l.masked_paths.contains(&"/proc/kcore".to_string()));
    assert!(s.hooks.is_none());
}

#[test]
fn host_only_parts_are_dropped() {
    let text = r#"{
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "", "apparmorProfile": "cri-containerd.apparmor.d",
                    "selinuxLabel": "system_u:system_r:container_t", "oomScoreAdj": -998,
                    "terminal": true, "consoleSize": {"height": 40, "width": 120}},
        "root": {"path": "/var/lib/containerd/snapshots/42/fs", "readonly": true},
        "hooks": {"prestart": [{"path": "/usr/bin/evil"}]},
        "mounts": [
            {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/containerd/hosts", "options": ["rbind"]},
            {"destination": "/data", "type": "none", "source": "/srv/secret", "options": ["bind"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
        ],
        "linux": {
            "namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "pid"}],
            "devices": [{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
            "mountLabel": "system_u:object_r:container_file_t",
            "resources": {"memory": {"limit": 268435456}, "cpu": {"quota": 50000, "period": 100000, "shares": 512}, "pids": {"limit": 64}}
        }
    }"#;
    let host = HostSpec::from_json(text).unwrap();
    let s = spec_to_agent(&host, "/run/kata-containers/c2/rootfs").unwrap();
    let root = s.root.unwrap();
    assert_eq!(root.path, "/run/kata-containers/c2/rootfs");
    assert!(root.readonly);
    assert!(s.hooks.is_none());
    assert_eq!(s.mounts.len(), 1);
    assert_eq!(s.mounts[0].destination, "/tmp");
    let p = s.process.unwrap();
    assert_eq!(p.cwd, "/");
    assert!(p.apparmor_profile.is_empty() && p.selinux_label.is_empty());
    assert_eq!(p.oom_score_adj, -998);
    assert!(p.terminal);
    assert_eq!(p.console_size.unwrap().width, 120);
    let l = s.linux.unwrap();
    assert!(l.namespaces.iter().all(|n| n.path.is_empty()));
    assert_eq!(l.namespaces.len(), 2);
    assert!(l.devices.is_empty() && l.seccomp.is_none() && l.mount_label.is_empty());
    let r = l.resources.unwrap();
    assert_eq!(r.memory.unwrap().limit, 268_435_456);
    let cpu = r.cpu.unwrap();
    assert_eq!((cpu.quota, cpu.period, cpu.shares), (50_000, 100_000, 512));
    assert_eq!(r.pids.unwrap().limit, 64);
    // Nothing host-side survives anywhere in the serialized spec.
    let json =
        serde_json::to_string(&s.mounts).unwrap() + &serde_json::to_string(&l.namespaces).unwrap();
    for host_path in [
        "/var/lib/containerd",
        "/srv/secret",
        "/var/run/netns",
        "/usr/bin/evil",
    ] {
        assert!(!json.contains(host_path), "{host_path} leaked: {json}");
    }
}

#[test]
fn bad_specs_are_refused_clearly() {
    let e = spec_to_agent(&HostSpec::default(), "/r").unwrap_err();
    assert!(e.to_string().contains("no process"), "{e}");
    let host = HostSpec::from_json(r#"{"process": {"args": []}}"#).unwrap();
    let e = spec_to_agent(&host, "/r").unwrap_err();
    assert!(e.to_string().contains("args is empty"), "{e}");
    let e = HostSpec::from_json("{not json").unwrap_err();
    assert!(e.to_string().contains("OCI spec"), "{e}");
}
