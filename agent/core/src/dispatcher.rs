//! The dispatcher: gate, then route to a service.

use std::sync::Arc;

use agent_protocol::{AgentDispatcher, AgentError, AgentRequest, AgentResponse};

use crate::container::ContainerService;
use crate::copy_file::CopyFileService;
use crate::gate::{GateDecision, PolicyGate};
use crate::host::NetworkHost;
use crate::sandbox::SandboxService;

/// The typed services requests are routed to.
#[derive(Clone)]
pub struct Services {
    /// Sandbox lifecycle and guest details.
    pub sandbox: Arc<SandboxService>,
    /// Containers and their processes.
    pub containers: Arc<ContainerService>,
    /// CopyFile.
    pub copy_file: Arc<CopyFileService>,
    /// Guest networking; `None` answers UNIMPLEMENTED.
    pub network: Option<Arc<dyn NetworkHost>>,
}

/// Routes requests to services after the policy gate allowed them.
pub struct Dispatcher {
    gate: Arc<dyn PolicyGate>,
    services: Services,
}

impl Dispatcher {
    /// New dispatcher with `gate` in front of `services`.
    pub fn new(gate: Arc<dyn PolicyGate>, services: Services) -> Self {
        Dispatcher { gate, services }
    }
}

#[async_trait::async_trait]
impl AgentDispatcher for Dispatcher {
    async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError> {
        if let GateDecision::Deny(why) = self.gate.evaluate(&req) {
            tracing::info!(rpc = req.rpc_name(), "request denied by policy");
            return Err(AgentError::permission_denied(format!(
                "{} is blocked by policy: {why}",
                req.policy_rule()
            )));
        }
        let rpc = req.rpc_name();
        tracing::debug!(rpc, "dispatch");
        let result = crate::handlers::handle(&self.services, req).await;
        if let Err(e) = &result {
            tracing::debug!(rpc, code = ?e.code(), error = e.message(), "request failed");
        }
        result
    }
}
