//! Sandbox-wide state: guest details and the shutdown request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_protocol::AgentError;
use agent_protocol::types::CreateSandboxRequest;

use tokio::sync::watch;

/// Facts about the guest reported by GetGuestDetails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestInfo {
    /// Agent version string.
    pub agent_version: String,
    /// Memory block size of the guest (bytes), 0 if unknown.
    pub mem_block_size_bytes: u64,
    /// Storage drivers the agent handles.
    pub storage_handlers: Vec<String>,
    /// Device drivers the agent handles.
    pub device_handlers: Vec<String>,
    /// Whether the container host applies the spec's seccomp profile.
    pub supports_seccomp: bool,
}

/// Owns the sandbox lifecycle: created at boot, destroyed once.
pub struct SandboxService {
    info: GuestInfo,
    destroyed: AtomicBool,
    sandbox_id: Mutex<Option<String>>,
    shutdown_tx: watch::Sender<bool>,
}

impl SandboxService {
    /// New service reporting `info`.
    pub fn new(info: GuestInfo) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        SandboxService {
            info,
            destroyed: AtomicBool::new(false),
            sandbox_id: Mutex::new(None),
            shutdown_tx,
        }
    }

    /// Guest details.
    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    /// CreateSandbox: records the sandbox id (once). Storages must be empty: shared
    /// filesystems from the host are never mounted, and guest-pulled images come per
    /// container. `sandbox_pidns` is applied by the container service (see
    /// [`ContainerService::set_sandbox_pidns`](crate::ContainerService::set_sandbox_pidns)).
    pub fn create(&self, req: &CreateSandboxRequest) -> Result<(), AgentError> {
        if let Some(st) = req.storages.first() {
            return Err(AgentError::invalid_argument(format!(
                "CreateSandbox storage driver {:?} is not accepted: the guest mounts no host-provided filesystems",
                st.driver
            )));
        }
        let mut id = self.sandbox_id.lock().unwrap_or_else(|p| p.into_inner());
        if id.is_some() {
            return Err(AgentError::already_exists(
                "the sandbox was already created",
            ));
        }
        *id = Some(req.sandbox_id.clone());
        Ok(())
    }

    /// The id given by CreateSandbox.
    pub fn sandbox_id(&self) -> Option<String> {
        self.sandbox_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the sandbox destroyed and asks the agent to stop serving and power off.
    /// Returns false when it was already destroyed.
    pub fn destroy(&self) -> bool {
        let first = !self.destroyed.swap(true, Ordering::SeqCst);
        if first {
            let _ = self.shutdown_tx.send(true);
        }
        first
    }

    /// Resolves once [`destroy`](Self::destroy) has been called.
    pub fn shutdown_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown_tx.subscribe();
        async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Reads the guest's memory block size from sysfs (0 when absent, e.g. no memory hotplug).
pub fn mem_block_size_bytes() -> u64 {
    std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0)
}
