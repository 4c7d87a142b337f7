//! The dispatch seam: [`AgentRequest`] (one variant per RPC, carrying the domain request) and
//! [`AgentResponse`].

use serde_json::Value;

use crate::rpc_table::with_rpc_table;
use crate::types::*;

/// Which ttRPC service an RPC belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `grpc.Health` (Check, Version).
    Health,
    /// `grpc.AgentService` (the 42 agent RPCs).
    Agent,
}

impl Service {
    /// Fully qualified ttRPC service name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Health => "grpc.Health",
            Service::Agent => "grpc.AgentService",
        }
    }
}

/// Names of one RPC: service, method and policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RpcInfo {
    /// Service.
    pub service: Service,
    /// Method name, e.g. `CreateContainer`.
    pub rpc: &'static str,
    /// Policy rule = request message name, e.g. `CreateContainerRequest`.
    pub policy_rule: &'static str,
}

macro_rules! define_request_enum {
    (
        health { $($hv:ident, $hrpc:literal, $hrule:literal, $hm:ident, $hreq:ty, $hwreq:ty, $hresp:ty, $hwresp:ty, $hlong:literal;)* }
        agent { $($av:ident, $arpc:literal, $arule:literal, $am:ident, $areq:ty, $awreq:ty, $aresp:ty, $awresp:ty, $along:literal;)* }
    ) => {
        /// One request of either service, carrying its domain request.
        // Requests are built once and moved into the dispatcher; boxing the large ones would only
        // make matching on them clumsier.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum AgentRequest {
            $(
                #[doc = concat!("`grpc.Health/", $hrpc, "`.")]
                $hv($hreq),
            )*
            $(
                #[doc = concat!("`grpc.AgentService/", $arpc, "`.")]
                $av($areq),
            )*
        }

        impl AgentRequest {
            /// Every `grpc.Health` RPC, in proto order.
            pub const HEALTH_RPCS: &'static [RpcInfo] = &[
                $(RpcInfo { service: Service::Health, rpc: $hrpc, policy_rule: $hrule },)*
            ];
            /// Every `grpc.AgentService` RPC, in proto order (42).
            pub const AGENT_RPCS: &'static [RpcInfo] = &[
                $(RpcInfo { service: Service::Agent, rpc: $arpc, policy_rule: $arule },)*
            ];

            /// The RPC (method) name, e.g. `CreateContainer`, `ReadStdout`.
            pub fn rpc_name(&self) -> &'static str {
                match self {
                    $(AgentRequest::$hv(_) => $hrpc,)*
                    $(AgentRequest::$av(_) => $arpc,)*
                }
            }

            /// The policy rule name: the request *message* name, e.g. `WriteStreamRequest` for
            /// WriteStdin, `GuestDetailsRequest` for GetGuestDetails. Health RPCs answer
            /// `CheckRequest` (Kata does not gate them; the gate decides).
            pub fn policy_rule(&self) -> &'static str {
                match self {
                    $(AgentRequest::$hv(_) => $hrule,)*
                    $(AgentRequest::$av(_) => $arule,)*
                }
            }

            /// The service this request belongs to.
            pub fn service(&self) -> Service {
                match self {
                    $(AgentRequest::$hv(_) => Service::Health,)*
                    $(AgentRequest::$av(_) => Service::Agent,)*
                }
            }

            /// Whether the RPC is a long poll that has no default client timeout (WaitProcess,
            /// ReadStdout, ReadStderr, GetOOMEvent).
            pub fn is_long_poll(&self) -> bool {
                match self {
                    $(AgentRequest::$hv(_) => $hlong,)*
                    $(AgentRequest::$av(_) => $along,)*
                }
            }

            /// The policy `input` document: the request as JSON with proto field names. A
            /// CopyFile request is given in its policy view (no data bytes, file type and symlink
            /// target spelled out), as Kata's agent does.
            pub fn to_policy_input(&self) -> Value {
                if let AgentRequest::CopyFile(req) = self {
                    return serde_json::to_value(req.policy_view()).unwrap_or(Value::Null);
                }
                let value = match self {
                    $(AgentRequest::$hv(req) => serde_json::to_value(req),)*
                    $(AgentRequest::$av(req) => serde_json::to_value(req),)*
                };
                // Serialising these plain structs cannot fail (all map keys are strings).
                value.unwrap_or(Value::Null)
            }

            /// A request of the given RPC name with all-default fields, or `None` for an unknown
            /// name. Used by sweeps that must touch every RPC.
            pub fn default_for(rpc: &str) -> Option<AgentRequest> {
                match rpc {
                    $($hrpc => Some(AgentRequest::$hv(Default::default())),)*
                    $($arpc => Some(AgentRequest::$av(Default::default())),)*
                    _ => None,
                }
            }
        }
    };
}
with_rpc_table!(define_request_enum);

/// A response of either service, carrying its domain response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentResponse {
    /// `google.protobuf.Empty` (most AgentService RPCs).
    Empty,
    /// Health.Check.
    HealthCheck(HealthCheckResponse),
    /// Health.Version.
    Version(VersionCheckResponse),
    /// WaitProcess.
    WaitProcess(WaitProcessResponse),
    /// StatsContainer.
    StatsContainer(StatsContainerResponse),
    /// GetDiagnosticData.
    DiagnosticData(GetDiagnosticDataResponse),
    /// WriteStdin.
    WriteStream(WriteStreamResponse),
    /// ReadStdout / ReadStderr.
    ReadStream(ReadStreamResponse),
    /// UpdateInterface.
    Interface(Interface),
    /// UpdateRoutes / ListRoutes.
    Routes(Routes),
    /// ListInterfaces.
    Interfaces(Interfaces),
    /// GetIPTables.
    GetIPTables(GetIPTablesResponse),
    /// SetIPTables.
    SetIPTables(SetIPTablesResponse),
    /// GetMetrics.
    Metrics(Metrics),
    /// GetGuestDetails.
    GuestDetails(GuestDetailsResponse),
    /// GetOOMEvent.
    OOMEvent(OOMEvent),
    /// GetVolumeStats.
    VolumeStats(VolumeStatsResponse),
}

impl AgentResponse {
    /// The variant name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentResponse::Empty => "Empty",
            AgentResponse::HealthCheck(_) => "HealthCheck",
            AgentResponse::Version(_) => "Version",
            AgentResponse::WaitProcess(_) => "WaitProcess",
            AgentResponse::StatsContainer(_) => "StatsContainer",
            AgentResponse::DiagnosticData(_) => "DiagnosticData",
            AgentResponse::WriteStream(_) => "WriteStream",
            AgentResponse::ReadStream(_) => "ReadStream",
            AgentResponse::Interface(_) => "Interface",
            AgentResponse::Routes(_) => "Routes",
            AgentResponse::Interfaces(_) => "Interfaces",
            AgentResponse::GetIPTables(_) => "GetIPTables",
            AgentResponse::SetIPTables(_) => "SetIPTables",
            AgentResponse::Metrics(_) => "Metrics",
            AgentResponse::GuestDetails(_) => "GuestDetails",
            AgentResponse::OOMEvent(_) => "OOMEvent",
            AgentResponse::VolumeStats(_) => "VolumeStats",
        }
    }
}

/// A domain response type that has exactly one [`AgentResponse`] variant.
pub(crate) trait ResponseBody: Sized {
    fn into_response(self) -> AgentResponse;
    /// The body, or the response back when it is another variant.
    #[allow(clippy::result_large_err)]
    fn from_response(response: AgentResponse) -> Result<Self, AgentResponse>;
}

impl ResponseBody for () {
    fn into_response(self) -> AgentResponse {
        AgentResponse::Empty
    }
    #[allow(clippy::result_large_err)]
    fn from_response(response: AgentResponse) -> Result<Self, AgentResponse> {
        match response {
            AgentResponse::Empty => Ok(()),
            other => Err(other),
        }
    }
}

macro_rules! response_body {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl ResponseBody for $ty {
            fn into_response(self) -> AgentResponse {
                AgentResponse::$variant(self)
            }
            #[allow(clippy::result_large_err)]
            fn from_response(response: AgentResponse) -> Result<Self, AgentResponse> {
                match response {
                    AgentResponse::$variant(body) => Ok(body),
                    other => Err(other),
                }
            }
        })*
    };
}
response_body!(
    HealthCheckResponse => HealthCheck,
    VersionCheckResponse => Version,
    WaitProcessResponse => WaitProcess,
    StatsContainerResponse => StatsContainer,
    GetDiagnosticDataResponse => DiagnosticData,
    WriteStreamResponse => WriteStream,
    ReadStreamResponse => ReadStream,
    Interface => Interface,
    Routes => Routes,
    Interfaces => Interfaces,
    GetIPTablesResponse => GetIPTables,
    SetIPTablesResponse => SetIPTables,
    Metrics => Metrics,
    GuestDetailsResponse => GuestDetails,
    OOMEvent => OOMEvent,
    VolumeStatsResponse => VolumeStats,
);
