//! Image security policy in the containers-policy.json(5) format, for the `docker` transport:
//! `insecureAcceptAnything`, `reject` and `sigstoreSigned` with a public key.
//!
//! `sigstoreSigned` checks cosign signatures stored as OCI artifacts under the tag
//! `sha256-<digest>.sig` in the image's repository: each layer of type
//! `application/vnd.dev.cosign.simplesigning.v1+json` is a "simple signing" payload, and its
//! annotation `dev.cosignproject.cosign/signature` holds a base64 DER ECDSA P-256/SHA-256
//! signature over the payload bytes. We verify that ourselves with `p256` instead of pulling
//! in the `sigstore` crate (which brings TUF, Rekor/Fulcio clients and many TLS and X.509
//! dependencies for features a key-based policy does not use). Keyless (Fulcio) and Rekor
//! checks are therefore not supported.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::Reference;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;

use crate::ImageError;
use crate::registry::{Descriptor, RegistryClient, digest_hex, parse_manifest};

/// Media type of a cosign simple-signing payload layer.
pub const COSIGN_PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation carrying the signature.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// One policy requirement.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Requirement {
    /// Accept without checks.
    InsecureAcceptAnything,
    /// Refuse.
    Reject,
    /// Require a valid cosign signature by the given key.
    #[serde(rename_all = "camelCase")]
    SigstoreSigned {
        /// Path of a PEM public key.
        key_path: Option<String>,
        /// Base64 of a PEM public key.
        key_data: Option<String>,
        /// How the signed identity must relate to the pulled reference.
        #[serde(default)]
        signed_identity: Option<SignedIdentity>,
    },
}

/// `signedIdentity` of a signature requirement.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SignedIdentity {
    /// Same repository; tag must match if the reference has one (the default).
    MatchRepoDigestOrExact,
    /// Same repository, any tag.
    MatchRepository,
    /// Exactly the same reference.
    MatchExact,
    /// A fixed repository.
    #[serde(rename_all = "camelCase")]
    ExactRepository {
        /// Repository that must be signed.
        docker_repository: String,
    },
    /// A fixed reference.
    #[serde(rename_all = "camelCase")]
    ExactReference {
        /// Reference that must be signed.
        docker_reference: String,
    },
}

/// A parsed policy.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    /// Requirements when no scope matches.
    pub default: Vec<Requirement>,
    /// Per-transport scopes; only `docker` is used.
    #[serde(default)]
    pub transports: HashMap<String, HashMap<String, Vec<Requirement>>>,
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: SignedImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

fn repo_of(r: &Reference) -> String {
    format!("{}/{}", r.resolve_registry(), r.repository())
}

impl Policy {
    /// Parse policy JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, ImageError> {
        let policy: Self =
            serde_json::from_slice(json).map_err(|e| ImageError::InvalidPolicy(e.to_string()))?;
        if policy.default.is_empty() {
            return Err(ImageError::InvalidPolicy(
                "`default` must list at least one requirement".into(),
            ));
        }
        Ok(policy)
    }

    /// Read and parse a policy file.
    pub fn from_file(path: &Path) -> Result<Self, ImageError> {
        let data = std::fs::read(path)
            .map_err(|e| ImageError::io(format!("reading policy {}", path.display()), e))?;
        Self::from_json(&data)
    }

    /// The requirements for `reference`: the most specific `docker` scope (full reference,
    /// repository, enclosing namespaces, registry host, `*.domain` wildcards, then the
    /// transport's `""` default), else the global default.
    pub fn requirements_for(&self, reference: &Reference) -> &[Requirement] {
        let Some(scopes) = self.transports.get("docker") else {
            return &self.default;
        };
        let repo = repo_of(reference);
        let mut candidates = Vec::new();
        if let Some(d) = reference.digest() {
            candidates.push(format!("{repo}@{d}"));
        }
        if let Some(t) = reference.tag() {
            candidates.push(format!("{repo}:{t}"));
        }
        let mut scope = repo.as_str();
        loop {
            candidates.push(scope.to_owned());
            match scope.rfind('/') {
                Some(i) => scope = &scope[..i],
                None => break,
            }
        }
        let host = reference
            .resolve_registry()
            .split(':')
            .next()
            .unwrap_or_default();
        let mut domain = host;
        while let Some(i) = domain.find('.') {
            domain = &domain[i + 1..];
            candidates.push(format!("*.{domain}"));
            if !domain.contains('.') {
                break;
            }
        }
        candidates.push(String::new());
        candidates
            .iter()
            .find_map(|c| scopes.get(c))
            .map(Vec::as_slice)
            .unwrap_or(&self.default)
    }

    /// Check every requirement for `reference` whose manifest (or index) has `digest`.
    pub async fn check(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        digest: &str,
    ) -> Result<(), ImageError> {
        let requirements = self.requirements_for(reference);
        if requirements.is_empty() {
            return Err(ImageError::PolicyDenied {
                reference: reference.to_string(),
                reason: "empty requirement list".into(),
            });
        }
        for req in requirements {
            match req {
                Requirement::InsecureAcceptAnything => {}
                Requirement::Reject => {
                    return Err(ImageError::PolicyDenied {
                        reference: reference.to_string(),
                        reason: "policy requirement `reject`".into(),
                    });
                }
                Requirement::SigstoreSigned {
                    key_path,
                    key_data,
                    signed_identity,
                } => {
                    let key = load_key(key_path.as_deref(), key_data.as_deref())?;
                    let identity = signed_identity
                        .clone()
                        .unwrap_or(SignedIdentity::MatchRepoDigestOrExact);
                    verify_cosign(client, reference, digest, &key, &identity).await?;
                }
            }
        }
        Ok(())
    }
}

fn load_key(
    path: Option<&str>,
    data: Option<&str>,
) -> Result<p256::ecdsa::VerifyingKey, ImageError> {
    let pem = match (path, data) {
        (Some(p), None) => {
            std::fs::read_to_string(p).map_err(|e| ImageError::io(format!("reading key {p}"), e))?
        }
        (None, Some(d)) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| ImageError::InvalidPolicy(format!("keyData: {e}")))?;
            String::from_utf8(raw)
                .map_err(|_| ImageError::InvalidPolicy("keyData is not PEM text".into()))?
        }
        _ => {
            return Err(ImageError::InvalidPolicy(
                "sigstoreSigned needs exactly one of keyPath and keyData".into(),
            ));
        }
    };
    let key = p256::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
        ImageError::InvalidPolicy(format!("public key is not an EC P-256 SPKI PEM: {e}"))
    })?;
    Ok(p256::ecdsa::VerifyingKey::from(&key))
}

fn identity_matches(identity: &SignedIdentity, reference: &Reference, signed: &str) -> bool {
    let Ok(signed_ref) = signed.parse::<Reference>() else {
        return false;
    };
    let same_repo = repo_of(&signed_ref) == repo_of(reference);
    match identity {
        SignedIdentity::MatchRepository => same_repo,
        SignedIdentity::MatchRepoDigestOrExact => {
            same_repo
                && (reference.tag().is_none()
                    || reference.digest().is_some()
                    || signed_ref.tag() == reference.tag())
        }
        SignedIdentity::MatchExact => {
            same_repo
                && signed_ref.tag() == reference.tag()
                && signed_ref.digest() == reference.digest()
        }
        SignedIdentity::ExactRepository { docker_repository } => docker_repository
            .parse::<Reference>()
            .is_ok_and(|r| repo_of(&r) == repo_of(&signed_ref)),
        SignedIdentity::ExactReference { docker_reference } => docker_reference
            .parse::<Reference>()
            .is_ok_and(|r| r.whole() == signed_ref.whole()),
    }
}

/// Verify that a signature by `key` over `digest` exists for `reference`.
pub async fn verify_cosign(
    client: &RegistryClient,
    reference: &Reference,
    digest: &str,
    key: &p256::ecdsa::VerifyingKey,
    identity: &SignedIdentity,
) -> Result<(), ImageError> {
    let denied = |reason: String| ImageError::PolicyDenied {
        reference: reference.to_string(),
        reason,
    };
    let sig_tag = format!("sha256-{}.sig", digest_hex(digest)?);
    let sig_ref = Reference::with_tag(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        sig_tag.clone(),
    );
    let body = client
        .fetch_manifest_document(&sig_ref)
        .await
        .map_err(|e| denied(format!("no signature {sig_tag}: {e}")))?;
    let manifest = parse_manifest(&body).map_err(|e| denied(format!("signature manifest: {e}")))?;
    let mut problems = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == COSIGN_PAYLOAD_MEDIA_TYPE)
    {
        match check_signature_layer(client, &sig_ref, layer, reference, digest, key, identity).await
        {
            Ok(()) => return Ok(()),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        problems.push("no simple-signing payload in the signature artifact".into());
    }
    Err(denied(format!(
        "no valid signature: {}",
        problems.join("; ")
    )))
}

async fn check_signature_layer(
    client: &RegistryClient,
    sig_ref: &Reference,
    layer: &Descriptor,
    reference: &Reference,
    digest: &str,
    key: &p256::ecdsa::VerifyingKey,
    identity: &SignedIdentity,
) -> Result<(), String> {
    let sig_b64 = layer
        .annotations
        .get(COSIGN_SIGNATURE_ANNOTATION)
        .ok_or("payload without signature annotation")?;
    let sig_der = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .map_err(|e| format!("signature base64: {e}"))?;
    let sig =
        p256::ecdsa::Signature::from_der(&sig_der).map_err(|e| format!("signature DER: {e}"))?;
    let payload = client
        .fetch_blob_bytes(sig_ref, layer)
        .await
        .map_err(|e| e.to_string())?;
    key.verify(&payload, &sig)
        .map_err(|_| "signature does not verify with the policy key".to_owned())?;
    let signed: SimpleSigning =
        serde_json::from_slice(&payload).map_err(|e| format!("payload: {e}"))?;
    if signed.critical.kind != "cosign container image signature" {
        return Err(format!("payload type {:?}", signed.critical.kind));
    }
    if signed.critical.image.docker_manifest_digest != digest {
        return Err(format!(
            "signature is for {}, not {digest}",
            signed.critical.image.docker_manifest_digest
        ));
    }
    if !identity_matches(
        identity,
        reference,
        &signed.critical.identity.docker_reference,
    ) {
        return Err(format!(
            "signed identity {} does not match {reference}",
            signed.critical.identity.docker_reference
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "registry.example.com/team/app:v1": [{"type": "reject"}],
            "registry.example.com/team": [{"type": "insecureAcceptAnything"}],
            "*.example.org": [{"type": "insecureAcceptAnything"}],
            "127.0.0.1:5000/signed": [{"type": "sigstoreSigned", "keyPath": "/k.pub",
                                        "signedIdentity": {"type": "matchRepository"}}]
        }}
    }"#;

    fn first(p: &Policy, r: &str) -> &'static str {
        match p.requirements_for(&r.parse().unwrap()).first() {
            Some(Requirement::Reject) => "reject",
            Some(Requirement::InsecureAcceptAnything) => "accept",
            Some(Requirement::SigstoreSigned { .. }) => "sigstore",
            None => "none",
        }
    }

    #[test]
    fn scopes_pick_the_most_specific() {
        let p = Policy::from_json(POLICY.as_bytes()).unwrap();
        assert_eq!(first(&p, "registry.example.com/team/app:v1"), "reject");
        assert_eq!(first(&p, "registry.example.com/team/app:v2"), "accept");
        assert_eq!(first(&p, "registry.example.com/other/app:v2"), "reject");
        assert_eq!(first(&p, "mirror.eu.example.org/x/y"), "accept");
        assert_eq!(first(&p, "127.0.0.1:5000/signed:latest"), "sigstore");
        assert_eq!(first(&p, "busybox"), "reject");
        assert!(Policy::from_json(br#"{"default": []}"#).is_err());
        assert!(Policy::from_json(br#"{"default": [{"type": "signedBy"}]}"#).is_err());
    }

    #[test]
    fn identity_rules() {
        let r: Reference = "127.0.0.1:5000/app:v1".parse().unwrap();
        assert!(identity_matches(
            &SignedIdentity::MatchRepository,
            &r,
            "127.0.0.1:5000/app:other"
        ));
        assert!(!identity_matches(
            &SignedIdentity::MatchRepoDigestOrExact,
            &r,
            "127.0.0.1:5000/app:other"
        ));
        assert!(identity_matches(
            &SignedIdentity::MatchRepoDigestOrExact,
            &r,
            "127.0.0.1:5000/app:v1"
        ));
        assert!(!identity_matches(
            &SignedIdentity::MatchRepository,
            &r,
            "127.0.0.1:5000/evil:v1"
        ));
    }
}
