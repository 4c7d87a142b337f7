//! Client side of trustee's KBS protocol 0.4.0 (RCAR: Request, Challenge,
//! Attestation, Response).
//!
//! * [`protocol`]: the handshake as a sans-IO state machine ([`Handshake`]): HTTP
//!   responses in, HTTP requests out; resource request/response helpers.
//! * [`tee_key`]: the tee key pair (EC P-256 default, RSA-OAEP-256) and its JWK.
//! * [`jwe`]: the resource JWE (`ECDH-ES+A256KW` / `RSA-OAEP-256`, `A256GCM`), both
//!   directions (the KBS side is used by `cocoon-kbs`).
//! * [`jws`]: compact JWT signing/verification (`ES256`, `EdDSA`), admin tokens.
//! * [`uri`]: `kbs:///repo/type/tag` resource URIs.
//! * `transport` (feature `transport`): reqwest/rustls [`KbsClient`] with token
//!   caching and re-attestation, [`KbsAdminClient`], [`KbsKeyResolver`].
//!
//! Evidence comes from `attestation::attester`; whether a machine without a TEE
//! may use the sample attester is the caller's explicit [`SampleFallback`] choice.
#![forbid(unsafe_code)]

pub mod error;
pub mod jwe;
pub mod jws;
pub mod protocol;
pub mod tee_key;
#[cfg(feature = "transport")]
pub mod transport;
pub mod uri;

pub use attestation::attester::SampleFallback;
pub use error::{KbsClientError, KbsErrorType};
pub use jws::{JwsSigningKey, JwsVerifyingKey};
pub use protocol::{
    Handshake, HttpRequest, HttpResponse, KBS_PREFIX, KBS_PROTOCOL_VERSION, Method, Session,
};
pub use tee_key::{TeeKeyAlgorithm, TeeKeyPair};
#[cfg(feature = "transport")]
pub use transport::{HttpTransport, KbsAdminClient, KbsClient, KbsClientBuilder, KbsKeyResolver};
pub use uri::ResourceUri;

#[cfg(test)]
mod tests;
