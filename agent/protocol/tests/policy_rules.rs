//! The RPC table against protocols.md §1 (42 RPCs in proto order) and §7 (policy rule names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_protocol::{AgentRequest, Service};

/// (RPC, policy rule), in upstream proto order.
const KATA_RPCS: [(&str, &str); 42] = [
    ("CreateContainer", "CreateContainerRequest"),
    ("StartContainer", "StartContainerRequest"),
    ("RemoveContainer", "RemoveContainerRequest"),
    ("ExecProcess", "ExecProcessRequest"),
    ("SignalProcess", "SignalProcessRequest"),
    ("WaitProcess", "WaitProcessRequest"),
    ("UpdateContainer", "UpdateContainerRequest"),
    ("UpdateEphemeralMounts", "UpdateEphemeralMountsRequest"),
    ("StatsContainer", "StatsContainerRequest"),
    ("PauseContainer", "PauseContainerRequest"),
    ("ResumeContainer", "ResumeContainerRequest"),
    (
        "RemoveStaleVirtiofsShareMounts",
        "RemoveStaleVirtiofsShareMountsRequest",
    ),
    ("GetDiagnosticData", "GetDiagnosticDataRequest"),
    ("WriteStdin", "WriteStreamRequest"),
    ("ReadStdout", "ReadStreamRequest"),
    ("ReadStderr", "ReadStreamRequest"),
    ("CloseStdin", "CloseStdinRequest"),
    ("TtyWinResize", "TtyWinResizeRequest"),
    ("UpdateInterface", "UpdateInterfaceRequest"),
    ("UpdateRoutes", "UpdateRoutesRequest"),
    ("ListInterfaces", "ListInterfacesRequest"),
    ("ListRoutes", "ListRoutesRequest"),
    ("AddARPNeighbors", "AddARPNeighborsRequest"),
    ("GetIPTables", "GetIPTablesRequest"),
    ("SetIPTables", "SetIPTablesRequest"),
    ("GetMetrics", "GetMetricsRequest"),
    ("MemAgentMemcgSet", "MemAgentMemcgConfig"),
    ("MemAgentCompactSet", "MemAgentCompactConfig"),
    ("CreateSandbox", "CreateSandboxRequest"),
    ("DestroySandbox", "DestroySandboxRequest"),
    ("OnlineCPUMem", "OnlineCPUMemRequest"),
    ("ReseedRandomDev", "ReseedRandomDevRequest"),
    ("GetGuestDetails", "GuestDetailsRequest"),
    ("MemHotplugByProbe", "MemHotplugByProbeRequest"),
    ("SetGuestDateTime", "SetGuestDateTimeRequest"),
    ("CopyFile", "CopyFileRequest"),
    ("GetOOMEvent", "GetOOMEventRequest"),
    ("AddSwap", "AddSwapRequest"),
    ("AddSwapPath", "AddSwapPathRequest"),
    ("GetVolumeStats", "VolumeStatsRequest"),
    ("ResizeVolume", "ResizeVolumeRequest"),
    ("SetPolicy", "SetPolicyRequest"),
];

#[test]
fn agent_rpcs_and_policy_rules_match_kata() {
    let ours: Vec<(&str, &str)> = AgentRequest::AGENT_RPCS
        .iter()
        .map(|i| (i.rpc, i.policy_rule))
        .collect();
    assert_eq!(ours, KATA_RPCS);
    for (rpc, rule) in KATA_RPCS {
        let request = AgentRequest::default_for(rpc).expect(rpc);
        assert_eq!(request.rpc_name(), rpc);
        assert_eq!(request.policy_rule(), rule, "{rpc}");
        assert_eq!(request.service(), Service::Agent);
        assert_eq!(request.service().name(), "grpc.AgentService");
    }
}

#[test]
fn health_rpcs_and_long_polls() {
    let health: Vec<&str> = AgentRequest::HEALTH_RPCS.iter().map(|i| i.rpc).collect();
    assert_eq!(health, ["Check", "Version"]);
    let check = AgentRequest::default_for("Check").unwrap();
    assert_eq!(check.service().name(), "grpc.Health");
    assert_eq!(check.policy_rule(), "CheckRequest");
    assert!(AgentRequest::default_for("PullImage").is_none());

    let long_polls: Vec<&str> = AgentRequest::AGENT_RPCS
        .iter()
        .filter(|i| AgentRequest::default_for(i.rpc).unwrap().is_long_poll())
        .map(|i| i.rpc)
        .collect();
    assert_eq!(
        long_polls,
        ["WaitProcess", "ReadStdout", "ReadStderr", "GetOOMEvent"]
    );
}
