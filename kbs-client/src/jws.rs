//! Compact JWS / JWT with `ES256` (P-256) or `EdDSA` (Ed25519): attestation tokens
//! (signed by a KBS) and admin tokens (`role` claim, trustee ≥ 0.21).
//!
//! Verification pins the algorithm to the key type: a token whose header names any
//! other `alg` (including `none`) is refused before the signature is looked at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use p256::ecdsa::signature::{Signer, Verifier};
use serde_json::{Value, json};

use crate::KbsClientError;

/// A JWS signing key.
pub enum JwsSigningKey {
    /// ECDSA P-256 / SHA-256 (`ES256`).
    Es256(p256::ecdsa::SigningKey),
    /// Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::SigningKey),
}

/// A JWS verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwsVerifyingKey {
    /// ECDSA P-256 (`ES256`).
    Es256(p256::ecdsa::VerifyingKey),
    /// Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for JwsSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwsSigningKey({})", self.alg())
    }
}

impl JwsSigningKey {
    /// Parse a PKCS#8 PEM private key (Ed25519 or P-256), or a SEC1 `EC PRIVATE KEY`.
    pub fn from_pem(pem: &str) -> Result<Self, KbsClientError> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::Ed25519(k));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Self::Es256(k.into()));
        }
        if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(Self::Es256(k.into()));
        }
        Err(KbsClientError::crypto(
            "signing key PEM is neither an Ed25519 nor a P-256 private key",
        ))
    }

    /// A fresh random key of the kind `alg` names (`EdDSA` or `ES256`).
    pub fn generate(alg: &str) -> Result<Self, KbsClientError> {
        let mut rng = p256::elliptic_curve::rand_core::OsRng;
        match alg {
            "EdDSA" => Ok(Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng))),
            "ES256" => Ok(Self::Es256(p256::ecdsa::SigningKey::random(&mut rng))),
            other => Err(KbsClientError::crypto(format!(
                "JWS alg {other:?} not supported (EdDSA, ES256)"
            ))),
        }
    }

    /// The JWS `alg` name.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KbsClientError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let lf = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        match self {
            Self::Es256(k) => p256::SecretKey::from_bytes(&k.to_bytes())
                .map_err(KbsClientError::crypto)?
                .to_pkcs8_pem(lf)
                .map_err(KbsClientError::crypto),
            Self::Ed25519(k) => k.to_pkcs8_pem(lf).map_err(KbsClientError::crypto),
        }
    }

    /// The matching verification key.
    pub fn verifying_key(&self) -> JwsVerifyingKey {
        match self {
            Self::Es256(k) => JwsVerifyingKey::Es256(*k.verifying_key()),
            Self::Ed25519(k) => JwsVerifyingKey::Ed25519(k.verifying_key()),
        }
    }

    /// Sign `claims` into a compact JWT (`{"alg":..,"typ":"JWT"}` header).
    pub fn sign_jwt(&self, claims: &Value) -> Result<String, KbsClientError> {
        let header = json!({"alg": self.alg(), "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(serde_json::to_vec(claims).map_err(KbsClientError::crypto)?)
        );
        let signature = match self {
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(signing_input.as_bytes());
                sig.to_bytes().to_vec()
            }
            Self::Ed25519(k) => k.sign(signing_input.as_bytes()).to_bytes().to_vec(),
        };
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }
}

impl JwsVerifyingKey {
    /// Parse an SPKI PEM public key (`PUBLIC KEY`): Ed25519 or P-256.
    pub fn from_pem(pem: &str) -> Result<Self, KbsClientError> {
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(Self::Ed25519(k));
        }
        if let Ok(k) = p256::PublicKey::from_public_key_pem(pem) {
            return Ok(Self::Es256(k.into()));
        }
        Err(KbsClientError::crypto(
            "public key PEM is neither an Ed25519 nor a P-256 SPKI key",
        ))
    }

    /// The public key as SPKI PEM (`PUBLIC KEY`).
    pub fn to_pem(&self) -> Result<String, KbsClientError> {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let lf = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        match self {
            Self::Es256(k) => p256::PublicKey::from(k)
                .to_public_key_pem(lf)
                .map_err(KbsClientError::crypto),
            Self::Ed25519(k) => k.to_public_key_pem(lf).map_err(KbsClientError::crypto),
        }
    }

    /// The JWS `alg` this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// Verify a compact JWT's signature and time claims at `now` (Unix seconds):
    /// `exp` is required and must be in the future, `nbf` (if any) not in the future.
    /// Returns the claims.
    pub fn verify_jwt(&self, token: &str, now: i64) -> Result<Value, KbsClientError> {
        let bad = |r: &str| KbsClientError::Crypto(format!("JWT: {r}"));
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a compact JWS (three dot-separated parts)"));
        };
        let header: Value = serde_json::from_slice(
            &B64URL
                .decode(h)
                .map_err(|_| bad("header is not base64url"))?,
        )
        .map_err(|_| bad("header is not JSON"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != self.alg() {
            return Err(bad(&format!(
                "alg {alg:?} does not match the configured {} key",
                self.alg()
            )));
        }
        let sig = B64URL
            .decode(s)
            .map_err(|_| bad("signature is not base64url"))?;
        let signing_input = &token.trim()[..h.len() + 1 + p.len()];
        let ok = match self {
            Self::Es256(k) => p256::ecdsa::Signature::from_slice(&sig)
                .map(|sig| k.verify(signing_input.as_bytes(), &sig).is_ok())
                .unwrap_or(false),
            Self::Ed25519(k) => ed25519_dalek::Signature::from_slice(&sig)
                .map(|sig| k.verify(signing_input.as_bytes(), &sig).is_ok())
                .unwrap_or(false),
        };
        if !ok {
            return Err(bad("signature does not verify"));
        }
        let claims: Value = serde_json::from_slice(
            &B64URL
                .decode(p)
                .map_err(|_| bad("payload is not base64url"))?,
        )
        .map_err(|_| bad("payload is not JSON"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no numeric exp claim"))?;
        if exp <= now {
            return Err(bad(&format!("expired at {exp} (now {now})")));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
            && nbf > now
        {
            return Err(bad(&format!("not valid before {nbf} (now {now})")));
        }
        Ok(claims)
    }
}

/// Decode a JWT's claims WITHOUT verifying it (the client only reads `exp`).
pub fn decode_claims_unverified(token: &str) -> Result<Value, KbsClientError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| KbsClientError::Protocol("token is not a JWT".into()))?;
    let bytes = B64URL
        .decode(payload)
        .map_err(|_| KbsClientError::Protocol("token payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| KbsClientError::Protocol("token payload is not JSON".into()))
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Mint an admin token as trustee's docker-compose setup does: header
/// `{"alg":"EdDSA","typ":"JWT"}`, claims `iss`, `sub`, `aud`, `role`, `iat`, `exp`.
pub fn admin_token(
    key: &JwsSigningKey,
    role: &str,
    issuer: &str,
    lifetime_secs: i64,
) -> Result<String, KbsClientError> {
    let iat = now_unix();
    key.sign_jwt(&json!({
        "iss": issuer,
        "sub": "admin",
        "aud": ["KBS"],
        "role": role,
        "iat": iat,
        "exp": iat + lifetime_secs,
    }))
}
