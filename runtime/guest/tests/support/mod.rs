//! Helpers shared by the guest-asset tests and the boot benchmark: gating, the tiny C
//! `/init`, and booting the assets under QEMU microvm (TCG).
#![allow(dead_code)]

use runtime_guest::{GuestManifest, KernelPin, default_cache_dir, kernel::cached_deb_path};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Source of the test `/init`.
pub const POWEROFF_INIT_C: &str = include_str!("../data/poweroff_init.c");

/// Tests that need the kernel package run when `COCOON_GUEST_TESTS=1` (CI sets it) or when
/// the pinned `.deb` is already cached; `COCOON_GUEST_TESTS=0` always skips them.
pub fn guest_tests_enabled(test: &str) -> bool {
    match std::env::var("COCOON_GUEST_TESTS").as_deref() {
        Ok("1") => true,
        Ok("0") => {
            eprintln!("SKIP {test}: COCOON_GUEST_TESTS=0");
            false
        }
        _ => {
            let cached = KernelPin::pinned()
                .map(|pin| cached_deb_path(&pin, &default_cache_dir()).is_file())
                .unwrap_or(false);
            if !cached {
                eprintln!(
                    "SKIP {test}: set COCOON_GUEST_TESTS=1 to download the pinned kernel .deb"
                );
            }
            cached
        }
    }
}

/// Compiles the tiny init with `gcc -static` into `dir/init`.
pub fn compile_init(dir: &Path) -> PathBuf {
    let src = dir.join("poweroff_init.c");
    std::fs::write(&src, POWEROFF_INIT_C).unwrap();
    let out = dir.join("init");
    let status = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is needed to build the test /init");
    assert!(
        status.success(),
        "gcc -static failed (is libc6-dev installed?)"
    );
    out
}

/// The host TSC frequency in kHz, from the first `cpu MHz` line of /proc/cpuinfo.
pub fn host_tsc_khz() -> u64 {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .expect("cpu MHz in /proc/cpuinfo");
    (mhz * 1000.0) as u64
}

/// The command line the tests boot with.
pub fn test_cmdline() -> String {
    format!(
        "console=ttyS0 quiet panic=-1 tsc_early_khz={} tsc=reliable",
        host_tsc_khz()
    )
}

/// What one QEMU run produced.
pub struct BootOutcome {
    /// Serial console output.
    pub console: String,
    /// QEMU's exit status, or `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// Wall time from spawn to exit (or kill).
    pub elapsed: Duration,
    /// Wall time from spawn until `GUEST-INIT-OK` appeared on the console.
    pub marker_at: Option<Duration>,
}

/// Boots the manifest's vmlinux + initrd on microvm/TCG with its command line.
pub fn boot_microvm(manifest: &GuestManifest, dir: &Path, timeout: Duration) -> BootOutcome {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-machine", "microvm", "-m", "256", "-smp", "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(manifest.vmlinux_path(dir))
        .arg("-initrd")
        .arg(manifest.initrd_path(dir))
        .arg("-append")
        .arg(&manifest.cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 is needed (Debian package qemu-system-x86)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut marker_at = None;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
            if marker_at.is_none() && bytes.windows(13).any(|w| w == b"GUEST-INIT-OK") {
                marker_at = Some(start.elapsed());
            }
        }
        (bytes, marker_at)
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let (bytes, marker_at) = reader.join().unwrap();
    let console = String::from_utf8_lossy(&bytes).into_owned();
    BootOutcome {
        console,
        status,
        elapsed,
        marker_at,
    }
}
