//! Bridges containerd's stdio (fifos, or plain files) to the agent's stream RPCs.
//!
//! Reads and writes are at most [`CHUNK`] bytes (ADR 0001: the host bounds what is in flight
//! so neither direction of the agent connection is ever saturated by one large write).
//! Fifos are opened read-write so opening never blocks or fails for want of a peer; the end
//! of stdin is therefore signalled by containerd's CloseIO, not by EOF.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use agent_protocol::AgentClient;
use agent_protocol::types::{CloseStdinRequest, ReadStreamRequest, WriteStreamRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Largest read or write on the agent connection.
pub const CHUNK: u32 = 32 * 1024;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

fn strip_scheme(path: &str) -> &str {
    path.strip_prefix("file://").unwrap_or(path)
}

async fn open_writer(path: &str) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    let p = Path::new(strip_scheme(path));
    let meta = tokio::fs::metadata(p).await;
    let is_fifo = meta.as_ref().is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    });
    if is_fifo {
        let tx = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(p)?;
        Ok(Box::new(tx))
    } else {
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .await?;
        Ok(Box::new(f))
    }
}

/// Copies one output stream of a process until the agent reports its end.
pub fn spawn_output(
    agent: AgentClient,
    container_id: String,
    exec_id: String,
    which: Output,
    path: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = match open_writer(&path).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(path, error = %e, "cannot open stdio destination");
                return;
            }
        };
        let agent = agent.with_long_poll_timeout(None);
        loop {
            let req = ReadStreamRequest {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
                len: CHUNK,
            };
            let res = match which {
                Output::Stdout => agent.read_stdout(req).await,
                Output::Stderr => agent.read_stderr(req).await,
            };
            match res {
                Ok(r) if r.data.is_empty() => break,
                Ok(r) => {
                    if let Err(e) = out.write_all(&r.data).await {
                        tracing::warn!(path, error = %e, "stdio write failed");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(container_id, exec_id, ?which, error = %e, "output stream ended");
                    break;
                }
            }
        }
        let _ = out.flush().await;
    })
}

/// Handle of a stdin copier: [`StdinHandle::close`] drains what is buffered, then closes the
/// process's stdin in the guest.
#[derive(Debug, Clone)]
pub struct StdinHandle {
    close: Arc<Notify>,
}

impl StdinHandle {
    /// Asks the copier to finish (containerd's CloseIO).
    pub fn close(&self) {
        self.close.notify_one();
    }
}

async fn forward(agent: &AgentClient, cid: &str, eid: &str, data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK as usize);
        let req = WriteStreamRequest {
            container_id: cid.to_string(),
            exec_id: eid.to_string(),
            data: rest[..n].to_vec(),
        };
        match agent.write_stdin(req).await {
            Ok(r) if r.len > 0 => rest = &rest[(r.len as usize).min(rest.len())..],
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(cid, eid, error = %e, "WriteStdin failed");
                return false;
            }
        }
    }
    true
}

/// Copies containerd's stdin fifo to the process until CloseIO (or EOF of a regular file).
pub fn spawn_stdin(
    agent: AgentClient,
    container_id: String,
    exec_id: String,
    path: String,
) -> std::io::Result<StdinHandle> {
    let p = Path::new(strip_scheme(&path)).to_path_buf();
    let mut input: Box<dyn AsyncRead + Send + Unpin> = {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(&p)?;
        if meta.file_type().is_fifo() {
            Box::new(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_receiver(&p)?,
            )
        } else {
            Box::new(tokio::fs::File::from_std(std::fs::File::open(&p)?))
        }
    };
    let close = Arc::new(Notify::new());
    let handle = StdinHandle {
        close: close.clone(),
    };
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            tokio::select! {
                biased;
                r = input.read(&mut buf) => match r {
                    Ok(0) => break,
                    Ok(n) => {
                        if !forward(&agent, &container_id, &exec_id, &buf[..n]).await {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                },
                _ = close.notified() => {
                    // Drain what the client wrote before closing.
                    loop {
                        let r = tokio::time::timeout(
                            std::time::Duration::from_millis(20),
                            input.read(&mut buf),
                        )
                        .await;
                        match r {
                            Ok(Ok(n)) if n > 0 => {
                                if !forward(&agent, &container_id, &exec_id, &buf[..n]).await {
                                    return;
                                }
                            }
                            _ => break,
                        }
                    }
                    break;
                }
            }
        }
        let req = CloseStdinRequest {
            container_id: container_id.clone(),
            exec_id: exec_id.clone(),
        };
        if let Err(e) = agent.close_stdin(req).await {
            tracing::debug!(container_id, exec_id, error = %e, "CloseStdin failed");
        }
    });
    Ok(handle)
}
