//! Agent request dispatch behind one policy gate, and the sandbox/container services.
//!
//! Every request from the host enters through [`Dispatcher`], which asks the single
//! [`PolicyGate`] first; no handler can be reached around it. Handlers are short and delegate
//! to typed services.

mod dispatcher;
mod gate;
mod handlers;
mod sandbox;

pub use dispatcher::Dispatcher;
pub use gate::{AllowAll, DenyAll, GateDecision, PolicyGate};
pub use sandbox::{GuestInfo, SandboxService, mem_block_size_bytes};
