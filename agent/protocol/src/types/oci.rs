//! The OCI runtime spec as carried on the wire (`oci.proto`, field `CreateContainerRequest.OCI`).
//!
//! JSON keys are the proto field names (mostly PascalCase, e.g. `Process.Args`, `Root.Path`,
//! `Linux.Namespaces[].Type`; `Mounts[].type_` as in Kata). [`Spec::to_oci`] converts to an
//! [`oci_spec::runtime::Spec`] (see `oci_convert.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `Spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Spec {
    /// OCI runtime spec version (field 1).
    pub version: String,
    /// Container process (field 2).
    pub process: Option<Process>,
    /// Root filesystem (field 3).
    pub root: Option<Root>,
    /// Hostname (field 4).
    pub hostname: String,
    /// Mounts (field 5).
    pub mounts: Vec<Mount>,
    /// Hooks (field 6).
    pub hooks: Option<Hooks>,
    /// Annotations (field 7).
    pub annotations: BTreeMap<String, String>,
    /// Linux section (field 8).
    pub linux: Option<Linux>,
    /// Unused placeholder (field 9).
    pub solaris: Option<Solaris>,
    /// Unused placeholder (field 10).
    pub windows: Option<Windows>,
}

/// `Process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Process {
    /// Allocate a terminal (field 1).
    pub terminal: bool,
    /// Initial console size (field 2).
    pub console_size: Option<ConsoleBox>,
    /// User (field 3).
    pub user: Option<User>,
    /// argv (field 4).
    pub args: Vec<String>,
    /// Environment, `KEY=value` (field 5).
    pub env: Vec<String>,
    /// Working directory (field 6).
    pub cwd: String,
    /// Capabilities (field 7).
    pub capabilities: Option<LinuxCapabilities>,
    /// Resource limits (field 8).
    pub rlimits: Vec<POSIXRlimit>,
    /// no_new_privs (field 9).
    pub no_new_privileges: bool,
    /// AppArmor profile (field 10).
    pub apparmor_profile: String,
    /// oom_score_adj (field 11).
    #[serde(rename = "OOMScoreAdj")]
    pub oom_score_adj: i64,
    /// SELinux label (field 12).
    pub selinux_label: String,
}

/// `Box`: console size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConsoleBox {
    /// Rows (field 1).
    pub height: u32,
    /// Columns (field 2).
    pub width: u32,
}

/// `User`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct User {
    /// uid (field 1).
    #[serde(rename = "UID")]
    pub uid: u32,
    /// gid (field 2).
    #[serde(rename = "GID")]
    pub gid: u32,
    /// Supplementary groups (field 3).
    pub additional_gids: Vec<u32>,
    /// User name (field 4).
    pub username: String,
}

/// `LinuxCapabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxCapabilities {
    /// Bounding set (field 1).
    pub bounding: Vec<String>,
    /// Effective set (field 2).
    pub effective: Vec<String>,
    /// Inheritable set (field 3).
    pub inheritable: Vec<String>,
    /// Permitted set (field 4).
    pub permitted: Vec<String>,
    /// Ambient set (field 5).
    pub ambient: Vec<String>,
}

/// `POSIXRlimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct POSIXRlimit {
    /// Limit name, e.g. `RLIMIT_NOFILE` (field 1).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Hard limit (field 2).
    pub hard: u64,
    /// Soft limit (field 3).
    pub soft: u64,
}

/// `Mount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Destination in the container (field 1).
    pub destination: String,
    /// Source (field 2).
    pub source: String,
    /// Filesystem type (field 3; JSON key `type_` as in Kata).
    #[serde(rename = "type_")]
    pub kind: String,
    /// Mount options (field 4).
    pub options: Vec<String>,
}

/// `Root`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Root {
    /// Root filesystem path in the guest (field 1).
    pub path: String,
    /// Mount it read-only (field 2).
    pub readonly: bool,
}

/// `Hooks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Hooks {
    /// Field 1.
    pub prestart: Vec<Hook>,
    /// Field 2.
    pub poststart: Vec<Hook>,
    /// Field 3.
    pub poststop: Vec<Hook>,
    /// Field 4.
    pub create_runtime: Vec<Hook>,
    /// Field 5.
    pub create_container: Vec<Hook>,
    /// Field 6.
    pub start_container: Vec<Hook>,
}

/// `Hook`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Hook {
    /// Executable path (field 1).
    pub path: String,
    /// argv (field 2).
    pub args: Vec<String>,
    /// Environment (field 3).
    pub env: Vec<String>,
    /// Timeout in seconds; 0 = none (field 4).
    pub timeout: i64,
}

/// `Linux`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Linux {
    /// User namespace uid mappings (field 1).
    #[serde(rename = "UIDMappings")]
    pub uid_mappings: Vec<LinuxIDMapping>,
    /// User namespace gid mappings (field 2).
    #[serde(rename = "GIDMappings")]
    pub gid_mappings: Vec<LinuxIDMapping>,
    /// sysctls (field 3).
    pub sysctl: BTreeMap<String, String>,
    /// cgroup resources (field 4).
    pub resources: Option<LinuxResources>,
    /// cgroup path (field 5).
    pub cgroups_path: String,
    /// Namespaces (field 6).
    pub namespaces: Vec<LinuxNamespace>,
    /// Device nodes (field 7).
    pub devices: Vec<LinuxDevice>,
    /// Seccomp filter (field 8).
    pub seccomp: Option<LinuxSeccomp>,
    /// Rootfs propagation (field 9).
    pub rootfs_propagation: String,
    /// Masked paths (field 10).
    pub masked_paths: Vec<String>,
    /// Read-only paths (field 11).
    pub readonly_paths: Vec<String>,
    /// SELinux mount label (field 12).
    pub mount_label: String,
    /// Intel RDT (field 13).
    pub intel_rdt: Option<LinuxIntelRdt>,
}

/// `Windows` placeholder section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Windows {
    /// Unused (field 1).
    pub dummy: String,
}

/// `Solaris` placeholder section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Solaris {
    /// Unused (field 1).
    pub dummy: String,
}

/// `LinuxIDMapping`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxIDMapping {
    /// First host id (field 1).
    #[serde(rename = "HostID")]
    pub host_id: u32,
    /// First container id (field 2).
    #[serde(rename = "ContainerID")]
    pub container_id: u32,
    /// Range size (field 3).
    pub size: u32,
}

/// `LinuxNamespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxNamespace {
    /// Namespace type: `pid`, `network`, `mount`, `ipc`, `uts`, `user`, `cgroup`, `time` (field 1).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Path of a namespace to join; empty creates a new one (field 2).
    pub path: String,
}

/// `LinuxDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxDevice {
    /// Path in the container (field 1).
    pub path: String,
    /// `c`, `b`, `u` or `p` (field 2).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Major (field 3).
    pub major: i64,
    /// Minor (field 4).
    pub minor: i64,
    /// Permission bits (field 5).
    pub file_mode: u32,
    /// Owner uid (field 6).
    #[serde(rename = "UID")]
    pub uid: u32,
    /// Owner gid (field 7).
    #[serde(rename = "GID")]
    pub gid: u32,
}

/// `LinuxResources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxResources {
    /// Device cgroup rules (field 1).
    pub devices: Vec<LinuxDeviceCgroup>,
    /// Memory (field 2).
    pub memory: Option<LinuxMemory>,
    /// CPU (field 3).
    #[serde(rename = "CPU")]
    pub cpu: Option<LinuxCPU>,
    /// PIDs (field 4).
    pub pids: Option<LinuxPids>,
    /// Block I/O (field 5).
    #[serde(rename = "BlockIO")]
    pub block_io: Option<LinuxBlockIO>,
    /// Huge page limits (field 6).
    pub hugepage_limits: Vec<LinuxHugepageLimit>,
    /// Network (field 7).
    pub network: Option<LinuxNetwork>,
}

/// `LinuxMemory` (bytes; 0 = unset, as the wire cannot tell the difference).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxMemory {
    /// Limit (field 1).
    pub limit: i64,
    /// Soft limit (field 2).
    pub reservation: i64,
    /// Memory + swap limit (field 3).
    pub swap: i64,
    /// Kernel memory limit (field 4).
    pub kernel: i64,
    /// Kernel TCP memory limit (field 5).
    #[serde(rename = "KernelTCP")]
    pub kernel_tcp: i64,
    /// Swappiness (field 6).
    pub swappiness: u64,
    /// Disable the OOM killer (field 7).
    #[serde(rename = "DisableOOMKiller")]
    pub disable_oom_killer: bool,
}

/// `LinuxCPU`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxCPU {
    /// Relative shares (field 1).
    pub shares: u64,
    /// Quota in microseconds per period (field 2).
    pub quota: i64,
    /// Period in microseconds (field 3).
    pub period: u64,
    /// Realtime runtime (field 4).
    pub realtime_runtime: i64,
    /// Realtime period (field 5).
    pub realtime_period: u64,
    /// cpuset CPUs (field 6).
    pub cpus: String,
    /// cpuset memory nodes (field 7).
    pub mems: String,
}

/// `LinuxWeightDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxWeightDevice {
    /// Major (field 1).
    pub major: i64,
    /// Minor (field 2).
    pub minor: i64,
    /// Weight (field 3).
    pub weight: u32,
    /// Leaf weight (field 4).
    pub leaf_weight: u32,
}

/// `LinuxThrottleDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxThrottleDevice {
    /// Major (field 1).
    pub major: i64,
    /// Minor (field 2).
    pub minor: i64,
    /// Rate (field 3).
    pub rate: u64,
}

/// `LinuxBlockIO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxBlockIO {
    /// Weight (field 1).
    pub weight: u32,
    /// Leaf weight (field 2).
    pub leaf_weight: u32,
    /// Per-device weights (field 3).
    pub weight_device: Vec<LinuxWeightDevice>,
    /// Read bytes/s limits (field 4).
    pub throttle_read_bps_device: Vec<LinuxThrottleDevice>,
    /// Write bytes/s limits (field 5).
    pub throttle_write_bps_device: Vec<LinuxThrottleDevice>,
    /// Read IO/s limits (field 6).
    #[serde(rename = "ThrottleReadIOPSDevice")]
    pub throttle_read_iops_device: Vec<LinuxThrottleDevice>,
    /// Write IO/s limits (field 7).
    #[serde(rename = "ThrottleWriteIOPSDevice")]
    pub throttle_write_iops_device: Vec<LinuxThrottleDevice>,
}

/// `LinuxPids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxPids {
    /// Maximum tasks; 0 or negative = unlimited (field 1).
    pub limit: i64,
}

/// `LinuxDeviceCgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxDeviceCgroup {
    /// Allow (true) or deny (field 1).
    pub allow: bool,
    /// `a`, `c` or `b` (field 2).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Major; -1 = any (field 3).
    pub major: i64,
    /// Minor; -1 = any (field 4).
    pub minor: i64,
    /// Access, subset of `rwm` (field 5).
    pub access: String,
}

/// `LinuxNetwork`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxNetwork {
    /// net_cls class id (field 1).
    #[serde(rename = "ClassID")]
    pub class_id: u32,
    /// net_prio priorities (field 2).
    pub priorities: Vec<LinuxInterfacePriority>,
}

/// `LinuxHugepageLimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxHugepageLimit {
    /// Page size, e.g. `2MB` (field 1).
    pub pagesize: String,
    /// Limit in bytes (field 2).
    pub limit: u64,
}

/// `LinuxInterfacePriority`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxInterfacePriority {
    /// Interface (field 1).
    pub name: String,
    /// Priority (field 2).
    pub priority: u32,
}

/// `LinuxSeccomp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxSeccomp {
    /// Default action, e.g. `SCMP_ACT_ERRNO` (field 1).
    pub default_action: String,
    /// Architectures, e.g. `SCMP_ARCH_X86_64` (field 2).
    pub architectures: Vec<String>,
    /// Filter flags (field 3).
    pub flags: Vec<String>,
    /// Rules (field 4).
    pub syscalls: Vec<LinuxSyscall>,
}

/// `LinuxSeccompArg`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxSeccompArg {
    /// Argument index (field 1).
    pub index: u64,
    /// Value (field 2).
    pub value: u64,
    /// Second value for masked comparisons (field 3).
    pub value_two: u64,
    /// Operator, e.g. `SCMP_CMP_EQ` (field 4).
    pub op: String,
}

/// The `ErrnoRet` oneof of `LinuxSyscall` (JSON `{"errnoret": n}`, as Kata serialises it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyscallErrnoRet {
    /// Errno to return (field 3).
    #[serde(rename = "errnoret")]
    Errnoret(u32),
}

/// `LinuxSyscall`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxSyscall {
    /// Syscall names (field 1).
    pub names: Vec<String>,
    /// Action (field 2).
    pub action: String,
    /// Errno for `SCMP_ACT_ERRNO` (oneof `ErrnoRet`, field 3).
    pub errno_ret: Option<SyscallErrnoRet>,
    /// Argument filters (field 4).
    pub args: Vec<LinuxSeccompArg>,
}

/// `LinuxIntelRdt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LinuxIntelRdt {
    /// L3 cache schema (field 1).
    pub l3_cache_schema: String,
}
