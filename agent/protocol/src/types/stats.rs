//! Statistics: container cgroup and network stats, metrics, volume stats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::proto_enum;

/// `CpuUsage` (nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    /// Total CPU time (field 1).
    pub total_usage: u64,
    /// Per-CPU time (field 2).
    pub percpu_usage: Vec<u64>,
    /// Kernel-mode time (field 3).
    pub usage_in_kernelmode: u64,
    /// User-mode time (field 4).
    pub usage_in_usermode: u64,
}

/// `ThrottlingData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottlingData {
    /// Enforcement periods (field 1).
    pub periods: u64,
    /// Throttled periods (field 2).
    pub throttled_periods: u64,
    /// Throttled time (field 3).
    pub throttled_time: u64,
}

/// `CpuStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    /// Usage (field 1).
    pub cpu_usage: Option<CpuUsage>,
    /// Throttling (field 2).
    pub throttling_data: Option<ThrottlingData>,
}

/// `PidsStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    /// Current number of tasks (field 1).
    pub current: u64,
    /// Limit; 0 = none (field 2).
    pub limit: u64,
}

/// `MemoryData` (bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryData {
    /// Usage (field 1).
    pub usage: u64,
    /// Peak usage (field 2).
    pub max_usage: u64,
    /// Limit hits (field 3).
    pub failcnt: u64,
    /// Limit (field 4).
    pub limit: u64,
}

/// `MemoryStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    /// Page cache (field 1).
    pub cache: u64,
    /// Memory usage (field 2).
    pub usage: Option<MemoryData>,
    /// Swap usage (field 3).
    pub swap_usage: Option<MemoryData>,
    /// Kernel memory usage (field 4).
    pub kernel_usage: Option<MemoryData>,
    /// Hierarchical accounting (field 5).
    pub use_hierarchy: bool,
    /// Raw memory.stat counters (field 6).
    pub stats: BTreeMap<String, u64>,
}

/// `BlkioStatsEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStatsEntry {
    /// Device major (field 1).
    pub major: u64,
    /// Device minor (field 2).
    pub minor: u64,
    /// Operation, e.g. `Read` (field 3).
    pub op: String,
    /// Value (field 4).
    pub value: u64,
}

/// `BlkioStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    /// Bytes transferred (field 1).
    pub io_service_bytes_recursive: Vec<BlkioStatsEntry>,
    /// Operations (field 2).
    pub io_serviced_recursive: Vec<BlkioStatsEntry>,
    /// Queued (field 3).
    pub io_queued_recursive: Vec<BlkioStatsEntry>,
    /// Service time (field 4).
    pub io_service_time_recursive: Vec<BlkioStatsEntry>,
    /// Wait time (field 5).
    pub io_wait_time_recursive: Vec<BlkioStatsEntry>,
    /// Merged (field 6).
    pub io_merged_recursive: Vec<BlkioStatsEntry>,
    /// Time (field 7).
    pub io_time_recursive: Vec<BlkioStatsEntry>,
    /// Sectors (field 8).
    pub sectors_recursive: Vec<BlkioStatsEntry>,
}

/// `HugetlbStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HugetlbStats {
    /// Usage (field 1).
    pub usage: u64,
    /// Peak usage (field 2).
    pub max_usage: u64,
    /// Limit hits (field 3).
    pub failcnt: u64,
}

/// `CgroupStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CgroupStats {
    /// CPU (field 1).
    pub cpu_stats: Option<CpuStats>,
    /// Memory (field 2).
    pub memory_stats: Option<MemoryStats>,
    /// PIDs (field 3).
    pub pids_stats: Option<PidsStats>,
    /// Block I/O (field 4).
    pub blkio_stats: Option<BlkioStats>,
    /// Huge pages, keyed by page size (field 5).
    pub hugetlb_stats: BTreeMap<String, HugetlbStats>,
}

/// `NetworkStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    /// Interface name (field 1).
    pub name: String,
    /// Received bytes (field 2).
    pub rx_bytes: u64,
    /// Received packets (field 3).
    pub rx_packets: u64,
    /// Receive errors (field 4).
    pub rx_errors: u64,
    /// Receive drops (field 5).
    pub rx_dropped: u64,
    /// Sent bytes (field 6).
    pub tx_bytes: u64,
    /// Sent packets (field 7).
    pub tx_packets: u64,
    /// Send errors (field 8).
    pub tx_errors: u64,
    /// Send drops (field 9).
    pub tx_dropped: u64,
}

/// `StatsContainerResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsContainerResponse {
    /// Cgroup statistics (field 1).
    pub cgroup_stats: Option<CgroupStats>,
    /// Network statistics (field 2).
    pub network_stats: Vec<NetworkStats>,
}

/// `GetMetricsRequest` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMetricsRequest {}

/// `Metrics`: Prometheus text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Metrics text (field 1).
    pub metrics: String,
}

/// `VolumeStatsRequest` (GetVolumeStats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeStatsRequest {
    /// Guest path of the volume (field 1).
    pub volume_guest_path: String,
}

proto_enum! {
    /// `VolumeUsage.Unit`.
    VolumeUsageUnit {
        /// 0: unknown.
        Unknown = 0,
        /// 1: bytes.
        Bytes = 1,
        /// 2: inodes.
        Inodes = 2,
    }
}

/// `VolumeUsage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeUsage {
    /// Available (field 1).
    pub available: u64,
    /// Total (field 2).
    pub total: u64,
    /// Used (field 3).
    pub used: u64,
    /// Unit (field 4).
    pub unit: VolumeUsageUnit,
}

/// `VolumeCondition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeCondition {
    /// Abnormal condition (field 1).
    pub abnormal: bool,
    /// Description (field 2).
    pub message: String,
}

/// `VolumeStatsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeStatsResponse {
    /// Usage per unit (field 1).
    pub usage: Vec<VolumeUsage>,
    /// Condition (field 2).
    pub volume_condition: Option<VolumeCondition>,
}
