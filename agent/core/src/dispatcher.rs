//! The dispatcher: gate, then route to a service.

use std::sync::Arc;

use agent_protocol::{AgentDispatcher, AgentError, AgentRequest, AgentResponse};

use crate::gate::{GateDecision, PolicyGate};
use crate::sandbox::SandboxService;

/// Routes requests to services after the policy gate allowed them.
pub struct Dispatcher {
    gate: Arc<dyn PolicyGate>,
    sandbox: Arc<SandboxService>,
}

impl Dispatcher {
    /// New dispatcher with `gate` in front of `sandbox`.
    pub fn new(gate: Arc<dyn PolicyGate>, sandbox: Arc<SandboxService>) -> Self {
        Dispatcher { gate, sandbox }
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
        tracing::debug!(rpc = req.rpc_name(), "dispatch");
        crate::handlers::handle(&self.sandbox, req).await
    }
}
