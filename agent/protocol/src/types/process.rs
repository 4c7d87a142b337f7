//! Process requests: exec, signal, wait.

use serde::{Deserialize, Serialize};

use super::{Process, StringUser};

/// `ExecProcessRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecProcessRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// New exec id (field 2).
    pub exec_id: String,
    /// Named user to resolve (field 3).
    pub string_user: Option<StringUser>,
    /// Process to run (field 4).
    pub process: Option<Process>,
    /// Passfd vport for stdin; 0 = off (field 5).
    pub stdin_port: u32,
    /// Passfd vport for stdout; 0 = off (field 6).
    pub stdout_port: u32,
    /// Passfd vport for stderr; 0 = off (field 7).
    pub stderr_port: u32,
}

/// `SignalProcessRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignalProcessRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id; empty means every process of the container (field 2).
    pub exec_id: String,
    /// Signal number (field 3).
    pub signal: u32,
}

/// `WaitProcessRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitProcessRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id (field 2).
    pub exec_id: String,
}

/// `WaitProcessResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitProcessResponse {
    /// Exit status, shell-style: the exit code, or 128 + signal number (field 1).
    pub status: i32,
}
