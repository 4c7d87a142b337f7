//! Reaching the agent: kernel vhost-vsock (AF_VSOCK) or hybrid vsock (a Unix socket served
//! by `vhost-device-vsock`, with the Firecracker / Cloud Hypervisor `CONNECT <port>` protocol).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Errors while connecting to the agent.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The hybrid vsock socket answered something other than `OK`.
    #[error("hybrid vsock handshake to port {port} refused: {reply:?}")]
    Refused {
        /// Guest port.
        port: u32,
        /// The line received.
        reply: String,
    },
    /// The agent did not accept a connection before the deadline.
    #[error("agent not reachable on vsock port {port} within {waited:?}: {last}")]
    Timeout {
        /// Guest port.
        port: u32,
        /// How long we tried.
        waited: Duration,
        /// The last error seen.
        last: String,
    },
    /// Socket I/O failed.
    #[error("vsock I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of reading the handshake reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeReply {
    /// `OK <n>`: connected; the stream now carries the guest port's bytes.
    Connected,
    /// EOF before any reply: nothing listens on the guest port yet.
    NotListening,
    /// Any other text.
    Refused(String),
}

/// The request line for `port`.
pub fn connect_line(port: u32) -> String {
    format!("CONNECT {port}\n")
}

/// Classifies the reply (bytes up to and excluding `\n`; empty with `eof` means closed).
pub fn classify_reply(line: &[u8], eof: bool) -> HandshakeReply {
    if line.is_empty() && eof {
        return HandshakeReply::NotListening;
    }
    let text = String::from_utf8_lossy(line).trim().to_string();
    let mut words = text.split_whitespace();
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("OK") => HandshakeReply::Connected,
        _ => HandshakeReply::Refused(text),
    }
}

/// Connects once: returns `Ok(None)` when the guest is not listening yet.
pub async fn hybrid_connect_once(uds: &Path, port: u32) -> Result<Option<UnixStream>, VsockError> {
    let mut stream = UnixStream::connect(uds).await?;
    stream.write_all(connect_line(port).as_bytes()).await?;
    // Read byte by byte up to '\n' so nothing after the reply is consumed.
    let mut line = Vec::with_capacity(16);
    let mut eof = false;
    loop {
        let mut b = [0u8; 1];
        match stream.read(&mut b).await? {
            0 => {
                eof = true;
                break;
            }
            _ if b[0] == b'\n' => break,
            _ if line.len() >= 64 => break,
            _ => line.push(b[0]),
        }
    }
    match classify_reply(&line, eof) {
        HandshakeReply::Connected => Ok(Some(stream)),
        HandshakeReply::NotListening => Ok(None),
        HandshakeReply::Refused(reply) => Err(VsockError::Refused { port, reply }),
    }
}

/// How to reach the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// AF_VSOCK to (cid, port).
    Vsock {
        /// Guest CID.
        cid: u32,
        /// Guest port.
        port: u32,
    },
    /// Hybrid vsock Unix socket + guest port.
    Hybrid {
        /// The backend's `--uds-path`.
        uds: PathBuf,
        /// Guest port.
        port: u32,
    },
}

impl AgentEndpoint {
    /// Guest port.
    pub fn port(&self) -> u32 {
        match self {
            AgentEndpoint::Vsock { port, .. } | AgentEndpoint::Hybrid { port, .. } => *port,
        }
    }
}

/// Retries the hybrid-vsock handshake on `uds` until the guest port accepts, `deadline`
/// passes, or `abort` returns a reason (e.g. QEMU exited). EOF before `OK` and
/// ECONNRESET/ECONNREFUSED mean "not yet".
pub async fn connect_with_retry<F>(
    uds: &Path,
    port: u32,
    deadline: Duration,
    mut abort: F,
) -> Result<UnixStream, VsockError>
where
    F: FnMut() -> Option<String>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(20);
    let mut last: String;
    loop {
        if let Some(reason) = abort() {
            return Err(VsockError::Timeout {
                port,
                waited: start.elapsed(),
                last: reason,
            });
        }
        match hybrid_connect_once(uds, port).await {
            Ok(Some(stream)) => return Ok(stream),
            Ok(None) => last = "guest port not listening yet".into(),
            Err(VsockError::Refused { port, reply }) => {
                return Err(VsockError::Refused { port, reply });
            }
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() + delay > deadline {
            return Err(VsockError::Timeout {
                port,
                waited: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
