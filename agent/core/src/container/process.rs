//! One supervised process (a container's init or an exec'd process): its streams and status.

use std::sync::Arc;

use agent_protocol::AgentError;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::stdio::{MAX_READ_BYTES, STREAM_BUFFER_BYTES, StreamBuffer};
use crate::host::{BoxWriter, SpawnedProcess, TtyControl};

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A process and its buffered I/O.
pub(crate) struct Proc {
    pub(crate) pid: i32,
    exit: watch::Receiver<Option<i32>>,
    stdin: tokio::sync::Mutex<Option<BoxWriter>>,
    stdout: Option<Arc<StreamBuffer>>,
    stderr: Option<Arc<StreamBuffer>>,
    tty: Option<Box<dyn TtyControl>>,
}

impl Proc {
    /// Takes ownership of a spawned process: starts its output pumps and exit watcher.
    pub(crate) fn new(spawned: SpawnedProcess) -> Arc<Proc> {
        let (tx, rx) = watch::channel(None);
        let exit = spawned.exit;
        tokio::spawn(async move {
            // A dropped sender (reaper gone) is reported as 255, never as success.
            let code = exit.await.unwrap_or(255);
            let _ = tx.send(Some(code));
        });
        let io = spawned.io;
        Arc::new(Proc {
            pid: spawned.pid,
            exit: rx,
            stdin: tokio::sync::Mutex::new(io.stdin),
            stdout: io
                .stdout
                .map(|r| StreamBuffer::spawn(r, STREAM_BUFFER_BYTES)),
            stderr: io
                .stderr
                .map(|r| StreamBuffer::spawn(r, STREAM_BUFFER_BYTES)),
            tty: io.tty,
        })
    }

    /// The exit status, if it exited.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// Waits for the exit status.
    pub(crate) async fn wait(&self) -> i32 {
        let mut rx = self.exit.clone();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().unwrap_or(255);
            }
        }
    }

    /// Reads up to `len` bytes (capped at [`MAX_READ_BYTES`]; 0 means the cap).
    pub(crate) async fn read(&self, which: Stream, len: u32) -> Result<Vec<u8>, AgentError> {
        let buf = match which {
            Stream::Stdout => self.stdout.as_ref(),
            Stream::Stderr => self.stderr.as_ref(),
        };
        let Some(buf) = buf else {
            return Err(AgentError::failed_precondition(match which {
                Stream::Stderr if self.tty.is_some() => {
                    "the process has a terminal; its stderr is merged into stdout"
                }
                _ => "the process has no such stream",
            }));
        };
        let max = match len as usize {
            0 => MAX_READ_BYTES,
            n => n.min(MAX_READ_BYTES),
        };
        buf.read(max)
            .await
            .ok_or_else(|| AgentError::new(agent_protocol::Code::OutOfRange, "EOF"))
    }

    /// Writes all of `data` to stdin (waits while the pipe is full).
    pub(crate) async fn write_stdin(&self, data: &[u8]) -> Result<u32, AgentError> {
        let mut stdin = self.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return Err(AgentError::failed_precondition("stdin is closed"));
        };
        let res = async {
            w.write_all(data).await?;
            w.flush().await
        }
        .await;
        match res {
            Ok(()) => Ok(data.len() as u32),
            Err(e) => {
                *stdin = None;
                Err(AgentError::failed_precondition(format!(
                    "stdin write failed: {e}"
                )))
            }
        }
    }

    /// Closes stdin (for a terminal: sends the EOF character, as closing would hang it up).
    pub(crate) async fn close_stdin(&self) -> Result<(), AgentError> {
        let mut stdin = self.stdin.lock().await;
        if self.tty.is_some() {
            if let Some(w) = stdin.as_mut() {
                let _ = w.write_all(&[0x04]).await;
                let _ = w.flush().await;
            }
            return Ok(());
        }
        if let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }

    /// Resizes the terminal.
    pub(crate) fn resize(&self, rows: u32, cols: u32) -> Result<(), AgentError> {
        let Some(tty) = &self.tty else {
            return Err(AgentError::failed_precondition(
                "the process has no terminal",
            ));
        };
        let rows =
            u16::try_from(rows).map_err(|_| AgentError::invalid_argument("row too large"))?;
        let cols =
            u16::try_from(cols).map_err(|_| AgentError::invalid_argument("column too large"))?;
        tty.resize(rows, cols).map_err(crate::error::host_error)
    }

    /// True when it exited and both output streams were read to the end.
    pub(crate) fn finished(&self) -> bool {
        self.exit_code().is_some()
            && self.stdout.as_ref().is_none_or(|s| s.drained())
            && self.stderr.as_ref().is_none_or(|s| s.drained())
    }
}
