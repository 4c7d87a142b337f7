//! `grpc.Health`: Check and Version.

use serde::{Deserialize, Serialize};

use super::proto_enum;

/// `CheckRequest`: argument of `Health.Check` and `Health.Version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckRequest {
    /// Service name to check (Kata's shim sends an empty string).
    pub service: String,
}

proto_enum! {
    /// `HealthCheckResponse.ServingStatus`.
    ServingStatus {
        /// 0: unknown.
        Unknown = 0,
        /// 1: the agent is serving.
        Serving = 1,
        /// 2: the agent is not serving.
        NotServing = 2,
    }
}

/// `HealthCheckResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheckResponse {
    /// Serving status (field 1).
    pub status: ServingStatus,
}

/// `VersionCheckResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionCheckResponse {
    /// Protocol (gRPC/ttRPC API) version string (field 1).
    pub grpc_version: String,
    /// Agent version string (field 2).
    pub agent_version: String,
}
