//! Ports: how the shim boots a sandbox VM ([`Vmm`]) and reports task events ([`EventSink`]).
//!
//! The production [`Vmm`] boots QEMU (`runtime-qemu`); tests plug in one that runs the
//! `cocoon-agent` binary as a host process on a Unix socket, or an in-process fake agent.

use std::path::PathBuf;
use std::time::SystemTime;

use agent_protocol::AgentClient;
use runtime_config::{AnnotationOverrides, RuntimeClassConfig};

/// Error from a [`Vmm`] or [`Vm`], with the underlying cause as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VmmError(pub String);

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmRequest {
    /// Sandbox id (names the VM and its state directory).
    pub sandbox_id: String,
    /// The runtime class configuration after annotation overrides.
    pub config: RuntimeClassConfig,
    /// Values taken from annotations (initdata).
    pub overrides: AnnotationOverrides,
}

/// Host-side process ids of a running VM (for cleanup after a shim crash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmProcesses {
    /// The VMM process (QEMU) or the stand-in agent process.
    pub main_pid: Option<u32>,
    /// Helper processes (the vhost-user vsock backend).
    pub helper_pids: Vec<u32>,
    /// The VM's state directory on the host.
    pub state_dir: Option<PathBuf>,
}

/// The future returned by [`Vm::exited`].
pub type ExitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A running sandbox VM with a reachable agent.
#[async_trait::async_trait]
pub trait Vm: Send + Sync {
    /// Client of the in-guest agent.
    fn agent(&self) -> AgentClient;
    /// Host processes and directory of the VM.
    fn processes(&self) -> VmProcesses;
    /// A future that resolves when the VM's host process exits for any reason; never, for a
    /// VM without one. It must not keep the VM alive.
    fn exited(&self) -> ExitFuture {
        Box::pin(std::future::pending())
    }
    /// Stops the VM and removes everything it created on the host.
    async fn stop(self: Box<Self>) -> Result<(), VmmError>;
}

/// Boots sandbox VMs.
#[async_trait::async_trait]
pub trait Vmm: Send + Sync {
    /// Boots a VM and waits for its agent.
    async fn boot(&self, req: VmRequest) -> Result<Box<dyn Vm>, VmmError>;
}

/// Task events the shim publishes to containerd (topics `/tasks/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// `/tasks/create`.
    Create {
        /// Container id.
        container_id: String,
        /// Bundle path.
        bundle: String,
        /// Host pid reported for the task.
        pid: u32,
    },
    /// `/tasks/start`.
    Start {
        /// Container id.
        container_id: String,
        /// Host pid.
        pid: u32,
    },
    /// `/tasks/exit`.
    Exit {
        /// Container id.
        container_id: String,
        /// Exec id, or the container id for the init process (containerd's convention).
        id: String,
        /// Host pid.
        pid: u32,
        /// Exit status.
        exit_status: u32,
        /// Exit time.
        exited_at: SystemTime,
    },
    /// `/tasks/oom`.
    Oom {
        /// Container id.
        container_id: String,
    },
    /// `/tasks/exec-added`.
    ExecAdded {
        /// Container id.
        container_id: String,
        /// Exec id.
        exec_id: String,
    },
    /// `/tasks/exec-started`.
    ExecStarted {
        /// Container id.
        container_id: String,
        /// Exec id.
        exec_id: String,
        /// Host pid.
        pid: u32,
    },
    /// `/tasks/paused`.
    Paused {
        /// Container id.
        container_id: String,
    },
    /// `/tasks/resumed`.
    Resumed {
        /// Container id.
        container_id: String,
    },
    /// `/tasks/delete`.
    Delete {
        /// Container id.
        container_id: String,
        /// Host pid.
        pid: u32,
        /// Exit status.
        exit_status: u32,
        /// Exit time.
        exited_at: SystemTime,
    },
}

impl TaskEvent {
    /// containerd topic of the event.
    pub fn topic(&self) -> &'static str {
        match self {
            TaskEvent::Create { .. } => "/tasks/create",
            TaskEvent::Start { .. } => "/tasks/start",
            TaskEvent::Exit { .. } => "/tasks/exit",
            TaskEvent::Oom { .. } => "/tasks/oom",
            TaskEvent::ExecAdded { .. } => "/tasks/exec-added",
            TaskEvent::ExecStarted { .. } => "/tasks/exec-started",
            TaskEvent::Paused { .. } => "/tasks/paused",
            TaskEvent::Resumed { .. } => "/tasks/resumed",
            TaskEvent::Delete { .. } => "/tasks/delete",
        }
    }
}

/// Receives task events.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes one event; failures are the sink's to log (events are best effort).
    async fn publish(&self, event: TaskEvent);
}
