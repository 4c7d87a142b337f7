//! Sandbox-wide state: guest details and the shutdown request.

use std::sync::atomic::{AtomicBool, Ordering};

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
}

/// Owns the sandbox lifecycle: created at boot, destroyed once.
pub struct SandboxService {
    info: GuestInfo,
    destroyed: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

impl SandboxService {
    /// New service reporting `info`.
    pub fn new(info: GuestInfo) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        SandboxService {
            info,
            destroyed: AtomicBool::new(false),
            shutdown_tx,
        }
    }

    /// Guest details.
    pub fn info(&self) -> &GuestInfo {
        &self.info
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
