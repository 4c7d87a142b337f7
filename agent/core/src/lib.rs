//! Agent request dispatch behind one policy gate, and the sandbox/container services.
//!
//! Every request from the host enters through [`Dispatcher`], which asks the single
//! [`PolicyGate`] first; no handler can be reached around it. Handlers are short and delegate
//! to typed services ([`SandboxService`], [`ContainerService`], [`CopyFileService`]); host
//! effects go through narrow ports ([`ContainerHost`], [`ImageService`], [`NetworkHost`]).

pub mod container;
pub mod copy_file;
mod dispatcher;
mod error;
mod gate;
mod handlers;
pub mod host;
mod sandbox;
#[cfg(test)]
mod tests;

pub use container::ContainerService;
pub use copy_file::{CopyFileService, DEFAULT_COPY_ROOT};
pub use dispatcher::{Dispatcher, Services};
pub use gate::{AllowAll, DenyAll, GateDecision, PolicyGate};
pub use host::{
    BoxReader, BoxWriter, ContainerHost, ContainerPlan, HostError, ImageError, ImageService,
    NetworkHost, ProcessIo, SpawnedProcess, TtyControl,
};
pub use sandbox::{GuestInfo, SandboxService, mem_block_size_bytes};
