//! The containerd shim lifecycle: `start` (one shim per pod: the socket address is derived
//! from the sandbox id, and an existing shim's address is handed back), `delete` (cleanup
//! after a crash from the record in the bundle), and the long-running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Flags, StartOpts};
use runtime_core::pod;
use runtime_core::spec::HostSpec;
use tokio::sync::Notify;

use crate::events::{ContainerdEvents, timestamp};
use crate::qemu_vmm::QemuVmm;
use crate::service::TaskService;
use crate::task::ShimTask;

/// containerd runtime type served by this binary.
pub const RUNTIME_ID: &str = "io.containerd.cocoon.v2";

/// The shim configuration given to containerd-shim: the shim does not reap children it did
/// not start (QEMU and the vsock backend are reaped by their supervisors in runtime-qemu).
pub fn shim_config() -> Config {
    Config {
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    }
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

/// The shim.
pub struct CocoonShim {
    namespace: String,
    socket: String,
    bundle: PathBuf,
    exit: Arc<Notify>,
}

fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        PathBuf::from(&flags.bundle)
    }
}

#[async_trait::async_trait]
impl containerd_shim::Shim for CocoonShim {
    type T = ShimTask;

    async fn new(_runtime_id: &str, flags: &Flags, _config: &mut Config) -> Self {
        CocoonShim {
            namespace: flags.namespace.clone(),
            socket: flags.socket.clone(),
            bundle: bundle_dir(flags),
            exit: Arc::new(Notify::new()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let sandbox = sandbox_id_of(&self.bundle, &opts.id);
        let address = opts.socket_address(&sandbox);
        let path = address.trim_start_matches("unix://");
        let existing = tokio::net::UnixStream::connect(path).await.is_ok();
        let address = if existing {
            tracing::info!(sandbox, address, "joining the pod's running shim");
            address
        } else {
            containerd_shim::spawn(opts, &sandbox, Vec::new()).await?
        };
        std::fs::write(self.bundle.join("address"), &address).map_err(|e| {
            containerd_shim::Error::Other(format!("cannot write the address file: {e}"))
        })?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let report = crate::cleanup::cleanup_bundle(&self.bundle);
        tracing::info!(?report, "shim delete cleanup");
        Ok(DeleteResponse {
            exit_status: 128 + 9,
            exited_at: Some(timestamp(std::time::SystemTime::now())).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.notified().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> ShimTask {
        let events = Arc::new(ContainerdEvents::new(publisher, &self.namespace));
        let env = Arc::new(|k: &str| std::env::var(k).ok());
        let service = TaskService::new(
            Arc::new(QemuVmm),
            events,
            env,
            self.socket.clone(),
            self.exit.clone(),
        );
        ShimTask { service }
    }
}
