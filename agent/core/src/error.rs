//! Host-port errors to wire errors (the codes; the protocol crate maps codes to ttRPC).

use agent_protocol::{AgentError, Code};

use crate::host::{HostError, ImageError};

/// Maps a [`HostError`] to the error sent to the host.
pub(crate) fn host_error(e: HostError) -> AgentError {
    let code = match &e {
        HostError::NotFound(_) => Code::NotFound,
        HostError::InvalidArgument(_) => Code::InvalidArgument,
        HostError::FailedPrecondition(_) => Code::FailedPrecondition,
        HostError::Unavailable(_) => Code::Unavailable,
        HostError::Timeout(_) => Code::DeadlineExceeded,
        HostError::Io { .. } => Code::Internal,
    };
    AgentError::new(code, e.to_string())
}

/// Maps an [`ImageError`] to the error sent to the host.
pub(crate) fn image_error(e: ImageError) -> AgentError {
    match e {
        ImageError::NotAvailable(m) => AgentError::new(Code::Unimplemented, m),
        ImageError::Failed(m) => AgentError::internal(m),
    }
}
