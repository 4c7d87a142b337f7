//! Private keys for JWE unwrapping, read from PEM (PKCS#1, PKCS#8 and SEC1).

use std::path::Path;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::OcicryptError;

/// A private key that can unwrap ocicrypt JWE recipients. Key material is zeroized on drop
/// (the RustCrypto key types do it themselves).
#[derive(Clone)]
pub enum PrivateKey {
    /// RSA key, for `RSA-OAEP` and `RSA-OAEP-256`.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// EC P-256 key, for `ECDH-ES+A256KW`.
    P256(p256::SecretKey),
    /// EC P-384 key.
    P384(p384::SecretKey),
    /// EC P-521 key.
    P521(p521::SecretKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa(_) => "PrivateKey::Rsa(<redacted>)",
            Self::P256(_) => "PrivateKey::P256(<redacted>)",
            Self::P384(_) => "PrivateKey::P384(<redacted>)",
            Self::P521(_) => "PrivateKey::P521(<redacted>)",
        })
    }
}

impl PrivateKey {
    /// Parse the first private key in a PEM document (other blocks, such as the
    /// `EC PARAMETERS` that `openssl ecparam -genkey` writes first, are skipped).
    pub fn from_pem(pem: &[u8]) -> Result<Self, OcicryptError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| OcicryptError::InvalidKey("PEM is not UTF-8 text".into()))?;
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let after = &rest[start + 11..];
            let label_end = after
                .find("-----")
                .ok_or_else(|| OcicryptError::InvalidKey("unterminated PEM header".into()))?;
            let label = &after[..label_end];
            let body_start = &after[label_end + 5..];
            let end_marker = format!("-----END {label}-----");
            let body_end = body_start
                .find(&end_marker)
                .ok_or_else(|| OcicryptError::InvalidKey(format!("no {end_marker} line")))?;
            let body = &body_start[..body_end];
            rest = &body_start[body_end + end_marker.len()..];
            let b64: Zeroizing<String> =
                Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
            let der = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| OcicryptError::InvalidKey(format!("{label}: bad base64: {e}")))?,
            );
            match label {
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&der),
                "PRIVATE KEY" => return Self::from_pkcs8_der(&der),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&der),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(OcicryptError::InvalidKey(
                        "password-protected private keys are not supported".into(),
                    ));
                }
                _ => continue,
            }
        }
        Err(OcicryptError::InvalidKey(
            "no private key block in PEM".into(),
        ))
    }

    /// Read and parse a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, OcicryptError> {
        let pem = Zeroizing::new(std::fs::read(path).map_err(|e| {
            OcicryptError::InvalidKey(format!("cannot read {}: {e}", path.display()))
        })?);
        Self::from_pem(&pem)
            .map_err(|e| OcicryptError::InvalidKey(format!("{}: {e}", path.display())))
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, OcicryptError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        rsa::RsaPrivateKey::from_pkcs1_der(der)
            .map(|k| Self::Rsa(Box::new(k)))
            .map_err(|e| OcicryptError::InvalidKey(format!("PKCS#1 RSA key: {e}")))
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, OcicryptError> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
            return Ok(Self::P521(k));
        }
        Err(OcicryptError::InvalidKey(
            "PKCS#8 key is not RSA, P-256, P-384 or P-521".into(),
        ))
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, OcicryptError> {
        if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
            return Ok(Self::P521(k));
        }
        Err(OcicryptError::InvalidKey(
            "SEC1 EC key is not on P-256, P-384 or P-521".into(),
        ))
    }

    /// Short name of the key type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RSA",
            Self::P256(_) => "EC P-256",
            Self::P384(_) => "EC P-384",
            Self::P521(_) => "EC P-521",
        }
    }
}
