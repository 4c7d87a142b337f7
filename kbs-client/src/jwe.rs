//! The KBS resource response: a flattened JWE JSON (RFC 7516) with `enc` = `A256GCM`
//! and `alg` = `ECDH-ES+A256KW` (P-256, Concat KDF, AES key wrap) or `RSA-OAEP-256`.
//!
//! The AEAD additional data is the ASCII of the received base64url protected header
//! (plus `.` and the `aad` member when one is present, RFC 7516 §5.1 step 14).
//! [`encrypt`] is what a KBS does; [`decrypt`] what the guest does with its
//! [`TeeKeyPair`](crate::TeeKeyPair).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aes_kw::KekAes256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use kbs_types::{ProtectedHeader, Response, TeePubKey};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::elliptic_curve::sec1::FromEncodedPoint;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::KbsClientError;

/// `alg` for ECDH-ES with Concat KDF and AES-256 key wrap.
pub const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// `alg` for RSAES-OAEP with SHA-256 / MGF1-SHA-256.
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";
/// `enc`: AES-256-GCM.
pub const A256GCM: &str = "A256GCM";
/// The only curve the client generates keys on.
pub const P256: &str = "P-256";

/// Concat KDF (NIST SP 800-56A §5.8.1, RFC 7518 §4.6.2) with SHA-256:
/// `AlgorithmID` = `alg`, PartyUInfo = `apu`, PartyVInfo = `apv` (each length-prefixed),
/// SuppPubInfo = `key_bits`; returns `key_bits / 8` bytes.
pub fn concat_kdf(
    z: &[u8],
    alg: &str,
    apu: &[u8],
    apv: &[u8],
    key_bits: u32,
) -> Zeroizing<Vec<u8>> {
    let len = (key_bits / 8) as usize;
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut round: u32 = 1;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(round.to_be_bytes());
        h.update(z);
        for field in [alg.as_bytes(), apu, apv] {
            h.update((field.len() as u32).to_be_bytes());
            h.update(field);
        }
        h.update(key_bits.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        round += 1;
    }
    out.truncate(len);
    out
}

/// [`concat_kdf`] as KBS JWEs use it: empty PartyU/PartyV info, 256-bit KEK.
pub fn concat_kdf_256(z: &[u8], alg: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&concat_kdf(z, alg, b"", b"", 256));
    out
}

fn b64url_decode(what: &str, text: &str) -> Result<Vec<u8>, KbsClientError> {
    B64URL
        .decode(text)
        .map_err(|e| KbsClientError::crypto(format!("JWE {what}: invalid base64url: {e}")))
}

fn p256_public_from_xy(x: &str, y: &str) -> Result<p256::PublicKey, KbsClientError> {
    let x = b64url_decode("x", x)?;
    let y = b64url_decode("y", y)?;
    if x.len() != 32 || y.len() != 32 {
        return Err(KbsClientError::crypto(
            "P-256 coordinates must be 32 bytes each",
        ));
    }
    let point = p256::EncodedPoint::from_affine_coordinates(
        p256::FieldBytes::from_slice(&x),
        p256::FieldBytes::from_slice(&y),
        false,
    );
    Option::from(p256::PublicKey::from_encoded_point(&point))
        .ok_or_else(|| KbsClientError::crypto("P-256 point is not on the curve"))
}

fn rsa_public(n: &str, e: &str) -> Result<rsa::RsaPublicKey, KbsClientError> {
    let n = rsa::BigUint::from_bytes_be(&b64url_decode("n", n)?);
    let e = rsa::BigUint::from_bytes_be(&b64url_decode("e", e)?);
    rsa::RsaPublicKey::new(n, e).map_err(KbsClientError::crypto)
}

fn seal(
    cek: &[u8; 32],
    protected: ProtectedHeader,
    encrypted_key: Vec<u8>,
    plaintext: &[u8],
) -> Result<Response, KbsClientError> {
    let aad = protected
        .generate_aad()
        .map_err(|_| KbsClientError::crypto("cannot serialise the JWE protected header"))?;
    let cipher = Aes256Gcm::new_from_slice(cek).map_err(KbsClientError::crypto)?;
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut ciphertext = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut ciphertext)
        .map_err(|_| KbsClientError::crypto("AES-GCM encryption failed"))?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag: tag.to_vec(),
    })
}

/// Encrypt `plaintext` to a tee public key, as a KBS does for a resource.
pub fn encrypt(tee_pubkey: &TeePubKey, plaintext: &[u8]) -> Result<Response, KbsClientError> {
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut cek[..]);
    match tee_pubkey {
        TeePubKey::EC { crv, alg, x, y } if crv == P256 && alg == ECDH_ES_A256KW => {
            let recipient = p256_public_from_xy(x, y)?;
            let ephemeral = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let shared = ephemeral.diffie_hellman(&recipient);
            let kek = concat_kdf_256(shared.raw_secret_bytes(), ECDH_ES_A256KW);
            let kek_bytes: &[u8; 32] = &kek;
            let encrypted_key = KekAes256::new(kek_bytes.into())
                .wrap_vec(&cek[..])
                .map_err(|e| KbsClientError::crypto(format!("AES key wrap: {e}")))?;
            let epk = p256::EncodedPoint::from(ephemeral.public_key());
            let (ex, ey) = match (epk.x(), epk.y()) {
                (Some(x), Some(y)) => (B64URL.encode(x), B64URL.encode(y)),
                _ => return Err(KbsClientError::crypto("ephemeral key has no coordinates")),
            };
            let mut other = serde_json::Map::new();
            other.insert(
                "epk".into(),
                serde_json::json!({"crv": P256, "kty": "EC", "x": ex, "y": ey}),
            );
            let protected = ProtectedHeader {
                alg: ECDH_ES_A256KW.into(),
                enc: A256GCM.into(),
                other_fields: other,
            };
            seal(&cek, protected, encrypted_key, plaintext)
        }
        TeePubKey::RSA { alg, k_mod, k_exp } if alg == RSA_OAEP_256 => {
            let key = rsa_public(k_mod, k_exp)?;
            let encrypted_key = key
                .encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), &cek[..])
                .map_err(|e| KbsClientError::crypto(format!("RSA-OAEP-256: {e}")))?;
            let protected = ProtectedHeader {
                alg: RSA_OAEP_256.into(),
                enc: A256GCM.into(),
                other_fields: serde_json::Map::new(),
            };
            seal(&cek, protected, encrypted_key, plaintext)
        }
        TeePubKey::EC { crv, alg, .. } => Err(KbsClientError::crypto(format!(
            "unsupported tee key: EC {crv} with {alg} (supported: P-256 {ECDH_ES_A256KW})"
        ))),
        TeePubKey::RSA { alg, .. } => Err(KbsClientError::crypto(format!(
            "unsupported tee key: RSA with {alg} (supported: {RSA_OAEP_256})"
        ))),
        TeePubKey::AKP { alg, .. } => Err(KbsClientError::crypto(format!(
            "unsupported tee key: AKP {alg}"
        ))),
    }
}

/// A flattened JWE as received, keeping the exact protected-header text for the AAD.
#[derive(Debug, Deserialize)]
pub struct ReceivedJwe {
    /// base64url of the protected header JSON, exactly as received.
    pub protected: String,
    /// base64url of the encrypted CEK.
    pub encrypted_key: String,
    /// base64url of the 12-byte IV.
    pub iv: String,
    /// base64url of the ciphertext.
    pub ciphertext: String,
    /// base64url of the 16-byte tag.
    pub tag: String,
    /// Optional extra AAD (base64url), RFC 7516 `aad`.
    #[serde(default)]
    pub aad: Option<String>,
    /// Shared unprotected header (RFC 7516 §7.2.1 `unprotected`).
    #[serde(default)]
    pub unprotected: Option<serde_json::Map<String, serde_json::Value>>,
    /// Per-recipient unprotected header (flattened syntax `header`); e.g. jwcrypto
    /// puts `epk` there.
    #[serde(default)]
    pub header: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The parts of a protected header the decryptor needs.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// Key management algorithm.
    pub alg: String,
    /// Content encryption algorithm.
    pub enc: String,
    /// Ephemeral public key (ECDH-ES).
    #[serde(default)]
    pub epk: Option<Epk>,
}

/// An ephemeral EC public key in a protected header.
#[derive(Debug, Deserialize)]
pub struct Epk {
    /// Key type, `EC`.
    pub kty: String,
    /// Curve name.
    pub crv: String,
    /// base64url X.
    pub x: String,
    /// base64url Y.
    pub y: String,
}

/// Key material able to unwrap a CEK.
pub enum Unwrapper<'a> {
    /// P-256 private key (ECDH-ES+A256KW).
    EcP256(&'a p256::SecretKey),
    /// RSA private key (RSA-OAEP-256).
    Rsa(&'a rsa::RsaPrivateKey),
}

/// Decrypt a received flattened JWE JSON with `key`.
pub fn decrypt(jwe_json: &[u8], key: Unwrapper<'_>) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
    let jwe: ReceivedJwe = serde_json::from_slice(jwe_json)
        .map_err(|e| KbsClientError::Protocol(format!("resource response is not a JWE: {e}")))?;
    let header_bytes = b64url_decode("protected", &jwe.protected)?;
    // The JOSE header is the union of the protected and unprotected headers; their
    // member names must be disjoint (RFC 7516 §7.2.1). Only integrity-irrelevant
    // members (e.g. `epk`: a changed one derives a wrong key) can come unprotected
    // in practice; `alg`/`enc` are whatever the union says.
    let mut joined: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes)
            .map_err(|e| KbsClientError::crypto(format!("JWE protected header: {e}")))?;
    for extra in [&jwe.unprotected, &jwe.header].into_iter().flatten() {
        for (k, v) in extra {
            if joined.insert(k.clone(), v.clone()).is_some() {
                return Err(KbsClientError::crypto(format!(
                    "JWE header member {k:?} appears twice"
                )));
            }
        }
    }
    let header: Header = serde_json::from_value(serde_json::Value::Object(joined))
        .map_err(|e| KbsClientError::crypto(format!("JWE header: {e}")))?;
    if header.enc != A256GCM {
        return Err(KbsClientError::crypto(format!(
            "JWE enc {:?} not supported (expected {A256GCM})",
            header.enc
        )));
    }
    let encrypted_key = b64url_decode("encrypted_key", &jwe.encrypted_key)?;
    let cek: Zeroizing<Vec<u8>> = match (header.alg.as_str(), key) {
        (ECDH_ES_A256KW, Unwrapper::EcP256(secret)) => {
            let epk = header
                .epk
                .as_ref()
                .ok_or_else(|| KbsClientError::crypto("ECDH-ES JWE without epk"))?;
            if epk.kty != "EC" || epk.crv != P256 {
                return Err(KbsClientError::crypto(format!(
                    "epk {} {} does not match the P-256 tee key",
                    epk.kty, epk.crv
                )));
            }
            let sender = p256_public_from_xy(&epk.x, &epk.y)?;
            let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), sender.as_affine());
            let kek = concat_kdf_256(shared.raw_secret_bytes(), ECDH_ES_A256KW);
            let kek_bytes: &[u8; 32] = &kek;
            Zeroizing::new(
                KekAes256::new(kek_bytes.into())
                    .unwrap_vec(&encrypted_key)
                    .map_err(|e| KbsClientError::crypto(format!("AES key unwrap: {e}")))?,
            )
        }
        (RSA_OAEP_256, Unwrapper::Rsa(private)) => Zeroizing::new(
            private
                .decrypt(rsa::Oaep::new::<Sha256>(), &encrypted_key)
                .map_err(|e| KbsClientError::crypto(format!("RSA-OAEP-256: {e}")))?,
        ),
        (alg, _) => {
            return Err(KbsClientError::crypto(format!(
                "JWE alg {alg:?} does not match the tee key type"
            )));
        }
    };
    if cek.len() != 32 {
        return Err(KbsClientError::crypto("content key is not 32 bytes"));
    }
    let iv = b64url_decode("iv", &jwe.iv)?;
    let tag = b64url_decode("tag", &jwe.tag)?;
    if iv.len() != 12 || tag.len() != 16 {
        return Err(KbsClientError::crypto(
            "A256GCM needs a 12-byte iv and 16-byte tag",
        ));
    }
    let mut aad = jwe.protected.clone().into_bytes();
    if let Some(extra) = &jwe.aad {
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    let mut plaintext = Zeroizing::new(b64url_decode("ciphertext", &jwe.ciphertext)?);
    Aes256Gcm::new_from_slice(&cek)
        .map_err(KbsClientError::crypto)?
        .decrypt_in_place_detached(
            Nonce::from_slice(&iv),
            &aad,
            &mut plaintext[..],
            Tag::from_slice(&tag),
        )
        .map_err(|_| KbsClientError::crypto("A256GCM authentication failed"))?;
    Ok(plaintext)
}
