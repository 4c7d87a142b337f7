//! The production [`Vmm`]: a QEMU sandbox from `runtime-qemu`, with the pod's initdata
//! ([`crate::initdata`]) as its initdata disk and TEE binding.

use runtime_core::ports::VmProcesses;
use runtime_core::{Vm, VmRequest, Vmm, VmmError};
use runtime_qemu::Sandbox;

/// Boots sandboxes with QEMU.
#[derive(Debug, Default, Clone, Copy)]
pub struct QemuVmm;

struct QemuVm {
    sandbox: Sandbox,
}

#[async_trait::async_trait]
impl Vm for QemuVm {
    fn agent(&self) -> agent_protocol::AgentClient {
        self.sandbox.agent().clone()
    }

    fn processes(&self) -> VmProcesses {
        VmProcesses {
            main_pid: Some(self.sandbox.qemu_pid()),
            helper_pids: self.sandbox.backend_pid().into_iter().collect(),
            state_dir: Some(self.sandbox.dir().to_path_buf()),
        }
    }

    fn exited(&self) -> runtime_core::ports::ExitFuture {
        Box::pin(self.sandbox.qemu_exited())
    }

    async fn stop(self: Box<Self>) -> Result<(), VmmError> {
        let report = self
            .sandbox
            .shutdown()
            .await
            .map_err(|e| VmmError(e.to_string()))?;
        tracing::info!(path = ?report.path, took = ?report.took, "sandbox VM stopped");
        Ok(())
    }
}

#[async_trait::async_trait]
impl Vmm for QemuVmm {
    async fn boot(&self, req: VmRequest) -> Result<Box<dyn Vm>, VmmError> {
        // Decoded and validated before anything exists on the host: a bad annotation
        // leaves no QEMU, no state directory and no file behind.
        let opts = crate::initdata::boot_options(
            &req.sandbox_id,
            &req.config,
            req.overrides.cc_init_data.as_deref(),
        )
        .map_err(|e| VmmError(e.to_string()))?;
        let kvm = tokio::task::spawn_blocking(runtime_qemu::host::kvm_usable)
            .await
            .unwrap_or(false);
        let sandbox = Sandbox::boot(&req.config, &opts, kvm)
            .await
            .map_err(|e| VmmError(e.to_string()))?;
        tracing::info!(id = req.sandbox_id, timings = ?sandbox.timings(), "sandbox VM ready");
        Ok(Box::new(QemuVm { sandbox }))
    }
}
