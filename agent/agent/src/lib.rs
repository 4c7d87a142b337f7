//! The in-guest agent: PID 1 of the Cocoon guest, serving the Kata-compatible agent API.
//!
//! [`run`] does the PID 1 duties (when it is PID 1), reads its configuration, and serves
//! ttRPC until the host destroys the sandbox; then it powers the VM off. Any fatal error also
//! powers off (after logging it on the console) instead of letting the kernel panic-loop.
//! In the guest, initdata ([`initdata`]) is read from its disk before anything is served.
//! Containers are run by [`runtime::LinuxHost`] (namespaces, cgroup v2, the container-init
//! helper), rootfs trees come from [`images::BakedImages`].

pub mod config;
pub mod images;
pub mod init;
pub mod initdata;
pub mod network;
pub mod pulled_images;
pub mod reaper;
pub mod runtime;
pub mod switch_root;

use std::sync::Arc;

use agent_core::{
    AllowAll, ContainerService, CopyFileService, DEFAULT_COPY_ROOT, Dispatcher, GuestInfo,
    SandboxService, Services,
};

/// Agent version reported by Health.Version and GetGuestDetails.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Storage drivers this agent accepts (reported in GetGuestDetails).
pub const STORAGE_HANDLERS: &[&str] = &["image_guest_pull"];

/// Environment variable: the agent runs on a host inside private mount and pid namespaces
/// (tests), not as the guest's init: no VM duties, and a private tmpfs on
/// `/run/kata-containers`.
pub const SANDBOXED_ENV: &str = "COCOON_AGENT_SANDBOXED";

/// How long the server may take to flush replies after DestroySandbox before power-off.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// Runs the agent. Returns only outside a VM (not PID 1). In the guest, initdata is
/// loaded first; a malformed initdata device is an error (the agent does not serve).
pub fn run(mut cfg: config::AgentConfig) -> anyhow::Result<()> {
    if cfg.init_duties
        && let Some(loaded) = initdata::load(
            std::path::Path::new("/dev"),
            std::path::Path::new(initdata::INITDATA_DIR),
        )?
    {
        loaded.apply(&mut cfg.guest_pull);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))
}

/// Prepares cgroups (and, sandboxed on a host, a private `/run/kata-containers`).
fn prepare_host(cfg: &config::AgentConfig) -> anyhow::Result<()> {
    if cfg.init_duties {
        // The guest's root cgroup hands its controllers down to ours.
        for c in ["cpu", "memory", "pids", "io", "cpuset"] {
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("+{c}"));
        }
        // The kernel leaves `lo` down; containers sharing the guest's network need it.
        if let Err(e) = network::bring_up_loopback() {
            tracing::warn!(error = %e, "could not bring lo up");
        }
    }
    if std::env::var_os(SANDBOXED_ENV).is_some() {
        std::fs::create_dir_all(agent_core::container::rootfs::CONTAINER_BASE)?;
        nix::mount::mount(
            Some("tmpfs"),
            agent_core::container::rootfs::CONTAINER_BASE,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?;
    }
    Ok(())
}

async fn serve(cfg: config::AgentConfig) -> anyhow::Result<()> {
    prepare_host(&cfg)?;
    let reaper = reaper::Reaper::start()?;
    let host = Arc::new(runtime::LinuxHost::new(reaper, &cfg.cgroup_root)?);
    let images = Arc::new(pulled_images::PulledImages::new(
        images::BakedImages::new(&cfg.baked_rootfs),
        cfg.guest_pull.clone(),
    ));
    let sandbox = Arc::new(SandboxService::new(GuestInfo {
        agent_version: AGENT_VERSION.to_string(),
        mem_block_size_bytes: agent_core::mem_block_size_bytes(),
        storage_handlers: STORAGE_HANDLERS.iter().map(|s| s.to_string()).collect(),
        device_handlers: Vec::new(),
        supports_seccomp: true,
    }));
    let services = Services {
        sandbox: sandbox.clone(),
        containers: Arc::new(ContainerService::new(host.clone(), images)),
        copy_file: Arc::new(CopyFileService::new(DEFAULT_COPY_ROOT)),
        network: Some(Arc::new(network::NetlinkHost::new())),
    };
    let containers = services.containers.clone();
    let dispatcher = Arc::new(Dispatcher::new(Arc::new(AllowAll), services));
    tracing::info!(addr = cfg.server_addr, "serving ttRPC");
    let server = agent_protocol::serve(&cfg.server_addr, dispatcher, sandbox.shutdown_requested());
    // After DestroySandbox, ttRPC's graceful stop waits (up to 10 s) for the host to close
    // its connections; the reply has been flushed long before, so bound that wait.
    let destroyed = sandbox.shutdown_requested();
    tokio::select! {
        r = server => r?,
        _ = async { destroyed.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {}
    }
    containers.remove_all().await;
    let _ = std::fs::remove_dir(host.cgroup_root());
    tracing::info!("sandbox destroyed; stopping");
    Ok(())
}
