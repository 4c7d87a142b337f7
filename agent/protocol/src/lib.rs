//! Wire contract with the host: Kata-compatible agent ttRPC API (`grpc.AgentService`,
//! `grpc.Health`).
//!
//! - `protos/` holds our own `.proto` files, wire-compatible with Kata's (same package, service,
//!   method and message names, same field numbers). `build.rs` generates the protobuf and ttRPC
//!   code into `OUT_DIR`; that code stays private to this crate.
//! - [`types`] has the domain types (serde JSON with proto field names, as the policy sees them).
//! - Agent side: implement [`AgentDispatcher`] and call [`serve`] (or [`serve_stream`]).
//! - Host side: [`AgentClient`].

#![forbid(unsafe_code)]

mod address;
mod client;
mod convert;
mod dispatch;
mod error;
mod request;
mod rpc_table;
mod server;
pub mod types;
mod wire;

pub use address::{AgentAddress, VSOCK_CID_ANY};
pub use client::{AgentClient, DEFAULT_TIMEOUT};
pub use dispatch::AgentDispatcher;
pub use error::{AgentError, ClientError, Code, ProtocolError};
pub use request::{AgentRequest, AgentResponse, RpcInfo, Service};
pub use server::{serve, serve_stream};

/// Re-exported so implementors of [`AgentDispatcher`] need no direct dependency.
pub use async_trait::async_trait;

/// Version string of this wire contract, answered as `VersionCheckResponse.grpc_version`.
pub const PROTOCOL_VERSION: &str = "cocoon-agent-protocol/0.1 (kata grpc.AgentService)";

#[cfg(test)]
mod tests;
