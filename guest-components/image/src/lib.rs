//! In-guest image pull: registry client, digest checks, ocicrypt layer decryption and safe unpack.
//!
//! The entry point is [`pull_image`]: it resolves a reference on an OCI distribution registry,
//! verifies every digest (manifest, config, blobs, diff_ids), decrypts `+encrypted` layers
//! (ocicrypt, JWE and the CoCo `attestation-agent` key provider) only after their HMAC has been
//! verified, and unpacks the layers into a flattened root filesystem with [`unpack::Unpacker`],
//! which never writes outside the destination directory. See the crate README for the design.
#![forbid(unsafe_code)]

pub mod authfile;
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
mod error;
pub mod ocicrypt;
pub mod policy;
pub mod pull;
pub mod registry;
pub mod retry;
pub mod unpack;

pub use authfile::{AuthFileCredentials, AuthFileError};
pub use error::ImageError;
pub use ocicrypt::keyprovider::{InMemoryKeyResolver, KbsUri, KeyResolveError, KeyResolver};
pub use ocicrypt::keys::PrivateKey;
pub use pull::{ImageConfig, ProgressSink, PullOptions, PulledImage, pull_image};
pub use registry::{CredentialSource, Credentials, Platform};
pub use retry::RetryPolicy;
pub use unpack::{UnpackError, UnpackLimits, UnpackSummary, Unpacker};
