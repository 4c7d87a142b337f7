//! Server errors and their RFC 7807 bodies (trustee's `type` URIs and statuses).

use kbs_client::KbsErrorType;

/// Everything a request or the server start-up can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// Handshake or evidence verification failed.
    #[error("attestation failed: {0}")]
    Attestation(String),
    /// The resource policy refused.
    #[error("access denied by policy: {0}")]
    PolicyDeny(String),
    /// No attested session and no bearer token.
    #[error("attestation token not found (no attested session cookie, no bearer token)")]
    TokenNotFound,
    /// The bearer token did not verify.
    #[error("token verification failed: {0}")]
    TokenVerifier(String),
    /// The resource could not be encrypted to the tee key.
    #[error("JWE failed: {0}")]
    Jwe(String),
    /// A request body did not parse.
    #[error("bad request body: {0}")]
    Serde(String),
    /// The resource store failed.
    #[error("resource store: {0}")]
    PluginInternal(String),
    /// Malformed request path.
    #[error("request path {0} is invalid")]
    InvalidRequestPath(String),
    /// Unknown plugin / endpoint.
    #[error("plugin {0} not found")]
    PluginNotFound(String),
    /// No such resource.
    #[error("resource {0} not found")]
    ResourceNotFound(String),
    /// Admin authentication or authorization failed.
    #[error("admin access denied: {0}")]
    AdminAuthAccess(String),
    /// A posted policy is invalid.
    #[error("failed to parse policy: {0}")]
    ParsePolicy(String),
    /// Request body over the configured limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Configuration or start-up problem (not an HTTP error).
    #[error("configuration: {0}")]
    Config(String),
}

impl KbsError {
    /// The trustee error type of this error.
    pub fn error_type(&self) -> KbsErrorType {
        match self {
            Self::Attestation(_) | Self::Config(_) => KbsErrorType::AttestationError,
            Self::PolicyDeny(_) => KbsErrorType::PolicyDeny,
            Self::TokenNotFound => KbsErrorType::TokenNotFound,
            Self::TokenVerifier(_) => KbsErrorType::TokenVerifierError,
            Self::Jwe(_) => KbsErrorType::JweError,
            Self::Serde(_) | Self::PayloadTooLarge(_) => KbsErrorType::SerdeError,
            Self::PluginInternal(_) => KbsErrorType::PluginInternalError,
            Self::InvalidRequestPath(_) => KbsErrorType::InvalidRequestPath,
            Self::PluginNotFound(_) => KbsErrorType::PluginNotFound,
            Self::ResourceNotFound(_) => KbsErrorType::ResourceNotFound,
            Self::AdminAuthAccess(_) => KbsErrorType::AdminAuthAccess,
            Self::ParsePolicy(_) => KbsErrorType::ParsePolicyError,
        }
    }

    /// HTTP status: 404 for path/plugin/resource errors, 413 for oversize bodies, 400
    /// for a posted policy that is invalid (trustee answers 401; the admin's request
    /// is malformed, not unauthenticated), 401 otherwise (trustee's table; the client
    /// re-attests after a 401).
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequestPath(_) | Self::PluginNotFound(_) | Self::ResourceNotFound(_) => {
                404
            }
            Self::ParsePolicy(_) => 400,
            Self::PayloadTooLarge(_) => 413,
            Self::Config(_) => 500,
            _ => 401,
        }
    }

    /// The RFC 7807 JSON body.
    pub fn body(&self) -> String {
        let info = kbs_types::ErrorInformation {
            error_type: self.error_type().type_uri(),
            detail: self.to_string(),
        };
        serde_json::to_string(&info).unwrap_or_default()
    }
}
