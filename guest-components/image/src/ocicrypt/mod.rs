//! ocicrypt-compatible layer decryption (containers/ocicrypt `spec`, `blockcipher`,
//! `keywrap/jwe` and `keywrap/keyprovider`).
//!
//! A layer with a `+encrypted` media type carries `org.opencontainers.image.enc.pubopts`
//! (cipher name and HMAC) and one or more `org.opencontainers.image.enc.keys.<scheme>`
//! annotations wrapping the private options (symmetric key, nonce, plaintext digest).
//! [`layer_key`] unwraps them; [`cipher::LayerCipherKey`] then verifies the HMAC over the
//! whole ciphertext before any byte is decrypted.

pub mod cipher;
pub mod jwe;
pub mod keyprovider;
pub mod keys;
mod pipeline;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use cipher::LayerCipherKey;
use keyprovider::KeyResolver;
use keys::PrivateKey;

/// Annotation with the public options (cipher and HMAC).
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// Prefix of the wrapped-key annotations.
pub const ANNOTATION_KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";
/// JWE-wrapped keys.
pub const ANNOTATION_KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
/// CoCo attestation-agent key provider packets.
pub const ANNOTATION_KEYS_ATTESTATION_AGENT: &str =
    "org.opencontainers.image.enc.keys.provider.attestation-agent";
/// The only cipher ocicrypt defines.
pub const CIPHER_AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

/// Errors of layer key unwrapping and decryption.
#[derive(Debug, thiserror::Error)]
pub enum OcicryptError {
    /// A layer is encrypted but no key given fits any of its recipients.
    #[error("no suitable decryption key: {0}")]
    NoMatchingKey(String),
    /// A layer is encrypted and no key material at all was configured for its schemes.
    #[error(
        "layer is encrypted with {schemes}; no decryption key or key resolver configured for it"
    )]
    NoKeyConfigured {
        /// The `enc.keys.*` schemes present.
        schemes: String,
    },
    /// The HMAC over the ciphertext does not match `pubopts.hmac`.
    #[error("layer HMAC mismatch: the encrypted layer was modified or the key is wrong")]
    HmacMismatch,
    /// Malformed JWE.
    #[error("invalid JWE: {0}")]
    InvalidJwe(String),
    /// Malformed key provider packet or kid.
    #[error("invalid attestation-agent key packet: {0}")]
    InvalidKeyProvider(String),
    /// The key resolver failed.
    #[error("key resolver could not provide {0}: {1}")]
    KeyResolver(String, String),
    /// Malformed public or private options.
    #[error("invalid ocicrypt options: {0}")]
    InvalidOptions(String),
    /// An algorithm this implementation does not support.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A private key file could not be parsed.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// Reading the ciphertext failed.
    #[error("reading encrypted layer: {0}")]
    Io(#[source] io::Error),
}

/// Whether a layer media type is ocicrypt-encrypted.
pub fn is_encrypted(media_type: &str) -> bool {
    media_type.ends_with("+encrypted")
}

/// Key material available for decrypting layers.
#[derive(Clone, Default)]
pub struct DecryptionKeys {
    /// Private keys for the `jwe` scheme.
    pub private_keys: Vec<PrivateKey>,
    /// Resolver for the `provider.attestation-agent` scheme.
    pub resolver: Option<Arc<dyn KeyResolver>>,
}

#[derive(Deserialize)]
struct PublicOptions {
    cipher: String,
    hmac: String,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct PrivateOptions {
    symkey: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    #[zeroize(skip)]
    cipheroptions: BTreeMap<String, String>,
}

/// Unwrap the key of an encrypted layer from its descriptor annotations.
pub async fn layer_key(
    annotations: &BTreeMap<String, String>,
    keys: &DecryptionKeys,
) -> Result<LayerCipherKey, OcicryptError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pubopts_b64 = annotations
        .get(ANNOTATION_PUBOPTS)
        .ok_or_else(|| OcicryptError::InvalidOptions(format!("missing {ANNOTATION_PUBOPTS}")))?;
    let pubopts_raw = b64
        .decode(pubopts_b64)
        .map_err(|e| OcicryptError::InvalidOptions(format!("pubopts base64: {e}")))?;
    let pubopts: PublicOptions = serde_json::from_slice(&pubopts_raw)
        .map_err(|e| OcicryptError::InvalidOptions(format!("pubopts JSON: {e}")))?;
    if pubopts.cipher != CIPHER_AES_256_CTR_HMAC_SHA256 {
        return Err(OcicryptError::UnsupportedAlgorithm(format!(
            "layer cipher {:?}",
            pubopts.cipher
        )));
    }
    let expected_hmac = b64
        .decode(&pubopts.hmac)
        .map_err(|e| OcicryptError::InvalidOptions(format!("pubopts hmac: {e}")))?;
    if expected_hmac.len() != 32 {
        return Err(OcicryptError::InvalidOptions(
            "pubopts hmac must be 32 bytes".into(),
        ));
    }

    let privopts = unwrap_private_options(annotations, keys).await?;
    let opts: PrivateOptions = serde_json::from_slice(&privopts)
        .map_err(|_| OcicryptError::InvalidOptions("private options are not valid JSON".into()))?;
    let symkey = Zeroizing::new(
        b64.decode(&opts.symkey)
            .map_err(|_| OcicryptError::InvalidOptions("symkey is not base64".into()))?,
    );
    let symkey: [u8; 32] = symkey.as_slice().try_into().map_err(|_| {
        OcicryptError::InvalidOptions(format!("symkey must be 32 bytes, got {}", symkey.len()))
    })?;
    let nonce_b64 = opts
        .cipheroptions
        .get("nonce")
        .ok_or_else(|| OcicryptError::InvalidOptions("cipheroptions.nonce missing".into()))?;
    let nonce: [u8; 16] = b64
        .decode(nonce_b64)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| OcicryptError::InvalidOptions("nonce must be 16 bytes of base64".into()))?;
    let mut key = LayerCipherKey::new(symkey, nonce, expected_hmac);
    if !opts.digest.is_empty() {
        key.plaintext_digest = Some(opts.digest.clone());
    }
    Ok(key)
}

async fn unwrap_private_options(
    annotations: &BTreeMap<String, String>,
    keys: &DecryptionKeys,
) -> Result<Zeroizing<Vec<u8>>, OcicryptError> {
    let mut last_error = None;
    let mut attempted = false;
    if let Some(jwe_list) = annotations.get(ANNOTATION_KEYS_JWE)
        && !keys.private_keys.is_empty()
    {
        attempted = true;
        for blob in jwe_list.split(',').filter(|s| !s.is_empty()) {
            let jwe = base64::engine::general_purpose::STANDARD
                .decode(blob)
                .map_err(|e| OcicryptError::InvalidJwe(format!("annotation base64: {e}")))?;
            match jwe::decrypt(&jwe, &keys.private_keys) {
                Ok(p) => return Ok(p),
                Err(e) => last_error = Some(e),
            }
        }
    }
    if let Some(packets) = annotations.get(ANNOTATION_KEYS_ATTESTATION_AGENT)
        && let Some(resolver) = &keys.resolver
    {
        attempted = true;
        for packet in packets.split(',').filter(|s| !s.is_empty()) {
            match keyprovider::unwrap_packet(packet, resolver.as_ref()).await {
                Ok(p) => return Ok(p),
                Err(e) => last_error = Some(e),
            }
        }
    }
    if let Some(e) = last_error {
        return Err(e);
    }
    let schemes: Vec<&str> = annotations
        .keys()
        .filter_map(|k| k.strip_prefix(ANNOTATION_KEYS_PREFIX))
        .collect();
    if attempted {
        return Err(OcicryptError::NoMatchingKey(
            "no wrapped key could be unwrapped".into(),
        ));
    }
    Err(OcicryptError::NoKeyConfigured {
        schemes: if schemes.is_empty() {
            "no key annotation".into()
        } else {
            schemes.join(", ")
        },
    })
}
