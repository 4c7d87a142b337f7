//! The single table of RPCs. Every per-RPC piece of code in the crate (the request enum, names,
//! policy rules, the server adapter, the client) is generated from it, so adding an RPC is one
//! line here (plus its domain types and conversions).
//!
//! Columns: enum variant, RPC (method) name, policy rule (request message name), generated
//! method name, domain request, wire request, domain response, wire response, long poll (no
//! default client timeout).

/// Invokes `$callback!` with the `grpc.Health` rows and the `grpc.AgentService` rows.
macro_rules! with_rpc_table {
    ($callback:ident) => {
        $callback! {
            health {
                Check, "Check", "CheckRequest", check,
                    CheckRequest, crate::wire::health::CheckRequest,
                    HealthCheckResponse, crate::wire::health::HealthCheckResponse, false;
                Version, "Version", "CheckRequest", version,
                    CheckRequest, crate::wire::health::CheckRequest,
                    VersionCheckResponse, crate::wire::health::VersionCheckResponse, false;
            }
            agent {
                CreateContainer, "CreateContainer", "CreateContainerRequest", create_container,
                    CreateContainerRequest, crate::wire::agent::CreateContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                StartContainer, "StartContainer", "StartContainerRequest", start_container,
                    StartContainerRequest, crate::wire::agent::StartContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                RemoveContainer, "RemoveContainer", "RemoveContainerRequest", remove_container,
                    RemoveContainerRequest, crate::wire::agent::RemoveContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                ExecProcess, "ExecProcess", "ExecProcessRequest", exec_process,
                    ExecProcessRequest, crate::wire::agent::ExecProcessRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                SignalProcess, "SignalProcess", "SignalProcessRequest", signal_process,
                    SignalProcessRequest, crate::wire::agent::SignalProcessRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                WaitProcess, "WaitProcess", "WaitProcessRequest", wait_process,
                    WaitProcessRequest, crate::wire::agent::WaitProcessRequest,
                    WaitProcessResponse, crate::wire::agent::WaitProcessResponse, true;
                UpdateContainer, "UpdateContainer", "UpdateContainerRequest", update_container,
                    UpdateContainerRequest, crate::wire::agent::UpdateContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                UpdateEphemeralMounts, "UpdateEphemeralMounts", "UpdateEphemeralMountsRequest",
                    update_ephemeral_mounts,
                    UpdateEphemeralMountsRequest, crate::wire::agent::UpdateEphemeralMountsRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                StatsContainer, "StatsContainer", "StatsContainerRequest", stats_container,
                    StatsContainerRequest, crate::wire::agent::StatsContainerRequest,
                    StatsContainerResponse, crate::wire::agent::StatsContainerResponse, false;
                PauseContainer, "PauseContainer", "PauseContainerRequest", pause_container,
                    PauseContainerRequest, crate::wire::agent::PauseContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                ResumeContainer, "ResumeContainer", "ResumeContainerRequest", resume_container,
                    ResumeContainerRequest, crate::wire::agent::ResumeContainerRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                RemoveStaleVirtiofsShareMounts, "RemoveStaleVirtiofsShareMounts",
                    "RemoveStaleVirtiofsShareMountsRequest", remove_stale_virtiofs_share_mounts,
                    RemoveStaleVirtiofsShareMountsRequest,
                    crate::wire::agent::RemoveStaleVirtiofsShareMountsRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                GetDiagnosticData, "GetDiagnosticData", "GetDiagnosticDataRequest",
                    get_diagnostic_data,
                    GetDiagnosticDataRequest, crate::wire::agent::GetDiagnosticDataRequest,
                    GetDiagnosticDataResponse, crate::wire::agent::GetDiagnosticDataResponse, false;
                WriteStdin, "WriteStdin", "WriteStreamRequest", write_stdin,
                    WriteStreamRequest, crate::wire::agent::WriteStreamRequest,
                    WriteStreamResponse, crate::wire::agent::WriteStreamResponse, false;
                ReadStdout, "ReadStdout", "ReadStreamRequest", read_stdout,
                    ReadStreamRequest, crate::wire::agent::ReadStreamRequest,
                    ReadStreamResponse, crate::wire::agent::ReadStreamResponse, true;
                ReadStderr, "ReadStderr", "ReadStreamRequest", read_stderr,
                    ReadStreamRequest, crate::wire::agent::ReadStreamRequest,
                    ReadStreamResponse, crate::wire::agent::ReadStreamResponse, true;
                CloseStdin, "CloseStdin", "CloseStdinRequest", close_stdin,
                    CloseStdinRequest, crate::wire::agent::CloseStdinRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                TtyWinResize, "TtyWinResize", "TtyWinResizeRequest", tty_win_resize,
                    TtyWinResizeRequest, crate::wire::agent::TtyWinResizeRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                UpdateInterface, "UpdateInterface", "UpdateInterfaceRequest", update_interface,
                    UpdateInterfaceRequest, crate::wire::agent::UpdateInterfaceRequest,
                    Interface, crate::wire::types::Interface, false;
                UpdateRoutes, "UpdateRoutes", "UpdateRoutesRequest", update_routes,
                    UpdateRoutesRequest, crate::wire::agent::UpdateRoutesRequest,
                    Routes, crate::wire::agent::Routes, false;
                ListInterfaces, "ListInterfaces", "ListInterfacesRequest", list_interfaces,
                    ListInterfacesRequest, crate::wire::agent::ListInterfacesRequest,
                    Interfaces, crate::wire::agent::Interfaces, false;
                ListRoutes, "ListRoutes", "ListRoutesRequest", list_routes,
                    ListRoutesRequest, crate::wire::agent::ListRoutesRequest,
                    Routes, crate::wire::agent::Routes, false;
                AddARPNeighbors, "AddARPNeighbors", "AddARPNeighborsRequest", add_arp_neighbors,
                    AddARPNeighborsRequest, crate::wire::agent::AddARPNeighborsRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                GetIPTables, "GetIPTables", "GetIPTablesRequest", get_ip_tables,
                    GetIPTablesRequest, crate::wire::agent::GetIPTablesRequest,
                    GetIPTablesResponse, crate::wire::agent::GetIPTablesResponse, false;
                SetIPTables, "SetIPTables", "SetIPTablesRequest", set_ip_tables,
                    SetIPTablesRequest, crate::wire::agent::SetIPTablesRequest,
                    SetIPTablesResponse, crate::wire::agent::SetIPTablesResponse, false;
                GetMetrics, "GetMetrics", "GetMetricsRequest", get_metrics,
                    GetMetricsRequest, crate::wire::agent::GetMetricsRequest,
                    Metrics, crate::wire::agent::Metrics, false;
                MemAgentMemcgSet, "MemAgentMemcgSet", "MemAgentMemcgConfig", mem_agent_memcg_set,
                    MemAgentMemcgConfig, crate::wire::agent::MemAgentMemcgConfig,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                MemAgentCompactSet, "MemAgentCompactSet", "MemAgentCompactConfig",
                    mem_agent_compact_set,
                    MemAgentCompactConfig, crate::wire::agent::MemAgentCompactConfig,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                CreateSandbox, "CreateSandbox", "CreateSandboxRequest", create_sandbox,
                    CreateSandboxRequest, crate::wire::agent::CreateSandboxRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                DestroySandbox, "DestroySandbox", "DestroySandboxRequest", destroy_sandbox,
                    DestroySandboxRequest, crate::wire::agent::DestroySandboxRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                OnlineCPUMem, "OnlineCPUMem", "OnlineCPUMemRequest", online_cpu_mem,
                    OnlineCPUMemRequest, crate::wire::agent::OnlineCPUMemRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                ReseedRandomDev, "ReseedRandomDev", "ReseedRandomDevRequest", reseed_random_dev,
                    ReseedRandomDevRequest, crate::wire::agent::ReseedRandomDevRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                GetGuestDetails, "GetGuestDetails", "GuestDetailsRequest", get_guest_details,
                    GuestDetailsRequest, crate::wire::agent::GuestDetailsRequest,
                    GuestDetailsResponse, crate::wire::agent::GuestDetailsResponse, false;
                MemHotplugByProbe, "MemHotplugByProbe", "MemHotplugByProbeRequest",
                    mem_hotplug_by_probe,
                    MemHotplugByProbeRequest, crate::wire::agent::MemHotplugByProbeRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                SetGuestDateTime, "SetGuestDateTime", "SetGuestDateTimeRequest",
                    set_guest_date_time,
                    SetGuestDateTimeRequest, crate::wire::agent::SetGuestDateTimeRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                CopyFile, "CopyFile", "CopyFileRequest", copy_file,
                    CopyFileRequest, crate::wire::agent::CopyFileRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                GetOOMEvent, "GetOOMEvent", "GetOOMEventRequest", get_oom_event,
                    GetOOMEventRequest, crate::wire::agent::GetOOMEventRequest,
                    OOMEvent, crate::wire::agent::OOMEvent, true;
                AddSwap, "AddSwap", "AddSwapRequest", add_swap,
                    AddSwapRequest, crate::wire::agent::AddSwapRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                AddSwapPath, "AddSwapPath", "AddSwapPathRequest", add_swap_path,
                    AddSwapPathRequest, crate::wire::agent::AddSwapPathRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                GetVolumeStats, "GetVolumeStats", "VolumeStatsRequest", get_volume_stats,
                    VolumeStatsRequest, crate::wire::agent::VolumeStatsRequest,
                    VolumeStatsResponse, crate::wire::csi::VolumeStatsResponse, false;
                ResizeVolume, "ResizeVolume", "ResizeVolumeRequest", resize_volume,
                    ResizeVolumeRequest, crate::wire::agent::ResizeVolumeRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
                SetPolicy, "SetPolicy", "SetPolicyRequest", set_policy,
                    SetPolicyRequest, crate::wire::agent::SetPolicyRequest,
                    (), ::protobuf::well_known_types::empty::Empty, false;
            }
        }
    };
}
pub(crate) use with_rpc_table;
