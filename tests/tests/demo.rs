//! `cocoon demo`, the README's main job, as a test: an ocicrypt-encrypted image (skopeo +
//! `cocoon image keyprovider`) in Debian's docker-registry, `cocoon-kbs` holding its key,
//! a private containerd running `ctr run --runtime io.containerd.cocoon.v2`, the agent
//! attesting, receiving the key, pulling and decrypting in the TCG guest. The demo itself
//! checks the container's output and that containerd's content store stayed empty; this
//! test checks its exit status, its report, and that nothing is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use cocoon_tests::{guest_dir, processes_mentioning, workspace_binary};

#[test]
fn demo_runs_an_encrypted_image_pulled_and_decrypted_in_the_guest() {
    let Some(guest) = guest_dir() else {
        return;
    };
    let cocoon = workspace_binary("cocoon", "cocoon");
    // The demo finds these beside itself.
    workspace_binary("cocoon-kbs", "cocoon-kbs");
    workspace_binary("runtime-shim", "containerd-shim-cocoon-v2");
    let tmp_before = demo_dirs();
    let out = Command::new(&cocoon)
        .args(["demo", "--guest-dir"])
        .arg(&guest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("| Hello from an encrypted image, decrypted inside the guest"),
        "{stdout}"
    );
    assert!(stdout.contains("content store is empty"), "{stdout}");
    // Nothing left: no work dir, no process from it.
    let leaked: Vec<_> = demo_dirs()
        .into_iter()
        .filter(|d| !tmp_before.contains(d))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(processes_mentioning("cocoon-demo-").is_empty());
}

fn demo_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cocoon-demo-"))
        .collect()
}
