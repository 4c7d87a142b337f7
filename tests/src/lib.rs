//! End-to-end test harnesses shared by the tests in `tests/tests/`: the one guest image built
//! by `scripts/build-guest.sh`, runtime-class configs pointing at it, and leak checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runtime_config::RuntimeClassConfig;

/// Workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The guest image directory: `COCOON_GUEST_DIR`, or `build/guest` in the workspace.
/// Returns `None` (the caller skips, saying so) when it is absent and `COCOON_GUEST_TESTS`
/// is unset; panics when `COCOON_GUEST_TESTS=1` (CI) and the image is missing, so CI can
/// never silently skip the VM tests.
pub fn guest_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COCOON_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("build/guest"));
    let ready = dir.join("manifest.json").is_file();
    let required = std::env::var("COCOON_GUEST_TESTS").is_ok_and(|v| v == "1");
    match (ready, required) {
        (true, _) => Some(dir),
        (false, true) => panic!(
            "COCOON_GUEST_TESTS=1 but no guest image in {} (run scripts/build-guest.sh)",
            dir.display()
        ),
        (false, false) => {
            eprintln!(
                "SKIPPED: no guest image in {} (run scripts/build-guest.sh, or set COCOON_GUEST_TESTS=1 to require it)",
                dir.display()
            );
            None
        }
    }
}

/// The initrd of the guest image in `guest`.
pub fn guest_initrd(guest: &Path) -> PathBuf {
    runtime_guest::load_manifest(guest)
        .unwrap_or_else(|e| panic!("guest manifest: {e}"))
        .initrd_path(guest)
}

/// The shipped coco-dev configuration with kernel/initrd from `guest` and state in `state`.
/// `COCOON_VSOCK_BACKEND` and `COCOON_QEMU` replace the vsock backend and the QEMU binary
/// (scripts/agent-symbol-order.sh runs QEMU through a wrapper that logs translated code).
pub fn coco_dev_config(guest: &Path, state: &Path) -> RuntimeClassConfig {
    let path = workspace_root().join("runtime/config/configs/configuration-qemu-coco-dev.toml");
    let mut cfg = match RuntimeClassConfig::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("shipped coco-dev config: {e}"),
    };
    let m = runtime_guest::load_manifest(guest).unwrap_or_else(|e| panic!("guest manifest: {e}"));
    cfg.hypervisor.qemu.kernel = m.vmlinux_path(guest);
    cfg.hypervisor.qemu.initrd = m.initrd_path(guest);
    cfg.runtime.state_dir = state.to_path_buf();
    if let Some(b) = std::env::var_os("COCOON_VSOCK_BACKEND") {
        cfg.agent.vhost_user_vsock_backend = PathBuf::from(b);
    }
    if let Some(q) = std::env::var_os("COCOON_QEMU") {
        cfg.hypervisor.qemu.path = PathBuf::from(q);
    }
    cfg
}

/// True when `pid` is a live (non-zombie) process.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of processes whose command line mentions `needle` (e.g. a sandbox state dir).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// `containerd-shim-cocoon-v2` in the calling test's profile dir (see [`workspace_binary`]).
pub fn shim_binary() -> PathBuf {
    workspace_binary("runtime-shim", "containerd-shim-cocoon-v2")
}

/// Binary `bin` of workspace package `package` in the calling test's profile dir (next to
/// the test binary's `deps/`), built with the same target dir if absent.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no profile dir", exe.display()))
        .to_path_buf();
    let path = profile_dir.join(bin);
    if !path.is_file() {
        let target = profile_dir
            .parent()
            .unwrap_or_else(|| panic!("{} has no target dir", profile_dir.display()));
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("cargo build: {e}"));
        assert!(st.success(), "building {bin} failed");
    }
    path
}

/// Runs `cmd` and returns its output; panics with both streams when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
