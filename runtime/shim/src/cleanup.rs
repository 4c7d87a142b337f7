//! Records in the bundle what must be cleaned up, and cleans up from that record when the
//! shim is gone (`containerd-shim-cocoon-v2 delete`).

use std::path::Path;

use runtime_core::persist::{
    ProcessRecord, RECORD_FILE, ShimRecord, same_process, stat_start_time,
};
use runtime_core::ports::VmProcesses;

fn stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Records of the VM's host processes with their current start times.
pub fn process_records(p: &VmProcesses) -> Vec<ProcessRecord> {
    let main = p.main_pid.map(|pid| ("vmm", pid));
    let helpers = p.helper_pids.iter().map(|pid| ("helper", *pid));
    main.into_iter()
        .chain(helpers)
        .filter_map(|(name, pid)| {
            let start_time = stat_start_time(&stat(pid)?)?;
            Some(ProcessRecord {
                name: name.to_string(),
                pid,
                start_time,
            })
        })
        .collect()
}

/// Writes the record into the bundle (best effort: a failure only weakens crash cleanup).
pub fn write_record(bundle: &Path, record: &ShimRecord) {
    let path = bundle.join(RECORD_FILE);
    let tmp = bundle.join(format!("{RECORD_FILE}.tmp"));
    let r = std::fs::write(&tmp, record.to_json()).and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the shim record");
    }
}

/// What [`cleanup_bundle`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Pids killed.
    pub killed: Vec<u32>,
    /// Paths removed.
    pub removed: Vec<String>,
}

/// Kills the recorded processes that are still the same processes, removes the recorded
/// directories and the shim socket, then the record itself.
pub fn cleanup_bundle(bundle: &Path) -> CleanupReport {
    let mut report = CleanupReport::default();
    let path = bundle.join(RECORD_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return report;
    };
    let record = match ShimRecord::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable shim record");
            let _ = std::fs::remove_file(&path);
            return report;
        }
    };
    for p in &record.processes {
        if same_process(p, stat(p.pid).as_deref())
            && let Ok(pid) = i32::try_from(p.pid)
        {
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                report.killed.push(p.pid);
            }
        }
    }
    // Give the kernel a moment to let the killed processes go.
    for _ in 0..100 {
        if record
            .processes
            .iter()
            .all(|p| !same_process(p, stat(p.pid).as_deref()))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for d in &record.dirs {
        if d.is_dir() && std::fs::remove_dir_all(d).is_ok() {
            report.removed.push(d.display().to_string());
        }
    }
    if let Some(sock) = record.shim_address.strip_prefix("unix://") {
        use std::os::unix::fs::FileTypeExt;
        let alive = std::os::unix::net::UnixStream::connect(sock).is_ok();
        let is_socket = std::fs::symlink_metadata(sock).is_ok_and(|m| m.file_type().is_socket());
        if is_socket && !alive && std::fs::remove_file(sock).is_ok() {
            report.removed.push(sock.to_string());
        }
    }
    let _ = std::fs::remove_file(&path);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_kills_recorded_process_and_removes_dirs() {
        let bundle = tempfile::tempdir().unwrap();
        let vmdir = bundle.path().join("vm");
        std::fs::create_dir(&vmdir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let procs = VmProcesses {
            main_pid: Some(child.id()),
            helper_pids: vec![],
            state_dir: Some(vmdir.clone()),
        };
        let mut record = ShimRecord {
            sandbox_id: "p".into(),
            container_id: "p".into(),
            shim_address: format!("unix://{}/gone.sock", bundle.path().display()),
            processes: process_records(&procs),
            dirs: vec![vmdir.clone()],
        };
        // A stale record of a reused pid (wrong start time) must not be killed.
        record.processes.push(ProcessRecord {
            name: "reused".into(),
            pid: std::process::id(),
            start_time: 1,
        });
        write_record(bundle.path(), &record);
        let report = cleanup_bundle(bundle.path());
        assert_eq!(report.killed, vec![child.id()]);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!vmdir.exists());
        assert!(!bundle.path().join(RECORD_FILE).exists());
        assert_eq!(cleanup_bundle(bundle.path()), CleanupReport::default());
    }
}
