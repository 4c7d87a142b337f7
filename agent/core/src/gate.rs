//! The policy gate: one decision per request, before any handler runs.

use agent_protocol::AgentRequest;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// The request may proceed.
    Allow,
    /// The request is refused; the text is safe to send to the host.
    Deny(String),
}

/// Decides whether a request may run. The Rego policy engine implements this later;
/// [`AllowAll`] and [`DenyAll`] are the fixed policies.
pub trait PolicyGate: Send + Sync {
    /// Evaluates `req`.
    fn evaluate(&self, req: &AgentRequest) -> GateDecision;
}

/// Allows everything (coco-dev default until a policy is set).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl PolicyGate for AllowAll {
    fn evaluate(&self, _req: &AgentRequest) -> GateDecision {
        GateDecision::Allow
    }
}

/// Denies everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

impl PolicyGate for DenyAll {
    fn evaluate(&self, _req: &AgentRequest) -> GateDecision {
        GateDecision::Deny("all requests are denied".to_string())
    }
}
