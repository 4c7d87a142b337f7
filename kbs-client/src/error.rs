//! Errors of the client, including trustee's RFC 7807 error bodies mapped to types.

use serde::{Deserialize, Serialize};

/// Prefix of the `type` URI in trustee's RFC 7807 error bodies.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors";

/// The error `type` a KBS reported (the last segment of the `type` URI).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KbsErrorType {
    /// Handshake or evidence verification failed (401).
    AttestationError,
    /// The resource policy refused the request (401 in trustee's code).
    PolicyDeny,
    /// No session cookie with a token and no bearer token (401).
    TokenNotFound,
    /// The bearer token did not verify (401).
    TokenVerifierError,
    /// The response could not be encrypted to the tee key (401).
    JweError,
    /// A request body did not parse (401).
    SerdeError,
    /// The plugin (resource store) failed (401).
    PluginInternalError,
    /// The request path is malformed (404).
    InvalidRequestPath,
    /// No such plugin (404).
    PluginNotFound,
    /// Admin access refused (trustee: AdminAuthAccess, 401).
    AdminAuthAccess,
    /// No such resource (cocoon-kbs: 404).
    ResourceNotFound,
    /// The resource or attestation policy text is invalid.
    ParsePolicyError,
    /// Any other type string.
    Other(String),
}

impl KbsErrorType {
    /// Map the `type` URI (or bare name) of an error body to a variant.
    pub fn from_type_uri(uri: &str) -> Self {
        let name = uri.rsplit('/').next().unwrap_or(uri);
        match name {
            "AttestationError" => Self::AttestationError,
            "PolicyDeny" => Self::PolicyDeny,
            "TokenNotFound" => Self::TokenNotFound,
            "TokenVerifierError" => Self::TokenVerifierError,
            "JweError" => Self::JweError,
            "SerdeError" => Self::SerdeError,
            "PluginInternalError" => Self::PluginInternalError,
            "InvalidRequestPath" => Self::InvalidRequestPath,
            "PluginNotFound" => Self::PluginNotFound,
            "AdminAuthAccess" | "AdminAuthInitialization" => Self::AdminAuthAccess,
            "ResourceNotFound" => Self::ResourceNotFound,
            "ParsePolicyError" => Self::ParsePolicyError,
            other => Self::Other(other.to_string()),
        }
    }

    /// The bare type name (last segment of the URI).
    pub fn name(&self) -> &str {
        match self {
            Self::AttestationError => "AttestationError",
            Self::PolicyDeny => "PolicyDeny",
            Self::TokenNotFound => "TokenNotFound",
            Self::TokenVerifierError => "TokenVerifierError",
            Self::JweError => "JweError",
            Self::SerdeError => "SerdeError",
            Self::PluginInternalError => "PluginInternalError",
            Self::InvalidRequestPath => "InvalidRequestPath",
            Self::PluginNotFound => "PluginNotFound",
            Self::AdminAuthAccess => "AdminAuthAccess",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::ParsePolicyError => "ParsePolicyError",
            Self::Other(s) => s,
        }
    }

    /// The full `type` URI trustee uses for this error.
    pub fn type_uri(&self) -> String {
        format!("{ERROR_TYPE_PREFIX}/{}", self.name())
    }
}

impl std::fmt::Display for KbsErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum KbsClientError {
    /// The KBS answered with an error status and (usually) an RFC 7807 body.
    #[error("KBS refused ({status} {kind}): {detail}")]
    Kbs {
        /// HTTP status.
        status: u16,
        /// Error type from the body (`Other("")` when the body was not RFC 7807).
        kind: KbsErrorType,
        /// The body's `detail` (or the raw body).
        detail: String,
    },
    /// A response did not have the expected shape.
    #[error("unexpected KBS response: {0}")]
    Protocol(String),
    /// Evidence could not be produced.
    #[error("evidence: {0}")]
    Evidence(#[from] attestation::AttestationError),
    /// Key generation, import or JWE/JWS processing failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A `kbs://` URI or resource path is malformed.
    #[error("invalid resource URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP exchange failed (connect, TLS, timeout, ...).
    #[error("HTTP: {0}")]
    Http(String),
    /// The state machine was driven out of order.
    #[error("handshake state: {0}")]
    State(&'static str),
}

impl KbsClientError {
    /// The KBS error type, when the KBS reported one.
    pub fn kbs_error_type(&self) -> Option<&KbsErrorType> {
        match self {
            Self::Kbs { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The HTTP status, when the KBS answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Kbs { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn crypto(reason: impl std::fmt::Display) -> Self {
        Self::Crypto(reason.to_string())
    }

    /// Build the error for a non-2xx response from its status and body.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<kbs_types::ErrorInformation>(body) {
            Ok(info) => Self::Kbs {
                status,
                kind: KbsErrorType::from_type_uri(&info.error_type),
                detail: info.detail,
            },
            Err(_) => Self::Kbs {
                status,
                kind: KbsErrorType::Other(String::new()),
                detail: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_trustee_error_bodies() {
        let body = br#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}"#;
        let e = KbsClientError::from_response(401, body);
        assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny));
        assert_eq!(e.status(), Some(401));
        assert!(e.to_string().contains("Access denied by policy"));
        let e = KbsClientError::from_response(404, b"not json");
        assert_eq!(
            e.kbs_error_type(),
            Some(&KbsErrorType::Other(String::new()))
        );
        for t in [
            KbsErrorType::AttestationError,
            KbsErrorType::TokenNotFound,
            KbsErrorType::InvalidRequestPath,
            KbsErrorType::PluginNotFound,
            KbsErrorType::ResourceNotFound,
        ] {
            assert_eq!(KbsErrorType::from_type_uri(&t.type_uri()), t);
        }
    }
}
