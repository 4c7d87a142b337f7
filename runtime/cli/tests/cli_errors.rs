//! Bad input to the `cocoon` binary: clear errors naming the problem, non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn cocoon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_runtime_class() {
    let o = cocoon(&["vm", "boot", "--class", "kata-qemu-nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown runtime class \"kata-qemu-nope\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn malformed_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.toml");
    std::fs::write(
        &f,
        "[runtime]\nclass = \"kata-qemu-coco-dev\"\n[hypervisor.qemu\n",
    )
    .unwrap();
    let o = cocoon(&["vm", "boot", "--config", f.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("malformed runtime configuration") && e.contains("broken.toml"),
        "{e}"
    );
}

#[test]
fn missing_kernel_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/configs/configuration-qemu-coco-dev.toml");
    let text = std::fs::read_to_string(shipped).unwrap().replace(
        "/opt/cocoon/share/guest/vmlinux",
        "/nonexistent/vmlinux-missing",
    );
    let f = dir.path().join("c.toml");
    std::fs::write(&f, text).unwrap();
    let state = dir.path().join("state");
    let o = cocoon(&[
        "vm",
        "boot",
        "--config",
        f.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("guest kernel not found: /nonexistent/vmlinux-missing"),
        "{e}"
    );
    assert!(!state.exists() || std::fs::read_dir(&state).unwrap().count() == 0);
}

#[test]
fn check_exits_non_zero_when_the_class_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/configs/configuration-qemu-snp.toml");
    let o = cocoon(&["check", "--config", shipped.to_str().unwrap(), "--json"]);
    // No SNP firmware, no SEV-SNP host here (and in CI): the verdict must say so.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["classes"][0]["can_run"], false);
    let failed: Vec<&str> = v["classes"][0]["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == false)
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"SEV-SNP in the host kernel"), "{failed:?}");
    drop(dir);
}
