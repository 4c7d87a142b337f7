//! Container lifecycle requests: create, start, remove, update, stats, pause/resume.

use serde::{Deserialize, Serialize};

use super::{Device, LinuxResources, Spec, Storage};

/// `StringUser`: user/group names to resolve inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StringUser {
    /// User name or number (field 1).
    pub uid: String,
    /// Group name or number (field 2).
    pub gid: String,
    /// Additional groups (field 3).
    #[serde(rename = "additionalGids")]
    pub additional_gids: Vec<String>,
}

/// `SharedMount`: a mount shared between two containers of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharedMount {
    /// Pair name (field 1).
    pub name: String,
    /// Source container name (field 2).
    pub src_ctr: String,
    /// Source path (field 3).
    pub src_path: String,
    /// Destination container name (field 4).
    pub dst_ctr: String,
    /// Destination path (field 5).
    pub dst_path: String,
}

/// `CreateContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id of the init process (field 2).
    pub exec_id: String,
    /// Named user to resolve (field 3).
    pub string_user: Option<StringUser>,
    /// Devices (field 4).
    pub devices: Vec<Device>,
    /// Storages to mount first (field 5).
    pub storages: Vec<Storage>,
    /// OCI runtime spec (field 6).
    #[serde(rename = "OCI")]
    pub oci: Option<Spec>,
    /// Join the sandbox PID namespace (field 7).
    pub sandbox_pidns: bool,
    /// Cross-container shared mounts (field 8).
    pub shared_mounts: Vec<SharedMount>,
    /// Passfd vport for stdin; 0 = off (field 9).
    pub stdin_port: u32,
    /// Passfd vport for stdout; 0 = off (field 10).
    pub stdout_port: u32,
    /// Passfd vport for stderr; 0 = off (field 11).
    pub stderr_port: u32,
}

/// `StartContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
}

/// `RemoveContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoveContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Seconds to wait for the processes to die; 0 waits without limit (field 2).
    pub timeout: u32,
}

/// `UpdateContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// New cgroup resources (field 2).
    pub resources: Option<LinuxResources>,
}

/// `StatsContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
}

/// `PauseContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PauseContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
}

/// `ResumeContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResumeContainerRequest {
    /// Container id (field 1).
    pub container_id: String,
}

/// `GetDiagnosticDataRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetDiagnosticDataRequest {
    /// Kind of log requested (field 1).
    pub log_type: String,
    /// Container id (field 2).
    pub container_id: String,
}

/// `GetDiagnosticDataResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetDiagnosticDataResponse {
    /// Diagnostic text (field 1).
    pub data: String,
}
