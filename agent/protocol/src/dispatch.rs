//! The dispatcher trait the agent implements.

use async_trait::async_trait;

use crate::error::AgentError;
use crate::request::{AgentRequest, AgentResponse};

/// Handles every request of both services. The ttRPC adapter in this crate converts each wire
/// request into an [`AgentRequest`], calls [`AgentDispatcher::dispatch`], and converts the answer
/// back; an [`AgentError`] becomes the ttRPC status (code + plain message).
///
/// The response variant must match the RPC (e.g. `AgentResponse::WaitProcess` for
/// `WaitProcess`, `AgentResponse::Empty` for `CreateContainer`); a mismatch is answered INTERNAL.
#[async_trait]
pub trait AgentDispatcher: Send + Sync {
    /// Handles one request.
    async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError>;
}
