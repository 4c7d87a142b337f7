//! The crate's top-level error.

use std::io;

use crate::ocicrypt::OcicryptError;
use crate::unpack::UnpackError;

/// Why a pull failed. Every variant names what was wrong; partial state has been removed by
/// the time it is returned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Parser message.
        reason: String,
    },
    /// A registry request failed (after retries where they apply).
    #[error("registry error for {what}: {reason}")]
    Registry {
        /// What was being fetched.
        what: String,
        /// The client's message.
        reason: String,
    },
    /// Content did not hash to the expected digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (manifest, config, blob, diff_id of layer N).
        what: String,
        /// Expected digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// Content size did not match its descriptor.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// Descriptor size.
        expected: u64,
        /// Received size (may be a lower bound when the stream was cut off early).
        actual: u64,
    },
    /// A digest string is not `sha256:<64 hex>` (other algorithms are not accepted).
    #[error("unsupported or malformed digest {0:?}")]
    BadDigest(String),
    /// A manifest, index or config is not what the OCI/Docker specifications describe.
    #[error("invalid {what}: {reason}")]
    InvalidManifest {
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No manifest in the index matches the wanted platform.
    #[error("no manifest for platform {0} in the image index")]
    NoMatchingPlatform(String),
    /// A layer media type this crate cannot unpack.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),
    /// A layer could not be decrypted.
    #[error("layer {index} ({digest}): {source}")]
    Decrypt {
        /// Layer index in the manifest.
        index: usize,
        /// Layer digest.
        digest: String,
        /// Cause.
        #[source]
        source: OcicryptError,
    },
    /// A layer could not be unpacked (or was refused as hostile).
    #[error("layer {index} ({digest}): {source}")]
    Unpack {
        /// Layer index.
        index: usize,
        /// Layer digest.
        digest: String,
        /// Cause.
        #[source]
        source: UnpackError,
    },
    /// The image security policy refused the image.
    #[error("image {reference} refused by policy: {reason}")]
    PolicyDenied {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The policy file is malformed.
    #[error("invalid image security policy: {0}")]
    InvalidPolicy(String),
    /// The destination cannot be used.
    #[error("destination {path}: {reason}")]
    Destination {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A local filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A key or credential could not be loaded.
    #[error("{0}")]
    Key(#[from] OcicryptError),
    /// Credentials could not be obtained.
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// Why.
        reason: String,
    },
    /// A background task failed unexpectedly.
    #[error("internal task failure: {0}")]
    Task(String),
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
