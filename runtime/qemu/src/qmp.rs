//! QMP (QEMU Machine Protocol): a pure codec plus a small async client.
//!
//! The codec turns one JSON line into a [`QmpMessage`] and a command into a line; the client
//! does the greeting / `qmp_capabilities` negotiation and matches replies by `id`, keeping
//! asynchronous events aside.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Errors from the QMP codec or client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The line is not a QMP message.
    #[error("malformed QMP message: {0}")]
    Malformed(String),
    /// QEMU answered a command with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// Command name.
        command: String,
        /// QMP error class (e.g. `GenericError`).
        class: String,
        /// Human-readable description.
        desc: String,
    },
    /// The socket closed before the expected reply.
    #[error("QMP connection closed by QEMU")]
    Closed,
    /// No reply in time.
    #[error("QMP {0} timed out")]
    Timeout(String),
    /// Socket I/O failed.
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    /// The banner sent on connect.
    Greeting {
        /// `major.minor.micro` of QEMU.
        version: (u64, u64, u64),
        /// Advertised capabilities.
        capabilities: Vec<String>,
    },
    /// A successful reply.
    Return {
        /// The `id` given with the command.
        id: Option<Value>,
        /// The `return` value.
        value: Value,
    },
    /// A failed reply.
    Error {
        /// The `id` given with the command.
        id: Option<Value>,
        /// Error class.
        class: String,
        /// Description.
        desc: String,
    },
    /// An asynchronous event (`SHUTDOWN`, `STOP`, ...).
    Event {
        /// Event name.
        name: String,
        /// Event data (may be null).
        data: Value,
    },
}

/// Parses one line received from QEMU.
pub fn parse_message(line: &str) -> Result<QmpMessage, QmpError> {
    let v: Value =
        serde_json::from_str(line.trim()).map_err(|e| QmpError::Malformed(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| QmpError::Malformed("not a JSON object".into()))?;
    if let Some(qmp) = obj.get("QMP") {
        let ver = &qmp["version"]["qemu"];
        let n = |k: &str| ver[k].as_u64().unwrap_or(0);
        let capabilities = qmp["capabilities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(QmpMessage::Greeting {
            version: (n("major"), n("minor"), n("micro")),
            capabilities,
        });
    }
    let id = obj.get("id").cloned();
    if let Some(value) = obj.get("return") {
        return Ok(QmpMessage::Return {
            id,
            value: value.clone(),
        });
    }
    if let Some(err) = obj.get("error") {
        return Ok(QmpMessage::Error {
            id,
            class: err["class"].as_str().unwrap_or("Unknown").to_string(),
            desc: err["desc"].as_str().unwrap_or("").to_string(),
        });
    }
    if let Some(name) = obj.get("event").and_then(Value::as_str) {
        return Ok(QmpMessage::Event {
            name: name.to_string(),
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        });
    }
    Err(QmpError::Malformed(format!(
        "unknown message shape: {line}"
    )))
}

/// Encodes a command as one line (with trailing newline).
pub fn encode_command(command: &str, arguments: Option<Value>, id: u64) -> String {
    let mut cmd = json!({ "execute": command, "id": id });
    if let (Some(args), Some(map)) = (arguments, cmd.as_object_mut()) {
        map.insert("arguments".into(), args);
    }
    format!("{cmd}\n")
}

/// The run state reported by `query-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    /// QEMU's status string (`running`, `paused`, `prelaunch`, `shutdown`, ...).
    pub status: String,
    /// Whether vCPUs are running.
    pub running: bool,
}

/// A connected, negotiated QMP session.
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// QEMU version from the greeting.
    pub version: (u64, u64, u64),
    events: Vec<QmpMessage>,
    timeout: Duration,
}

impl QmpClient {
    /// Connects to QEMU's QMP socket and negotiates capabilities.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| QmpError::Timeout("connect".into()))??;
        let (r, w) = stream.into_split();
        let mut client = QmpClient {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            version: (0, 0, 0),
            events: Vec::new(),
            timeout,
        };
        match client.read_message("greeting").await? {
            QmpMessage::Greeting { version, .. } => client.version = version,
            other => {
                return Err(QmpError::Malformed(format!(
                    "expected greeting, got {other:?}"
                )));
            }
        }
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    async fn read_message(&mut self, what: &str) -> Result<QmpMessage, QmpError> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout(what.to_string()))??;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        parse_message(&line)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .write_all(encode_command(command, args, id).as_bytes())
            .await?;
        loop {
            match self.read_message(command).await? {
                QmpMessage::Return {
                    id: Some(rid),
                    value,
                } if rid == json!(id) => return Ok(value),
                QmpMessage::Error {
                    id: Some(rid),
                    class,
                    desc,
                } if rid == json!(id) => {
                    return Err(QmpError::Command {
                        command: command.to_string(),
                        class,
                        desc,
                    });
                }
                ev @ QmpMessage::Event { .. } => self.events.push(ev),
                other => tracing::debug!(?other, "unmatched QMP message"),
            }
        }
    }

    /// `query-status`.
    pub async fn query_status(&mut self) -> Result<VmStatus, QmpError> {
        let v = self.execute("query-status", None).await?;
        Ok(VmStatus {
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            running: v["running"].as_bool().unwrap_or(false),
        })
    }

    /// `quit`: QEMU exits at once. The socket may close before the reply arrives.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Events received so far while waiting for replies.
    pub fn take_events(&mut self) -> Vec<QmpMessage> {
        std::mem::take(&mut self.events)
    }
}
