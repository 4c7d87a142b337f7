//! The ports between the services and the guest: [`ContainerHost`] (namespaces, cgroups,
//! processes), [`ImageService`] (container rootfs) and [`NetworkHost`] (netlink). The real
//! adapters live in `cocoon-agent`; unit tests use recording fakes.

use std::path::{Path, PathBuf};

use agent_protocol::types::{ARPNeighbor, CgroupStats, Interface, Route};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A readable end of a process stream (stdout, stderr, pty master).
pub type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
/// A writable end of a process stream (stdin, pty master).
pub type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Resizes a process' terminal.
pub trait TtyControl: Send + Sync {
    /// Sets the window size to `rows` x `cols`.
    fn resize(&self, rows: u16, cols: u16) -> Result<(), HostError>;
}

/// The agent's ends of a new process' standard streams.
#[derive(Default)]
pub struct ProcessIo {
    /// Stdin (pipe or pty master).
    pub stdin: Option<BoxWriter>,
    /// Stdout (pipe or pty master; a terminal merges stderr into it).
    pub stdout: Option<BoxReader>,
    /// Stderr (pipe), absent for a terminal.
    pub stderr: Option<BoxReader>,
    /// The terminal, when the process has one.
    pub tty: Option<Box<dyn TtyControl>>,
}

/// A process the host created.
pub struct SpawnedProcess {
    /// Pid in the agent's pid namespace.
    pub pid: i32,
    /// Its streams.
    pub io: ProcessIo,
    /// Yields the shell-style status (exit code, or 128 + signal) once the reaper saw the exit.
    pub exit: oneshot::Receiver<i32>,
}

/// Everything the host needs to create a container's init process.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// Container id (validated: a safe path component).
    pub container_id: String,
    /// The OCI spec from the request.
    pub spec: oci_spec::runtime::Spec,
    /// The prepared root filesystem (inside the guest).
    pub rootfs: PathBuf,
    /// Id of the pod's first (sandbox) container, whose IPC and UTS namespaces this one
    /// joins (they outlive its init: the host keeps them open until the sandbox container is
    /// removed); `None` when this container is the sandbox and gets namespaces of its own.
    pub sandbox_container: Option<String>,
    /// Init pid of the sandbox container while it runs (its pid namespace dies with it).
    pub sandbox_init_pid: Option<i32>,
    /// Join the pid namespace of `sandbox_init_pid` instead of getting one's own (the pod
    /// shares one pid namespace: `sandbox_pidns`). Only set together with `sandbox_init_pid`.
    pub join_sandbox_pid_ns: bool,
}

/// A host-side failure. The text is safe to send to the host (no Debug dumps, no secrets).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is in the wrong state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A guest facility (e.g. a cgroup controller) is missing.
    #[error("{0}")]
    Unavailable(String),
    /// Waiting took too long.
    #[error("{0}")]
    Timeout(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl HostError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        HostError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Containers, processes and cgroups in the guest.
#[async_trait::async_trait]
pub trait ContainerHost: Send + Sync {
    /// Creates the container's namespaces, mounts and cgroup and its init process, which waits
    /// for [`start_container`](Self::start_container) before running the OCI process.
    async fn create_container(&self, plan: ContainerPlan) -> Result<SpawnedProcess, HostError>;
    /// Lets the init process exec the container's program.
    async fn start_container(&self, container_id: &str) -> Result<(), HostError>;
    /// Runs `process` inside the running container's namespaces and cgroup.
    async fn exec_process(
        &self,
        container_id: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<SpawnedProcess, HostError>;
    /// Sends `signal` to one process.
    fn signal_process(&self, pid: i32, signal: i32) -> Result<(), HostError>;
    /// Sends `signal` to every process of the container.
    fn signal_container(&self, container_id: &str, signal: i32) -> Result<(), HostError>;
    /// cgroup v2 statistics of the container.
    async fn stats(&self, container_id: &str) -> Result<CgroupStats, HostError>;
    /// Freezes (`true`) or thaws the container's cgroup, waiting until it took effect.
    async fn set_frozen(&self, container_id: &str, frozen: bool) -> Result<(), HostError>;
    /// Applies new cgroup resource limits.
    async fn update_resources(
        &self,
        container_id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), HostError>;
    /// Releases what `create_container` set up (cgroup, state); its processes are dead.
    async fn remove_container(&self, container_id: &str) -> Result<(), HostError>;
    /// How many OOM kills the container's cgroup has seen (`memory.events` `oom_kill`).
    fn oom_kill_count(&self, container_id: &str) -> u64;
    /// Sets the guest's wall clock.
    fn set_time(&self, sec: i64, usec: i64) -> Result<(), HostError>;
}

/// Why an image could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// This agent cannot obtain the image (e.g. image pull not available yet).
    #[error("{0}")]
    NotAvailable(String),
    /// Preparing the rootfs failed.
    #[error("{0}")]
    Failed(String),
}

/// Provides a container's root filesystem from an image reference. The baked-rootfs adapter
/// is in `cocoon-agent`; the in-guest image pull plugs in here later.
#[async_trait::async_trait]
pub trait ImageService: Send + Sync {
    /// Makes `image_ref`'s filesystem appear (writable) at `dest_rootfs` for `container_id`.
    async fn pull(
        &self,
        image_ref: &str,
        container_id: &str,
        dest_rootfs: &Path,
    ) -> Result<(), ImageError>;
    /// Undoes [`pull`](Self::pull) for `container_id` (unmounts, removes scratch space).
    async fn release(&self, container_id: &str, dest_rootfs: &Path) -> Result<(), ImageError>;
}

/// Guest network configuration (netlink).
#[async_trait::async_trait]
pub trait NetworkHost: Send + Sync {
    /// All interfaces with their addresses.
    async fn list_interfaces(&self) -> Result<Vec<Interface>, HostError>;
    /// Sets addresses, MTU and link state of the interface matching `iface` (by hardware
    /// address, else by name) and returns it as it is now.
    async fn update_interface(&self, iface: &Interface) -> Result<Interface, HostError>;
    /// The main routing table.
    async fn list_routes(&self) -> Result<Vec<Route>, HostError>;
    /// Replaces the routes with `routes` and returns the resulting table.
    async fn update_routes(&self, routes: &[Route]) -> Result<Vec<Route>, HostError>;
    /// Adds (or replaces) neighbour entries.
    async fn add_arp_neighbors(&self, neighbors: &[ARPNeighbor]) -> Result<(), HostError>;
}
