//! Supervised child processes (QEMU, the vhost-user vsock backend).
//!
//! Each child is spawned from a dedicated thread that then waits for it. The child gets
//! `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the *spawning thread* exits; because that
//! thread lives exactly as long as the child, the child dies with its supervisor even when
//! the supervisor is killed with SIGKILL (no orphaned QEMU). Dropping the handle kills the
//! child and reaps it.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

/// Errors from spawning a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// Program path.
        program: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exit code {c}"),
            ExitInfo::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

impl From<ExitStatus> for ExitInfo {
    fn from(s: ExitStatus) -> Self {
        match (s.code(), s.signal()) {
            (Some(c), _) => ExitInfo::Code(c),
            (None, Some(sig)) => ExitInfo::Signal(sig),
            (None, None) => ExitInfo::Code(-1),
        }
    }
}

/// A running, supervised child process.
pub struct Supervised {
    name: String,
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
    waiter: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

/// Spawns `cmd` supervised. Stdin is closed; stdout/stderr go where `cmd` says.
pub fn spawn(name: &str, mut cmd: Command) -> Result<Arc<Supervised>, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid, kill).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    let (tx, rx) = watch::channel(None);
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let thread_name = format!("supervise-{name}");
    let waiter = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id()));
                let info = match child.wait() {
                    Ok(status) => ExitInfo::from(status),
                    Err(_) => ExitInfo::Code(-1),
                };
                let _ = tx.send(Some(info));
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
        })
        .map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = match pid_rx.recv() {
        Ok(Ok(pid)) => pid,
        Ok(Err(source)) => {
            let _ = waiter.join();
            return Err(ProcessError::Spawn { program, source });
        }
        Err(_) => {
            let _ = waiter.join();
            return Err(ProcessError::Spawn {
                program,
                source: std::io::Error::other("supervisor thread died"),
            });
        }
    };
    tracing::debug!(name, pid, "spawned supervised process");
    Ok(Arc::new(Supervised {
        name: name.to_string(),
        pid,
        exit: rx,
        waiter: Mutex::new(Some(waiter)),
    }))
}

impl Supervised {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it ended, if it has.
    pub fn exited(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// A receiver of the child's exit (`Some` once it has exited), for watchers that must
    /// not keep the process handle alive.
    pub fn exit_receiver(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// Waits until the child exits.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        loop {
            if let Some(info) = *rx.borrow_and_update() {
                return info;
            }
            if rx.changed().await.is_err() {
                return self.exited().unwrap_or(ExitInfo::Code(-1));
            }
        }
    }

    /// Waits up to `timeout` for the child to exit.
    pub async fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        tokio::time::timeout(timeout, self.wait()).await.ok()
    }

    /// Sends a signal if the child is still running.
    pub fn signal(&self, sig: Signal) {
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), sig);
        }
    }

    /// SIGKILLs the child (if running) and reaps it; blocks until the waiter thread ends.
    pub fn kill_and_reap(&self) {
        self.signal(Signal::SIGKILL);
        let handle = self.waiter.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}
