//! The crate's top-level error.

use std::io;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::ocicrypt::OcicryptError;
use crate::unpack::UnpackError;

/// Why a pull failed. Every variant names what was wrong; partial state has been removed by
/// the time it is returned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The HTTPS client could not be built, typically because the system has no CA
    /// certificates (no CA bundle).
    #[error(
        "cannot set up HTTPS for registry access: {reason}; install a CA bundle \
         (/etc/ssl/certs/ca-certificates.crt, or point SSL_CERT_FILE/SSL_CERT_DIR at one); \
         registries listed as insecure (plain HTTP) need it too, since the HTTPS verifier is \
         built before any request"
    )]
    TlsSetup {
        /// The TLS stack's message.
        reason: String,
    },
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
    /// A registry request kept failing with errors worth retrying (429, 502, 503, 504,
    /// network trouble) until the attempts of the [`crate::RetryPolicy`] were used up.
    #[error("{what}: giving up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// What was being fetched.
        what: String,
        /// Attempts made, the first one included.
        attempts: u32,
        /// The last attempt's failure (status and URL, or the network error).
        last: String,
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
    /// The registry (or its token server) refused access: 401 Unauthorized, or a token
    /// request that was turned down.
    #[error(
        "{what}: unauthorized by registry {registry} ({}): {reason}",
        if *.sent_credentials { "the credentials given for it were refused" } else { "no credentials were given for it" }
    )]
    Unauthorized {
        /// Registry host\[:port\].
        registry: String,
        /// What was being fetched.
        what: String,
        /// Whether credentials (basic or bearer) were sent.
        sent_credentials: bool,
        /// The registry's or token server's answer.
        reason: String,
    },
    /// The TLS handshake with a registry failed. Not retried: a server that does not speak
    /// TLS, or presents a certificate we do not trust, will not change its mind.
    #[error(
        "{what}: TLS with registry {registry} failed: {reason}{}",
        if *.plain_http_suspected {
            "; the server did not answer with TLS, so it is probably a plain-HTTP registry: \
             list it as insecure (PullOptions::insecure_registries, `--insecure-registry`) \
             only if plain HTTP is really intended"
        } else {
            ""
        }
    )]
    TlsHandshake {
        /// Registry host\[:port\].
        registry: String,
        /// What was being fetched.
        what: String,
        /// The request URL and the TLS stack's message.
        reason: String,
        /// The server's first bytes were not a TLS record (typically an HTTP answer).
        plain_http_suspected: bool,
    },
    /// A registry auth file (`auth.json`) is malformed or unreadable.
    #[error("{0}")]
    AuthFile(#[from] crate::authfile::AuthFileError),
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

/// [`ImageError::Registry`] for an `oci-client` error.
fn registry_err(what: &str, e: &OciDistributionError) -> ImageError {
    ImageError::Registry {
        what: what.to_owned(),
        reason: crate::registry::error_chain(e),
    }
}

/// [`ImageError::Unauthorized`] for a 401 answer or a refused token request, else
/// [`ImageError::Registry`].
pub(crate) fn access_err(
    registry: &str,
    sent_credentials: bool,
    what: &str,
    e: &OciDistributionError,
) -> ImageError {
    let reason = match e {
        OciDistributionError::UnauthorizedError { url } => {
            format!("401 Unauthorized for {url}")
        }
        OciDistributionError::AuthenticationFailure(body) => {
            format!(
                "the token server refused the token request: {}",
                body.trim()
            )
        }
        OciDistributionError::RegistryError { envelope, url }
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::Unauthorized) =>
        {
            format!("UNAUTHORIZED for {url}: {e}")
        }
        _ => return registry_err(what, e),
    };
    ImageError::Unauthorized {
        registry: registry.to_owned(),
        what: what.to_owned(),
        sent_credentials,
        reason,
    }
}
