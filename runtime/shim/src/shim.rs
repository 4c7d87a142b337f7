//! The containerd shim lifecycle: `start` (one shim per pod: the socket address is derived
//! from the sandbox id, and an existing shim's address is handed back), `delete` (cleanup
//! after a crash from the record in the bundle), and the long-running ttRPC server.
//!
//! containerd 1.6/1.7 (the Debian 12 package) read a bare address from `start` and call
//! `containerd.task.v2.Task`; containerd 2.x calls `containerd.task.v3.Task` with the same
//! messages, so the task service is registered under both names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::{Task, create_task};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::Server;
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use runtime_core::pod;
use runtime_core::spec::HostSpec;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::events::{ContainerdEvents, PublishError, timestamp};

/// How long the exiting shim waits for queued events to reach containerd.
const EVENT_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);
use crate::flags::ShimFlags;
use crate::qemu_vmm::QemuVmm;
use crate::service::TaskService;
use crate::task::ShimTask;

/// containerd runtime type served by this binary.
pub const RUNTIME_ID: &str = "io.containerd.cocoon.v2";

/// Where containerd (1.6+, Linux) expects shim sockets, whatever its state directory.
pub const SOCKET_ROOT: &str = "/run/containerd/s";

/// Errors of the shim lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Host I/O, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The spawned server did not come up.
    #[error("the shim server for sandbox {sandbox} did not start ({detail})")]
    ServerDidNotStart {
        /// Sandbox id.
        sandbox: String,
        /// Exit status or connect error.
        detail: String,
    },
    /// A required flag or variable is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// Event publisher.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// ttRPC server.
    #[error("ttRPC server: {0}")]
    Ttrpc(#[from] ttrpc::Error),
    /// Protobuf encoding.
    #[error("encoding the delete response: {0}")]
    Encode(#[from] containerd_shim_protos::protobuf::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

/// The sandbox id of the container whose bundle is `bundle` (its own id when the spec
/// cannot be read or classified; Create reports the real error).
pub fn sandbox_id_of(bundle: &Path, container_id: &str) -> String {
    let annotations = std::fs::read_to_string(bundle.join("config.json"))
        .ok()
        .and_then(|t| HostSpec::from_json(&t).ok())
        .map(|s| s.annotations)
        .unwrap_or_default();
    pod::classify(container_id, &annotations)
        .map(|p| p.sandbox_id)
        .unwrap_or_else(|_| container_id.to_string())
}

/// The socket address containerd's own shims use for `grouping` (here: the sandbox id):
/// `unix:///run/containerd/s/<hex sha256 of "<containerd address>/<namespace>/<grouping>">`.
pub fn socket_address(containerd_address: &str, namespace: &str, grouping: &str) -> String {
    let joined = Path::new(containerd_address).join(namespace).join(grouping);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    format!("unix://{SOCKET_ROOT}/{}", hex::encode(digest))
}

fn socket_path(address: &str) -> &Path {
    Path::new(address.trim_start_matches("unix://"))
}

/// The bundle: `-bundle` when given (delete), otherwise the working directory containerd
/// started the shim in.
pub fn bundle_dir(flags: &ShimFlags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// Gives the server the OOM score of containerd plus one (what containerd's own shims do,
/// so the OOM killer picks the shim before containerd). Best effort.
fn raise_oom_score(server_pid: u32) {
    let parent = std::os::unix::process::parent_id();
    let Some(score) = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let score = (score + 1).min(1000);
    if let Err(e) = std::fs::write(
        format!("/proc/{server_pid}/oom_score_adj"),
        score.to_string(),
    ) {
        tracing::debug!(error = %e, "cannot set the shim's oom_score_adj");
    }
}

/// `start`: hands back the address of the pod's shim, spawning the server (this binary,
/// without an action) when the pod has none yet. Returns the address containerd reads.
pub async fn start(flags: &ShimFlags) -> Result<String, ShimError> {
    let bundle = bundle_dir(flags);
    let sandbox = sandbox_id_of(&bundle, &flags.id);
    let address = socket_address(&flags.address, &flags.namespace, &sandbox);
    let path = socket_path(&address);
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        tracing::info!(sandbox, address, "joining the pod's running shim");
    } else {
        spawn_server(flags, &bundle, &sandbox, &address).await?;
    }
    std::fs::write(bundle.join("address"), &address)
        .map_err(io_err("cannot write the address file"))?;
    Ok(address)
}

async fn spawn_server(
    flags: &ShimFlags,
    bundle: &Path,
    sandbox: &str,
    address: &str,
) -> Result<(), ShimError> {
    let exe = std::env::current_exe().map_err(io_err("cannot find the shim binary"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &flags.address, "-socket", address]);
    if flags.debug {
        cmd.arg("-debug");
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err("cannot spawn the shim server"))?;
    raise_oom_score(child.id());
    // The server closes its stdout once it listens: wait for EOF (it writes nothing).
    let stdout = child.stdout.take();
    let ready = tokio::task::spawn_blocking(move || {
        let mut sink = Vec::new();
        if let Some(mut out) = stdout {
            let _ = out.read_to_end(&mut sink);
        }
        child
    })
    .await;
    let mut child = ready.map_err(|e| ShimError::ServerDidNotStart {
        sandbox: sandbox.to_string(),
        detail: e.to_string(),
    })?;
    if let Ok(Some(status)) = child.try_wait() {
        return Err(ShimError::ServerDidNotStart {
            sandbox: sandbox.to_string(),
            detail: status.to_string(),
        });
    }
    tracing::info!(sandbox, address, pid = child.id(), "shim server started");
    Ok(())
}

/// `delete`: cleans up from the bundle's record (kills QEMU and helpers, removes the
/// sandbox's directories and socket) and returns containerd's DeleteResponse bytes.
pub fn delete(flags: &ShimFlags) -> Result<Vec<u8>, ShimError> {
    let report = crate::cleanup::cleanup_bundle(&bundle_dir(flags));
    tracing::info!(?report, "shim delete cleanup");
    let response = DeleteResponse {
        exit_status: 128 + 9,
        exited_at: Some(timestamp(std::time::SystemTime::now())).into(),
        ..Default::default()
    };
    Ok(response.write_to_bytes()?)
}

/// Binds the server socket; a stale socket file (nobody answers) is removed first.
fn bind(address: &str) -> Result<std::os::unix::net::UnixListener, ShimError> {
    let path = socket_path(address);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    std::os::unix::net::UnixListener::bind(path)
        .map_err(io_err(format!("cannot listen on {}", path.display())))
}

/// Logs SIGTERM/SIGINT instead of dying on them: the shim ends on Shutdown (or when
/// containerd's `delete` cleans up after a kill), never half-way through a task.
fn ignore_termination_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        match signal(kind) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        tracing::info!(signal = kind.as_raw_value(), "signal ignored");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot install a signal handler"),
        }
    }
}

/// The serving shim: the pod's ttRPC task service until Shutdown.
pub async fn serve(flags: &ShimFlags) -> Result<(), ShimError> {
    if flags.socket.is_empty() {
        return Err(ShimError::Missing("-socket"));
    }
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| ShimError::Missing("TTRPC_ADDRESS"))?;
    ignore_termination_signals();
    let events = Arc::new(ContainerdEvents::connect(&ttrpc_address, &flags.namespace).await?);
    let exit = Arc::new(Notify::new());
    let env = Arc::new(|k: &str| std::env::var(k).ok());
    let service = TaskService::new(
        Arc::new(QemuVmm),
        events.clone(),
        env,
        flags.socket.clone(),
        exit.clone(),
    );
    let task: Arc<dyn Task + Send + Sync> = Arc::new(ShimTask { service });
    let v3 = create_task(task.clone());
    let v2 = create_task(task)
        .into_iter()
        .map(|(k, v)| (k.replace("containerd.task.v3.", "containerd.task.v2."), v))
        .collect();
    let listener = Listener::try_from(bind(&flags.socket)?)
        .map_err(io_err("cannot make the socket non-blocking"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(v3)
        .register_service(v2);
    server.start().await?;
    // Tell the `start` process we are up: it reads our stdout until EOF.
    // SAFETY: dup2 on the process's own standard descriptors; no Rust object owns fd 1.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
    tracing::info!(socket = flags.socket, "shim serving");
    exit.notified().await;
    tracing::info!("shim shutting down");
    // The task's last events (exit, delete) are still being forwarded: not lost with us.
    if !events.flush(EVENT_FLUSH).await {
        tracing::warn!("events still queued for containerd at exit");
    }
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_address_is_containerds_hash_of_address_namespace_and_sandbox() {
        // `printf %s /run/containerd/containerd.sock/default/pod1 | sha256sum`
        assert_eq!(
            socket_address("/run/containerd/containerd.sock", "default", "pod1"),
            "unix:///run/containerd/s/d7ddcf8855c574bb9f6303100a7919bd8f9f6e011c611945861f6fa26dc0c66d"
        );
    }
}
