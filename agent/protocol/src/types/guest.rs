//! Guest-wide requests: guest details, time, file copy, OOM events, policy, memory and swap.

use serde::{Deserialize, Serialize};

/// `GuestDetailsRequest` (GetGuestDetails).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestDetailsRequest {
    /// Ask for the memory block size (field 1).
    pub mem_block_size: bool,
    /// Ask whether memory hotplug by probe is supported (field 2).
    pub mem_hotplug_probe: bool,
}

/// `AgentDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentDetails {
    /// Agent semantic version (field 1).
    pub version: String,
    /// Agent runs as PID 1 (field 2).
    pub init_daemon: bool,
    /// Device handlers (field 3).
    pub device_handlers: Vec<String>,
    /// Storage handlers (field 4).
    pub storage_handlers: Vec<String>,
    /// Seccomp supported (field 5).
    pub supports_seccomp: bool,
    /// Extra build features (field 6).
    pub extra_features: Vec<String>,
}

/// `GuestDetailsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestDetailsResponse {
    /// Memory block size in bytes (field 1).
    pub mem_block_size_bytes: u64,
    /// Agent details (field 2).
    pub agent_details: Option<AgentDetails>,
    /// Memory hotplug by probe supported (field 3).
    pub support_mem_hotplug_probe: bool,
}

/// `OnlineCPUMemRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineCPUMemRequest {
    /// Wait until everything is online (field 1).
    pub wait: bool,
    /// CPUs to online; 0 = skip the check (field 2).
    pub nb_cpus: u32,
    /// Only CPUs (field 3).
    pub cpu_only: bool,
}

/// `ReseedRandomDevRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReseedRandomDevRequest {
    /// Seed bytes (field 2).
    pub data: Vec<u8>,
}

/// `MemHotplugByProbeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemHotplugByProbeRequest {
    /// Addresses to probe (field 1).
    #[serde(rename = "memHotplugProbeAddr")]
    pub mem_hotplug_probe_addr: Vec<u64>,
}

/// `SetGuestDateTimeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetGuestDateTimeRequest {
    /// Seconds since the epoch (field 1).
    #[serde(rename = "Sec")]
    pub sec: i64,
    /// Microseconds part (field 2).
    #[serde(rename = "Usec")]
    pub usec: i64,
}

/// `CopyFileRequest`: one chunk of a file, directory or symlink copied into the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CopyFileRequest {
    /// Absolute, canonical destination path (field 1).
    pub path: String,
    /// Final file size (field 2).
    pub file_size: i64,
    /// Mode including the file type bits (S_IFREG/S_IFDIR/S_IFLNK) (field 3).
    pub file_mode: u32,
    /// Mode for created parent directories (field 4).
    pub dir_mode: u32,
    /// Owner uid (field 5).
    pub uid: i32,
    /// Owner gid (field 6).
    pub gid: i32,
    /// Offset of this chunk (field 7).
    pub offset: i64,
    /// Chunk data, or the symlink target (field 8).
    pub data: Vec<u8>,
}

/// File type encoded in [`CopyFileRequest::file_mode`], as the policy sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyFileType {
    /// S_IFREG.
    Regular,
    /// S_IFDIR.
    Directory,
    /// S_IFLNK.
    Symlink,
    /// Anything else.
    #[default]
    Unknown,
}

impl CopyFileType {
    /// Classifies a `st_mode`-style value by its `S_IFMT` bits.
    pub fn from_mode(mode: u32) -> Self {
        const S_IFMT: u32 = 0o170_000;
        match mode & S_IFMT {
            0o100_000 => Self::Regular,
            0o040_000 => Self::Directory,
            0o120_000 => Self::Symlink,
            _ => Self::Unknown,
        }
    }
}

/// The policy view of a [`CopyFileRequest`] (Kata's `PolicyCopyFileRequest`): the data bytes are
/// left out and a symlink target is given as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyCopyFileRequest {
    /// Destination path.
    pub path: String,
    /// File type from the mode bits.
    pub file_type: CopyFileType,
    /// Symlink target, for symlinks whose target is valid UTF-8.
    pub symlink_target: Option<String>,
    /// Final file size.
    pub file_size: i64,
    /// Mode.
    pub file_mode: u32,
    /// Parent directory mode.
    pub dir_mode: u32,
    /// Owner uid.
    pub uid: i32,
    /// Owner gid.
    pub gid: i32,
    /// Chunk offset.
    pub offset: i64,
}

impl CopyFileRequest {
    /// Builds the policy view of this request.
    pub fn policy_view(&self) -> PolicyCopyFileRequest {
        let file_type = CopyFileType::from_mode(self.file_mode);
        let symlink_target = match file_type {
            CopyFileType::Symlink => std::str::from_utf8(&self.data).ok().map(str::to_owned),
            _ => None,
        };
        PolicyCopyFileRequest {
            path: self.path.clone(),
            file_type,
            symlink_target,
            file_size: self.file_size,
            file_mode: self.file_mode,
            dir_mode: self.dir_mode,
            uid: self.uid,
            gid: self.gid,
            offset: self.offset,
        }
    }
}

/// `GetOOMEventRequest` (no fields; long poll).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOOMEventRequest {}

/// `OOMEvent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OOMEvent {
    /// Container that hit an OOM kill (field 1).
    pub container_id: String,
}

/// `AddSwapRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddSwapRequest {
    /// PCI path of the swap device (field 1).
    #[serde(rename = "PCIPath")]
    pub pci_path: Vec<u32>,
}

/// `AddSwapPathRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddSwapPathRequest {
    /// Swap file path (field 1).
    pub path: String,
}

/// `ResizeVolumeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResizeVolumeRequest {
    /// Guest path of the volume (field 1).
    pub volume_guest_path: String,
    /// New size in bytes (field 2).
    pub size: u64,
}

/// `SetPolicyRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetPolicyRequest {
    /// Rego policy text (field 1).
    pub policy: String,
}

/// `MemAgentMemcgConfig` (MemAgentMemcgSet); every field is proto3 `optional`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemAgentMemcgConfig {
    /// Field 1.
    pub disabled: Option<bool>,
    /// Field 2.
    pub swap: Option<bool>,
    /// Field 3.
    pub swappiness_max: Option<u32>,
    /// Field 4.
    pub period_secs: Option<u64>,
    /// Field 5.
    pub period_psi_percent_limit: Option<u32>,
    /// Field 6.
    pub eviction_psi_percent_limit: Option<u32>,
    /// Field 7.
    pub eviction_run_aging_count_min: Option<u64>,
}

/// `MemAgentCompactConfig` (MemAgentCompactSet); every field is proto3 `optional`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemAgentCompactConfig {
    /// Field 1.
    pub disabled: Option<bool>,
    /// Field 2.
    pub period_secs: Option<u64>,
    /// Field 3.
    pub period_psi_percent_limit: Option<u32>,
    /// Field 4.
    pub compact_psi_percent_limit: Option<u32>,
    /// Field 5.
    pub compact_sec_max: Option<i64>,
    /// Field 6.
    pub compact_order: Option<u32>,
    /// Field 7.
    pub compact_threshold: Option<u64>,
    /// Field 8.
    pub compact_force_times: Option<u64>,
}
