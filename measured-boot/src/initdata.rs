//! Initdata: the digest of the exact initdata TOML bytes with its declared
//! algorithm, and its forms bound into hardware (SNP HOST_DATA, TDX MRCONFIGID).
//!
//! Format (Kata / trustee): `version = "0.1.0"`, `algorithm = "sha256" | "sha384" |
//! "sha512"`, and a `[data]` table of strings. There is no canonicalisation:
//! the digest is over the bytes as given.

use std::io::Read as _;

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::MeasureError;

/// The only initdata version accepted.
pub const INITDATA_VERSION: &str = "0.1.0";
/// Largest decompressed initdata accepted from an annotation (Kata uses far less).
const MAX_INITDATA: u64 = 16 * 1024 * 1024;

/// The digest algorithms initdata may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitdataAlgorithm {
    /// SHA-256 (32 bytes; fits SNP HOST_DATA exactly).
    Sha256,
    /// SHA-384 (48 bytes; fits TDX MRCONFIGID exactly).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl InitdataAlgorithm {
    /// The name as written in the TOML.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Hashes `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// A parsed initdata document, with the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initdata {
    /// The exact bytes (what is hashed).
    pub raw: Vec<u8>,
    /// The declared algorithm.
    pub algorithm: InitdataAlgorithm,
    /// The `[data]` entries, in key order.
    pub data: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct InitdataToml {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
}

impl Initdata {
    /// Parses and validates initdata TOML bytes.
    pub fn parse(raw: &[u8]) -> Result<Self, MeasureError> {
        let text = std::str::from_utf8(raw)
            .map_err(|e| MeasureError::Initdata(format!("not UTF-8: {e}")))?;
        let doc: InitdataToml = toml::from_str(text)
            .map_err(|e| MeasureError::Initdata(format!("invalid TOML: {e}")))?;
        if doc.version != INITDATA_VERSION {
            return Err(MeasureError::Initdata(format!(
                "unsupported version {:?} (only {INITDATA_VERSION:?} is accepted)",
                doc.version
            )));
        }
        let algorithm = match doc.algorithm.as_str() {
            "sha256" => InitdataAlgorithm::Sha256,
            "sha384" => InitdataAlgorithm::Sha384,
            "sha512" => InitdataAlgorithm::Sha512,
            other => {
                return Err(MeasureError::Initdata(format!(
                    "unsupported algorithm {other:?} (expected sha256, sha384 or sha512)"
                )));
            }
        };
        Ok(Self {
            raw: raw.to_vec(),
            algorithm,
            data: doc.data,
        })
    }

    /// Decodes the Kata annotation form `base64(gzip(toml))` and parses it.
    pub fn from_annotation(value: &str) -> Result<Self, MeasureError> {
        Self::parse(&decode_annotation(value)?)
    }

    /// The digest of the exact bytes with the declared algorithm.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(&self.raw)
    }

    /// The 32-byte SNP HOST_DATA: the digest zero-padded or truncated.
    pub fn snp_host_data(&self) -> [u8; 32] {
        fit(&self.digest())
    }

    /// The 48-byte TDX MRCONFIGID: the digest zero-padded or truncated.
    pub fn tdx_mrconfigid(&self) -> [u8; 48] {
        fit(&self.digest())
    }
}

/// Fits a digest into an `N`-byte field: zero-pad a shorter one, truncate a longer one.
pub fn fit<const N: usize>(digest: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = digest.len().min(N);
    out[..n].copy_from_slice(&digest[..n]);
    out
}

/// Decodes `base64(gzip(bytes))` (the `io.katacontainers.config.hypervisor.cc_init_data`
/// annotation) into the raw initdata bytes.
pub fn decode_annotation(value: &str) -> Result<Vec<u8>, MeasureError> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| MeasureError::Initdata(format!("annotation is not base64: {e}")))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_INITDATA + 1)
        .read_to_end(&mut out)
        .map_err(|e| MeasureError::Initdata(format!("annotation is not gzip: {e}")))?;
    if out.len() as u64 > MAX_INITDATA {
        return Err(MeasureError::Initdata(format!(
            "decompressed initdata exceeds {MAX_INITDATA} bytes"
        )));
    }
    Ok(out)
}

/// Encodes raw initdata bytes as the Kata annotation value `base64(gzip(bytes))`.
pub fn encode_annotation(raw: &[u8]) -> Result<String, MeasureError> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(raw)
        .and_then(|_| enc.finish())
        .map(|gz| base64::engine::general_purpose::STANDARD.encode(gz))
        .map_err(|e| MeasureError::Initdata(format!("gzip failed: {e}")))
}
