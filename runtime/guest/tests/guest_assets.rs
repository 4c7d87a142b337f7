//! End-to-end tests on the real pinned Debian kernel package: module resolution against
//! kmod's `modinfo`, vmlinux extraction against the `lz4` tool, deterministic builds, error
//! cases, and a real boot under QEMU microvm (TCG).
//!
//! They run when `COCOON_GUEST_TESTS=1` (CI) or when the pinned `.deb` is already cached in
//! `$COCOON_CACHE` (default `/var/cache/cocoon`); see `support::guest_tests_enabled`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use runtime_guest::bzimage::{extract_vmlinux, payload_location, pvh_entry};
use runtime_guest::kernel::{cached_deb_path, extract_kernel, fetch_deb};
use runtime_guest::modules::{ModuleError, ModuleIndex, parse_modinfo};
use runtime_guest::{
    DEFAULT_MODULES, ExtraFile, GuestBuildError, GuestBuildSpec, InitrdCompression, KernelPin,
    build_guest, default_cache_dir, load_manifest,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{boot_microvm, compile_init, guest_tests_enabled, test_cmdline};

fn extracted() -> runtime_guest::kernel::ExtractedKernel {
    let pin = KernelPin::pinned().unwrap();
    let cache = default_cache_dir();
    let deb = fetch_deb(&pin, &cache).unwrap();
    extract_kernel(&pin, &deb, &cache).unwrap()
}

fn default_roots() -> Vec<String> {
    DEFAULT_MODULES.iter().map(|m| m.to_string()).collect()
}

#[test]
fn real_modules_resolve_in_an_order_modinfo_agrees_with() {
    if !guest_tests_enabled("real_modules_resolve_in_an_order_modinfo_agrees_with") {
        return;
    }
    let kernel = extracted();
    let index = ModuleIndex::scan(&kernel.modules_dir).unwrap();
    assert!(index.len() > 500, "only {} modules indexed", index.len());
    let order = index.resolve(&default_roots()).unwrap();
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    // The stack test-environment.md §0 measured with depmod, plus virtio_blk and overlay.
    let expected: BTreeSet<&str> = [
        "virtio_ring",
        "virtio",
        "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "virtio_mmio",
        "vsock",
        "vmw_vsock_virtio_transport_common",
        "vmw_vsock_virtio_transport",
        "virtio_console",
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_blk",
        "overlay",
    ]
    .into();
    assert_eq!(names.iter().copied().collect::<BTreeSet<_>>(), expected);
    // Oracle: kmod's modinfo reads each module's depends= independently of our ELF parser.
    for (position, (name, path)) in order.iter().enumerate() {
        let out = Command::new("modinfo")
            .args(["-F", "depends"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "modinfo {}", path.display());
        let deps = String::from_utf8(out.stdout).unwrap();
        let ours = parse_modinfo(&std::fs::read(path).unwrap()).unwrap();
        let theirs: Vec<String> = deps
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect();
        assert_eq!(ours.depends, theirs, "depends of {name}");
        assert_eq!(ours.name.as_deref(), Some(name.as_str()));
        for dep in theirs {
            let at = names
                .iter()
                .position(|n| *n == dep)
                .unwrap_or_else(|| panic!("{dep} missing"));
            assert!(at < position, "{dep} must load before {name}: {names:?}");
        }
    }
    // Root order does not matter.
    let mut reversed = default_roots();
    reversed.reverse();
    assert_eq!(index.resolve(&reversed).unwrap(), order);
    // Builtins are accepted and dropped; unknown names are errors naming them.
    assert!(index.is_builtin("ext4"));
    let with_builtin = index.resolve(&["ext4".into(), "overlay".into()]).unwrap();
    assert_eq!(
        with_builtin
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["overlay"]
    );
    match index
        .resolve(&["virtio-net".into(), "no_such_driver".into()])
        .unwrap_err()
    {
        ModuleError::UnknownModule { name, required_by } => {
            assert_eq!((name.as_str(), required_by), ("no_such_driver", None));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn vmlinux_matches_lz4_tool_output_and_has_a_pvh_entry() {
    if !guest_tests_enabled("vmlinux_matches_lz4_tool_output_and_has_a_pvh_entry") {
        return;
    }
    let kernel = extracted();
    let image = std::fs::read(&kernel.bzimage).unwrap();
    let vmlinux = extract_vmlinux(&image).unwrap();
    assert!(pvh_entry(&vmlinux).unwrap() > 0x100000);
    let loc = payload_location(&image).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("payload.lz4");
    std::fs::write(&stream, &image[loc.offset..loc.offset + loc.length - 4]).unwrap();
    let out = Command::new("lz4")
        .arg("-dc")
        .arg(&stream)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == vmlinux,
        "lz4 -dc gives {} bytes, we give {}",
        out.stdout.len(),
        vmlinux.len()
    );
}

fn spec_for(dir: &Path, init: &Path) -> GuestBuildSpec {
    let mut spec = GuestBuildSpec::new(
        default_cache_dir(),
        dir.to_path_buf(),
        init.to_path_buf(),
        test_cmdline(),
    )
    .unwrap();
    spec.compression = InitrdCompression::Gzip;
    spec
}

#[test]
fn builds_are_byte_identical_regardless_of_input_order_and_are_cached() {
    if !guest_tests_enabled("builds_are_byte_identical_regardless_of_input_order_and_are_cached") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("agent");
    std::fs::write(&init, b"#!/bin/false\nnot really an agent\n").unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/tool"), b"tool").unwrap();
    std::os::unix::fs::symlink("tool", tree.join("bin/alias")).unwrap();
    let extras = vec![
        ExtraFile::Tree {
            guest_path: "/rootfs".into(),
            host_dir: tree.clone(),
        },
        ExtraFile::Bytes {
            guest_path: "/etc/motd".into(),
            mode: 0o644,
            data: b"hi\n".to_vec(),
        },
        ExtraFile::Symlink {
            guest_path: "/bin/sh".into(),
            target: "/rootfs/bin/tool".into(),
        },
    ];
    let mut a = spec_for(&dir.path().join("a"), &init);
    a.extra_files = extras.clone();
    let mut b = spec_for(&dir.path().join("b"), &init);
    b.extra_files = extras.into_iter().rev().collect();
    b.modules.reverse();
    b.modules.push("overlay".into());
    let ma = build_guest(&a).unwrap();
    let mb = build_guest(&b).unwrap();
    assert_eq!(
        ma, mb,
        "same inputs in another order must give the same manifest"
    );
    for name in ["vmlinux", "bzImage", "initrd.cpio.gz", "manifest.json"] {
        let x = std::fs::read(dir.path().join("a").join(name)).unwrap();
        let y = std::fs::read(dir.path().join("b").join(name)).unwrap();
        assert!(x == y, "{name} differs between the two builds");
    }
    assert_eq!(load_manifest(&a.out_dir).unwrap(), ma);
    ma.verify(&a.out_dir).unwrap();
    assert_eq!(ma.cmdline, test_cmdline());
    assert_eq!(ma.modules.len(), 15);
    assert_eq!(ma.kernel.release, runtime_guest::kernel_release(&a.kernel));

    // The gzip initrd decompresses to the recorded cpio, and GNU cpio lists the layout.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc {} | cpio -it --quiet",
            a.out_dir.join("initrd.cpio.gz").display()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    for path in [
        "init",
        "lib/modules/load-order",
        "lib/modules/virtio_ring.ko",
        "rootfs/bin/alias",
        "etc/motd",
        "dev/console",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} missing:\n{listing}"
        );
    }

    // Same inputs again: nothing is rewritten.
    let vmlinux_path = a.out_dir.join("vmlinux");
    let before = std::fs::metadata(&vmlinux_path)
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(build_guest(&a).unwrap(), ma);
    assert_eq!(
        std::fs::metadata(&vmlinux_path)
            .unwrap()
            .modified()
            .unwrap(),
        before
    );

    // A damaged output is detected and rebuilt; a changed input changes the digests.
    std::fs::write(a.out_dir.join("initrd.cpio.gz"), b"garbage").unwrap();
    assert!(matches!(
        ma.verify(&a.out_dir),
        Err(GuestBuildError::Manifest { .. })
    ));
    assert_eq!(build_guest(&a).unwrap(), ma);
    a.compression = InitrdCompression::None;
    let raw = build_guest(&a).unwrap();
    assert_eq!(raw.initrd.cpio_sha256, ma.initrd.cpio_sha256);
    assert_eq!(raw.initrd.digest.sha256, raw.initrd.cpio_sha256);
    assert_ne!(raw.inputs_sha256, ma.inputs_sha256);
    assert!(
        !a.out_dir.join("initrd.cpio.gz").exists(),
        "stale gzip initrd left behind"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&a.out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn unknown_module_apt_failure_and_corrupt_deb_are_clear_errors() {
    if !guest_tests_enabled("unknown_module_apt_failure_and_corrupt_deb_are_clear_errors") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("agent");
    std::fs::write(&init, b"x").unwrap();
    let mut spec = spec_for(&dir.path().join("out"), &init);
    spec.modules.push("no_such_module".into());
    let err = build_guest(&spec).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown kernel module \"no_such_module\""),
        "{err}"
    );
    assert!(!spec.out_dir.join("manifest.json").exists());

    let real = KernelPin::pinned().unwrap();
    let cache = dir.path().join("cache");
    let missing = KernelPin {
        version: "0.0.0-does-not-exist".into(),
        ..real.clone()
    };
    let err = fetch_deb(&missing, &cache).unwrap_err();
    assert!(matches!(err, GuestBuildError::AptDownload { .. }), "{err}");
    assert!(err.to_string().contains("0.0.0-does-not-exist"), "{err}");

    // A corrupt cached .deb is replaced by a fresh, verified download.
    let cached = cached_deb_path(&real, &cache);
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"truncated").unwrap();
    assert_eq!(fetch_deb(&real, &cache).unwrap(), cached);
    assert_eq!(
        runtime_guest::kernel::sha256_file(&cached).unwrap().0,
        real.sha256
    );
    // A download that does not match the pin is refused and not kept.
    let real_sha = real.sha256.clone();
    let wrong = KernelPin {
        sha256: "0".repeat(64),
        ..real
    };
    match fetch_deb(&wrong, &cache).unwrap_err() {
        GuestBuildError::DebChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, "0".repeat(64));
            assert_eq!(actual, real_sha);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        !cached.exists(),
        "a .deb failing the pin must not stay in the cache"
    );
}

fn boot_and_check(compression: InitrdCompression) {
    let dir = tempfile::tempdir().unwrap();
    let init = compile_init(dir.path());
    let mut spec = spec_for(&dir.path().join("out"), &init);
    spec.compression = compression;
    let manifest = build_guest(&spec).unwrap();
    let boot = boot_microvm(&manifest, &spec.out_dir, Duration::from_secs(60));
    let console = &boot.console;
    assert!(
        boot.status.is_some(),
        "QEMU did not exit by itself within 60 s:\n{console}"
    );
    assert!(
        boot.status.unwrap().success(),
        "QEMU exit {:?}:\n{console}",
        boot.status
    );
    assert!(
        console.contains("GUEST-INIT-OK pid=1"),
        "marker missing:\n{console}"
    );
    let summary = format!("MODULES-LOADED {} FAILED 0", manifest.modules.len());
    assert!(
        console.contains(&summary),
        "expected {summary:?}:\n{console}"
    );
    eprintln!(
        "{compression:?}: booted and powered off in {:.2?}",
        boot.elapsed
    );
}

#[test]
fn boots_under_qemu_microvm_with_gzip_initrd_and_loads_all_modules() {
    if !guest_tests_enabled("boots_under_qemu_microvm_with_gzip_initrd_and_loads_all_modules") {
        return;
    }
    boot_and_check(InitrdCompression::Gzip);
}

#[test]
fn boots_under_qemu_microvm_with_raw_initrd_and_loads_all_modules() {
    if !guest_tests_enabled("boots_under_qemu_microvm_with_raw_initrd_and_loads_all_modules") {
        return;
    }
    boot_and_check(InitrdCompression::None);
}
