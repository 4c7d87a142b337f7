//! Registry access on top of `oci-client`: manifests and indexes (OCI and Docker v2),
//! platform selection, credentials, retries ([`crate::retry`]), and blobs streamed to disk
//! with their digest and size checked on the way (`registry/blob.rs`).
//!
//! Redirects are followed by reqwest (at most 10; more, or a loop, is a clear error and not
//! retried). reqwest drops the `Authorization` header when a redirect leads to another
//! host, port or scheme, so registry credentials never reach the storage backend a blob
//! `GET` is redirected to.

mod blob;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ImageError;
use crate::error::access_err;
use crate::retry::{Failure, Retrier, RetryPolicy, transient_reason};

/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2 manifest list.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest or config accepted.
pub const MAX_DOCUMENT_BYTES: u64 = 8 << 20;

/// Credentials for one registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials (anonymous token flow where the registry wants one).
    #[default]
    Anonymous,
    /// User name and password (or identity token), used directly or for the token flow.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Zeroizing<String>,
    },
    /// A ready bearer token.
    Bearer(Zeroizing<String>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Supplies registry credentials (the confidential data hub implements it in the guest).
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// Credentials for `registry` (host\[:port\]).
    async fn credentials(&self, registry: &str) -> Result<Credentials, ImageError>;
}

/// Wanted platform in image indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `os` (e.g. `linux`).
    pub os: String,
    /// `architecture` (e.g. `amd64`).
    pub architecture: String,
    /// Optional `variant` (e.g. `v8`).
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor (the fields this crate uses).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (ocicrypt keys live here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
}

/// `platform` of an index entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlatformSpec {
    /// OS.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2; same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Must be 2.
    pub schema_version: u32,
    /// Media type, when present in the document.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// A manifest resolved from a reference, with its digest verified.
#[derive(Debug, Clone)]
pub struct ResolvedManifest {
    /// The platform image manifest.
    pub manifest: ImageManifest,
    /// Its digest.
    pub digest: String,
    /// The index digest when the reference named an index.
    pub index_digest: Option<String>,
}

/// Check that `digest` is `sha256:<64 lowercase hex>` and return the hex part.
pub fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::BadDigest(digest.to_owned()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ImageError::BadDigest(digest.to_owned()));
    }
    Ok(hex)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `e` and its sources on one line, joined with `: ` (reqwest hides the root cause in
/// `source()`); a source whose text is already included is skipped.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The TLS error that made request `e` fail, if any. `std::io::Error` hides the error it
/// wraps from `source()` (and reqwest's connector nests two of them), so a wrapped error is
/// followed through `get_ref` instead.
pub(crate) fn tls_failure(e: &OciDistributionError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// A registry client for one pull.
#[derive(Clone)]
pub struct RegistryClient {
    client: Client,
    credentials: Option<Arc<dyn CredentialSource>>,
    platform: Platform,
    retry: RetryPolicy,
    /// Whether [`Self::authenticate`] found credentials (for error messages).
    sent_credentials: Arc<AtomicBool>,
}

impl RegistryClient {
    /// A client that uses HTTPS everywhere except for the registries (`host[:port]`) listed as
    /// insecure, which are reached over plain HTTP.
    ///
    /// Fails with [`ImageError::TlsSetup`] when the HTTPS client cannot be built, e.g. when
    /// the system has no CA certificates. (`oci_client::Client::new` would then fall back to
    /// a default client whose construction panics inside a tokio worker, and the pull would
    /// hang.) Note that the TLS verifier is built eagerly, so this also fails when every
    /// registry used is insecure.
    pub fn try_new(
        insecure_registries: &[String],
        credentials: Option<Arc<dyn CredentialSource>>,
        platform: Platform,
    ) -> Result<Self, ImageError> {
        let client = Client::try_from(Self::client_config(insecure_registries)).map_err(|e| {
            ImageError::TlsSetup {
                reason: error_chain(&e),
            }
        })?;
        Ok(Self {
            client,
            credentials,
            platform,
            retry: RetryPolicy::default(),
            sent_credentials: Arc::default(),
        })
    }

    /// Use `policy` for retries instead of [`RetryPolicy::default`].
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Like [`Self::try_new`], but keeps `oci_client::Client::new`'s fallback, which panics
    /// when no CA certificates are installed.
    #[deprecated(note = "panics without a CA bundle; use RegistryClient::try_new")]
    pub fn new(
        insecure_registries: &[String],
        credentials: Option<Arc<dyn CredentialSource>>,
        platform: Platform,
    ) -> Self {
        Self {
            client: Client::new(Self::client_config(insecure_registries)),
            credentials,
            platform,
            retry: RetryPolicy::default(),
            sent_credentials: Arc::default(),
        }
    }

    fn access_err(
        &self,
        reference: &Reference,
        what: &str,
        e: &OciDistributionError,
    ) -> ImageError {
        if let OciDistributionError::RequestError(r) = e
            && r.is_redirect()
        {
            return ImageError::Registry {
                what: what.to_owned(),
                reason: format!(
                    "{} (a redirect loop, or more than the 10 redirects that are followed)",
                    error_chain(e)
                ),
            };
        }
        access_err(
            reference.resolve_registry(),
            self.sent_credentials.load(Ordering::Relaxed),
            what,
            e,
        )
    }

    /// [`Failure::Transient`] when `e` is worth retrying, else the final error for `what`.
    fn failure(&self, reference: &Reference, what: &str, e: &OciDistributionError) -> Failure {
        if let Some(tls) = tls_failure(e) {
            return Failure::Fatal(ImageError::TlsHandshake {
                registry: reference.resolve_registry().to_owned(),
                what: what.to_owned(),
                reason: error_chain(e),
                plain_http_suspected: matches!(tls, rustls::Error::InvalidMessage(_)),
            });
        }
        match transient_reason(e) {
            Some(reason) => Failure::Transient(reason),
            None => Failure::Fatal(self.access_err(reference, what, e)),
        }
    }

    fn client_config(insecure_registries: &[String]) -> ClientConfig {
        install_crypto_provider();
        ClientConfig {
            protocol: if insecure_registries.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(insecure_registries.to_vec())
            },
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        }
    }

    /// Parse an image reference (Docker Hub short names are expanded).
    pub fn parse_reference(reference: &str) -> Result<Reference, ImageError> {
        reference
            .parse()
            .map_err(|e: oci_client::ParseError| ImageError::InvalidReference {
                reference: reference.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Authenticate for pulling from the reference's repository.
    pub async fn authenticate(&self, reference: &Reference) -> Result<(), ImageError> {
        let registry = reference.resolve_registry().to_owned();
        let creds = match &self.credentials {
            Some(source) => source.credentials(&registry).await?,
            None => Credentials::Anonymous,
        };
        let auth = match creds {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username, password.as_str().to_owned())
            }
            Credentials::Bearer(token) => RegistryAuth::Bearer(token.as_str().to_owned()),
        };
        self.sent_credentials
            .store(!matches!(auth, RegistryAuth::Anonymous), Ordering::Relaxed);
        let what = format!("authentication to {registry}");
        let mut retrier = Retrier::new(&self.retry, &what);
        loop {
            match self
                .client
                .auth(reference, &auth, RegistryOperation::Pull)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => match self.failure(reference, &what, &e) {
                    Failure::Transient(reason) => retrier.wait(reason).await?,
                    Failure::Fatal(e) => return Err(e),
                },
            }
        }
    }

    async fn fetch_manifest_raw(&self, reference: &Reference) -> Result<Vec<u8>, ImageError> {
        let accepted = [
            MEDIA_OCI_MANIFEST,
            MEDIA_OCI_INDEX,
            MEDIA_DOCKER_MANIFEST,
            MEDIA_DOCKER_LIST,
        ];
        let what = format!("manifest {reference}");
        let mut retrier = Retrier::new(&self.retry, &what);
        loop {
            match self
                .client
                .pull_manifest_raw(reference, &RegistryAuth::Anonymous, &accepted)
                .await
            {
                Ok((body, _)) => return Ok(body.to_vec()),
                Err(OciDistributionError::DigestError(e)) => {
                    // oci-client compares the body with the pinned digest itself.
                    return Err(ImageError::DigestMismatch {
                        what,
                        expected: reference.digest().unwrap_or_default().to_owned(),
                        actual: e.to_string(),
                    });
                }
                Err(e) => match self.failure(reference, &what, &e) {
                    Failure::Transient(reason) => retrier.wait(reason).await?,
                    Failure::Fatal(e) => return Err(e),
                },
            }
        }
    }

    /// Fetch the manifest for `reference`, following an index to the wanted platform, and
    /// verify digests: the pinned one if the reference has one, and each index entry's.
    pub async fn resolve_manifest(
        &self,
        reference: &Reference,
    ) -> Result<ResolvedManifest, ImageError> {
        let body = self.fetch_manifest_raw(reference).await?;
        let top_digest = sha256_digest(&body);
        if let Some(pinned) = reference.digest()
            && pinned != top_digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest {reference}"),
                expected: pinned.to_owned(),
                actual: top_digest,
            });
        }
        let versioned: Versioned =
            serde_json::from_slice(&body).map_err(|e| invalid("manifest", e))?;
        let is_index = matches!(
            versioned.media_type.as_deref(),
            Some(MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST)
        ) || (versioned.media_type.is_none() && versioned.manifests.is_some());
        if !is_index {
            let manifest = parse_manifest(&body)?;
            return Ok(ResolvedManifest {
                manifest,
                digest: top_digest,
                index_digest: None,
            });
        }
        let index: Index = serde_json::from_slice(&body).map_err(|e| invalid("image index", e))?;
        if index.schema_version != 2 {
            return Err(ImageError::InvalidManifest {
                what: "image index".into(),
                reason: format!("schemaVersion {}", index.schema_version),
            });
        }
        let entry = select_platform(&index.manifests, &self.platform)
            .ok_or_else(|| ImageError::NoMatchingPlatform(self.platform.to_string()))?;
        digest_hex(&entry.digest)?;
        let child_ref = reference.clone_with_digest(entry.digest.clone());
        let child = self.fetch_manifest_raw(&child_ref).await?;
        let child_digest = sha256_digest(&child);
        if child_digest != entry.digest {
            return Err(ImageError::DigestMismatch {
                what: "platform manifest".into(),
                expected: entry.digest.clone(),
                actual: child_digest,
            });
        }
        if child.len() as u64 != entry.size {
            return Err(ImageError::SizeMismatch {
                what: "platform manifest".into(),
                expected: entry.size,
                actual: child.len() as u64,
            });
        }
        Ok(ResolvedManifest {
            manifest: parse_manifest(&child)?,
            digest: child_digest,
            index_digest: Some(top_digest),
        })
    }

    /// The underlying `oci-client` client (for signature artifacts).
    pub fn inner(&self) -> &Client {
        &self.client
    }

    /// Fetch a manifest by tag or digest without following indexes (used for signatures).
    pub async fn fetch_manifest_document(
        &self,
        reference: &Reference,
    ) -> Result<Vec<u8>, ImageError> {
        self.fetch_manifest_raw(reference).await
    }
}

fn invalid(what: &str, e: serde_json::Error) -> ImageError {
    ImageError::InvalidManifest {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// Parse and sanity-check an image manifest document.
pub fn parse_manifest(body: &[u8]) -> Result<ImageManifest, ImageError> {
    let manifest: ImageManifest =
        serde_json::from_slice(body).map_err(|e| invalid("image manifest", e))?;
    if manifest.schema_version != 2 {
        return Err(ImageError::InvalidManifest {
            what: "image manifest".into(),
            reason: format!(
                "schemaVersion {} (only 2 is supported)",
                manifest.schema_version
            ),
        });
    }
    if let Some(mt) = &manifest.media_type
        && mt != MEDIA_OCI_MANIFEST
        && mt != MEDIA_DOCKER_MANIFEST
    {
        return Err(ImageError::InvalidManifest {
            what: "image manifest".into(),
            reason: format!("media type {mt:?}"),
        });
    }
    digest_hex(&manifest.config.digest)?;
    for layer in &manifest.layers {
        digest_hex(&layer.digest)?;
    }
    Ok(manifest)
}

/// Pick the index entry for `platform` (exact variant match preferred, then any variant).
pub fn select_platform<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Option<&'a Descriptor> {
    let candidates = entries.iter().filter(|d| {
        matches!(
            d.media_type.as_str(),
            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST | ""
        ) && d
            .platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    });
    let all: Vec<&Descriptor> = candidates.collect();
    all.iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.clone()) == platform.variant)
        .or_else(|| all.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest_char: char) -> Descriptor {
        Descriptor {
            media_type: MEDIA_OCI_MANIFEST.into(),
            digest: format!("sha256:{}", digest_char.to_string().repeat(64)),
            size: 1,
            annotations: BTreeMap::new(),
            platform: Some(PlatformSpec {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(str::to_owned),
            }),
        }
    }

    #[test]
    fn platform_selection() {
        let entries = vec![
            entry("arm64", Some("v8"), 'a'),
            entry("amd64", None, 'b'),
            entry("arm", Some("v7"), 'c'),
        ];
        assert_eq!(
            select_platform(&entries, &Platform::default())
                .unwrap()
                .digest,
            entries[1].digest
        );
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        assert_eq!(
            select_platform(&entries, &arm).unwrap().digest,
            entries[2].digest
        );
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        assert!(select_platform(&entries, &s390).is_none());
    }

    #[test]
    fn digest_validation() {
        assert!(digest_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(digest_hex("sha512:abc").is_err());
        assert!(digest_hex("sha256:../../etc").is_err());
    }
}
