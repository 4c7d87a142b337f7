//! Errors: [`AgentError`] (what a dispatcher answers, mapped to a ttRPC status in exactly one
//! place), [`ProtocolError`] (serving), [`ClientError`] (host side).

use std::fmt;

/// gRPC status codes, as carried in `ttrpc.Response.status.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 0.
    Ok,
    /// 1.
    Cancelled,
    /// 2.
    Unknown,
    /// 3.
    InvalidArgument,
    /// 4.
    DeadlineExceeded,
    /// 5.
    NotFound,
    /// 6.
    AlreadyExists,
    /// 7: refused by policy.
    PermissionDenied,
    /// 8.
    ResourceExhausted,
    /// 9.
    FailedPrecondition,
    /// 10.
    Aborted,
    /// 11.
    OutOfRange,
    /// 12.
    Unimplemented,
    /// 13.
    Internal,
    /// 14.
    Unavailable,
    /// 15.
    DataLoss,
    /// 16.
    Unauthenticated,
}

impl Code {
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The numeric gRPC code.
    pub fn number(self) -> i32 {
        // The declaration order above is the numeric order.
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .map_or(2, |i| i as i32)
    }

    /// The code for a number; numbers outside 0..=16 become [`Code::Unknown`].
    pub fn from_number(number: i32) -> Code {
        usize::try_from(number)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The canonical upper-case gRPC name, e.g. `PERMISSION_DENIED`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error a dispatcher returns: a status code and a plain, host-visible message.
///
/// The message is sent to the host verbatim. Build it from plain text (never `{:?}` of a value,
/// never guest secret paths or key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    code: Code,
    message: String,
}

impl AgentError {
    /// An error with any code.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// NOT_FOUND (unknown container or exec id, ...).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    /// PERMISSION_DENIED (refused by policy).
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }
    /// INVALID_ARGUMENT (malformed request).
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    /// ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }
    /// FAILED_PRECONDITION (e.g. starting a container twice).
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    /// UNIMPLEMENTED, with the standard text `<rpc> is not implemented`.
    pub fn unimplemented(rpc: &str) -> Self {
        Self::new(Code::Unimplemented, format!("{rpc} is not implemented"))
    }
    /// INTERNAL.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    /// DEADLINE_EXCEEDED.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }
    /// UNAVAILABLE.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }
    /// RESOURCE_EXHAUSTED.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The message sent to the host.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The one mapping from an agent error to the ttRPC status sent on the wire.
    pub fn to_ttrpc_status(&self) -> ttrpc::Status {
        ttrpc::get_status(ttrpc_code(self.code), &self.message)
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AgentError {}

fn ttrpc_code(code: Code) -> ttrpc::Code {
    <ttrpc::Code as protobuf::Enum>::from_i32(code.number()).unwrap_or(ttrpc::Code::UNKNOWN)
}

/// Reads code and message out of a ttRPC status.
pub(crate) fn from_ttrpc_status(status: &ttrpc::Status) -> (Code, String) {
    (
        Code::from_number(status.code.value()),
        status.message.clone(),
    )
}

/// Errors starting or running the ttRPC server.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The listen or connect address is malformed or uses an unsupported scheme.
    #[error("invalid agent address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A ttRPC server operation failed.
    #[error("ttrpc server error: {0}")]
    Server(String),
}

/// Errors seen by the host-side [`crate::AgentClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent answered with a non-OK status.
    #[error("agent returned {code}: {message}")]
    Rpc {
        /// Status code.
        code: Code,
        /// Status message.
        message: String,
    },
    /// The call did not finish within its timeout.
    #[error("{rpc} timed out after {timeout_ms} ms")]
    Timeout {
        /// RPC name.
        rpc: &'static str,
        /// Timeout in milliseconds.
        timeout_ms: u128,
    },
    /// The connection failed or closed.
    #[error("agent connection failed during {rpc}: {detail}")]
    Transport {
        /// RPC name.
        rpc: &'static str,
        /// What happened.
        detail: String,
    },
    /// The address is malformed.
    #[error("invalid agent address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting to the agent failed.
    #[error("cannot connect to agent at {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The gRPC code this error corresponds to (DEADLINE_EXCEEDED for timeouts, UNAVAILABLE for
    /// connection problems, INVALID_ARGUMENT for a bad address).
    pub fn code(&self) -> Code {
        match self {
            ClientError::Rpc { code, .. } => *code,
            ClientError::Timeout { .. } => Code::DeadlineExceeded,
            ClientError::Transport { .. } | ClientError::Connect { .. } => Code::Unavailable,
            ClientError::InvalidAddress { .. } => Code::InvalidArgument,
        }
    }

    /// The agent's status message, for [`ClientError::Rpc`].
    pub fn rpc_message(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { message, .. } => Some(message),
            _ => None,
        }
    }
}
