//! The CoCo `attestation-agent` key provider: the layer annotation
//! `org.opencontainers.image.enc.keys.provider.attestation-agent` holds base64 of
//! `{"kid":"kbs:///repo/type/tag","wrapped_data":b64,"iv":b64,"wrap_type":"A256GCM"}`; the
//! key-encryption key named by `kid` comes from the KBS through a [`KeyResolver`], and
//! AES-256-GCM-decrypting `wrapped_data` yields ocicrypt's private options JSON.

use std::collections::HashMap;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit};
use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::OcicryptError;

/// A KBS resource URI `kbs://<host, ignored>/<repository>/<type>/<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KbsUri {
    /// First path segment (e.g. `default`).
    pub repository: String,
    /// Second segment (e.g. `key`).
    pub resource_type: String,
    /// Third segment (e.g. `key_id1`).
    pub tag: String,
}

impl KbsUri {
    /// The KBS resource path `repository/type/tag` (as in `/kbs/v0/resource/<path>`).
    pub fn resource_path(&self) -> String {
        format!("{}/{}/{}", self.repository, self.resource_type, self.tag)
    }
}

impl std::fmt::Display for KbsUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kbs:///{}", self.resource_path())
    }
}

impl FromStr for KbsUri {
    type Err = OcicryptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| OcicryptError::InvalidKeyProvider(format!("kid {s:?}: {why}"));
        let rest = s
            .strip_prefix("kbs://")
            .ok_or_else(|| bad("not a kbs:// URI"))?;
        // Skip the authority (usually empty: `kbs:///...`).
        let path = match rest.find('/') {
            Some(i) => &rest[i + 1..],
            None => return Err(bad("no resource path")),
        };
        let segs: Vec<&str> = path.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if segs.len() != 3 || !segs.iter().all(valid) {
            return Err(bad(
                "expected kbs:///<repository>/<type>/<tag> with plain segments",
            ));
        }
        Ok(Self {
            repository: segs[0].to_owned(),
            resource_type: segs[1].to_owned(),
            tag: segs[2].to_owned(),
        })
    }
}

/// Why a key could not be resolved (the resolver's own message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyResolveError(pub String);

/// Fetches key-encryption keys by KBS URI. The KBS client implements it after attestation.
#[async_trait]
pub trait KeyResolver: Send + Sync {
    /// Return the raw key named by `kid` (32 bytes for A256GCM).
    async fn resolve(&self, kid: &KbsUri) -> Result<Zeroizing<Vec<u8>>, KeyResolveError>;
}

/// A [`KeyResolver`] over a fixed map, for tests and offline development.
#[derive(Default)]
pub struct InMemoryKeyResolver {
    keys: HashMap<KbsUri, Zeroizing<Vec<u8>>>,
}

impl InMemoryKeyResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key under `kid` (a `kbs:///...` URI).
    pub fn insert(&mut self, kid: &str, key: Vec<u8>) -> Result<(), OcicryptError> {
        self.keys.insert(kid.parse()?, Zeroizing::new(key));
        Ok(())
    }
}

#[async_trait]
impl KeyResolver for InMemoryKeyResolver {
    async fn resolve(&self, kid: &KbsUri) -> Result<Zeroizing<Vec<u8>>, KeyResolveError> {
        self.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| KeyResolveError(format!("no key for {kid}")))
    }
}

#[derive(Deserialize)]
struct AnnotationPacket {
    kid: String,
    wrapped_data: String,
    iv: String,
    #[serde(default)]
    wrap_type: Option<String>,
}

/// Unwrap one base64 annotation packet into the private options JSON.
pub async fn unwrap_packet(
    packet_b64: &str,
    resolver: &dyn KeyResolver,
) -> Result<Zeroizing<Vec<u8>>, OcicryptError> {
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let raw = std_b64
        .decode(packet_b64.trim())
        .map_err(|e| OcicryptError::InvalidKeyProvider(format!("annotation is not base64: {e}")))?;
    let packet: AnnotationPacket = serde_json::from_slice(&raw)
        .map_err(|e| OcicryptError::InvalidKeyProvider(format!("annotation packet: {e}")))?;
    let wrap = match packet.wrap_type.as_deref().unwrap_or("A256GCM") {
        "A256GCM" => Wrap::Gcm,
        "A256CTR" => Wrap::Ctr,
        other => {
            return Err(OcicryptError::UnsupportedAlgorithm(format!(
                "attestation-agent wrap_type {other:?} (A256GCM or A256CTR)"
            )));
        }
    };
    let kid: KbsUri = packet.kid.parse()?;
    let wrapped = std_b64
        .decode(&packet.wrapped_data)
        .map_err(|e| OcicryptError::InvalidKeyProvider(format!("wrapped_data: {e}")))?;
    let iv = std_b64
        .decode(&packet.iv)
        .map_err(|e| OcicryptError::InvalidKeyProvider(format!("iv: {e}")))?;
    let iv_len = match wrap {
        Wrap::Gcm => 12,
        Wrap::Ctr => 16,
    };
    if iv.len() != iv_len {
        return Err(OcicryptError::InvalidKeyProvider(format!(
            "iv must be {iv_len} bytes for {wrap:?}, got {}",
            iv.len()
        )));
    }
    let kek = resolver
        .resolve(&kid)
        .await
        .map_err(|e| OcicryptError::KeyResolver(kid.to_string(), e.0))?;
    if kek.len() != 32 {
        return Err(OcicryptError::InvalidKeyProvider(format!(
            "key {kid} must be 32 bytes, got {}",
            kek.len()
        )));
    }
    let not_unwrapped =
        || OcicryptError::NoMatchingKey(format!("key {kid} does not unwrap the layer key"));
    match wrap {
        Wrap::Gcm => {
            let cipher = aes_gcm::Aes256Gcm::new_from_slice(&kek).map_err(|_| not_unwrapped())?;
            cipher
                .decrypt(aes_gcm::Nonce::from_slice(&iv), wrapped.as_slice())
                .map(Zeroizing::new)
                .map_err(|_| not_unwrapped())
        }
        Wrap::Ctr => {
            use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
            let mut cipher = ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&kek, &iv)
                .map_err(|_| not_unwrapped())?;
            let mut opts = Zeroizing::new(wrapped);
            cipher.apply_keystream(&mut opts);
            // CTR has no tag: a wrong key shows as options that are not JSON.
            if serde_json::from_slice::<serde::de::IgnoredAny>(&opts).is_err() {
                return Err(not_unwrapped());
            }
            Ok(opts)
        }
    }
}

/// The key wraps coco_keyprovider produces: AES-256-GCM (12-byte IV, tag appended) or
/// AES-256-CTR (16-byte IV, big-endian 128-bit counter, unauthenticated).
#[derive(Debug, Clone, Copy)]
enum Wrap {
    Gcm,
    Ctr,
}

/// Build an annotation packet (the encryption side), for tests and tooling.
pub fn wrap_packet(
    kid: &str,
    kek: &[u8; 32],
    iv: &[u8; 12],
    optsdata: &[u8],
) -> Result<String, OcicryptError> {
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(kek)
        .map_err(|_| OcicryptError::InvalidKeyProvider("bad key".into()))?;
    let wrapped = cipher
        .encrypt(aes_gcm::Nonce::from_slice(iv), optsdata)
        .map_err(|_| OcicryptError::InvalidKeyProvider("AES-GCM encryption failed".into()))?;
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let packet = serde_json::json!({
        "kid": kid,
        "wrapped_data": std_b64.encode(wrapped),
        "iv": std_b64.encode(iv),
        "wrap_type": "A256GCM",
    });
    Ok(std_b64.encode(packet.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbs_uri_parsing() {
        let u: KbsUri = "kbs:///default/key/key_id1".parse().unwrap();
        assert_eq!(u.resource_path(), "default/key/key_id1");
        let u: KbsUri = "kbs://example:8080/a/b/c".parse().unwrap();
        assert_eq!(u.to_string(), "kbs:///a/b/c");
        for bad in [
            "http:///a/b/c",
            "kbs:///a/b",
            "kbs:///a/../c",
            "kbs:///a/b/c/d",
            "kbs:///a//c",
        ] {
            assert!(bad.parse::<KbsUri>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn packet_roundtrip_and_wrong_key() {
        let kek = [7u8; 32];
        let packet = wrap_packet("kbs:///default/key/k1", &kek, &[1u8; 12], b"{\"x\":1}").unwrap();
        let mut r = InMemoryKeyResolver::new();
        r.insert("kbs:///default/key/k1", kek.to_vec()).unwrap();
        assert_eq!(&unwrap_packet(&packet, &r).await.unwrap()[..], b"{\"x\":1}");

        let mut wrong = InMemoryKeyResolver::new();
        wrong
            .insert("kbs:///default/key/k1", vec![8u8; 32])
            .unwrap();
        assert!(matches!(
            unwrap_packet(&packet, &wrong).await,
            Err(OcicryptError::NoMatchingKey(_))
        ));
        let empty = InMemoryKeyResolver::new();
        assert!(matches!(
            unwrap_packet(&packet, &empty).await,
            Err(OcicryptError::KeyResolver(..))
        ));
    }

    /// coco_keyprovider's `algorithm=A256CTR`: AES-256-CTR (128-bit big-endian counter, as
    /// `openssl enc -aes-256-ctr`) with a 16-byte IV; a wrong key or IV length is refused.
    #[tokio::test]
    async fn a256ctr_packets_unwrap_and_a_wrong_key_is_refused() {
        use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
        let kek = [0x42u8; 32];
        let iv = [0x0fu8; 16];
        let opts = br#"{"symkey":"c2VjcmV0","cipher":"AES_256_CTR_HMAC_SHA256"}"#;
        let mut wrapped = opts.to_vec();
        ctr::Ctr128BE::<aes::Aes256>::new(&kek.into(), &iv.into()).apply_keystream(&mut wrapped);
        assert_ne!(&wrapped[..], &opts[..]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let packet = |iv: &[u8]| {
            b64.encode(
                serde_json::json!({
                    "kid": "kbs:///default/key/ctr",
                    "wrapped_data": b64.encode(&wrapped),
                    "iv": b64.encode(iv),
                    "wrap_type": "A256CTR",
                })
                .to_string(),
            )
        };
        let mut r = InMemoryKeyResolver::new();
        r.insert("kbs:///default/key/ctr", kek.to_vec()).unwrap();
        assert_eq!(
            &unwrap_packet(&packet(&iv), &r).await.unwrap()[..],
            &opts[..]
        );
        let mut wrong = InMemoryKeyResolver::new();
        wrong
            .insert("kbs:///default/key/ctr", vec![1u8; 32])
            .unwrap();
        assert!(matches!(
            unwrap_packet(&packet(&iv), &wrong).await,
            Err(OcicryptError::NoMatchingKey(_))
        ));
        let e = unwrap_packet(&packet(&[0u8; 12]), &r).await.unwrap_err();
        assert!(e.to_string().contains("16 bytes"), "{e}");
    }
}
