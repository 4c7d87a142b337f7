//! What a shim records in its bundle so that `containerd-shim-cocoon-v2 delete` can clean up
//! after the shim was killed: the VM's host processes (with their start times, so a reused
//! pid is never killed) and directories.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// File name of the record inside the bundle directory.
pub const RECORD_FILE: &str = "cocoon-shim.json";

/// One host process to kill on cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// What it is (`qemu`, `vhost-device-vsock`, `agent`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks) when recorded.
    pub start_time: u64,
}

/// The record a shim keeps per bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    /// Sandbox id of the pod.
    pub sandbox_id: String,
    /// Container id of this bundle.
    pub container_id: String,
    /// The shim's own socket address.
    pub shim_address: String,
    /// VM processes (only in the bundle of the container that booted the VM).
    pub processes: Vec<ProcessRecord>,
    /// Directories to remove (VM state directory).
    pub dirs: Vec<PathBuf>,
}

impl ShimRecord {
    /// Serializes the record.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a record.
    pub fn from_json(text: &str) -> Result<Self, crate::CoreError> {
        serde_json::from_str(text)
            .map_err(|e| crate::CoreError::Config(format!("{RECORD_FILE}: {e}")))
    }
}

/// Extracts the start time (field 22) from the text of `/proc/<pid>/stat`.
pub fn stat_start_time(stat: &str) -> Option<u64> {
    // Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    // rest starts with field 3 (state); start time is field 22 → index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when the recorded process is still the same process (same pid and start time).
pub fn same_process(record: &ProcessRecord, current_stat: Option<&str>) -> bool {
    current_stat.and_then(stat_start_time) == Some(record.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parsing_and_pid_reuse() {
        let stat = "1234 (qemu-system-x86 (a) b) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 987654 123456 789";
        assert_eq!(stat_start_time(stat), Some(987_654));
        assert_eq!(stat_start_time("garbage"), None);
        let rec = ProcessRecord {
            name: "qemu".into(),
            pid: 1234,
            start_time: 987_654,
        };
        assert!(same_process(&rec, Some(stat)));
        let reused = stat.replace("987654", "987999");
        assert!(!same_process(&rec, Some(&reused)));
        assert!(!same_process(&rec, None));
    }

    #[test]
    fn record_roundtrip() {
        let r = ShimRecord {
            sandbox_id: "p1".into(),
            container_id: "p1".into(),
            shim_address: "unix:///run/containerd/s/abc".into(),
            processes: vec![ProcessRecord {
                name: "qemu".into(),
                pid: 7,
                start_time: 9,
            }],
            dirs: vec![PathBuf::from("/run/cocoon/p1")],
        };
        assert_eq!(ShimRecord::from_json(&r.to_json()).unwrap(), r);
        assert!(ShimRecord::from_json("{").is_err());
    }
}
