//! JWE (RFC 7516) JSON serialisation unwrapping, as written by go-jose for ocicrypt's `jwe`
//! key wrapper: flattened or general form, one or more recipients, key management
//! `RSA-OAEP`, `RSA-OAEP-256` or `ECDH-ES+A256KW` (P-256/384/521), content `A256GCM`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::OcicryptError;
use super::keys::PrivateKey;

#[derive(Deserialize)]
struct JweJson {
    protected: Option<String>,
    unprotected: Option<Map<String, Value>>,
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
    recipients: Option<Vec<Recipient>>,
    aad: Option<String>,
    iv: String,
    ciphertext: String,
    tag: String,
}

#[derive(Deserialize)]
struct Recipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

/// Decode base64url with or without padding (go-jose writes it without).
pub(crate) fn b64url(field: &str, s: &str) -> Result<Vec<u8>, OcicryptError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| OcicryptError::InvalidJwe(format!("`{field}` is not base64url: {e}")))
}

fn header_str<'a>(header: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    header.get(name).and_then(Value::as_str)
}

/// Unwrap a JWE JSON document with the first key that works for any recipient, returning
/// the plaintext (ocicrypt's private options JSON).
pub fn decrypt(jwe: &[u8], keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, OcicryptError> {
    let doc: JweJson = serde_json::from_slice(jwe)
        .map_err(|e| OcicryptError::InvalidJwe(format!("not JWE JSON serialisation: {e}")))?;
    let mut shared = Map::new();
    if let Some(p) = &doc.protected {
        let raw = b64url("protected", p)?;
        let protected: Map<String, Value> = serde_json::from_slice(&raw)
            .map_err(|e| OcicryptError::InvalidJwe(format!("protected header: {e}")))?;
        shared.extend(protected);
    }
    if let Some(u) = &doc.unprotected {
        for (k, v) in u {
            shared.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    type RecipientRef<'a> = (Option<&'a Map<String, Value>>, Option<&'a String>);
    let recipients: Vec<RecipientRef<'_>> = match &doc.recipients {
        Some(list) => list
            .iter()
            .map(|r| (r.header.as_ref(), r.encrypted_key.as_ref()))
            .collect(),
        None => vec![(doc.header.as_ref(), doc.encrypted_key.as_ref())],
    };
    if recipients.is_empty() {
        return Err(OcicryptError::InvalidJwe("no recipients".into()));
    }
    let iv = b64url("iv", &doc.iv)?;
    let ciphertext = b64url("ciphertext", &doc.ciphertext)?;
    let tag = b64url("tag", &doc.tag)?;
    let mut aad = doc.protected.clone().unwrap_or_default().into_bytes();
    if let Some(extra) = &doc.aad {
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }

    let mut tried = Vec::new();
    for (per_recipient, encrypted_key) in recipients {
        let mut header = shared.clone();
        if let Some(h) = per_recipient {
            for (k, v) in h {
                header.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let alg = header_str(&header, "alg").unwrap_or_default().to_owned();
        let enc = header_str(&header, "enc").unwrap_or_default();
        if enc != "A256GCM" {
            return Err(OcicryptError::UnsupportedAlgorithm(format!(
                "JWE enc {enc:?}"
            )));
        }
        if header.contains_key("zip") {
            return Err(OcicryptError::UnsupportedAlgorithm(
                "compressed JWE (zip)".into(),
            ));
        }
        let encrypted_key = match encrypted_key {
            Some(k) => b64url("encrypted_key", k)?,
            None => Vec::new(),
        };
        for key in keys {
            match unwrap_cek(&alg, &header, &encrypted_key, key) {
                Ok(Some(cek)) => {
                    return content_decrypt(&cek, &iv, &ciphertext, &tag, &aad);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(alg = %alg, key = key.kind(), error = %e, "JWE recipient not unwrapped");
                }
            }
        }
        tried.push(alg);
    }
    Err(OcicryptError::NoMatchingKey(format!(
        "none of the {} private key(s) unwraps any JWE recipient (algorithms {})",
        keys.len(),
        tried.join(", ")
    )))
}

/// Unwrap the content-encryption key for one recipient with one key. `Ok(None)` means the key
/// type does not fit the algorithm.
fn unwrap_cek(
    alg: &str,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &PrivateKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, OcicryptError> {
    match (alg, key) {
        ("RSA-OAEP", PrivateKey::Rsa(k)) => k
            .decrypt(rsa::Oaep::new::<sha1::Sha1>(), encrypted_key)
            .map(|v| Some(Zeroizing::new(v)))
            .map_err(|e| OcicryptError::NoMatchingKey(format!("RSA-OAEP: {e}"))),
        ("RSA-OAEP-256", PrivateKey::Rsa(k)) => k
            .decrypt(rsa::Oaep::new::<Sha256>(), encrypted_key)
            .map(|v| Some(Zeroizing::new(v)))
            .map_err(|e| OcicryptError::NoMatchingKey(format!("RSA-OAEP-256: {e}"))),
        ("ECDH-ES+A256KW", PrivateKey::P256(_) | PrivateKey::P384(_) | PrivateKey::P521(_)) => {
            let Some(z) = ecdh_shared_secret(header, key)? else {
                return Ok(None);
            };
            let kek = ecdh_kek(&z, alg, header)?;
            let kw = aes_kw::KekAes256::from(*kek);
            let mut cek = Zeroizing::new(vec![0u8; encrypted_key.len().saturating_sub(8)]);
            kw.unwrap(encrypted_key, &mut cek)
                .map_err(|e| OcicryptError::NoMatchingKey(format!("AES key unwrap: {e}")))?;
            Ok(Some(cek))
        }
        ("RSA-OAEP" | "RSA-OAEP-256" | "ECDH-ES+A256KW", _) => Ok(None),
        (other, _) => Err(OcicryptError::UnsupportedAlgorithm(format!(
            "JWE alg {other:?}"
        ))),
    }
}

/// ECDH with the sender's ephemeral key `epk`; `Ok(None)` when it is on another curve.
fn ecdh_shared_secret(
    header: &Map<String, Value>,
    key: &PrivateKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, OcicryptError> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or_else(|| OcicryptError::InvalidJwe("ECDH-ES without `epk`".into()))?;
    let crv = header_str(epk, "crv").unwrap_or_default();
    let x = b64url("epk.x", header_str(epk, "x").unwrap_or_default())?;
    let y = b64url("epk.y", header_str(epk, "y").unwrap_or_default())?;
    let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let bad = |e: &dyn std::fmt::Display| OcicryptError::InvalidJwe(format!("epk on {crv}: {e}"));
    let z = match (crv, key) {
        ("P-256", PrivateKey::P256(k)) => {
            let pk = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|e| bad(&e))?;
            let s = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), pk.as_affine());
            s.raw_secret_bytes().to_vec()
        }
        ("P-384", PrivateKey::P384(k)) => {
            let pk = p384::PublicKey::from_sec1_bytes(&sec1).map_err(|e| bad(&e))?;
            let s = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), pk.as_affine());
            s.raw_secret_bytes().to_vec()
        }
        ("P-521", PrivateKey::P521(k)) => {
            let pk = p521::PublicKey::from_sec1_bytes(&sec1).map_err(|e| bad(&e))?;
            let s = p521::ecdh::diffie_hellman(k.to_nonzero_scalar(), pk.as_affine());
            s.raw_secret_bytes().to_vec()
        }
        ("P-256" | "P-384" | "P-521", _) => return Ok(None),
        (other, _) => {
            return Err(OcicryptError::UnsupportedAlgorithm(format!(
                "epk curve {other:?}"
            )));
        }
    };
    Ok(Some(Zeroizing::new(z)))
}

/// Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) for keys up to 256 bits: one SHA-256 round
/// over counter ‖ Z ‖ AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ SuppPubInfo.
fn concat_kdf(z: &[u8], alg_id: &[u8], apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<Vec<u8>> {
    let with_len = |h: &mut Sha256, data: &[u8]| {
        h.update((data.len() as u32).to_be_bytes());
        h.update(data);
    };
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    with_len(&mut h, alg_id);
    with_len(&mut h, apu);
    with_len(&mut h, apv);
    h.update(bits.to_be_bytes());
    let full: [u8; 32] = h.finalize().into();
    Zeroizing::new(full[..(bits as usize / 8).min(32)].to_vec())
}

/// The A256KW key-encryption key for `ECDH-ES+A256KW` from the shared secret and header.
fn ecdh_kek(
    z: &[u8],
    alg: &str,
    header: &Map<String, Value>,
) -> Result<Zeroizing<[u8; 32]>, OcicryptError> {
    let apu = match header_str(header, "apu") {
        Some(s) => b64url("apu", s)?,
        None => Vec::new(),
    };
    let apv = match header_str(header, "apv") {
        Some(s) => b64url("apv", s)?,
        None => Vec::new(),
    };
    let derived = concat_kdf(z, alg.as_bytes(), &apu, &apv, 256);
    let mut kek = Zeroizing::new([0u8; 32]);
    kek.copy_from_slice(&derived);
    Ok(kek)
}

fn content_decrypt(
    cek: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OcicryptError> {
    if cek.len() != 32 || iv.len() != 12 || tag.len() != 16 {
        return Err(OcicryptError::InvalidJwe(format!(
            "A256GCM needs a 32-byte key, 12-byte iv and 16-byte tag (got {}, {}, {})",
            cek.len(),
            iv.len(),
            tag.len()
        )));
    }
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(cek)
        .map_err(|_| OcicryptError::InvalidJwe("bad content key".into()))?;
    let mut msg = Vec::with_capacity(ciphertext.len() + tag.len());
    msg.extend_from_slice(ciphertext);
    msg.extend_from_slice(tag);
    cipher
        .decrypt(aes_gcm::Nonce::from_slice(iv), Payload { msg: &msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| OcicryptError::InvalidJwe("A256GCM authentication failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: ECDH-ES direct key agreement for A128GCM, apu "Alice", apv "Bob".
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let key = concat_kdf(&z, b"A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(b64url("k", "VqqN6vgjbSBcIijNcacQGg").unwrap(), key.to_vec());
    }
}
