//! Reference measurements for the boot benchmark: a bare QEMU boot of the same kernel whose
//! `/init` powers off at once, timed from exec to QEMU exit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::argv::{AgentDevice, TeeLaunch, VmSpec, build_argv};
use crate::process;
use crate::sandbox::SandboxError;

/// Boots `kernel` + `initrd` with the sandbox's machine settings but no agent device and
/// returns the time until QEMU exits (the init must power off). `work` holds sockets/logs.
pub async fn bare_boot_time(
    template: &VmSpec,
    initrd: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<Duration, SandboxError> {
    let mut spec = template.clone();
    spec.agent = AgentDevice::None;
    spec.tee = TeeLaunch::None;
    spec.network = None;
    spec.initdata_disk = None;
    spec.initrd = initrd.to_path_buf();
    spec.qmp_socket = work.join("bare-qmp.sock");
    spec.console_log = work.join("bare-console.log");
    spec.pidfile = work.join("bare-qemu.pid");
    let argv = build_argv(&spec)?;
    let mut cmd = Command::new(&spec.qemu);
    cmd.args(&argv);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let start = Instant::now();
    let child = process::spawn("qemu-bare", cmd)?;
    let exit = child.wait_timeout(timeout).await;
    let took = start.elapsed();
    let _ = std::fs::remove_file(&spec.qmp_socket);
    let _ = std::fs::remove_file(&spec.pidfile);
    match exit {
        Some(_) => Ok(took),
        None => Err(SandboxError::Agent(format!(
            "bare boot did not power off within {timeout:?}; console:\n{}",
            std::fs::read_to_string(&spec.console_log).unwrap_or_default()
        ))),
    }
}

/// Median of a non-empty slice of durations.
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut v = samples.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}
