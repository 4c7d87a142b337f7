//! The in-guest agent: PID 1 of the Cocoon guest, serving the Kata-compatible agent API.
//!
//! [`run`] does the PID 1 duties (when it is PID 1), reads its configuration, and serves
//! ttRPC until the host destroys the sandbox; then it powers the VM off. Any fatal error also
//! powers off (after logging it on the console) instead of letting the kernel panic-loop.

pub mod config;
pub mod init;
pub mod reaper;

use std::sync::Arc;

use agent_core::{AllowAll, Dispatcher, GuestInfo, SandboxService};

/// Agent version reported by Health.Version and GetGuestDetails.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Storage drivers this agent accepts (reported in GetGuestDetails).
pub const STORAGE_HANDLERS: &[&str] = &["image_guest_pull", "local", "ephemeral"];

/// How long the server may take to flush replies after DestroySandbox before power-off.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// Runs the agent. Returns only outside a VM (not PID 1).
pub fn run(cfg: config::AgentConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: config::AgentConfig) -> anyhow::Result<()> {
    let _reaper = reaper::Reaper::start()?;
    let sandbox = Arc::new(SandboxService::new(GuestInfo {
        agent_version: AGENT_VERSION.to_string(),
        mem_block_size_bytes: agent_core::mem_block_size_bytes(),
        storage_handlers: STORAGE_HANDLERS.iter().map(|s| s.to_string()).collect(),
        device_handlers: Vec::new(),
    }));
    let dispatcher = Arc::new(Dispatcher::new(Arc::new(AllowAll), sandbox.clone()));
    tracing::info!(addr = cfg.server_addr, "serving ttRPC");
    let server = agent_protocol::serve(&cfg.server_addr, dispatcher, sandbox.shutdown_requested());
    // After DestroySandbox, ttRPC's graceful stop waits (up to 10 s) for the host to close
    // its connections; the reply has been flushed long before, so bound that wait.
    let destroyed = sandbox.shutdown_requested();
    tokio::select! {
        r = server => r?,
        _ = async { destroyed.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {}
    }
    tracing::info!("sandbox destroyed; stopping");
    Ok(())
}
