//! Pure core of the Cocoon containerd shim (`containerd-shim-cocoon-v2`).
//!
//! Nothing here touches a VM, a socket or the filesystem: the shim crate composes these
//! pieces with containerd's ttRPC API and a [`Vmm`] implementation.
//! - [`pod`]: which pod a container belongs to (CRI / CRI-O annotations) and its
//!   `image_guest_pull` storage (the host rootfs is never given to the guest).
//! - [`spec`]: the host OCI spec translated for the agent, host-only parts dropped.
//! - [`class`]: which runtime-class configuration applies and the annotation policy.
//! - [`state`]: container / exec state machines of one pod.
//! - [`ports`]: the [`Vmm`] and [`EventSink`] ports and the task events.
//! - [`network`]: the guest interface and route of a class with a `[network]` section.
//! - [`persist`]: what the shim writes into the bundle so `delete` can clean up after a crash.
#![forbid(unsafe_code)]

pub mod class;
pub mod network;
pub mod persist;
pub mod pod;
pub mod ports;
pub mod spec;
pub mod state;

pub use ports::{EventSink, TaskEvent, Vm, VmRequest, Vmm, VmmError};
pub use state::{ContainerState, ExitInfo, Pod, ProcessState, Status, Stdio};

/// Errors of the pure shim logic; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A pod annotation is malformed or inconsistent.
    #[error("annotation {key}: {reason}")]
    Annotation {
        /// Annotation key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An annotation is never accepted (it would reach a host path or QEMU).
    #[error("annotation {key:?} is not allowed: {reason}")]
    ForbiddenAnnotation {
        /// Full annotation key.
        key: String,
        /// Why.
        reason: String,
    },
    /// No image reference for a container that needs one.
    #[error(
        "no image reference for the guest to pull: set io.kubernetes.cri.image-name (CRI) or io.cocoon.image (e.g. ctr run --annotation io.cocoon.image=REF)"
    )]
    NoImageReference,
    /// The OCI spec cannot be used.
    #[error("OCI spec: {0}")]
    Spec(String),
    /// Configuration selection or validation failed.
    #[error("runtime configuration: {0}")]
    Config(String),
    /// The object does not exist.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The object exists already.
    #[error("{what} {id:?} already exists")]
    AlreadyExists {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The operation is not valid in the current state.
    #[error("{what} {id:?} is {status}; cannot {op}")]
    InvalidState {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
        /// Current status.
        status: Status,
        /// Attempted operation.
        op: &'static str,
    },
}
