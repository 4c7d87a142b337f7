//! Wire conversions for `agent.proto` (except networking), `health.proto` and `csi.proto`.

use super::wire_message;
use crate::types::*;
use crate::wire::{agent as a, csi as c, health as h};

// Health.
wire_message!(CheckRequest => h::CheckRequest { service: service });
wire_message!(HealthCheckResponse => h::HealthCheckResponse { status: status });
wire_message!(VersionCheckResponse => h::VersionCheckResponse {
    grpc_version: grpc_version, agent_version: agent_version,
});

// Sandbox, storages, devices.
wire_message!(KernelModule => a::KernelModule { name: name, parameters: parameters });
wire_message!(CreateSandboxRequest => a::CreateSandboxRequest {
    hostname: hostname, dns: dns, storages: storages, sandbox_pidns: sandbox_pidns,
    sandbox_id: sandbox_id, guest_hook_path: guest_hook_path, kernel_modules: kernel_modules,
});
wire_message!(DestroySandboxRequest => a::DestroySandboxRequest {});
wire_message!(FSGroup => a::FSGroup {
    group_id: group_id, group_change_policy: group_change_policy,
});
wire_message!(Storage => a::Storage {
    driver: driver, driver_options: driver_options, source: source, fstype: fstype,
    options: options, mount_point: mount_point, fs_group: fs_group, shared: shared,
});
wire_message!(Device => a::Device {
    id: id, kind: type_, vm_path: vm_path, container_path: container_path, options: options,
});
wire_message!(UpdateEphemeralMountsRequest => a::UpdateEphemeralMountsRequest {
    storages: storages,
});
wire_message!(RemoveStaleVirtiofsShareMountsRequest => a::RemoveStaleVirtiofsShareMountsRequest {});

// Containers.
wire_message!(StringUser => a::StringUser {
    uid: uid, gid: gid, additional_gids: additionalGids,
});
wire_message!(SharedMount => a::SharedMount {
    name: name, src_ctr: src_ctr, src_path: src_path, dst_ctr: dst_ctr, dst_path: dst_path,
});
wire_message!(CreateContainerRequest => a::CreateContainerRequest {
    container_id: container_id, exec_id: exec_id, string_user: string_user, devices: devices,
    storages: storages, oci: OCI, sandbox_pidns: sandbox_pidns, shared_mounts: shared_mounts,
    stdin_port: stdin_port, stdout_port: stdout_port, stderr_port: stderr_port,
});
wire_message!(StartContainerRequest => a::StartContainerRequest { container_id: container_id });
wire_message!(RemoveContainerRequest => a::RemoveContainerRequest {
    container_id: container_id, timeout: timeout,
});
wire_message!(UpdateContainerRequest => a::UpdateContainerRequest {
    container_id: container_id, resources: resources,
});
wire_message!(StatsContainerRequest => a::StatsContainerRequest { container_id: container_id });
wire_message!(PauseContainerRequest => a::PauseContainerRequest { container_id: container_id });
wire_message!(ResumeContainerRequest => a::ResumeContainerRequest { container_id: container_id });
wire_message!(GetDiagnosticDataRequest => a::GetDiagnosticDataRequest {
    log_type: log_type, container_id: container_id,
});
wire_message!(GetDiagnosticDataResponse => a::GetDiagnosticDataResponse { data: data });

// Processes.
wire_message!(ExecProcessRequest => a::ExecProcessRequest {
    container_id: container_id, exec_id: exec_id, string_user: string_user, process: process,
    stdin_port: stdin_port, stdout_port: stdout_port, stderr_port: stderr_port,
});
wire_message!(SignalProcessRequest => a::SignalProcessRequest {
    container_id: container_id, exec_id: exec_id, signal: signal,
});
wire_message!(WaitProcessRequest => a::WaitProcessRequest {
    container_id: container_id, exec_id: exec_id,
});
wire_message!(WaitProcessResponse => a::WaitProcessResponse { status: status });

// Streams.
wire_message!(WriteStreamRequest => a::WriteStreamRequest {
    container_id: container_id, exec_id: exec_id, data: data,
});
wire_message!(WriteStreamResponse => a::WriteStreamResponse { len: len });
wire_message!(ReadStreamRequest => a::ReadStreamRequest {
    container_id: container_id, exec_id: exec_id, len: len,
});
wire_message!(ReadStreamResponse => a::ReadStreamResponse { data: data });
wire_message!(CloseStdinRequest => a::CloseStdinRequest {
    container_id: container_id, exec_id: exec_id,
});
wire_message!(TtyWinResizeRequest => a::TtyWinResizeRequest {
    container_id: container_id, exec_id: exec_id, row: row, column: column,
});

// Statistics.
wire_message!(CpuUsage => a::CpuUsage {
    total_usage: total_usage, percpu_usage: percpu_usage,
    usage_in_kernelmode: usage_in_kernelmode, usage_in_usermode: usage_in_usermode,
});
wire_message!(ThrottlingData => a::ThrottlingData {
    periods: periods, throttled_periods: throttled_periods, throttled_time: throttled_time,
});
wire_message!(CpuStats => a::CpuStats { cpu_usage: cpu_usage, throttling_data: throttling_data });
wire_message!(PidsStats => a::PidsStats { current: current, limit: limit });
wire_message!(MemoryData => a::MemoryData {
    usage: usage, max_usage: max_usage, failcnt: failcnt, limit: limit,
});
wire_message!(MemoryStats => a::MemoryStats {
    cache: cache, usage: usage, swap_usage: swap_usage, kernel_usage: kernel_usage,
    use_hierarchy: use_hierarchy, stats: stats,
});
wire_message!(BlkioStatsEntry => a::BlkioStatsEntry {
    major: major, minor: minor, op: op, value: value,
});
wire_message!(BlkioStats => a::BlkioStats {
    io_service_bytes_recursive: io_service_bytes_recursive,
    io_serviced_recursive: io_serviced_recursive, io_queued_recursive: io_queued_recursive,
    io_service_time_recursive: io_service_time_recursive,
    io_wait_time_recursive: io_wait_time_recursive, io_merged_recursive: io_merged_recursive,
    io_time_recursive: io_time_recursive, sectors_recursive: sectors_recursive,
});
wire_message!(HugetlbStats => a::HugetlbStats {
    usage: usage, max_usage: max_usage, failcnt: failcnt,
});
wire_message!(CgroupStats => a::CgroupStats {
    cpu_stats: cpu_stats, memory_stats: memory_stats, pids_stats: pids_stats,
    blkio_stats: blkio_stats, hugetlb_stats: hugetlb_stats,
});
wire_message!(NetworkStats => a::NetworkStats {
    name: name, rx_bytes: rx_bytes, rx_packets: rx_packets, rx_errors: rx_errors,
    rx_dropped: rx_dropped, tx_bytes: tx_bytes, tx_packets: tx_packets, tx_errors: tx_errors,
    tx_dropped: tx_dropped,
});
wire_message!(StatsContainerResponse => a::StatsContainerResponse {
    cgroup_stats: cgroup_stats, network_stats: network_stats,
});
wire_message!(GetMetricsRequest => a::GetMetricsRequest {});
wire_message!(Metrics => a::Metrics { metrics: metrics });
wire_message!(VolumeStatsRequest => a::VolumeStatsRequest {
    volume_guest_path: volume_guest_path,
});
wire_message!(VolumeUsage => c::VolumeUsage {
    available: available, total: total, used: used, unit: unit,
});
wire_message!(VolumeCondition => c::VolumeCondition { abnormal: abnormal, message: message });
wire_message!(VolumeStatsResponse => c::VolumeStatsResponse {
    usage: usage, volume_condition: volume_condition,
});

// Guest-wide.
wire_message!(GuestDetailsRequest => a::GuestDetailsRequest {
    mem_block_size: mem_block_size, mem_hotplug_probe: mem_hotplug_probe,
});
wire_message!(AgentDetails => a::AgentDetails {
    version: version, init_daemon: init_daemon, device_handlers: device_handlers,
    storage_handlers: storage_handlers, supports_seccomp: supports_seccomp,
    extra_features: extra_features,
});
wire_message!(GuestDetailsResponse => a::GuestDetailsResponse {
    mem_block_size_bytes: mem_block_size_bytes, agent_details: agent_details,
    support_mem_hotplug_probe: support_mem_hotplug_probe,
});
wire_message!(OnlineCPUMemRequest => a::OnlineCPUMemRequest {
    wait: wait, nb_cpus: nb_cpus, cpu_only: cpu_only,
});
wire_message!(ReseedRandomDevRequest => a::ReseedRandomDevRequest { data: data });
wire_message!(MemHotplugByProbeRequest => a::MemHotplugByProbeRequest {
    mem_hotplug_probe_addr: memHotplugProbeAddr,
});
wire_message!(SetGuestDateTimeRequest => a::SetGuestDateTimeRequest { sec: Sec, usec: Usec });
wire_message!(CopyFileRequest => a::CopyFileRequest {
    path: path, file_size: file_size, file_mode: file_mode, dir_mode: dir_mode, uid: uid,
    gid: gid, offset: offset, data: data,
});
wire_message!(GetOOMEventRequest => a::GetOOMEventRequest {});
wire_message!(OOMEvent => a::OOMEvent { container_id: container_id });
wire_message!(AddSwapRequest => a::AddSwapRequest { pci_path: PCIPath });
wire_message!(AddSwapPathRequest => a::AddSwapPathRequest { path: path });
wire_message!(ResizeVolumeRequest => a::ResizeVolumeRequest {
    volume_guest_path: volume_guest_path, size: size,
});
wire_message!(SetPolicyRequest => a::SetPolicyRequest { policy: policy });
wire_message!(MemAgentMemcgConfig => a::MemAgentMemcgConfig {
    disabled: disabled, swap: swap, swappiness_max: swappiness_max, period_secs: period_secs,
    period_psi_percent_limit: period_psi_percent_limit,
    eviction_psi_percent_limit: eviction_psi_percent_limit,
    eviction_run_aging_count_min: eviction_run_aging_count_min,
});
wire_message!(MemAgentCompactConfig => a::MemAgentCompactConfig {
    disabled: disabled, period_secs: period_secs,
    period_psi_percent_limit: period_psi_percent_limit,
    compact_psi_percent_limit: compact_psi_percent_limit, compact_sec_max: compact_sec_max,
    compact_order: compact_order, compact_threshold: compact_threshold,
    compact_force_times: compact_force_times,
});
