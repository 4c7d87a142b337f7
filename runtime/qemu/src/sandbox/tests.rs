use super::*;

#[test]
fn long_ids_get_short_distinct_state_dirs() {
    assert_eq!(state_dir_name("pod-1"), "pod-1");
    let a = "4c3cd8f715b6a2d6c3d5e6d6bbc975112a96e4d150263ab8ab914b7fcef4f3ef";
    let b = "4c3cd8f715b6a2d6c3d5e6d6bbc975112a96e4d150263ab8ab914b7fcef4f3e0";
    assert_eq!(state_dir_name(a).len(), 24);
    assert!(state_dir_name(a).starts_with("4c3cd8f715b6-"));
    assert_ne!(state_dir_name(a), state_dir_name(b));
    assert_eq!(state_dir_name(a), state_dir_name(a));
}

#[test]
fn ids_are_restricted() {
    assert!(valid_id("pod-1_a.b"));
    for bad in ["", "..", "a/b", "x y", &"a".repeat(65)] {
        assert!(!valid_id(bad), "{bad:?}");
    }
}

#[test]
fn console_marker_parses() {
    let c = "[    0.1] foo\ncocoon-agent: started uptime_ms=2431 pid=1\n";
    assert_eq!(agent_start_uptime(c), Some(Duration::from_millis(2431)));
    assert_eq!(agent_start_uptime("nothing"), None);
}

#[test]
fn initdata_image_is_written_in_the_state_dir_and_attached_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INITDATA_IMAGE_FILE);
    write_initdata_image(&path, b"initdata-bytes").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"initdata-bytes");
    // Never over an existing file (a stale or planted one).
    assert!(matches!(
        write_initdata_image(&path, b"other"),
        Err(SandboxError::Io { .. })
    ));
    let cfg = RuntimeClassConfig::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/configs/configuration-qemu-coco-dev.toml"
    )))
    .unwrap();
    let opts = BootOptions {
        id: "p".into(),
        initdata_image: Some(vec![0; 512]),
        initdata_disk: Some(PathBuf::from("/elsewhere.img")),
        ..Default::default()
    };
    let spec = vm_spec(
        &cfg,
        &opts,
        dir.path(),
        AccelKind::Tcg,
        AgentDevice::VhostVsock { guest_cid: 3 },
    );
    assert_eq!(spec.initdata_disk, Some(path));
    let none = vm_spec(
        &cfg,
        &BootOptions::default(),
        dir.path(),
        AccelKind::Tcg,
        AgentDevice::VhostVsock { guest_cid: 3 },
    );
    assert_eq!(none.initdata_disk, None);
}

#[test]
fn cid_is_in_range_and_stable() {
    for id in ["a", "pod", "0123456789abcdef"] {
        let c = guest_cid_for(id);
        assert!((3..0x8000_0000).contains(&c));
        assert_eq!(c, guest_cid_for(id));
    }
}
