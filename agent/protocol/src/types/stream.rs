//! Standard stream requests: write stdin, read stdout/stderr, close stdin, resize the tty.

use serde::{Deserialize, Serialize};

/// `WriteStreamRequest` (WriteStdin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteStreamRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id (field 2).
    pub exec_id: String,
    /// Bytes to write (field 3).
    pub data: Vec<u8>,
}

/// `WriteStreamResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteStreamResponse {
    /// Bytes accepted (field 1).
    pub len: u32,
}

/// `ReadStreamRequest` (ReadStdout and ReadStderr).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadStreamRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id (field 2).
    pub exec_id: String,
    /// Maximum bytes to return (field 3).
    pub len: u32,
}

/// `ReadStreamResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadStreamResponse {
    /// Bytes read; empty at end of stream (field 1).
    pub data: Vec<u8>,
}

/// `CloseStdinRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloseStdinRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id (field 2).
    pub exec_id: String,
}

/// `TtyWinResizeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TtyWinResizeRequest {
    /// Container id (field 1).
    pub container_id: String,
    /// Exec id (field 2).
    pub exec_id: String,
    /// Rows (field 3).
    pub row: u32,
    /// Columns (field 4).
    pub column: u32,
}
