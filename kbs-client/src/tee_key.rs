//! The tee key pair: the public half travels as the `tee-pubkey` JWK in the
//! attestation and is bound into report_data; resources come back encrypted to it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use kbs_types::TeePubKey;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::KbsClientError;
use crate::jwe::{self, ECDH_ES_A256KW, P256, RSA_OAEP_256, Unwrapper};

/// Which key pair to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeeKeyAlgorithm {
    /// EC P-256 with `ECDH-ES+A256KW` (guest-components' default).
    #[default]
    EcP256,
    /// RSA 2048 with `RSA-OAEP-256`.
    RsaOaep256,
}

enum Inner {
    Ec(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A tee key pair (private half stays in memory, zeroized on drop by the key types).
pub struct TeeKeyPair {
    inner: Inner,
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeyPair")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl TeeKeyPair {
    /// Generate a fresh key pair.
    pub fn generate(algorithm: TeeKeyAlgorithm) -> Result<Self, KbsClientError> {
        let inner = match algorithm {
            TeeKeyAlgorithm::EcP256 => Inner::Ec(p256::SecretKey::random(&mut OsRng)),
            TeeKeyAlgorithm::RsaOaep256 => Inner::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(KbsClientError::crypto)?,
            )),
        };
        Ok(Self { inner })
    }

    /// Import a PEM private key: PKCS#8 (EC P-256 or RSA), SEC1 `EC PRIVATE KEY`
    /// or PKCS#1 `RSA PRIVATE KEY` (trustee's `--tee-key-file` is RSA PEM).
    pub fn from_pem(pem: &str) -> Result<Self, KbsClientError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Self {
                inner: Inner::Ec(k),
            });
        }
        if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(Self {
                inner: Inner::Ec(k),
            });
        }
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            return Ok(Self {
                inner: Inner::Rsa(Box::new(k)),
            });
        }
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_pem(pem) {
            return Ok(Self {
                inner: Inner::Rsa(Box::new(k)),
            });
        }
        Err(KbsClientError::crypto(
            "tee key PEM is neither an EC P-256 nor an RSA private key (PKCS#8, SEC1 or PKCS#1)",
        ))
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KbsClientError> {
        match &self.inner {
            Inner::Ec(k) => k
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(KbsClientError::crypto),
            Inner::Rsa(k) => k
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(KbsClientError::crypto),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> TeeKeyAlgorithm {
        match self.inner {
            Inner::Ec(_) => TeeKeyAlgorithm::EcP256,
            Inner::Rsa(_) => TeeKeyAlgorithm::RsaOaep256,
        }
    }

    /// The public key as the protocol's JWK (`tee-pubkey`).
    pub fn public_jwk(&self) -> TeePubKey {
        match &self.inner {
            Inner::Ec(k) => {
                let point = p256::EncodedPoint::from(k.public_key());
                TeePubKey::EC {
                    crv: P256.into(),
                    alg: ECDH_ES_A256KW.into(),
                    x: point.x().map(|x| B64URL.encode(x)).unwrap_or_default(),
                    y: point.y().map(|y| B64URL.encode(y)).unwrap_or_default(),
                }
            }
            Inner::Rsa(k) => TeePubKey::RSA {
                alg: RSA_OAEP_256.into(),
                k_mod: B64URL.encode(k.n().to_bytes_be()),
                k_exp: B64URL.encode(k.e().to_bytes_be()),
            },
        }
    }

    /// Decrypt a KBS resource response (flattened JWE JSON).
    pub fn decrypt(&self, jwe_json: &[u8]) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        match &self.inner {
            Inner::Ec(k) => jwe::decrypt(jwe_json, Unwrapper::EcP256(k)),
            Inner::Rsa(k) => jwe::decrypt(jwe_json, Unwrapper::Rsa(k)),
        }
    }
}
